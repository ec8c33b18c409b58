"""The command line as an operator runs it: real subprocesses, real files (design §2, §10)."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import shutil
import ssl
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

import edgeauth
from edgeauth import tls
from tests.conftest import service, write_config

EX_USAGE = 2
EX_CONFIG = 78

CONSOLE_SCRIPT = Path(sys.executable).parent / "edgeauth"


def run(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`python -m edgeauth <args>`, with its output captured as text; `env` adds to a copy of
    the environment without EDGEAUTH_CONFIG, so the configuration search starts clean."""
    clean = {k: v for k, v in os.environ.items() if k != "EDGEAUTH_CONFIG"}
    return subprocess.run(
        [sys.executable, "-m", "edgeauth", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        env={**clean, **(env or {})},
        stdin=subprocess.DEVNULL,
        check=False,
    )


def _good_config(tmp_path: Path, dev_cert: tls.DevCertificate) -> Path:
    return write_config(tmp_path, dev_cert, [service("tools", "http://127.0.0.1:9/", ["/"])])


# ---- check-config ------------------------------------------------------------------------


def test_check_config_prints_ok_for_a_good_config(
    tmp_path: Path, dev_cert: tls.DevCertificate
) -> None:
    result = run("check-config", "-c", str(_good_config(tmp_path, dev_cert)))
    assert result.returncode == 0, result.stderr
    assert result.stdout == "ok\n"


def test_check_config_warns_of_a_public_upstream_that_contains_a_protected_one(
    tmp_path: Path, dev_cert: tls.DevCertificate
) -> None:
    oauth2 = {"provision_key": "pk-" + "k" * 40, "enable_client_credentials": True}
    services = [
        service("events", "http://127.0.0.1:9/api", ["/events"], strip_path=False, oauth2=oauth2),
        service("sample", "http://127.0.0.1:9", ["/sample"]),
    ]
    result = run("check-config", "-c", str(write_config(tmp_path, dev_cert, services)))
    assert result.returncode == 0, result.stderr
    assert result.stdout == "ok\n"
    assert result.stderr.startswith(
        'warning: config.toml: services[1].url: public service "sample" (http://127.0.0.1:9)'
        ' also reaches the upstream of protected service "events"'
    ), result.stderr


def test_check_config_reports_every_mistake_with_key_path_and_hint(
    tmp_path: Path, dev_cert: tls.DevCertificate
) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(
        f"""
[server]
listen = "127.0.0.1:0"
tls_cert_file = "{dev_cert.cert_file}"
tls_key_file = "{dev_cert.key_file}"
max_conections = 10
header_timeout_seconds = "ten"

[log]
level = "inf"

[[services]]
name = "tools"
url = "http://127.0.0.1:9/"
  [[services.routes]]
  name = "r"
  paths = ["/"]
"""
    )
    result = run("check-config", "-c", str(config))
    assert result.returncode == EX_CONFIG, result
    assert "ok" not in result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 3, result.stderr

    def line_for(key: str) -> str:
        (found,) = [line for line in lines if f"{key}:" in line]
        assert found.startswith("bad.toml: "), found
        return found

    unknown = line_for("server.max_conections")
    assert "unknown" in unknown
    assert 'did you mean "max_connections"' in unknown
    wrong_type = line_for("server.header_timeout_seconds")
    assert "number" in wrong_type
    assert '"ten"' in wrong_type
    literal = line_for("log.level")
    assert '"inf"' in literal
    assert 'did you mean "info"' in literal


def test_check_config_with_a_missing_file_exits_78(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.toml"
    result = run("check-config", "-c", str(missing))
    assert result.returncode == EX_CONFIG, result
    assert "nowhere.toml" in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_check_config_with_invalid_toml_exits_78_without_a_traceback(tmp_path: Path) -> None:
    config = tmp_path / "broken.toml"
    config.write_text("[server\nlisten = \n")
    result = run("check-config", "-c", str(config))
    assert result.returncode == EX_CONFIG, result
    assert "broken.toml" in result.stderr
    assert "Traceback" not in result.stderr


def test_check_config_refuses_a_certificate_that_does_not_load(
    tmp_path: Path, dev_cert: tls.DevCertificate
) -> None:
    cert = tmp_path / "garbage.crt"
    key = tmp_path / "garbage.key"
    cert.write_text(
        "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n"
    )
    key.write_text("-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n")
    config = write_config(
        tmp_path,
        dev_cert,
        [service("tools", "http://127.0.0.1:9/", ["/"])],
        tls_cert_file=str(cert),
        tls_key_file=str(key),
    )
    result = run("check-config", "-c", str(config))
    assert result.returncode == EX_CONFIG, result
    assert "server.tls_cert_file" in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_check_config_refuses_a_key_that_does_not_match_the_certificate(
    tmp_path: Path, dev_cert: tls.DevCertificate
) -> None:
    other = tls.generate_dev_certificate(tmp_path / "other")
    config = write_config(
        tmp_path,
        dev_cert,
        [service("tools", "http://127.0.0.1:9/", ["/"])],
        tls_key_file=str(other.key_file),
    )
    result = run("check-config", "-c", str(config))
    assert result.returncode == EX_CONFIG, result
    assert "server.tls_cert_file" in result.stderr


# ---- gen-cert ----------------------------------------------------------------------------


def _verify(ca_file: Path, cert_file: Path, name: x509.verification.Subject) -> None:
    ca = x509.load_pem_x509_certificate(ca_file.read_bytes())
    leaf = x509.load_pem_x509_certificate(cert_file.read_bytes())
    verifier = PolicyBuilder().store(Store([ca])).time(dt.datetime.now(dt.UTC))
    verifier.build_server_verifier(name).verify(leaf, [])


def test_gen_cert_writes_a_ca_a_leaf_and_a_private_key(tmp_path: Path) -> None:
    directory = tmp_path / "certs"
    result = run("gen-cert", "--dir", str(directory))
    assert result.returncode == 0, result.stderr
    ca, leaf, key = (directory / n for n in ("dev-ca.crt", "edgeauth.crt", "edgeauth.key"))
    for path in (ca, leaf, key):
        assert path.is_file(), path
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    for name in (
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.IPAddress(ipaddress.ip_address("::1")),
    ):
        _verify(ca, leaf, name)
    with pytest.raises(VerificationError):
        _verify(ca, leaf, x509.DNSName("example.com"))
    # the key is the leaf's own key
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(leaf, key)


def test_gen_cert_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    directory = tmp_path / "certs"
    assert run("gen-cert", "--dir", str(directory)).returncode == 0
    names = ("dev-ca.crt", "edgeauth.crt", "edgeauth.key")
    before = {n: (directory / n).read_bytes() for n in names}
    again = run("gen-cert", "--dir", str(directory))
    assert again.returncode != 0
    assert "--force" in again.stderr
    assert {n: (directory / n).read_bytes() for n in names} == before
    forced = run("gen-cert", "--dir", str(directory), "--force")
    assert forced.returncode == 0, forced.stderr
    assert (directory / "edgeauth.key").read_bytes() != before["edgeauth.key"]
    assert stat.S_IMODE((directory / "edgeauth.key").stat().st_mode) == 0o600
    _verify(directory / "dev-ca.crt", directory / "edgeauth.crt", x509.DNSName("localhost"))


def test_gen_cert_key_is_0600_whatever_the_umask(tmp_path: Path) -> None:
    directory = tmp_path / "certs"
    result = subprocess.run(
        [
            "/bin/sh",
            "-c",
            'umask 000 && exec "$0" -m edgeauth gen-cert --dir "$1"',
            sys.executable,
            str(directory),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE((directory / "edgeauth.key").stat().st_mode) == 0o600


# ---- version, usage, entry points --------------------------------------------------------


def test_version_prints_the_package_version() -> None:
    result = run("version")
    assert result.returncode == 0
    assert result.stdout == f"edgeauth {edgeauth.__version__}\n"


def test_unknown_subcommand_is_a_usage_error() -> None:
    result = run("frobnicate")
    assert result.returncode == EX_USAGE
    assert "frobnicate" in result.stderr
    assert result.stdout == ""


def test_no_subcommand_is_a_usage_error() -> None:
    result = run()
    assert result.returncode == EX_USAGE
    assert "usage" in result.stderr.lower()


def test_console_script_and_module_are_the_same_command(
    tmp_path: Path, dev_cert: tls.DevCertificate
) -> None:
    assert CONSOLE_SCRIPT.is_file()
    assert os.access(CONSOLE_SCRIPT, os.X_OK)
    config = str(_good_config(tmp_path, dev_cert))
    for argv in (
        [sys.executable, "-m", "edgeauth"],
        [str(CONSOLE_SCRIPT)],
    ):
        version = subprocess.run(
            [*argv, "version"], capture_output=True, text=True, timeout=60, check=False
        )
        assert version.returncode == 0, (argv, version.stderr)
        assert version.stdout == f"edgeauth {edgeauth.__version__}\n"
        check = subprocess.run(
            [*argv, "check-config", "-c", config],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert (check.returncode, check.stdout) == (0, "ok\n"), (argv, check.stderr)


def test_dash_dash_version_prints_the_version_as_the_version_command_does() -> None:
    result = run("--version")
    assert (result.returncode, result.stdout) == (0, f"edgeauth {edgeauth.__version__}\n")


def test_the_internal_worker_command_is_never_listed_but_still_parses() -> None:
    shown = run("--help")
    assert shown.returncode == 0, shown.stderr
    assert "check-config" in shown.stdout
    assert "_worker" not in shown.stdout
    assert "/etc/edgeauth/config.toml" in shown.stdout  # the configuration search
    wrong = run("frobnicate")
    assert "'serve'" in wrong.stderr
    assert "_worker" not in wrong.stderr
    # `_worker` is a command: what it misses is its -c, not its name
    worker = run("_worker")
    assert worker.returncode == EX_USAGE
    assert "-c/--config" in worker.stderr
    assert "invalid choice" not in worker.stderr


def test_a_usage_error_with_json_is_a_json_error_with_the_same_status() -> None:
    plain = run("tokens", "revoke")
    assert plain.returncode == EX_USAGE
    assert "usage:" in plain.stderr
    result = run("tokens", "revoke", "--json")
    assert (result.returncode, result.stdout) == (EX_USAGE, "")
    error = json.loads(result.stderr)
    assert "one of the arguments" in error["error"]
    assert error["usage"].startswith("usage: edgeauth tokens revoke")


# ---- check-config --json ---------------------------------------------------------------


def test_check_config_json_reports_ok_and_warnings(
    tmp_path: Path, dev_cert: tls.DevCertificate
) -> None:
    oauth2 = {"provision_key": "pk-" + "k" * 40, "enable_client_credentials": True}
    services = [
        service("events", "http://127.0.0.1:9/api", ["/events"], strip_path=False, oauth2=oauth2),
        service("sample", "http://127.0.0.1:9", ["/sample"]),
    ]
    config = write_config(tmp_path, dev_cert, services)
    result = run("check-config", "--json", "-c", str(config))
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    report = json.loads(result.stdout)
    assert (report["ok"], report["problems"], report["notes"]) == (True, [], [])
    assert report["config"] == str(config)
    assert any('public service "sample"' in warning for warning in report["warnings"])


def test_check_config_json_reports_every_problem_and_exits_78(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text('[server]\nlisten = "nowhere"\n[log]\nlevel = "inf"\n')
    result = run("check-config", "--json", "-c", str(config))
    assert (result.returncode, result.stderr) == (EX_CONFIG, ""), result
    report = json.loads(result.stdout)
    assert report["ok"] is False
    assert any("server.listen" in p for p in report["problems"]), report
    assert any("log.level" in p for p in report["problems"]), report
    missing = run("check-config", "--json", "-c", str(tmp_path / "nowhere.toml"))
    assert missing.returncode == EX_CONFIG
    assert "nowhere.toml" in json.loads(missing.stdout)["problems"][0]


# ---- where the configuration is found --------------------------------------------------


def _used(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result
    return str(json.loads(result.stdout)["config"])


def test_config_search_order_dash_c_then_env_then_the_working_directory(
    tmp_path: Path, dev_cert: tls.DevCertificate
) -> None:
    here, named, given = (tmp_path / n for n in ("here", "named", "given"))
    for directory in (here, named, given):
        directory.mkdir()
        _good_config(directory, dev_cert)
    env = {"EDGEAUTH_CONFIG": str(named / "config.toml")}
    assert _used(run("check-config", "--json", cwd=here)) == str(here / "config.toml")
    assert _used(run("check-config", "--json", cwd=here, env=env)) == str(named / "config.toml")
    explicit = run("check-config", "--json", "-c", str(given / "config.toml"), cwd=here, env=env)
    assert _used(explicit) == str(given / "config.toml")
    # an empty EDGEAUTH_CONFIG is unset; a set one that names nothing is an error, not skipped
    assert _used(run("check-config", "--json", cwd=here, env={"EDGEAUTH_CONFIG": ""})) == str(
        here / "config.toml"
    )
    gone = run("check-config", cwd=here, env={"EDGEAUTH_CONFIG": str(tmp_path / "gone.toml")})
    assert gone.returncode == EX_CONFIG
    assert "gone.toml" in gone.stderr


def test_without_any_configuration_the_error_names_every_place_searched(tmp_path: Path) -> None:
    if Path("/etc/edgeauth/config.toml").exists():
        pytest.skip("this host has /etc/edgeauth/config.toml, which the search would find")
    for argv in (("check-config",), ("consumers", "list"), ("serve",)):
        result = run(*argv, cwd=tmp_path)
        assert result.returncode == EX_CONFIG, result
        assert result.stdout == ""
        for place in ("$EDGEAUTH_CONFIG", str(tmp_path / "config.toml"), "/etc/edgeauth"):
            assert place in result.stderr, result.stderr
        assert "-c PATH" in result.stderr
        assert "Traceback" not in result.stderr
    failed = run("consumers", "list", "--json", cwd=tmp_path)
    assert (failed.returncode, failed.stdout) == (EX_CONFIG, "")
    assert "/etc/edgeauth" in json.loads(failed.stderr)["error"]


def _with_etc_config(config: Path, cwd: Path, scratch: Path) -> subprocess.CompletedProcess[str]:
    """check-config in a private mount namespace whose /etc is an overlay holding
    /etc/edgeauth/config.toml: the host's /etc is never written."""
    upper, work = scratch / "upper", scratch / "work"
    upper.mkdir(parents=True)
    work.mkdir()
    program = (
        'mount -t overlay overlay -o "lowerdir=/etc,upperdir=$1,workdir=$2" /etc'
        ' && mkdir -p /etc/edgeauth && cp "$3" /etc/edgeauth/config.toml'
        ' && exec "$4" -m edgeauth check-config --json'
    )
    clean = {k: v for k, v in os.environ.items() if k != "EDGEAUTH_CONFIG"}
    positional = [str(upper), str(work), str(config), sys.executable]
    return subprocess.run(
        ["unshare", "--mount", "sh", "-c", program, "sh", *positional],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        env=clean,
        check=False,
    )


def test_config_search_falls_back_to_etc_edgeauth(
    tmp_path: Path, dev_cert: tls.DevCertificate
) -> None:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root and unshare to give the child a private /etc/edgeauth")
    config = _good_config(tmp_path, dev_cert)
    empty, other = tmp_path / "empty", tmp_path / "other"
    empty.mkdir()
    other.mkdir()
    found = _with_etc_config(config, empty, tmp_path / "a")
    if found.returncode != 0 and "mount" in found.stderr:
        pytest.skip(f"no overlay mount in a private namespace here: {found.stderr.strip()}")
    assert _used(found) == "/etc/edgeauth/config.toml"
    _good_config(other, dev_cert)
    assert _used(_with_etc_config(config, other, tmp_path / "b")) == str(other / "config.toml")
    assert not Path("/etc/edgeauth/config.toml").exists()
