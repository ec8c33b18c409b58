"""An instrumented gateway for the `invalid` scenario: edgeauth's own `Gateway`, unchanged, in
one process, whose token validator reads the store through a counting proxy.

`CountingStore` forwards every call to the real store and notes the time of each
`find_token(digest)`, the one read a bearer validation makes on a cache miss, and how it
ended: "ok", "cancelled" (the request that started it was cancelled, e.g. its client went
away) or "error". On SIGTERM the gateway drains and the reads are written as JSON
({digest hex: [[unix time, outcome], ...]}), so the harness can prove that the store was hit
at most once per distinct token per negative TTL.
This is benchmark instrumentation, not a mock: the store is real, only counted.

`python -m benchmarks.instrumented --counts FILE -c config.toml`
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import time
from pathlib import Path
from typing import Any, cast

import uvloop

from edgeauth.bootstrap import prepare_store
from edgeauth.config import load_settings
from edgeauth.models import TokenView
from edgeauth.server import Gateway
from edgeauth.store.base import Store
from edgeauth.supervisor import bind


class CountingStore:
    """Forwards everything to `inner`; records when each token digest is looked up."""

    def __init__(self, inner: Store) -> None:
        self._inner = inner
        self.reads: dict[bytes, list[tuple[float, str]]] = {}

    async def find_token(self, access_digest: bytes) -> TokenView | None:
        started = time.time()
        outcome = "error"
        try:
            found = await self._inner.find_token(access_digest)
            outcome = "ok"
            return found
        except asyncio.CancelledError:
            outcome = "cancelled"
            raise
        finally:
            self.reads.setdefault(access_digest, []).append((started, outcome))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


async def serve(config: Path) -> dict[str, list[tuple[float, str]]]:
    settings = load_settings(config)
    await prepare_store(settings)
    sockets = [bind(address) for address in settings.server.listen]
    gateway = Gateway(settings)
    await gateway.start(sockets)
    validator = gateway.c.validator
    counting = CountingStore(validator.store)
    validator.store = cast(Store, counting)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    await stop.wait()
    await gateway.stop(1.0)
    return {digest.hex(): times for digest, times in counting.reads.items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="edgeauth gateway with counted store reads")
    parser.add_argument("--counts", type=Path, required=True)
    parser.add_argument("-c", "--config", type=Path, required=True)
    args = parser.parse_args(argv)
    reads = uvloop.run(serve(args.config))
    args.counts.write_text(json.dumps(reads))


if __name__ == "__main__":
    main()
