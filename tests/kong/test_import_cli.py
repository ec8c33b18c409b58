"""`edgeauth import kong` exit statuses: conflicts (1, the rest still done), usage (2), Kong's
database unreachable (69), each from a real process; with --json every failure is one
`{"error": ...}` object on stderr (the command run in-process, as the CLI's main runs it)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgeauth import tls
from edgeauth.cli import main
from edgeauth.config import load_settings
from edgeauth.kong.plan import derived_id
from edgeauth.store import open_store
from tests.conftest import free_port_refused, write_config
from tests.kong.conftest import edgeauth_import, statuses

DUMP = """\
_format_version: "3.0"
consumers:
- username: taken
  oauth2_credentials:
  - {name: a, client_id: taken-app, client_secret: s1}
- username: free
  oauth2_credentials:
  - {name: b, client_id: free-app, client_secret: s2}
"""


async def test_a_conflict_exits_1_and_the_rest_is_imported(
    tmp_path: Path, dev_cert: tls.DevCertificate
) -> None:
    config = write_config(tmp_path, dev_cert, [])
    store = await open_store(load_settings(config).store)
    try:
        mine = await store.create_consumer("taken", None)
    finally:
        await store.close()
    dump = tmp_path / "kong.yml"
    dump.write_text(DUMP)

    run = await edgeauth_import(config, "--deck", str(dump), "--apply", "--json")
    assert run.code == 1, run.out + run.err
    summary = run.summary
    assert statuses(summary, "consumers") == {"create": 1, "conflict": 1}
    consumer_id, app_id = derived_id("consumer", "taken"), derived_id("credential", "taken-app")
    assert summary["conflicts"] == [
        f'consumer "taken" (id {consumer_id}): username taken by consumer {mine.id}'
    ]
    assert summary["skipped"] == [
        f'application "a" (client_id taken-app, id {app_id}): consumer taken not carried'
    ]
    assert summary["written"]["consumers"] == 1
    assert summary["written"]["credentials"] == 1

    store = await open_store(load_settings(config).store)
    try:
        kept = await store.get_consumer("taken")
        assert kept == mine  # the store's own is kept as it was
        assert await store.find_credential("free-app") is not None
        assert await store.find_credential("taken-app") is None
    finally:
        await store.close()


async def test_usage_and_unreachable_exit_statuses(
    tmp_path: Path, dev_cert: tls.DevCertificate
) -> None:
    config = write_config(tmp_path, dev_cert, [])
    same = await edgeauth_import(
        config, "--deck", "x.yml", "--apply", "--write-config", str(config)
    )
    assert same.code == 2
    assert "config file itself" in same.err

    neither = await edgeauth_import(config)
    assert neither.code == 2  # argparse: one of --kong-pg / --deck is required

    dsn = f"postgresql://postgres@127.0.0.1:{free_port_refused()}/kong"
    down = await edgeauth_import(config, "--kong-pg", dsn)
    assert down.code == 69
    assert "cannot connect to Kong's database" in down.err

    missing = await edgeauth_import(config, "--deck", str(tmp_path / "nope.yml"))
    assert missing.code == 1
    assert "cannot read" in missing.err
    assert not (tmp_path / "edgeauth.db").exists()


def test_json_failures_are_one_error_object_on_stderr(
    tmp_path: Path, dev_cert: tls.DevCertificate, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, dev_cert, [])
    missing = tmp_path / "données" / "kong.yml"
    cases = [
        (["--deck", str(missing)], 1, f"cannot read {missing}"),
        (["--deck", "x.yml", "--apply", "--write-config", str(config)], 2, "config file itself"),
        ([], 2, "one of the arguments --kong-pg --deck is required"),
    ]
    for extra, code, text in cases:
        with pytest.raises(SystemExit) as exited:
            main(["import", "kong", "-c", str(config), *extra, "--json"])
        out, err = capsys.readouterr()
        assert (exited.value.code, out) == (code, ""), err
        assert len(err.splitlines()) == 1, err
        assert text in json.loads(err)["error"], err
    with pytest.raises(SystemExit):
        main(["import", "kong", "-c", str(config), "--deck", str(missing), "--json"])
    assert "données" in capsys.readouterr().err  # as it is, like every command's errors
