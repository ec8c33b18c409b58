"""The access log's lines and batches (design §9): the exact bytes of a line, formatted at
flush time, and when a batch is handed to the writer."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import math
import os
import random
import time
from pathlib import Path

import pytest

from edgeauth import logs
from edgeauth.exchange import Exchange, _ms

NS = 1_733_041_805_123_456_789  # 2024-12-01T08:30:05.123456789Z


def _exchange(path: str = "/oauth2/token") -> Exchange:
    ex = Exchange("POST", 0.0)
    ex.request_id = "rid-1"
    ex.client_ip = "192.0.2.7"
    ex.path = path
    ex.status = 400
    ex.bytes_in = 57
    ex.bytes_out = 88
    ex.total_ms = 1.23456
    ex.upstream_ms = 0.2468
    ex.service = "api"
    ex.route = "api-route"
    ex.client_id = "app"
    ex.tls_version = "TLSv1.3"
    ex.grant_type = "password"
    ex.error = "invalid_grant"
    return ex


def _bare() -> Exchange:
    ex = Exchange("GET", 0.0)
    ex.request_id = "rid-2"
    ex.path = "/"
    ex.status = 404
    ex.total_ms = 0.5
    return ex


def _lines(target: Path) -> list[bytes]:
    return target.read_bytes().splitlines() if target.exists() else []


def _opened(tmp_path: Path) -> tuple[Path, logs.AccessLog]:
    """An access log writing to access.log in `tmp_path`, open."""
    target = tmp_path / "access.log"
    log = logs.AccessLog(str(target))
    log.open()
    return target, log


async def _until(target: Path, lines: int) -> list[bytes]:
    """The file's lines once it has `lines` of them, or after five seconds."""
    for _ in range(500):
        if len(found := _lines(target)) >= lines:
            return found
        await asyncio.sleep(0.01)
    return _lines(target)


async def test_a_line_is_exactly_the_fields_of_its_exchange_stamped_when_recorded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target, log = _opened(tmp_path)
    monkeypatch.setattr(time, "time_ns", lambda: NS)
    log.record(_exchange())
    log.record(_bare())
    monkeypatch.setattr(time, "time_ns", lambda: NS + 5_000_000_000)
    log.close()
    worker = b"%d" % os.getpid()
    assert target.read_bytes() == (
        b'{"level":"info","request_id":"rid-1","client_ip":"192.0.2.7","method":"POST",'
        b'"path":"/oauth2/token","status":400,"bytes_in":57,"bytes_out":88,'
        b'"latency_ms":{"total":1.235,"edge":0.988,"upstream":0.247},"service":"api",'
        b'"route":"api-route","consumer":null,"client_id":"app","tls_version":"TLSv1.3",'
        b'"worker":' + worker + b',"grant_type":"password","error":"invalid_grant",'
        b'"ts":"2024-12-01T08:30:05.123Z"}\n'
        b'{"level":"info","request_id":"rid-2","client_ip":"","method":"GET","path":"/",'
        b'"status":404,"bytes_in":0,"bytes_out":0,'
        b'"latency_ms":{"total":0.5,"edge":0.5,"upstream":null},"service":null,"route":null,'
        b'"consumer":null,"client_id":null,"tls_version":null,"worker":' + worker + b","
        b'"ts":"2024-12-01T08:30:05.123Z"}\n'
    )


async def test_a_string_that_looks_like_the_next_entry_stays_inside_its_line(
    tmp_path: Path,
) -> None:
    target, log = _opened(tmp_path)
    log.record(_exchange('/a},{"level":"info"}\n'))
    log.record(_exchange("/b"))
    log.close()
    lines = _lines(target)
    assert len(lines) == 2
    assert b'"path":"/a},{\\"level\\":\\"info\\"}\\n"' in lines[0]


async def test_a_batch_is_written_by_count_before_its_timer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(logs, "FLUSH_SECONDS", 60.0)
    target, log = _opened(tmp_path)
    count = math.ceil(logs.FLUSH_BYTES / (logs.LINE_BYTES + len("/")))
    for _ in range(count - 1):
        log.record(_bare())
    assert _lines(target) == []
    log.record(_bare())
    assert len(await _until(target, count)) == count
    log.close()


async def test_long_paths_fill_a_batch_sooner(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the fuzz harness counts on: eight requests with 8,150-byte paths fill it."""
    monkeypatch.setattr(logs, "FLUSH_SECONDS", 60.0)
    target, log = _opened(tmp_path)
    for _ in range(8):
        log.record(_exchange("/zz-flush/" + "f" * 8150))
    assert len(await _until(target, 8)) == 8
    log.close()


async def test_an_entry_orjson_refuses_loses_only_its_own_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    target, log = _opened(tmp_path)
    bad = _bare()
    bad.path = "/a\udcff"  # a lone surrogate
    log.record(_exchange("/before"))
    log.record(bad)
    log.record(_exchange("/after"))
    with caplog.at_level(logging.ERROR, logger="edgeauth.logs"):
        log.close()
    lines = _lines(target)
    assert [line.split(b'"path":')[1].split(b",")[0] for line in lines] == [
        b'"/before"',
        b'"/after"',
    ]
    assert "rid-2" in caplog.text


def test_a_stamp_is_the_millisecond_as_the_process_log_writes_it() -> None:
    assert logs._iso(0) == "1970-01-01T00:00:00.000Z"
    assert logs._iso(NS // 1_000_000) == "2024-12-01T08:30:05.123Z"
    now = dt.datetime.now(dt.UTC)
    ms = int(now.timestamp()) * 1000 + now.microsecond // 1000
    assert logs._iso(ms) == now.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def test_latencies_round_as_round_does() -> None:
    rng = random.Random(17)
    values = [0.0, -0.0, 1e-9, 0.0005, 0.0015, 1.0005, 621.4295, 999999.9995, 1e6, 2e6 + 0.12345]
    values += [(2 * rng.randint(0, 10**7) + 1) / 2000 for _ in range(2000)]  # near ties
    values += [rng.expovariate(0.01) for _ in range(2000)]
    values += [rng.uniform(-1.0, 1.0) for _ in range(2000)]
    for x in values:
        assert repr(_ms(x)) == repr(round(x, 3)), x


async def test_stamps_crossing_a_second_are_each_their_own_millisecond(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target, log = _opened(tmp_path)
    second = NS // 1_000_000_000 * 1_000_000_000
    for ns in (second - 1_000_000, second - 1, second, second + 7_000_000, second + 7_900_000):
        monkeypatch.setattr(time, "time_ns", lambda ns=ns: ns)
        log.record(_bare())
    log.close()
    stamps = [line.rsplit(b'"ts":', 1)[1] for line in _lines(target)]
    assert stamps == [
        b'"2024-12-01T08:30:04.999Z"}',
        b'"2024-12-01T08:30:04.999Z"}',
        b'"2024-12-01T08:30:05.000Z"}',
        b'"2024-12-01T08:30:05.007Z"}',
        b'"2024-12-01T08:30:05.007Z"}',
    ]
