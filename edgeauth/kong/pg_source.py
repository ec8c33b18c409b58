"""Read Kong's PostgreSQL database (Kong 2.x and 3.x, IAM's default store), never writing.

Invariants: one READ ONLY, REPEATABLE READ transaction, so everything read is one consistent
snapshot while Kong keeps serving. Entities other than tokens are read whole as JSON
(`to_jsonb(row)`), so columns a Kong version lacks or adds change nothing here; tokens, the
only large table, are read column by column. Only the chosen workspace is read (Kong 2.1+
has `ws_id`); what other workspaces hold is counted and reported. The schema is the DSN's
search_path, as for edgeauth's own store.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import orjson

from edgeauth.kong.model import (
    MAPPED_ROUTE_FIELDS,
    MAPPED_SERVICE_FIELDS,
    NOT_READ,
    KongConsumer,
    KongCredential,
    KongData,
    KongPlugin,
    KongRoute,
    KongService,
    KongToken,
    SourceError,
    SourceUnreachable,
    not_read,
    unmapped,
)

Row = Mapping[str, Any]
CONNECT_SECONDS = 10.0
# Service and route fields edgeauth maps; every other non-empty field is reported.
_SERVICE_FIELDS = MAPPED_SERVICE_FIELDS | {"ws_id"}
_ROUTE_FIELDS = MAPPED_ROUTE_FIELDS | {"service_id", "ws_id"}
_TOKENS = """SELECT id::text, credential_id::text, service_id::text, access_token, refresh_token,
    COALESCE(expires_in, 0) AS expires_in, extract(epoch FROM created_at)::float8 AS created_at,
    {ttl} AS ttl, scope, authenticated_userid
FROM oauth2_tokens{where}"""


async def read_kong(dsn: str, workspace: str = "default") -> KongData:
    """Everything the import needs from Kong's database at `dsn`."""
    async with _connection(dsn) as db, db.transaction(readonly=True, isolation="repeatable_read"):
        ws_id = await _workspace(db, workspace)
        unread = (*await _other_workspaces(db, ws_id, workspace), *await _unused(db, ws_id))
        consumers = await _rows(db, "consumers", ws_id)
        credentials = await _rows(db, "oauth2_credentials", ws_id)
        services = await _rows(db, "services", ws_id)
        routes = await _rows(db, "routes", ws_id)
        plugins = await _rows(db, "plugins", ws_id)
        upstreams = await _rows(db, "upstreams", ws_id)
        return KongData(
            source="kong-pg",
            consumers=tuple(_consumer(row) for row in consumers),
            credentials=tuple(_credential(row) for row in credentials),
            tokens=await _tokens(db, ws_id),
            services=tuple(_service(row) for row in services),
            routes=tuple(_route(row) for row in routes),
            plugins=tuple(_plugin(row) for row in plugins),
            upstreams=frozenset(str(row["name"]) for row in upstreams if row.get("name")),
            codes=await _count(db, "oauth2_authorization_codes", ws_id),
            unread=unread,
        )


@contextlib.asynccontextmanager
async def _connection(dsn: str) -> AsyncIterator[Any]:
    """One connection; driver errors become SourceUnreachable (cannot connect or lost) or
    SourceError (the database answered, but not as Kong's)."""
    try:
        db = await asyncpg.connect(dsn, timeout=CONNECT_SECONDS)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, ValueError) as exc:
        raise SourceUnreachable(f"cannot connect to Kong's database: {exc}") from exc
    try:
        yield db
    except (asyncpg.PostgresConnectionError, asyncpg.InterfaceError, OSError) as exc:
        raise SourceUnreachable(f"Kong's database: {exc}") from exc
    except asyncpg.PostgresError as exc:
        raise SourceError(f"Kong's database: {type(exc).__name__}: {exc}") from exc
    finally:
        await db.close()


async def _exists(db: Any, table: str) -> bool:
    return await db.fetchval("SELECT to_regclass($1) IS NOT NULL", table) is True


async def _has_column(db: Any, table: str, column: str) -> bool:
    sql = """SELECT EXISTS (SELECT 1 FROM information_schema.columns
        WHERE table_schema = current_schema() AND table_name = $1 AND column_name = $2)"""
    return await db.fetchval(sql, table, column) is True


async def _workspace(db: Any, name: str) -> str | None:
    """The id of workspace `name`; None before Kong 2.1 (no workspaces: all is read)."""
    if not await _exists(db, "consumers"):
        raise SourceError("no Kong schema here: there is no consumers table on the search_path")
    if not await _exists(db, "workspaces"):
        return None
    ws_id = await db.fetchval("SELECT id::text FROM workspaces WHERE name = $1", name)
    if ws_id is None:
        known = [r["name"] for r in await db.fetch("SELECT name FROM workspaces ORDER BY 1")]
        raise SourceError(f"no workspace {name!r} in Kong (there are: {', '.join(known)})")
    return str(ws_id)


async def _other_workspaces(db: Any, ws_id: str | None, name: str) -> tuple[str, ...]:
    """What other workspaces hold, one line per table (left out of this import)."""
    if ws_id is None:
        return ()
    notes = []
    tables = ("consumers", "oauth2_credentials", "oauth2_tokens", "services", "routes", "plugins")
    for table in tables:
        if not await _exists(db, table) or not await _has_column(db, table, "ws_id"):
            continue
        sql = f"SELECT count(*) FROM {table} WHERE ws_id <> $1::uuid"  # noqa: S608 (a name above)
        count = int(await db.fetchval(sql, ws_id))
        if count:
            notes.append(
                f"{count} {table} of other workspaces than {name!r}"
                " (run the import again with --workspace NAME for each)"
            )
    return tuple(notes)


async def _unused(db: Any, ws_id: str | None) -> tuple[str, ...]:
    """Rows of Kong's other entities (this workspace's), counted: never carried."""
    notes = []
    for table in NOT_READ:
        count = await _count(db, table, ws_id)
        if count:
            notes.append(not_read(table, count))
    return tuple(notes)


async def _rows(db: Any, table: str, ws_id: str | None) -> list[dict[str, Any]]:
    """Every row of `table` in the workspace as a dict, created_at as epoch seconds."""
    if not await _exists(db, table):
        return []
    epoch = "jsonb_build_object('created_at', floor(extract(epoch FROM t.created_at)))"
    sql = f"SELECT (to_jsonb(t) || {epoch})::text FROM {table} t"  # noqa: S608 (a name of ours)
    rows = [orjson.loads(text) for (text,) in await db.fetch(sql)]
    return [row for row in rows if ws_id is None or row.get("ws_id") in (None, ws_id)]


async def _count(db: Any, table: str, ws_id: str | None) -> int:
    if not await _exists(db, table):
        return 0
    where = await _ws_where(db, table, ws_id)
    return int(await db.fetchval(f"SELECT count(*) FROM {table}{where}", *_ws_args(where, ws_id)))  # noqa: S608


async def _ws_where(db: Any, table: str, ws_id: str | None) -> str:
    if ws_id is None or not await _has_column(db, table, "ws_id"):
        return ""
    return " WHERE ws_id = $1::uuid"


def _ws_args(where: str, ws_id: str | None) -> tuple[object, ...]:
    return (ws_id,) if where else ()


async def _tokens(db: Any, ws_id: str | None) -> tuple[KongToken, ...]:
    if not await _exists(db, "oauth2_tokens"):
        return ()
    has_ttl = await _has_column(db, "oauth2_tokens", "ttl")
    ttl = "extract(epoch FROM ttl)::float8" if has_ttl else "NULL::float8"
    where = await _ws_where(db, "oauth2_tokens", ws_id)
    rows = await db.fetch(_TOKENS.format(ttl=ttl, where=where), *_ws_args(where, ws_id))
    return tuple(
        KongToken(
            id=row["id"],
            credential_id=row["credential_id"],
            service_id=row["service_id"],
            access_token=row["access_token"],
            refresh_token=row["refresh_token"],
            expires_in=int(row["expires_in"]),
            created_at=float(row["created_at"]),
            ttl=row["ttl"],
            scope=row["scope"],
            authenticated_userid=row["authenticated_userid"],
        )
        for row in rows
        if row["access_token"] and row["credential_id"]
    )


# rows → model -------------------------------------------------------------------------------
def _strings(value: Any) -> tuple[str, ...]:
    return tuple(str(v) for v in value or ())


def _created(row: Row) -> int | None:
    value = row.get("created_at")
    return None if value is None else int(value)


def _consumer(row: Row) -> KongConsumer:
    return KongConsumer(
        id=row["id"],
        username=row.get("username"),
        custom_id=row.get("custom_id"),
        tags=_strings(row.get("tags")),
        created_at=_created(row),
    )


def _credential(row: Row) -> KongCredential:
    return KongCredential(
        id=row["id"],
        consumer=str(row.get("consumer_id")),
        name=row.get("name") or "",
        client_id=row.get("client_id"),
        client_secret=row.get("client_secret"),
        hash_secret=row.get("hash_secret") is True,
        redirect_uris=_strings(row.get("redirect_uris")),
        client_type=row.get("client_type") or "confidential",
        tags=_strings(row.get("tags")),
        created_at=_created(row),
    )


def _service(row: Row) -> KongService:
    return KongService(
        id=row["id"],
        name=row.get("name"),
        protocol=row.get("protocol") or "http",
        host=row.get("host") or "",
        port=row.get("port"),
        path=row.get("path"),
        connect_timeout_ms=row.get("connect_timeout"),
        read_timeout_ms=row.get("read_timeout"),
        retries=row.get("retries"),
        tls_verify=row.get("tls_verify"),
        enabled=row.get("enabled") is not False,
        others=unmapped(row, _SERVICE_FIELDS),
    )


def _route(row: Row) -> KongRoute:
    return KongRoute(
        id=row["id"],
        name=row.get("name"),
        service=row.get("service_id"),
        paths=_strings(row.get("paths")),
        hosts=_strings(row.get("hosts")),
        methods=_strings(row.get("methods")),
        strip_path=row.get("strip_path") is not False,
        others=unmapped(row, _ROUTE_FIELDS),
    )


def _plugin(row: Row) -> KongPlugin:
    config = row.get("config")
    return KongPlugin(
        id=row["id"],
        name=str(row.get("name")),
        config=config if isinstance(config, dict) else {},
        enabled=row.get("enabled") is not False,
        service=row.get("service_id"),
        route=row.get("route_id"),
        consumer=row.get("consumer_id"),
    )
