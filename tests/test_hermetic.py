"""The suite never depends on a fixed port (issue 15): the default listener ports are held for
the whole run, so a test config that leaves a listener at its default fails to start, and the
failure shows the gateway's own words instead of only an exit status."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from edgeauth import tls
from tests.conftest import DEFAULT_PORTS, ServeProcess, write_config


@pytest.mark.parametrize("port", DEFAULT_PORTS)
def test_the_default_ports_are_taken_during_the_run(port: int) -> None:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        with pytest.raises(OSError, match="in use"):
            sock.bind(("127.0.0.1", port))


def test_a_listener_left_at_its_default_fails_to_start_and_the_failure_says_why(
    tmp_path: Path, dev_cert: tls.DevCertificate
) -> None:
    config = write_config(tmp_path, dev_cert, [], tables={"admin": {"listen": "127.0.0.1:8001"}})
    with pytest.raises(RuntimeError) as caught:
        ServeProcess(config)
    message = str(caught.value)
    assert message.startswith("edgeauth serve exited with 69:\n"), message
    assert "cannot listen on 127.0.0.1:8001" in message, message
