"""The deploy: the systemd unit is valid (design §9, `systemd-analyze verify` when the command
exists), and the repository's config.toml works when laid out as deploy/README.md says: the
config under <root>/etc/edgeauth, state in $STATE_DIRECTORY, logs in $LOGS_DIRECTORY."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import pytest
import tomli_w

from edgeauth import tls

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "deploy" / "edgeauth.service"
CHECK = "ExecReload=/opt/edgeauth/.venv/bin/edgeauth check-config -c /etc/edgeauth/config.toml"
SIGNAL = "ExecReload=/bin/kill -HUP $MAINPID"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze here")
def test_unit_verifies_without_warnings(tmp_path: Path) -> None:
    # verify checks that the Exec* binaries exist: point them at this checkout's command
    edgeauth = Path(sys.executable).parent / "edgeauth"
    unit = tmp_path / "edgeauth.service"
    unit.write_text(UNIT.read_text().replace("/opt/edgeauth/.venv/bin/edgeauth", str(edgeauth)))
    assert unit.read_text().count(str(edgeauth)) == 3  # ExecStartPre, ExecStart, ExecReload
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
        CHECK,
        SIGNAL,
        "LimitNOFILE=65536",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "StateDirectory=edgeauth",
        "LogsDirectory=edgeauth",
        "PrivateTmp=yes",
        "UMask=0077",
    ):
        assert directive in text, directive
    assert text.index(CHECK) < text.index(SIGNAL)  # systemd runs ExecReload= lines in order
    assert "\nAmbientCapabilities" not in text  # only when binding below 1024


@dataclass
class Layout:
    """deploy/README.md's layout under a throwaway root."""

    config: Path  # <root>/etc/edgeauth/config.toml
    state: Path  # <root>/var/lib/edgeauth, as StateDirectory=edgeauth makes it
    logs: Path  # <root>/var/log/edgeauth, as LogsDirectory=edgeauth makes it

    @property
    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "STATE_DIRECTORY": str(self.state),
            "LOGS_DIRECTORY": str(self.logs),
        }

    def check_config(self) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "edgeauth", "check-config", "-c", str(self.config)],
            capture_output=True,
            text=True,
            env=self.env,
            check=False,
        )


def readme_edits(doc: dict[str, Any], etc: Path, cert: tls.DevCertificate) -> None:
    """The edits deploy/README.md lists (listen addresses and services stay the example's)."""
    doc["server"]["public_url"] = "https://gateway.example"
    doc["server"]["tls_cert_file"] = str(cert.cert_file)
    doc["server"]["tls_key_file"] = str(cert.key_file)
    secret = etc / "secrets" / "clientapp.secret"
    secret.parent.mkdir()
    secret.write_text("a-client-secret-of-this-deployment\n")
    (cred,) = doc["consumers"][0]["oauth2"]
    cred["client_secret_file"] = str(secret)


@pytest.fixture
def layout(tmp_path: Path, dev_cert: tls.DevCertificate) -> Layout:
    etc = tmp_path / "etc" / "edgeauth"
    etc.mkdir(parents=True)
    doc = tomllib.loads((ROOT / "config.toml").read_text())
    readme_edits(doc, etc, dev_cert)
    config = etc / "config.toml"
    config.write_text(tomli_w.dumps(doc))
    found = Layout(
        config, tmp_path / "var" / "lib" / "edgeauth", tmp_path / "var" / "log" / "edgeauth"
    )
    found.state.mkdir(parents=True)
    found.logs.mkdir(parents=True)
    return found


def test_the_example_config_passes_check_config_as_deploy_readme_lays_it_out(
    layout: Layout,
) -> None:
    done = layout.check_config()
    assert (done.returncode, done.stdout) == (0, "ok\n"), done.stderr
    assert not (layout.config.parent / "var").exists()  # nothing written beside the config


def test_check_config_names_a_file_it_could_not_create_in_the_state_directory(
    layout: Layout,
) -> None:
    # A file where var/ should be: no user, root included, can create var/* there.
    (layout.state / "var").write_text("")
    done = layout.check_config()
    assert done.returncode == 78, done.stderr
    cannot = f"{layout.state / 'var'} is not a directory"
    for key, name in (
        ("admin.token_file", "admin.token"),
        ("store.path", "edgeauth.db"),
        ("services[0].oauth2.provision_key_file", "events.provision_key"),
    ):
        line = f"config.toml: {key}: cannot create {layout.state / 'var' / name}: {cannot}"
        assert line in done.stderr.splitlines(), done.stderr
    assert "ok" not in done.stdout


@pytest.mark.skipif(
    os.geteuid() == 0,
    reason="root passes every permission check (os.access), so a 0555 directory is writable"
    " to it; the not-a-directory test above covers refusal as root",
)
def test_check_config_refuses_a_read_only_state_directory(layout: Layout) -> None:
    layout.state.chmod(0o555)
    try:
        done = layout.check_config()
    finally:
        layout.state.chmod(0o755)
    assert done.returncode == 78, done.stderr
    token = layout.state / "var" / "admin.token"
    assert f"config.toml: admin.token_file: cannot create {token}: {layout.state} is not" in (
        done.stderr
    )


def test_a_start_writes_generated_files_in_the_state_directory_and_logs_in_the_logs_one(
    layout: Layout,
) -> None:
    doc = tomllib.loads(layout.config.read_text())
    doc["server"]["listen"] = "127.0.0.1:0"
    doc["admin"]["listen"] = "127.0.0.1:0"
    doc["status"] = {"listen": "127.0.0.1:0"}
    doc["log"]["access_log"] = "access.log"  # deploy/README's alternative to journald
    layout.config.write_text(tomli_w.dumps(doc))
    proc = subprocess.Popen(
        [sys.executable, "-m", "edgeauth", "serve", "-c", str(layout.config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=layout.env,
        cwd=layout.state,
    )
    assert proc.stderr is not None
    with proc.stderr:
        log = _await_ready(proc, proc.stderr)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, log
    key = layout.state / "var" / "events.provision_key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert (layout.state / "var" / "admin.token").is_file()
    assert (layout.state / "var" / "edgeauth.db").is_file()
    assert (layout.logs / "access.log").is_file()
    assert not (layout.config.parent / "var").exists()


def _await_ready(proc: subprocess.Popen[str], stderr: IO[str]) -> str:
    """The process log up to "ready"; a gateway that exits first fails the test with it."""
    seen = []
    for line in stderr:
        seen.append(line)
        with contextlib.suppress(ValueError):
            if json.loads(line).get("msg") == "ready":
                return "".join(seen)
    pytest.fail(f"edgeauth serve exited with {proc.wait()}:\n{''.join(seen)}")
