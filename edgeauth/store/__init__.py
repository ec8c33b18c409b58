"""The one place that picks a storage backend from StoreSettings.

Backends are imported lazily, so importing `edgeauth.store.base` (pure callers do) never pulls
in a database driver.
"""

from __future__ import annotations

from edgeauth.config import StoreSettings
from edgeauth.errors import StoreUnavailable
from edgeauth.store.base import Store


async def open_store(settings: StoreSettings) -> Store:
    """An opened store for `settings.backend`; raises StoreUnavailable if it cannot open."""
    if settings.backend == "sqlite":
        from edgeauth.store.sqlite import SQLiteStore

        store = SQLiteStore(settings.path)
        await store.open()
        return store
    if settings.backend == "postgres":
        try:
            from edgeauth.store.postgres import PostgresStore
        except ImportError as exc:  # asyncpg is the optional extra `postgres`
            raise StoreUnavailable(
                f"the postgres backend needs asyncpg (pip install 'edgeauth[postgres]'): {exc}"
            ) from exc
        pg_store = PostgresStore(settings.dsn, pool_size=settings.pool_size)
        await pg_store.open()
        return pg_store
    raise StoreUnavailable(f"the {settings.backend} backend is not available")
