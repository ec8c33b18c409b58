"""The systemd unit is valid (design §9): `systemd-analyze verify`, when the command exists."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parent.parent / "deploy" / "edgeauth.service"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze here")
def test_unit_verifies_without_warnings(tmp_path: Path) -> None:
    # verify checks that ExecStart binaries exist: point them at this checkout's command
    edgeauth = Path(sys.executable).parent / "edgeauth"
    unit = tmp_path / "edgeauth.service"
    unit.write_text(UNIT.read_text().replace("/opt/edgeauth/.venv/bin/edgeauth", str(edgeauth)))
    done = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert str(unit) not in done.stderr, done.stderr  # any warning names the file


def test_unit_has_the_directives_design_section_9_asks_for() -> None:
    text = UNIT.read_text()
    for directive in (
        "Type=notify",
        "WatchdogSec=",
        "Restart=on-failure",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "LimitNOFILE=65536",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "StateDirectory=edgeauth",
        "PrivateTmp=yes",
        "UMask=0077",
    ):
        assert directive in text, directive
    assert "\nAmbientCapabilities" not in text  # only when binding below 1024
