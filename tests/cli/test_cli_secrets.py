"""The CLI's day-two commands against a real `edgeauth serve`: secrets read from a file or
stdin (never argv), `apps rotate-secret`, `consumers show` / `apps show`, the confirmation of
`consumers rm` on a real pseudo-terminal, `--json` errors, and the configuration found
without -c. Secrets are proven by the gateway's token endpoint accepting or refusing them.
"""

from __future__ import annotations

import json
import os
import socket
import ssl
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path

from edgeauth import tls
from tests.cli.test_cli_admin import ok, pairs
from tests.conftest import ServeProcess, service, write_config
from tests.oauth.conftest import PROVISION_KEY

EX_API = 1
EX_USAGE = 2
EX_UNAVAILABLE = 69
EX_CONFIG = 78
EDGEAUTH = [sys.executable, "-m", "edgeauth"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def gateway(
    tmp_path: Path, dev_cert: tls.DevCertificate, serve: Callable[..., ServeProcess]
) -> tuple[ServeProcess, Path]:
    policy = {"provision_key": PROVISION_KEY, "enable_password_grant": True}
    events = service("events", "http://127.0.0.1:9/api", ["/events"], oauth2=policy)
    config = write_config(
        tmp_path, dev_cert, [events], tables={"admin": {"listen": f"127.0.0.1:{free_port()}"}}
    )
    return serve(config), config


def run(
    *args: str, config: Path | None = None, stdin: str | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """`python -m edgeauth <args> [-c config]`; stdin is not a terminal."""
    argv = [*EDGEAUTH, *args, *(["-c", str(config)] if config else [])]
    return subprocess.run(
        argv,
        env={k: v for k, v in os.environ.items() if k != "EDGEAUTH_CONFIG"},
        input=stdin,
        stdin=None if stdin is not None else subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        check=False,
    )


def accepted(gw: ServeProcess, context: ssl.SSLContext, client_id: str, secret: str) -> bool:
    """Whether the token endpoint takes this client and secret (password grant); anything
    but a token or `invalid_client` fails the test."""
    form = urllib.parse.urlencode(
        {
            "grant_type": "password",
            "client_id": client_id,
            "client_secret": secret,
            "provision_key": PROVISION_KEY,
            "authenticated_userid": "user-1",
        }
    ).encode()
    request = urllib.request.Request(f"{gw.url}/events/oauth2/token", data=form)  # noqa: S310
    status: int
    try:
        with urllib.request.urlopen(request, context=context, timeout=30) as response:  # noqa: S310
            status, body = response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        status, body = exc.code, json.loads(exc.read())
        exc.close()
    assert "access_token" in body or body.get("error") == "invalid_client", (status, body)
    return status == 200


def json_error(result: subprocess.CompletedProcess[str], code: int) -> dict[str, object]:
    """Failed with `code`, stdout empty, stderr exactly one JSON object with an error."""
    assert result.returncode == code, result
    assert result.stdout == "", result.stdout
    assert result.stderr.count("\n") == 1, result.stderr
    error = json.loads(result.stderr)
    assert isinstance(error, dict)
    assert isinstance(error["error"], str)
    return error


def test_secrets_come_from_a_file_or_stdin_and_rotate(
    tmp_path: Path,
    dev_cert: tls.DevCertificate,
    client_ssl: ssl.SSLContext,
    serve: Callable[..., ServeProcess],
) -> None:
    gw, config = gateway(tmp_path, dev_cert, serve)
    ok(run("consumers", "add", "alice", config=config))

    secret_file = tmp_path / "web.secret"
    secret_file.write_text("from-a-file-1234\n")
    made = ok(
        run(
            *("apps", "add", "alice", "--name", "web", "--client-secret-file", str(secret_file)),
            config=config,
        )
    )
    web = pairs(made)["client_id"]
    assert "from-a-file-1234" not in made  # a secret the operator supplied is not echoed
    assert "client_secret" not in pairs(made)
    assert accepted(gw, client_ssl, web, "from-a-file-1234")  # one newline dropped
    assert not accepted(gw, client_ssl, web, "from-a-file-123")

    # stdin: what `ps` shows of the running command never holds the secret
    argv = [*EDGEAUTH, "apps", "add", "alice", "--name", "cli", "--client-secret-file", "-"]
    child = subprocess.Popen(
        [*argv, "-c", str(config)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    seen = b""
    for _ in range(1000):  # until its exec is done (empty or pytest's argv before); it then
        seen = Path(f"/proc/{child.pid}/cmdline").read_bytes()  # waits on stdin
        if b"--client-secret-file" in seen:
            break
        time.sleep(0.01)
    out, err = child.communicate("piped-secret-5678\n", timeout=60)
    assert (child.returncode, err) == (0, ""), err
    assert b"piped-secret-5678" not in seen
    assert b"--client-secret-file" in seen
    assert "piped-secret-5678" not in out
    assert accepted(gw, client_ssl, pairs(out)["client_id"], "piped-secret-5678")

    # the old flag still works, and says why it should not be used
    old = run(
        "apps", "add", "alice", "--name", "old", "--client-secret", "argv-secret-9", config=config
    )
    assert old.returncode == 0, old
    assert old.stderr.startswith("edgeauth: warning: --client-secret"), old.stderr
    assert "other users" in old.stderr
    assert "--client-secret-file" in old.stderr
    assert accepted(gw, client_ssl, pairs(old.stdout)["client_id"], "argv-secret-9")

    # the admin token: from a file or stdin, never argv; the old flag still works but warns
    url = "http://" + tomllib.loads(config.read_text())["admin"]["listen"]
    token_file = tmp_path / "operator.token"
    token_file.write_text((tmp_path / "admin.token").read_text())
    target = ("--admin-url", url, "--admin-token-file")
    listed = ok(run("consumers", "list", *target, str(token_file)))  # no configuration read
    assert [line.split()[1] for line in listed.splitlines()[1:]] == ["alice"]  # id, username
    piped = run("consumers", "show", "alice", "--json", *target, "-", stdin=token_file.read_text())
    assert json.loads(ok(piped))["username"] == "alice"
    wrong = tmp_path / "wrong.token"
    wrong.write_text("not-the-token\n")
    refused = run("consumers", "list", *target, str(wrong))
    assert (refused.returncode, refused.stderr.count("\n")) == (EX_API, 1), refused
    assert f"refused the admin token from --admin-token-file ({wrong})" in refused.stderr
    flagged = run("consumers", "list", "--admin-url", url, "--admin-token", token_file.read_text())
    assert flagged.returncode == 0, flagged
    assert flagged.stderr.startswith("edgeauth: warning: --admin-token puts"), flagged.stderr
    assert "other users" in flagged.stderr
    assert "--admin-token-file" in flagged.stderr
    assert flagged.stdout == listed
    both = ("--client-secret-file", "-", *target, "-")
    twice = run("apps", "add", "alice", "--name", "x", *both, stdin="a\nb\n")
    assert twice.returncode == EX_USAGE, twice
    assert "cannot both read stdin" in twice.stderr

    # a generated secret is printed exactly once
    generated = ok(run("apps", "add", "alice", "--name", "gen", config=config))
    gen, first = pairs(generated)["client_id"], pairs(generated)["client_secret"]
    assert generated.count(first) == 1
    assert accepted(gw, client_ssl, gen, first)
    active = ("tokens", "list", "--app", gen, "--active", "--json")
    assert len(json.loads(ok(run(*active, config=config)))["data"]) == 1
    rotated = ok(run("apps", "rotate-secret", gen, config=config))
    assert "tokens were revoked" in rotated
    assert json.loads(ok(run(*active, config=config)))["data"] == []
    second = pairs(rotated)["client_secret"]
    assert rotated.splitlines()[0] == f"new secret for application gen (client_id {gen})"
    assert second != first
    assert rotated.count(second) == 1
    assert "not shown again" in rotated
    assert not accepted(gw, client_ssl, gen, first)
    assert accepted(gw, client_ssl, gen, second)
    as_json = json.loads(ok(run("apps", "rotate-secret", gen, "--json", config=config)))
    assert as_json["client_id"] == gen
    assert accepted(gw, client_ssl, gen, as_json["client_secret"])
    assert not accepted(gw, client_ssl, gen, second)

    # rotate to a secret of the operator's, from stdin: not echoed
    chosen = run(
        "apps",
        "rotate-secret",
        web,
        "--client-secret-file",
        "-",
        stdin="chosen-4321\n",
        config=config,
    )
    assert chosen.returncode == 0, chosen
    assert "chosen-4321" not in chosen.stdout
    assert not accepted(gw, client_ssl, web, "from-a-file-1234")
    assert accepted(gw, client_ssl, web, "chosen-4321")


def test_secret_files_that_cannot_be_used_and_public_apps(
    tmp_path: Path, dev_cert: tls.DevCertificate, serve: Callable[..., ServeProcess]
) -> None:
    _, config = gateway(tmp_path, dev_cert, serve)
    ok(run("consumers", "add", "alice", config=config))
    missing = run(
        "apps",
        "add",
        "alice",
        "--name",
        "x",
        "--client-secret-file",
        str(tmp_path / "nope"),
        config=config,
    )
    assert (missing.returncode, missing.stdout) == (EX_USAGE, ""), missing
    assert "cannot read" in missing.stderr
    assert "No such file" in missing.stderr
    empty = tmp_path / "empty.secret"
    empty.write_text("\n")
    blank = run(
        "apps", "add", "alice", "--name", "x", "--client-secret-file", str(empty), config=config
    )
    assert blank.returncode == EX_USAGE, blank
    assert "is empty" in blank.stderr
    assert json.loads(ok(run("apps", "list", "--json", config=config)))["data"] == []
    both = run(
        "apps",
        "add",
        "alice",
        "--name",
        "x",
        "--public",
        "--client-secret-file",
        str(empty),
        config=config,
    )
    assert both.returncode == EX_USAGE
    mobile = pairs(ok(run("apps", "add", "alice", "--name", "m", "--public", config=config)))
    refused = run("apps", "rotate-secret", mobile["client_id"], config=config)
    assert refused.returncode == EX_API
    assert "public client" in refused.stderr


def on_terminal(argv: list[str], answer: bytes | None) -> tuple[int, str, str]:
    """Runs argv with stdin on a pseudo-terminal; waits for the question on stderr, then
    types `answer` (None: answers nothing, expects no question)."""
    master, slave = os.openpty()
    try:
        child = subprocess.Popen(
            argv, stdin=slave, stdout=subprocess.PIPE, stderr=subprocess.PIPE, close_fds=True
        )
    finally:
        os.close(slave)
    try:
        asked = b""
        if answer is not None:
            assert child.stderr is not None
            while not asked.endswith(b"[y/N] "):
                chunk = os.read(child.stderr.fileno(), 4096)
                assert chunk, f"no question; stderr so far: {asked!r}"
                asked += chunk
            os.write(master, answer)
        out, err = child.communicate(timeout=60)
    finally:
        os.close(master)
    return child.returncode, out.decode(), (asked + err).decode()


def test_show_confirmed_rm_and_json_errors(
    tmp_path: Path, dev_cert: tls.DevCertificate, serve: Callable[..., ServeProcess]
) -> None:
    _, config = gateway(tmp_path, dev_cert, serve)
    c = ["-c", str(config)]
    for name in ("alice", "bob", "carol"):
        ok(run("consumers", "add", name, config=config))
    app = pairs(ok(run("apps", "add", "alice", "--name", "web", config=config)))
    ok(run("apps", "add", "alice", "--name", "mobile", "--public", config=config))

    shown = ok(run("consumers", "show", "alice", config=config))
    assert shown.splitlines()[0] == "consumer alice"
    assert pairs(shown)["applications"] == "2"
    assert app["client_id"] in shown
    assert (
        json.loads(ok(run("consumers", "show", "alice", "--json", config=config)))["username"]
        == "alice"
    )
    one = ok(run("apps", "show", app["client_id"], config=config))
    assert one.splitlines()[0] == "application web"
    assert pairs(one)["consumer"].startswith("alice (")
    assert app["client_secret"] not in one
    one_json = json.loads(ok(run("apps", "show", app["id"], "--json", config=config)))
    assert one_json["client_id"] == app["client_id"]
    assert "client_secret" not in one_json

    # on a terminal: asked, and "n" keeps everything
    code, out, err = on_terminal([*EDGEAUTH, "consumers", "rm", "alice", *c], b"n\n")
    assert "delete consumer alice, its 2 applications and their tokens? [y/N] " in err
    assert (code, out) == (EX_API, ""), err
    assert "kept" in err
    ok(run("consumers", "show", "alice", config=config))
    assert len(json.loads(ok(run("apps", "list", "--json", config=config)))["data"]) == 2
    # "y" deletes the consumer and its applications
    code, out, err = on_terminal([*EDGEAUTH, "consumers", "rm", "alice", *c], b"y\n")
    assert code == 0, err
    assert out.startswith("deleted consumer alice")
    assert run("consumers", "show", "alice", config=config).returncode == EX_API
    assert json.loads(ok(run("apps", "list", "--json", config=config)))["data"] == []
    # --yes on a terminal, and any stdin that is not a terminal: not asked
    code, out, err = on_terminal([*EDGEAUTH, "consumers", "rm", "bob", "--yes", *c], None)
    assert (code, err) == (0, ""), err
    ok(run("consumers", "rm", "carol", config=config))

    # --json errors: one JSON object on stderr, the API's status and answer, same exit status
    missing = json_error(run("consumers", "show", "nobody", "--json", config=config), EX_API)
    assert missing["error"] == "consumer not found: nobody"
    assert missing["status"] == 404
    assert run("consumers", "show", "nobody", config=config).returncode == EX_API
    ok(run("consumers", "add", "dave", config=config))
    taken = json_error(run("consumers", "add", "dave", "--json", config=config), EX_API)
    assert taken["status"] == 409
    assert taken["response"]["fields"] == {"username": "dave"}  # type: ignore[index]
    down = run(
        "consumers",
        "list",
        "--json",
        "--admin-url",
        f"http://127.0.0.1:{free_port()}",
        "--admin-token-file",
        "-",
        stdin="x\n",
    )
    assert "cannot reach the admin API" in str(json_error(down, EX_UNAVAILABLE)["error"])
    bad = tmp_path / "bad.toml"
    bad.write_text('[server]\nlisten = "nowhere"\n')
    broken = json_error(run("apps", "list", "--json", config=bad), EX_CONFIG)
    assert any("server.listen" in p for p in broken["problems"])  # type: ignore[attr-defined]
    assert run("apps", "list", config=bad).returncode == EX_CONFIG

    # no -c: the configuration in the working directory
    listed = json.loads(ok(run("consumers", "list", "--json", cwd=config.parent)))
    assert [entry["username"] for entry in listed["data"]] == ["dave"]
