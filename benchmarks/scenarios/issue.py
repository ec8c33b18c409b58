"""3. issue: durable tokens issued per second, client_credentials and password grants, on a
fresh store; and client_credentials again on a store pre-filled with many tokens (5 M in
--full, fewer in the quick profile: the report says how many), to show the rate stays flat
as the store grows. The pre-filled store is built by bulk SQL, not the API (storefill.py).
CPU per token is reported beside the rates: on a machine shared with other work it is the
steadier sign of whether a token costs more on the filled store."""

from __future__ import annotations

import statistics
import time
import urllib.parse
from pathlib import Path

from benchmarks.loadgen import LoadSpec
from benchmarks.results import ScenarioResult, ratio
from benchmarks.runner import CLIENT_ID, PROVISION, SECRET, TOKEN_PATH, Bench, Gateway
from benchmarks.storefill import prefilled_copy

NAME = "issue"
DESCRIPTION = (
    "token issuance per second: client_credentials and password grants, and client_credentials "
    "on a pre-filled store"
)
FULL_FILL = 5_000_000  # the pre-filled store
CC = "client_credentials"

GRANTS = {
    "client_credentials": {"grant_type": "client_credentials", "scope": "read"},
    "password": {
        "grant_type": "password",
        "scope": "read",
        "provision_key": PROVISION,
        "authenticated_userid": "bench-user",
    },
}


def _spec(bench: Bench, gw: Gateway, grant: str) -> LoadSpec:
    p = bench.profile
    body = urllib.parse.urlencode(
        {**GRANTS[grant], "client_id": CLIENT_ID, "client_secret": SECRET}
    )
    return LoadSpec(
        url=gw.url(TOKEN_PATH),
        duration=p.duration,
        connections=p.connections,
        warmup=p.warmup,
        method="POST",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        body=body,
    )


def _cpu_per_token(result: ScenarioResult, target: str, label: str) -> float | None:
    """The median of the runs' CPU µs per request of the server under test."""
    found = [m.cpu_us_per_request for m in result.by_target(target, label)]
    known = [cpu for cpu in found if cpu is not None]
    return round(statistics.median(known), 1) if known else None


def _change(base: float | None, other: float | None) -> float | None:
    """How much `other` differs from `base`, in per cent."""
    return None if not base or other is None else round(100 * (other / base - 1), 2)


def run(bench: Bench, result: ScenarioResult) -> None:
    p = bench.profile
    fill = p.prefill_tokens
    filled_label = f"client_credentials, {fill:,} tokens in the store"
    with bench.gateway(workers=1) as gw:
        copy = bench.workdir / "prefilled.db"
        started = time.monotonic()
        held = prefilled_copy(Path(gw.doc["store"]["path"]), copy, fill)
        result.summary["prefill"] = {
            "tokens_in_store": held,
            "build_seconds": round(time.monotonic() - started, 1),
        }
        store = {"path": str(copy)}
        with bench.gateway(workers=1, store=store, name="edgeauth-prefilled") as filled:
            # client_credentials fresh and filled in the order A B B A each round, so that a
            # drift of the machine's load during the round weighs on both alike
            abba = ((gw, CC), (filled, filled_label), (filled, filled_label), (gw, CC))
            for _ in range(p.rounds):
                for target, label in abba:
                    spec = _spec(bench, target, CC)
                    result.measurements.append(bench.measure(target, label, spec))
                spec = _spec(bench, gw, "password")
                result.measurements.append(bench.measure(gw, "password", spec))
    cc = result.median_rps("edgeauth", "client_credentials")
    pw = result.median_rps("edgeauth", "password")
    full = result.median_rps("edgeauth-prefilled", filled_label)
    change = _change(cc, full)
    cpu = _cpu_per_token(result, "edgeauth", "client_credentials")
    cpu_full = _cpu_per_token(result, "edgeauth-prefilled", filled_label)
    cpu_change = _change(cpu, cpu_full)
    result.summary |= {
        "client_credentials_per_s": cc,
        "password_per_s": pw,
        "password/client_credentials": ratio(pw, cc),
        "client_credentials_per_s_prefilled": full,
        "prefilled_vs_empty_percent": change,
        "cpu_us_per_token": cpu,
        "cpu_us_per_token_prefilled": cpu_full,
        "prefilled_vs_empty_cpu_percent": cpu_change,
    }
    smaller = "" if fill >= FULL_FILL else f"{p.name} profile: --full fills {FULL_FILL:,}"
    result.judge("issue/rate", cc, "fresh store")
    result.judge("issue/rate", full, f"{fill:,} tokens in the store", note=smaller)
    moved = "" if change is None else f"{change:+.1f} % with the store filled"
    costlier = "" if cpu_change is None else f"CPU per token {cpu_change:+.1f} %"
    note = "; ".join(text for text in (moved, costlier, smaller) if text)
    flat = None if change is None else abs(change)
    result.judge("issue/flat", flat, f"fresh vs {fill:,} tokens", note=note)
