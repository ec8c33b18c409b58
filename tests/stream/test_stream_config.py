"""[[streams]] in config.toml: defaults, every refused combination, and reload's refusals.

Each test writes a real config.toml beside real (existence-checked) certificate files; problems
are asserted by message substring, key path included.
"""

import tomllib
from pathlib import Path

import pytest
import tomli_w

from edgeauth import tls
from edgeauth.bootstrap import reload_problems
from edgeauth.config import Address, Settings, load_settings
from edgeauth.config.checks import restart_needed
from edgeauth.errors import ConfigError
from edgeauth.exitcodes import EX_CONFIG
from tests.conftest import edgeauth_command, write_config

STREAM = """
[[streams]]
name = "iris"
listen = "127.0.0.1:1973"
upstream = "tcp://127.0.0.1:1972"
"""


def load(tmp_path: Path, text: str) -> Settings:
    for name in ("certs/edgeauth.crt", "certs/edgeauth.key", "ca.pem", "other.crt", "other.key"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text("not checked beyond existence\n")
    path = tmp_path / "config.toml"
    path.write_text(text)
    return load_settings(path, environ={})


def problems(tmp_path: Path, text: str) -> tuple[str, ...]:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text)
    return info.value.problems


def stream(name: str = "iris", **keys: object) -> str:
    """One [[streams]] table; string values are quoted, lists and booleans written as TOML."""
    values: dict[str, object] = {
        "name": name,
        "listen": "127.0.0.1:1973",
        "upstream": "tcp://127.0.0.1:1972",
    }
    values.update(keys)

    def toml(value: object) -> str:
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, list):
            return "[" + ", ".join(toml(v) for v in value) + "]"
        return f'"{value}"' if isinstance(value, str) else str(value)

    return "\n[[streams]]\n" + "".join(f"{k} = {toml(v)}\n" for k, v in values.items())


def test_a_stream_gets_the_documented_defaults_and_the_servers_certificate(tmp_path: Path) -> None:
    settings = load(tmp_path, STREAM)
    (iris,) = settings.streams
    assert iris.listen == (Address("127.0.0.1", 1973),)
    assert (iris.tls, iris.passthrough, iris.server_names) == (True, False, ())
    assert iris.tls_cert_file == settings.server.tls_cert_file
    assert iris.tls_key_file == settings.server.tls_key_file
    assert (iris.client_ca_file, iris.allowed_subjects, iris.allowed_sans) == (None, (), ())
    assert (iris.tls_verify, iris.ca_file, iris.proxy_protocol) == (True, None, "off")
    assert (iris.connect_timeout_seconds, iris.idle_timeout_seconds) == (5.0, 3600.0)
    assert iris.max_connections == 1000


def test_streams_sharing_a_listener_by_sni(tmp_path: Path) -> None:
    text = stream("a", server_names=["a.example", "*.apps.example"]) + stream(
        "b", server_names=["B.example"], passthrough=True
    )
    a, b = load(tmp_path, text).streams
    assert b.server_names == ("b.example",)
    assert b.tls_cert_file is None  # passthrough: no certificate of ours
    assert a.server_names == ("a.example", "*.apps.example")


@pytest.mark.parametrize(
    ("text", "key", "message"),
    [
        (stream() + stream(listen="127.0.0.1:1974"), "streams[1].name", "duplicate stream name"),
        (stream("a") + stream("b"), "streams[1].server_names", "are both the default of"),
        (
            stream("a", server_names=["x.example"]) + stream("b", server_names=["x.example"]),
            "streams[1].server_names",
            'duplicate server name on 127.0.0.1:1973: "x.example"',
        ),
        (stream(listen="127.0.0.1:9100") + '[status]\nlisten = "0.0.0.0:9100"\n', "", "overlaps"),
        (stream(listen="127.0.0.1:8001"), "streams[0].listen[0]", "overlaps admin.listen"),
        (
            stream("a", server_names=["a.example"]) + stream("b", listen="0.0.0.0:1973"),
            "streams[1].listen[0]",
            "overlaps streams[0].listen[0]",
        ),
        (
            stream(passthrough=True, tls_cert_file="other.crt", tls_key_file="other.key"),
            "streams[0].tls_cert_file",
            "passthrough = true relays the TLS untouched",
        ),
        (
            stream(passthrough=True, client_ca_file="ca.pem"),
            "streams[0].client_ca_file",
            "passthrough = true relays the TLS untouched: client_ca_file must not be set",
        ),
        (stream(passthrough=True, tls=False), "streams[0].tls", "passthrough = true routes TLS"),
        (
            stream(allowed_subjects=["CN=studio"]),
            "streams[0].allowed_subjects",
            "needs client_ca_file",
        ),
        (
            stream(allowed_sans=["DNS:studio.example"]),
            "streams[0].allowed_sans",
            "needs client_ca_file",
        ),
        (stream(upstream="http://127.0.0.1:1972"), "streams[0].upstream", '"tcp://host:port"'),
        (stream(upstream="tcp://127.0.0.1"), "streams[0].upstream", '"tcp://host:port"'),
        (stream(upstream="tcp://127.0.0.1:1972/x"), "streams[0].upstream", "alone"),
        (stream(upstream="tcp://127.0.0.1:99999"), "streams[0].upstream", "not a valid URL"),
        (
            stream("a", tls=False) + stream("b", server_names=["b.example"]),
            "streams[0].tls",
            "shares 127.0.0.1:1973 with other streams",
        ),
        (stream(tls=False, server_names=["a.example"]), "streams[0].server_names", "no SNI"),
        (
            stream(tls=False, client_ca_file="ca.pem"),
            "streams[0].client_ca_file",
            "tls = false terminates no TLS",
        ),
        (
            stream(tls_cert_file="other.crt"),
            "streams[0]",
            "set both tls_cert_file and tls_key_file",
        ),
        (stream(ca_file="ca.pem"), "streams[0].ca_file", "only a tls:// upstream"),
        (stream(tls_verify=False), "streams[0].tls_verify", "only a tls:// upstream"),
        (stream(server_names=["10.0.0.1"]), "streams[0].server_names[0]", "never sent as SNI"),
        (stream(server_names=["a..example"]), "streams[0].server_names[0]", "a DNS name"),
        (
            stream(client_ca_file="ca.pem", allowed_sans=["CN:x"]),
            "streams[0].allowed_sans[0]",
            "a SAN is DNS/email/URI/IP:value",
        ),
        (
            stream(client_ca_file="ca.pem", allowed_subjects=["studio"]),
            "streams[0].allowed_subjects[0]",
            "not an RFC 4514 name",
        ),
        (stream(proxy_protocol="v3"), "streams[0].proxy_protocol", 'expected one of "off"'),
        (stream(max_connections=0), "streams[0].max_connections", "at least 1"),
        (stream(name="a b"), "streams[0].name", "use only letters"),
        (stream(listen=[]), "streams[0].listen", "must not be empty"),
        (stream(client_ca_file="missing.pem"), "streams[0].client_ca_file", "file not found"),
        (stream(sni=["a"]), "streams[0].sni", "unknown key"),
    ],
)
def test_refused_combinations(tmp_path: Path, text: str, key: str, message: str) -> None:
    found = problems(tmp_path, text)
    assert any(f"config.toml: {key}" in p and message in p for p in found), found


def test_a_reload_cannot_add_or_remove_a_stream_listener(tmp_path: Path) -> None:
    running = load(tmp_path, stream("a", server_names=["a.example"]))
    same_listener = load(tmp_path, stream("a") + stream("b", server_names=["b.example"]))
    assert restart_needed(running, same_listener) == []
    moved = load(tmp_path, stream("a", listen="127.0.0.1:1974"))
    (problem,) = restart_needed(running, moved)
    assert "streams[].listen: a reload cannot change it (running: 127.0.0.1:1973)" in problem
    assert restart_needed(running, load(tmp_path, "")) != []


def test_a_stream_certificate_that_does_not_load_is_refused_by_check_config_and_reload(
    tmp_path: Path, dev_cert: tls.DevCertificate
) -> None:
    path = write_config(tmp_path, dev_cert, [])
    doc = tomllib.loads(path.read_text())
    garbage = tmp_path / "stream.crt"
    garbage.write_text("not a certificate\n")
    table = {"name": "iris", "listen": "127.0.0.1:0", "upstream": "tcp://127.0.0.1:1972"}
    path.write_text(tomli_w.dumps({**doc, "streams": [table]}))
    running = load_settings(path, environ={})
    assert reload_problems(running, running) == []
    bad = {**table, "tls_cert_file": str(garbage), "tls_key_file": str(dev_cert.key_file)}
    path.write_text(tomli_w.dumps({**doc, "streams": [bad]}))
    (problem,) = reload_problems(running, load_settings(path, environ={}))
    assert "config.toml: streams[0]: a certificate, key or CA file does not load" in problem
    checked = edgeauth_command("check-config", "-c", str(path))
    assert checked.returncode == EX_CONFIG
    assert (
        "streams[0]: a certificate, key or CA file does not load" in checked.stdout + checked.stderr
    )
