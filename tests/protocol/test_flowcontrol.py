"""flowcontrol.FlowControl on a stand-in transport: drain() waits while writing is paused and
fails once the connection is lost; reading is paused and resumed once per change."""

from __future__ import annotations

import asyncio

import pytest

from edgeauth.flowcontrol import FlowControl


class _Transport(asyncio.Transport):
    """Counts the calls that pause and resume reading."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    def pause_reading(self) -> None:
        self.calls.append("pause")

    def resume_reading(self) -> None:
        self.calls.append("resume")


async def test_drain_returns_at_once_while_writing_is_not_paused() -> None:
    flow = FlowControl(_Transport())
    await asyncio.wait_for(flow.drain(), 1)
    assert not flow.draining


async def test_drain_waits_while_writing_is_paused_until_it_resumes() -> None:
    flow = FlowControl(_Transport())
    flow.pause_writing()
    waiting = asyncio.create_task(flow.drain())
    await asyncio.sleep(0)
    assert (flow.draining, waiting.done()) == (True, False)
    flow.resume_writing()
    await asyncio.wait_for(waiting, 1)
    assert (flow.draining, flow.write_paused) == (False, False)


async def test_a_lost_connection_fails_the_waiting_drain_and_every_later_one() -> None:
    flow = FlowControl(_Transport())
    flow.pause_writing()
    waiting = asyncio.create_task(flow.drain())
    await asyncio.sleep(0)
    gone = ConnectionResetError("gone")
    flow.connection_lost(gone)
    with pytest.raises(ConnectionResetError, match="gone"):
        await waiting
    flow.resume_writing()
    with pytest.raises(ConnectionResetError, match="gone"):
        await flow.drain()


async def test_a_lost_connection_with_no_writer_waiting_leaves_no_unretrieved_error() -> None:
    flow = FlowControl(_Transport())
    flow.connection_lost(ConnectionResetError("gone"))
    with pytest.raises(ConnectionResetError):
        await flow.drain()


def test_reading_is_paused_and_resumed_once_per_change() -> None:
    transport = _Transport()
    flow = FlowControl(transport)
    assert not flow.resume_reading()  # not paused: nothing to resume
    flow.pause_reading()
    flow.pause_reading()
    assert flow.read_paused
    assert flow.resume_reading()
    assert not flow.resume_reading()
    assert transport.calls == ["pause", "resume"]
    assert not flow.read_paused


def test_reading_is_left_alone_once_the_connection_is_lost() -> None:
    transport = _Transport()
    flow = FlowControl(transport)
    flow.pause_reading()
    flow.connection_lost(ConnectionResetError("gone"))
    assert not flow.resume_reading()
    flow.pause_reading()
    assert transport.calls == ["pause"]
