"""The suite never depends on a fixed port (issue 15): the default listener ports are held for
the whole run, so a test config that leaves a listener at its default fails to start, and the
failure shows the gateway's own words instead of only an exit status."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from edgeauth import tls
from tests.conftest import DEFAULT_PORTS, ServeProcess, write_config


def _taken(port: int, seconds: float = 10.0) -> bool:
    """Whether `port` is (or, within `seconds`, becomes) taken: another run of the suite on
    this machine may hold it until it ends, and this run's holder takes it over then."""
    deadline = time.monotonic() + seconds
    while True:
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("127.0.0.1", port))
            except OSError as exc:
                return "in use" in str(exc)
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


@pytest.mark.parametrize("port", DEFAULT_PORTS)
def test_the_default_ports_are_taken_during_the_run(port: int) -> None:
    assert _taken(port)


def test_a_listener_left_at_its_default_fails_to_start_and_the_failure_says_why(
    tmp_path: Path, dev_cert: tls.DevCertificate
) -> None:
    assert _taken(8001)
    config = write_config(tmp_path, dev_cert, [], tables={"admin": {"listen": "127.0.0.1:8001"}})
    with pytest.raises(RuntimeError) as caught:
        ServeProcess(config)
    message = str(caught.value)
    assert message.startswith("edgeauth serve exited with 69:\n"), message
    assert "cannot listen on 127.0.0.1:8001" in message, message
