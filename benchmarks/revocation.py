"""How fast a revocation reaches every worker: ms from the admin DELETE's 204 to the first 401
served by each worker (design §8, issue 4).

The `revoke` scenario of `python -m benchmarks` runs this against an `edgeauth serve` (2
workers) that the harness starts on loopback ports it picks. For each trial: issue a token, get
it cached in every worker, DELETE it through the admin API, and probe on fresh connections
(SO_REUSEPORT spreads them over the workers) until every worker has answered 401. Which worker
answered, and when, comes from the access log (`worker`, `ts`), so the figure is an upper
bound: the log time is taken at the end of a request. Arrival times are the log's time minus
the request's latency; the bound is also limited by how often probes reach each worker (fresh
TLS connections, a few ms apart), so `200s_after_204` (requests served with the revoked token
after the 204) is the sharper figure. Alone: `python -m benchmarks.revocation [--trials 200]
[--workers 2]`; with `--nodes`, two nodes on one PostgreSQL schema: the DELETE goes to node
A's admin API and the probes to node B.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import ssl
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from benchmarks.runner import CLIENT_ID, PROTECTED_PATH, PROVISION, SECRET


def _log_entries(path: Path, start: int) -> tuple[list[dict[str, Any]], int]:
    with path.open("rb") as fh:
        fh.seek(start)
        data = fh.read()
    cut = data.rfind(b"\n") + 1
    lines = data[:cut].splitlines()
    return [json.loads(line) for line in lines if line], start + cut


def _ts(entry: dict[str, Any]) -> float:
    """When the request arrived: the log's time (taken at its end) minus its latency."""
    done = dt.datetime.fromisoformat(entry["ts"].replace("Z", "+00:00")).timestamp()
    return float(done - entry["latency_ms"]["total"] / 1000)


class Bench:
    def __init__(self, proxy: int, admin: int, token: str, ssl_ctx: ssl.SSLContext, log: Path):
        self.proxy_url = f"https://127.0.0.1:{proxy}{PROTECTED_PATH}"
        self.admin_url = f"http://127.0.0.1:{admin}"
        self.admin_headers = {"Authorization": f"Bearer {token}"}
        self.ssl = ssl_ctx
        self.log = log
        self.offset = 0

    async def token(self, session: aiohttp.ClientSession) -> str:
        body = {
            "client_id": CLIENT_ID,
            "client_secret": SECRET,
            "grant_type": "password",
            "provision_key": PROVISION,
            "authenticated_userid": "bench-user",
        }
        async with session.post(self.proxy_url + "/oauth2/token", json=body, ssl=self.ssl) as r:
            return str((await r.json())["access_token"])

    async def probe(self, token: str) -> int:
        """One request on a fresh connection (so the kernel picks a worker anew)."""
        connector = aiohttp.TCPConnector(ssl=self.ssl, force_close=True)
        async with aiohttp.ClientSession(connector=connector) as session:
            headers = {"Authorization": f"Bearer {token}"}
            async with session.get(self.proxy_url, headers=headers) as resp:
                await resp.read()
                return resp.status

    async def until_every_worker(self, token: str, status: int, workers: int) -> dict[int, float]:
        """Probe until each worker has answered `status`; worker pid → time of its first."""
        first: dict[int, float] = {}
        for _ in range(400):
            await asyncio.gather(*(self.probe(token) for _ in range(4)))
            await asyncio.sleep(0.25)  # the access log is flushed every 0.2 s
            entries, self.offset = _log_entries(self.log, self.offset)
            for entry in entries:
                if entry.get("status") == status and entry["worker"] not in first:
                    first[entry["worker"]] = _ts(entry)
            if len(first) >= workers:
                return first
        raise RuntimeError(f"not every worker answered {status}")

    async def hammer(self, token: str, seconds: float) -> None:
        """Probe without pause from 4 loops, so every worker is hit every few ms."""
        deadline = time.monotonic() + seconds

        async def loop() -> None:
            while time.monotonic() < deadline:
                await self.probe(token)

        await asyncio.gather(*(loop() for _ in range(4)))

    async def trial(self, session: aiohttp.ClientSession, workers: int) -> tuple[list[float], int]:
        """(per-worker ms from the 204 to its first 401, 200s served after the 204)."""
        token = await self.token(session)
        await self.until_every_worker(token, 200, workers)  # cached in every worker now
        url = f"{self.admin_url}/oauth2_tokens/{token}"
        async with session.get(url, headers=self.admin_headers) as r:
            token_id = (await r.json())["id"]
        await asyncio.sleep(0.25)
        _, self.offset = _log_entries(self.log, self.offset)
        url = f"{self.admin_url}/oauth2_tokens/{token_id}"
        async with session.delete(url, headers=self.admin_headers) as r:
            assert r.status == 204
            acked = time.time()
        await self.hammer(token, 0.3)
        await asyncio.sleep(0.3)  # the access log is flushed every 0.2 s
        entries, self.offset = _log_entries(self.log, self.offset)
        first: dict[int, float] = {}
        stale = 0
        for entry in entries:
            if entry.get("status") == 401:
                first.setdefault(entry["worker"], _ts(entry))
            elif entry.get("status") == 200 and _ts(entry) > acked:
                stale += 1
        if len(first) < workers:
            raise RuntimeError("a worker never answered 401 within 0.3 s")
        return [max(0.0, (t - acked) * 1000) for t in first.values()], stale


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def measure(
    proxy: int, admin: int, admin_token: str, cafile: Path, log: Path, trials: int, workers: int
) -> dict[str, Any]:
    """`trials` revocations against a running gateway whose access log is `log`."""
    await _wait_port(proxy)
    await _wait_port(admin)
    ssl_ctx = ssl.create_default_context(cafile=str(cafile))
    bench = Bench(proxy, admin, admin_token, ssl_ctx, log)
    delays: list[float] = []
    stale = 0
    async with aiohttp.ClientSession() as session:
        for _ in range(trials):
            found, late = await bench.trial(session, workers)
            delays += found
            stale += late
    return {
        "trials": trials,
        "workers": workers,
        "samples": len(delays),
        "p50_ms": round(statistics.median(delays), 2),
        "p99_ms": round(_percentile(delays, 0.99), 2),
        "max_ms": round(max(delays), 2),
        "200s_after_204": stale,
        "delays_ms": [round(d, 3) for d in delays],
    }


async def _wait_port(port: int) -> None:
    for _ in range(300):
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.1)
            continue
        writer.close()
        await writer.wait_closed()
        return
    raise RuntimeError(f"nothing listens on {port}")


def main() -> None:
    """Start the backend and the gateway through the harness, measure, stop them all."""
    from benchmarks.profiles import QUICK
    from benchmarks.runner import Bench as Harness
    from benchmarks.scenarios.revoke import PG_DSN, measure_nodes, measure_revocation, pg_schema

    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--nodes",
        action="store_true",
        help="node A → node B on PostgreSQL ($EDGEAUTH_BENCH_PG_DSN)",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, Harness(QUICK, Path(tmp)) as harness:
        if args.nodes:
            with pg_schema(PG_DSN) as dsn:
                result = measure_nodes(harness, args.trials, dsn)
        else:
            result = measure_revocation(harness, args.trials, args.workers)
    result.pop("delays_ms", None)
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
