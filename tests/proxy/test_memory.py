"""Flat memory: 200 MiB each way through a real gateway process (design §5 step 5).

The gateway's worker peak RSS (VmHWM from /proc) may grow by less than 50 MiB over its
resting RSS while the bodies stream, whatever their size.
"""

from __future__ import annotations

import hashlib
import ssl
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp

from edgeauth import tls
from tests.conftest import Backend, ServeProcess, service, write_config

MIB = 1024 * 1024
SIZE = 200 * MIB
LIMIT = 50 * MIB


def _status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"{field} not in /proc/{pid}/status")


async def _zeros(total: int, chunk: int = 256 * 1024) -> AsyncIterator[bytes]:
    block = bytes(chunk)
    left = total
    while left > 0:
        piece = block if left >= chunk else block[:left]
        left -= len(piece)
        yield piece


async def test_200_mib_each_way_keeps_the_worker_rss_flat(
    tmp_path: Path,
    dev_cert: tls.DevCertificate,
    backend: Backend,
    client_ssl: ssl.SSLContext,
    serve: Callable[..., ServeProcess],
) -> None:
    config = write_config(
        tmp_path,
        dev_cert,
        [service("bulk", backend.url, ["/"], max_request_body_bytes=0)],
        workers=1,
    )
    gw = serve(config)
    (worker,) = gw.worker_pids()
    connector = aiohttp.TCPConnector(ssl=client_ssl)
    async with aiohttp.ClientSession(connector=connector) as session:
        async with session.get(f"{gw.url}/events") as resp:
            assert resp.status == 200
        resting = _status_kib(worker, "VmRSS")

        digest = hashlib.sha256()
        received = 0
        async with session.get(f"{gw.url}/bytes/{SIZE}") as resp:
            assert resp.status == 200
            async for chunk in resp.content.iter_any():
                received += len(chunk)
                digest.update(chunk)
        assert received == SIZE
        assert digest.hexdigest() == hashlib.sha256(bytes(SIZE)).hexdigest()

        async with session.post(f"{gw.url}/sink", data=_zeros(SIZE)) as resp:
            assert resp.status == 200
            assert await resp.json() == {"received": SIZE}

    peak = _status_kib(worker, "VmHWM")
    assert (peak - resting) * 1024 < LIMIT, f"resting {resting} KiB, peak {peak} KiB"
