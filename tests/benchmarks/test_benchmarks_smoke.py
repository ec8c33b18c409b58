"""Smoke test of the benchmark harness: every scenario runs for about a second with tiny sizes
through the harness's own API, and must produce a complete result record; the floor proxy and
both static backends start and answer. Nothing here times anything or judges a figure; nginx
and wrk are used when installed and skipped otherwise."""

from __future__ import annotations

import json
import shutil
import socket
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import uvloop

from benchmarks import loadgen, mypyc_build, report, tcpload
from benchmarks.__main__ import main as bench_main
from benchmarks.__main__ import run
from benchmarks.baselines import nginx, static_backend, tcp_upstream
from benchmarks.profiles import SMOKE
from benchmarks.runner import BYTES, TCP, Bench, Server
from benchmarks.scenarios import SCENARIOS
from benchmarks.scenarios.proxy import MYPYC
from benchmarks.targets import GOALS

RECORD_KEYS = {
    "started",
    "seconds",
    "command_line",
    "profile",
    "tool",
    "layout",
    "machine",
    "scenarios",
    "configs",
    "commands",
}
SCENARIO_KEYS = {
    "name",
    "description",
    "status",
    "reason",
    "seconds",
    "layout",
    "measurements",
    "summary",
    "checks",
    "notes",
}
MEASUREMENT_KEYS = {
    "target",
    "label",
    "tool",
    "duration_s",
    "requests",
    "errors",
    "statuses",
    "rps",
    "latency",
    "mb_per_s",
    "cpu_seconds",
    "cpu_percent",
    "rss_peak_mib",
    "generator_busy_percent",
    "generator_saturated",
    "others_on_server_percent",
    "layout",
    "command",
}
SUMMARY_KEYS: dict[str, set[str]] = {
    "proxy": {"req_per_s", "edgeauth/floor", "edgeauth/direct", "edgeauth/nginx", "edgeauth/naive"},
    "public": {"public_req_per_s", "protected_req_per_s", "validation_cost_percent"},
    "accesslog": {"log_on_req_per_s", "log_off_req_per_s", "access_log_cost_percent"},
    "issue": {
        "client_credentials_per_s",
        "password_per_s",
        "client_credentials_per_s_prefilled",
        "prefill",
    },
    "invalid": {
        "valid_req_per_s",
        "invalid_repeated_401_per_s",
        "invalid_unique_401_per_s",
        "store_reads_repeated_pool",
        "store_reads_never_repeated",
    },
    "stream": {"download", "upload"},
    "revoke": {"p50_ms", "p99_ms", "max_ms", "samples"},
    "idle": {"kib_per_connection"},
    "workers": {"workers_1_req_per_s", "workers_2_req_per_s", "scaling_factor"},
    "overload": {"cap 1024"},
    "stream-tcp": {
        "volume",
        "mb_per_s",
        "connections_per_s",
        "rss_growth_mib_per_connection",
        "edgeauth/floor MB/s up",
        "edgeauth/floor MB/s down",
        "edgeauth/floor connections/s",
    },
}
# the targets each scenario measures, beyond nginx (only when installed)
TARGETS: dict[str, set[str]] = {
    "proxy": {"direct", "floor", "naive", "edgeauth"},
    "accesslog": {"edgeauth", "edgeauth-log-off"},
    "issue": {"edgeauth", "edgeauth-prefilled"},
    "stream": {"direct", "naive", "edgeauth"},
    "idle": {"naive", "edgeauth"},
    "invalid": {"edgeauth", "instrumented"},
    "workers": {"edgeauth-1w", "edgeauth-2w"},
    "stream-tcp": {"direct", "floor", "edgeauth"},
}
NGINX = {"proxy", "stream", "idle"}
NGINX_STREAM = nginx.binary() is not None and nginx.stream_module() is not None

pytestmark = pytest.mark.timeout(600)  # one harness run: a minute or two, more when busy


@pytest.fixture(scope="module")
def record() -> dict[str, Any]:
    """Every scenario once, smoke-sized, in one harness (wrk when installed)."""
    return run(list(SCENARIOS), SMOKE, say=lambda text: None)


def test_the_run_record_is_complete(record: dict[str, Any]) -> None:
    assert set(record) >= RECORD_KEYS
    assert [s["name"] for s in record["scenarios"]] == list(SCENARIOS)
    assert record["tool"] == ("wrk" if loadgen.have_wrk() else "builtin")
    assert record["configs"]
    json.dumps(record)  # serialisable as it is


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_each_scenario_produces_a_result(record: dict[str, Any], name: str) -> None:
    scenario = next(s for s in record["scenarios"] if s["name"] == name)
    assert set(scenario) >= SCENARIO_KEYS
    assert scenario["status"] == "ok", (scenario["reason"], scenario["notes"])
    assert scenario["measurements"]
    for m in scenario["measurements"]:
        assert set(m) >= MEASUREMENT_KEYS
        assert m["requests"] > 0, m
    assert set(scenario["summary"]) >= SUMMARY_KEYS[name]
    targets = {m["target"] for m in scenario["measurements"]}
    expected = set(TARGETS.get(name, {"edgeauth"}))
    if (name in NGINX and nginx.binary() is not None) or (name == "stream-tcp" and NGINX_STREAM):
        expected.add("nginx")
    assert targets >= expected
    for check in scenario["checks"]:
        assert set(check) == {"name", "value", "goal", "ok", "note", "key", "miss"}
        assert check["key"] == "" or GOALS[check["key"]].scenario == name
        assert bool(check["miss"]) == (check["ok"] is False and bool(check["key"]))


def test_every_stream_moves_all_its_bytes_with_curl_when_installed(
    record: dict[str, Any],
) -> None:
    scenario = next(s for s in record["scenarios"] if s["name"] == "stream")
    client = "curl" if shutil.which("curl") else "builtin-stream"
    for m in scenario["measurements"]:
        assert (m["tool"], m["errors"], m["extra"]["complete"]) == (client, 0, True), m


def test_every_target_of_the_issue_is_judged(record: dict[str, Any]) -> None:
    judged = {c["key"] for s in record["scenarios"] for c in s["checks"]}
    # overload's fast-503 check needs 503s, which the smoke flood may not provoke
    assert judged >= set(GOALS) - {"overload/503"}
    lines = report.check_lines(record)
    assert lines[0].startswith("Headline: edgeauth/floor = ")
    for goal in GOALS.values():
        assert any(goal.text in line for line in lines), goal.key


def test_the_proxy_scenario_measures_the_mypyc_build_or_says_how_to_make_it(
    record: dict[str, Any],
) -> None:
    proxy = next(s for s in record["scenarios"] if s["name"] == "proxy")
    targets = {m["target"] for m in proxy["measurements"]}
    lines = report.check_lines(record)
    build = mypyc_build.status()
    if build is None:  # a fresh clone: `make mypyc` was not run
        assert proxy["summary"]["mypyc"] == f"not built: {mypyc_build.HINT}"
        assert MYPYC not in targets
        assert f"Compiled build (mypyc): not built: {mypyc_build.HINT}" in lines
    else:
        assert proxy["summary"]["mypyc"] == build.describe()
        assert MYPYC in targets
        for key in ("edgeauth", "floor", "naive"):
            assert proxy["summary"][f"{MYPYC}/{key}"] > 0
            assert any(line.startswith(f"  proxy: {MYPYC}/{key} = ") for line in lines)


def test_the_issue_store_is_prefilled(record: dict[str, Any]) -> None:
    scenario = next(s for s in record["scenarios"] if s["name"] == "issue")
    assert scenario["summary"]["prefill"]["tokens_in_store"] > SMOKE.prefill_tokens


def test_runs_record_the_generator_cores(record: dict[str, Any]) -> None:
    proxy = next(s for s in record["scenarios"] if s["name"] == "proxy")
    pinned = [m for m in proxy["measurements"] if m["layout"].startswith("pinned")]
    for m in pinned:
        assert 0 <= m["generator_busy_percent"] <= 100
        assert m["generator_saturated"] == (m["generator_busy_percent"] > 90)


def test_the_invalid_flood_counts_store_reads(record: dict[str, Any]) -> None:
    scenario = next(s for s in record["scenarios"] if s["name"] == "invalid")
    for key in ("store_reads_repeated_pool", "store_reads_never_repeated"):
        proof = scenario["summary"][key]
        assert proof["store_reads"] >= proof["distinct_tokens_read"] > 0
        assert isinstance(proof["ok"], bool)


def test_stream_tcp_moves_every_byte_and_judges_its_targets(record: dict[str, Any]) -> None:
    scenario = next(s for s in record["scenarios"] if s["name"] == "stream-tcp")
    streams = [m for m in scenario["measurements"] if m["label"].startswith(("up ", "down "))]
    assert {m["label"] for m in streams} == {"up 1 MiB", "down 1 MiB"}
    for m in streams:
        assert m["extra"]["complete"], m
        assert m["errors"] == 0, m
        assert m["mb_per_s"] > 0
    connects = [m for m in scenario["measurements"] if m not in streams]
    assert {m["target"] for m in connects} == {m["target"] for m in streams} - {"direct"}
    for m in connects:
        assert m["errors"] == 0, m
        assert m["latency"] is not None, m
    assert scenario["summary"]["volume"].startswith("1 MiB each way per round")
    for key in ("edgeauth/floor MB/s up", "edgeauth/floor connections/s"):
        assert len(scenario["summary"][f"{key}, each round"]) == SMOKE.rounds
        assert scenario["summary"][key] == scenario["summary"][f"{key}, each round"][0]
    keys = [c["key"] for c in scenario["checks"]]
    assert keys == ["stream-tcp/nginx"] * 2 + ["stream-tcp/rss"] * 2
    growth = scenario["summary"]["rss_growth_mib_per_connection"]
    assert isinstance(growth["up"]["edgeauth"], float)


def test_the_report_is_written(record: dict[str, Any], tmp_path: Path) -> None:
    path = report.write(record, tmp_path)
    text = path.read_text()
    for name in SCENARIOS:
        assert f"### {name}" in text
    assert "## Machine" in text
    assert "## Configuration" in text
    assert json.loads((tmp_path / "results.json").read_text())["scenarios"]
    table = report.table(record)
    assert "req/s" in table
    assert "Ratios and targets" in table
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert "matplotlib is not installed" in text
    else:
        assert list(tmp_path.glob("*.png"))


@pytest.mark.skipif(not loadgen.have_wrk(), reason="wrk is not installed: the run above used it")
def test_the_builtin_closed_loop_generator() -> None:
    found = run(["public"], SMOKE, tool="builtin", say=lambda text: None)
    scenario = found["scenarios"][0]
    assert scenario["status"] == "ok", scenario["reason"]
    assert {m["tool"] for m in scenario["measurements"]} == {"builtin"}


def _get(
    server: Server, bench: Bench, token: str | None, path: str = "/api/events", body: bytes = b""
) -> tuple[int, bytes]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    data = body or None  # a body makes it a POST
    request = urllib.request.Request(server.url(path), data, headers=headers)  # noqa: S310
    context = bench.client_ssl if server.base_url.startswith("https") else None
    try:
        with urllib.request.urlopen(request, context=context, timeout=10) as resp:  # noqa: S310
            return int(resp.status), bytes(resp.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return int(exc.code), bytes(exc.read())


STATIC = ["python"] + (["nginx"] if nginx.binary() is not None else [])


@pytest.mark.parametrize("static", STATIC)
def test_the_floor_proxy_and_the_static_backend_answer(static: str, tmp_path: Path) -> None:
    with Bench(SMOKE, tmp_path, static=static, say=lambda text: None) as bench:
        assert _get(bench.direct(), bench, None) == (200, static_backend.BODY)
        floor = bench.floor()
        assert _get(floor, bench, floor.token) == (200, static_backend.BODY)
        assert _get(floor, bench, "not-a-token")[0] == 401
        assert _get(floor, bench, None)[0] == 401
        direct = bench.direct(BYTES)
        assert _get(direct, bench, None, "/api/bytes/5") == (200, bytes(5))
        assert _get(direct, bench, None, "/api/sink", b"1234567") == (200, b'{"received":7}')


def test_the_wrk_script_counts_statuses_and_reports_json(tmp_path: Path) -> None:
    spec = loadgen.LoadSpec(
        url="https://127.0.0.1:1/api/events",
        duration=1,
        connections=1,
        tokens=["a", "b"],
        count_statuses=True,
    )
    script = loadgen.wrk_script(spec, tmp_path / "tokens.txt")
    assert "function response(" in script
    assert "function request()" in script
    assert "BENCH_JSON" in script
    single = loadgen.wrk_script(
        loadgen.LoadSpec(url="x", duration=1, connections=1, tokens=["t"]), None
    )
    assert "Bearer t" in single
    assert "function request()" not in single  # wrk's static (fastest) request path


def test_the_command_line_lists_the_scenarios(capsys: pytest.CaptureFixture[str]) -> None:
    assert bench_main(["--list"]) == 0
    out = capsys.readouterr().out
    for name in SCENARIOS:
        assert name in out


def test_the_tcp_upstream_and_the_floor_relay_move_every_byte(tmp_path: Path) -> None:
    size = (3 << 20) + 7  # not a multiple of the 1 MiB blocks
    with Bench(SMOKE, tmp_path, say=lambda text: None) as bench:
        targets = [bench.backend(TCP), bench.floor_stream()]
        targets += [bench.nginx_stream()] if NGINX_STREAM else []
        for target in targets:
            for mode in ("up", "down"):
                found = tcpload.run_stream({"mode": mode, "url": target.base_url, "size": size})
                assert (found["complete"], found["received"]) == (True, size), target.name
            spec = {"mode": "connect", "url": target.base_url, "connections": 2, "duration": 0.2}
            found = uvloop.run(tcpload.run_connect(spec))
            assert found["responses"] > 0, target.name
            assert found["socket_errors"] == 0, target.name
        # anything but a known command: the upstream closes without answering
        address = ("127.0.0.1", targets[0].address_port)
        with socket.create_connection(address, timeout=10) as sock:
            sock.sendall(tcp_upstream.command(b"X", 16))
            assert sock.recv(16) == b""
