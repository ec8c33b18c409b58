"""How fast `edgeauth import kong --apply` carries Kong's tokens (issue 14: 100,000 in under a
minute). Not a test: run `python -m tests.kong.bench_import [--tokens N] [--store postgres]`.

A Kong 3.x schema gets N live tokens (COPY), then a real `edgeauth import kong --kong-pg ...
--apply --json` process imports them into a new store (SQLite, or a PostgreSQL schema); the
figure is that process's wall time, start to exit, reading and planning included.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

import tomli_w

from edgeauth import tls
from tests.kong.kong_db import KongDb
from tests.store.conftest import pg_connect, pg_schema


async def _bench(count: int, backend: str) -> dict[str, object]:
    async with pg_schema() as kong, pg_schema() as target:
        conn = await pg_connect(kong.dsn)
        try:
            db = await KongDb.create(conn)
            service = await db.service("events", "127.0.0.1", 52773, "/api")
            await db.route(service, "events-api", ["/events"])
            await db.plugin("oauth2", {"provision_key": "pk", "enable_password_grant": True})
            alice = await db.consumer("alice")
            app = await db.credential(alice, "alice-app", "secret", hashed=False)
            await db.tokens(app, service, count, time.time() - 60)
        finally:
            await conn.close()
        with tempfile.TemporaryDirectory() as directory:
            config = _config(Path(directory), backend, target.dsn)
            started = time.monotonic()
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "edgeauth", "import", "kong", "-c", str(config),
                "--kong-pg", kong.dsn, "--apply", "--json",
                stdout=asyncio.subprocess.PIPE,
            )  # fmt: skip
            out, _ = await proc.communicate()
            took = time.monotonic() - started
    summary = json.loads(out)
    written = summary["written"]["tokens"]
    return {"store": backend, "tokens": written, "seconds": round(took, 2),
            "tokens_per_second": round(written / took)}  # fmt: skip


def _config(directory: Path, backend: str, dsn: str) -> Path:
    cert = tls.generate_dev_certificate(directory / "certs")
    store = {"path": str(directory / "edgeauth.db")}
    if backend == "postgres":
        store = {"backend": "postgres", "dsn": dsn}
    doc = {
        "server": {"tls_cert_file": str(cert.cert_file), "tls_key_file": str(cert.key_file)},
        "store": store,
    }
    path = directory / "config.toml"
    path.write_text(tomli_w.dumps(doc))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tokens", type=int, default=100_000)
    parser.add_argument("--store", choices=("sqlite", "postgres"), default="sqlite")
    args = parser.parse_args()
    sys.stdout.write(json.dumps(asyncio.run(_bench(args.tokens, args.store))) + "\n")


if __name__ == "__main__":
    main()
