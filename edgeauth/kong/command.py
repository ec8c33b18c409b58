"""`edgeauth import kong`: read Kong, print the plan, and with --apply write it.

Rule 1: a dry run (the default) writes nothing: not the store (a SQLite store that does not
exist yet is not even created), not --write-config.
Rule 2: exit status as the other commands: 0 done with no conflict, 1 something was refused
(conflicts, an unreadable decK file, a config the services would break), 69 Kong's database
or the store cannot be reached. What could be done is done even when something is refused.
Rule 3: stdout has the plan (or with --json one JSON object); stderr has errors and, on a
terminal only, a progress bar.
Writes only to the streams it is given; argv and sys.exit stay in cli.py.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import time
from collections import Counter
from pathlib import Path
from typing import Any, TextIO

from edgeauth.config import Settings
from edgeauth.errors import StoreError, StoreUnavailable
from edgeauth.exitcodes import EX_REFUSED, EX_UNAVAILABLE, EX_USAGE
from edgeauth.jsonout import document, error_line
from edgeauth.kong.apply import Applied, apply, snapshot
from edgeauth.kong.model import KongData, SourceError, SourceUnreachable
from edgeauth.kong.plan import Existing, Plan, make_plan
from edgeauth.store import open_store


def add_arguments(cmd: argparse.ArgumentParser, config_help: str) -> None:
    source = cmd.add_mutually_exclusive_group(required=True)
    source.add_argument("--kong-pg", metavar="DSN", help="Kong's PostgreSQL database, read only")
    source.add_argument(
        "--deck", metavar="FILE", type=Path, help="a decK dump or kong.yml (format 3.x)"
    )
    cmd.add_argument("-c", "--config", metavar="PATH", help=f"the store's {config_help}")
    cmd.add_argument("--workspace", default="default", help="Kong workspace (default: default)")
    cmd.add_argument("--apply", action="store_true", help="write (default: print the plan)")
    cmd.add_argument(
        "--write-config", metavar="PATH", type=Path, help="write the [[services]] TOML here"
    )
    cmd.add_argument("--json", action="store_true", help="print a JSON summary")


def run(args: argparse.Namespace, settings: Settings, out: TextIO, err: TextIO) -> int:
    started = time.monotonic()
    if args.write_config is not None and args.write_config.resolve() == settings.source.resolve():
        return _fail(
            args, err, EX_USAGE, "--write-config names the config file itself: give another path"
        )
    try:
        plan, applied = asyncio.run(_run(args, settings, err))
    except SourceUnreachable as exc:
        return _fail(args, err, EX_UNAVAILABLE, str(exc))
    except SourceError as exc:
        return _fail(args, err, EX_REFUSED, str(exc))
    except StoreUnavailable as exc:
        return _fail(args, err, EX_UNAVAILABLE, f"the store cannot be reached: {exc}")
    except StoreError as exc:
        return _fail(args, err, EX_REFUSED, f"the store refused the import: {exc}")
    written = _write_config(args, plan) if args.apply else None
    summary = _summary(args, plan, applied, written, time.monotonic() - started)
    if args.json:
        out.write(document(summary))
    else:
        out.write(_human(summary, plan, args))
    return EX_REFUSED if summary["conflicts"] else 0


def _fail(args: argparse.Namespace, err: TextIO, code: int, message: str) -> int:
    """One line on stderr; with --json the `{"error": ...}` object every command prints."""
    err.write(error_line(message) if args.json else f"{message}\n")
    return code


async def _run(
    args: argparse.Namespace, settings: Settings, err: TextIO
) -> tuple[Plan, Applied | None]:
    data = await _read(args)
    names = frozenset(service.name for service in settings.services)
    if not args.apply and _no_store_yet(settings):
        return make_plan(data, Existing(config_services=names), time.time()), None
    store = await open_store(settings.store)
    try:
        plan = make_plan(data, await snapshot(store, data, names), time.time())
        if not args.apply:
            return plan, None
        return plan, await apply(store, plan, _Bar(err) if err.isatty() else None)
    finally:
        await store.close()


async def _read(args: argparse.Namespace) -> KongData:
    if args.deck is not None:
        from edgeauth.kong.deck_source import read_deck

        return await asyncio.to_thread(read_deck, args.deck)
    try:
        from edgeauth.kong.pg_source import read_kong
    except ImportError as exc:
        raise SourceUnreachable(f"--kong-pg needs asyncpg (the `postgres` extra): {exc}") from exc
    return await read_kong(args.kong_pg, args.workspace)


def _no_store_yet(settings: Settings) -> bool:
    return settings.store.backend == "sqlite" and not settings.store.path.exists()


class _Bar:
    """A one-line progress bar for the token import, redrawn in place."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def __call__(self, done: int, total: int) -> None:
        filled = 30 * done // max(total, 1)
        bar = "#" * filled + "." * (30 - filled)
        end = "\n" if done >= total else ""
        self.stream.write(f"\rtokens [{bar}] {done:,}/{total:,}{end}")
        self.stream.flush()


def _write_config(args: argparse.Namespace, plan: Plan) -> str | None:
    """Writes the services TOML (0600, an existing file's mode included: it holds provision
    keys); never over config.toml."""
    path: Path | None = args.write_config
    if path is None:
        return None
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(plan.services_toml)
    return str(path)


_PROVISION_KEY = re.compile(r'^(\s*provision_key\s*=\s*)".*"$', re.MULTILINE)


def printable(services_toml: str) -> str:
    """The services TOML for stdout, which ends up in terminals and CI logs: provision keys
    redacted (`--write-config` writes them)."""
    return _PROVISION_KEY.sub(r'\1"<redacted: use --write-config>"', services_toml)


def _counts(statuses: list[str]) -> dict[str, int]:
    found = Counter(statuses)
    return {key: found[key] for key in ("create", "unchanged", "conflict", "skipped")}


def _summary(
    args: argparse.Namespace, plan: Plan, applied: Applied | None, written: str | None, took: float
) -> dict[str, Any]:
    tally = plan.tokens
    tokens: dict[str, Any] = {
        "create": len(tally.records),
        "unchanged": tally.unchanged,
        "expired": tally.expired,
        "refresh_only": tally.refresh_only,
        "skipped": sum(tally.skipped.values()),
        "skipped_why": tally.skipped,
    }
    summary: dict[str, Any] = {
        "source": plan.source,
        "applied": applied is not None,
        "consumers": _counts([s.status for s in plan.consumers]),
        "credentials": _counts([s.status for s in plan.credentials]),
        "tokens": tokens,
        "authorization_codes_not_carried": plan.codes,
        "services": plan.services,
        "routes": plan.routes,
        "conflicts": [*plan.conflicts(), *(applied.conflicts if applied else [])],
        "skipped": [*plan.skipped(), *(f"{n:,} tokens: {why}" for why, n in tally.skipped.items())],
        "not_carried": list(plan.not_carried),
        "notes": list(plan.notes),
        "config_written": written,
        "seconds": round(took, 3),
    }
    if applied is not None:
        summary["written"] = {
            "consumers": applied.consumers,
            "credentials": applied.credentials,
            "tokens": applied.tokens,
            "tokens_already_stored": applied.tokens_present,
        }
    if args.json and args.write_config is None:
        summary["services_toml"] = printable(plan.services_toml)
    return summary


def _line(what: str, counts: dict[str, int]) -> str:
    text = ", ".join(f"{n:,} {key}" for key, n in counts.items() if n or key == "create")
    return f"  {what:<14}{text}\n"


def _human(summary: dict[str, Any], plan: Plan, args: argparse.Namespace) -> str:
    applied = summary["applied"]
    head = (
        "Kong import" if applied else "Kong import plan (dry run: nothing written; --apply writes)"
    )
    tokens = {
        k: v for k, v in summary["tokens"].items() if k not in ("skipped_why", "refresh_only")
    }
    alive = summary["tokens"]["refresh_only"]
    parts = [
        f"{head}, from {summary['source']} in {summary['seconds']} s\n",
        _line("consumers", summary["consumers"]),
        _line("applications", summary["credentials"]),
        _line("tokens", tokens),
        f"  {'':<14}({alive:,} of those to create for their refresh token alone)\n"
        if alive
        else "",
        f"  {'codes':<14}{plan.codes:,} authorization codes not carried (they live seconds)\n",
        f"  {'services':<14}{summary['services']:,} with {summary['routes']:,} routes",
    ]
    parts.append(_where(summary, args))
    if "written" in summary:
        w = summary["written"]
        parts.append(
            f"  {'written':<14}{w['consumers']:,} consumers, {w['credentials']:,} applications,"
            f" {w['tokens']:,} tokens ({w['tokens_already_stored']:,} already stored)\n"
        )
    for title, key in (
        ("conflicts (kept as the store has them)", "conflicts"),
        ("skipped", "skipped"),
        ("not carried", "not_carried"),
        ("notes", "notes"),
    ):
        if summary[key]:
            parts.append(f"{title}:\n" + "".join(f"  {line}\n" for line in summary[key]))
    if args.write_config is None and summary["services"]:
        parts.append("\n" + printable(plan.services_toml))
    return "".join(parts)


def _where(summary: dict[str, Any], args: argparse.Namespace) -> str:
    if summary["config_written"]:
        return f", written to {summary['config_written']}\n"
    if args.write_config is not None:
        return f", to be written to {args.write_config}\n"
    return ", printed below\n"
