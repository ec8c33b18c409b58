"""4. invalid: floods of random invalid tokens.

Two floods against `edgeauth serve`: a pool of distinct random tokens sent over and over (the
negative cache answers most of them), and never-repeated random tokens (each one costs a
store read). Both are compared with valid cached-token GETs measured the same way (wrk
counting statuses per request, tokens from a file) on the same gateway.

The store-read proof runs the same two floods against `benchmarks.instrumented`: edgeauth's
own Gateway in one process whose validator reads the store through a counting proxy. For
every token, a store read that completed must not be followed by another within the negative
TTL. Reads cancelled mid-way (their request's client went away, as when wrk stops) may leave
nothing cached; re-reads after them are counted and checked apart.
"""

from __future__ import annotations

import itertools
import json
import math
import secrets
import sys
from pathlib import Path
from typing import Any

from benchmarks.loadgen import LoadSpec
from benchmarks.results import Measurement, ScenarioResult, ratio
from benchmarks.runner import PROTECTED_PATH, Bench, Gateway
from edgeauth import crypto
from edgeauth.config import load_settings

NAME = "invalid"
DESCRIPTION = (
    "floods of random invalid tokens: 401s per second vs valid GETs, and proof that the store "
    "is read at most once per distinct token per negative TTL"
)
VALID = "valid cached token"
TOLERANCE = 0.05  # seconds: the TTL runs from when validation started, the read comes after


def _spec(bench: Bench, gw: Gateway, tokens: list[str], expect: int, **extra: float) -> LoadSpec:
    p = bench.profile
    spec = LoadSpec(
        url=gw.url(PROTECTED_PATH),
        duration=p.duration,
        connections=p.connections,
        warmup=p.warmup,
        tokens=tokens,
        expect=(expect,),
        count_statuses=True,
    )
    for key, value in extra.items():
        setattr(spec, key, value)
    return spec


def _floods(
    bench: Bench, gw: Gateway, pool: list[str], unique: list[str], tag: str = ""
) -> list[Measurement]:
    pool_label = f"invalid, {len(pool)} tokens repeated{tag}"
    unique_label = f"invalid, never repeated{tag}"
    return [
        bench.measure(gw, pool_label, _spec(bench, gw, pool, 401)),
        # no warm-up: a discarded run would send the first tokens of the list once already
        bench.measure(gw, unique_label, _spec(bench, gw, unique, 401, warmup=0.0)),
    ]


def _reads_proof(
    reads: dict[str, list[list[Any]]], tokens: list[str], ttl: float, window: float
) -> dict[str, Any]:
    """For these tokens: reads, and the gaps between consecutive reads of one token. The
    cache's rule concerns reads that completed; a read whose request was cancelled (its
    client went away) may leave nothing cached, so gaps after those are counted apart."""
    digests = {crypto.digest(t).hex() for t in tokens}
    per_token = [sorted((float(t), str(o)) for t, o in reads[d]) for d in digests if d in reads]
    after_ok: list[float] = []
    after_cancelled: list[float] = []
    for times in per_token:
        for (t0, outcome), (t1, _) in itertools.pairwise(times):
            (after_ok if outcome == "ok" else after_cancelled).append(t1 - t0)
    most = max((len(times) for times in per_token), default=0)
    allowed = math.floor(window / ttl) + 1
    short_after_cancel = sum(1 for gap in after_cancelled if gap < ttl - TOLERANCE)
    return {
        "distinct_tokens_read": len(per_token),
        "store_reads": sum(len(times) for times in per_token),
        "cancelled_reads": sum(1 for times in per_token for _, o in times if o == "cancelled"),
        "max_reads_per_token": most,
        "allowed_reads_per_token": allowed,
        "min_seconds_between_reads_of_a_token": round(min(after_ok), 3) if after_ok else -1,
        "rereads_within_ttl_after_a_cancelled_read": short_after_cancel,
        "ok": all(gap >= ttl - TOLERANCE for gap in after_ok),
        "ok_including_cancelled": (
            all(gap >= ttl - TOLERANCE for gap in after_ok) and short_after_cancel == 0
        ),
    }


def run(bench: Bench, result: ScenarioResult) -> None:
    p = bench.profile
    pool = [secrets.token_urlsafe(32) for _ in range(p.invalid_pool)]
    unique = [secrets.token_urlsafe(32) for _ in range(p.unique_tokens)]
    with bench.gateway(workers=1) as gw:
        valid = bench.measure(gw, VALID, _spec(bench, gw, [gw.token or ""], 200))
        result.measurements += [valid, *_floods(bench, gw, pool, unique)]
        ttl = load_settings(gw.config).cache.negative_ttl_seconds
    counts = bench.workdir / "store-reads.json"
    command = [sys.executable, "-m", "benchmarks.instrumented", "--counts", str(counts)]
    # fresh tokens for the proof, so nothing is cached from the floods above
    pool = [secrets.token_urlsafe(32) for _ in range(p.invalid_pool)]
    unique = [secrets.token_urlsafe(32) for _ in range(p.unique_tokens)]
    with bench.gateway(workers=1, command=command, name="instrumented") as gw:
        proof = _floods(bench, gw, pool, unique, tag=" (instrumented)")
        result.measurements += proof
    reads: dict[str, list[list[Any]]] = json.loads(Path(counts).read_text())
    window = p.duration + p.warmup
    proof_pool = _reads_proof(reads, pool, ttl, window)
    proof_unique = _reads_proof(reads, unique, ttl, window)
    proof_pool["tokens_sent"] = proof[0].requests
    proof_unique["tokens_sent"] = proof[1].requests
    repeated, never = result.measurements[1], result.measurements[2]
    result.summary |= {
        "negative_ttl_seconds": ttl,
        "valid_req_per_s": valid.rps,
        "invalid_repeated_401_per_s": repeated.rps,
        "invalid_unique_401_per_s": never.rps,
        "repeated/valid": ratio(repeated.rps, valid.rps),
        "unique/valid": ratio(never.rps, valid.rps),
        "store_reads_repeated_pool": proof_pool,
        "store_reads_never_repeated": proof_unique,
        "counting": "benchmarks.instrumented: Gateway with its validator's store wrapped",
    }
    for label, key in (("repeated pool", "repeated/valid"), ("never repeated", "unique/valid")):
        result.judge("invalid", result.summary[key], label)
    for label, proof_of in (("repeated pool", proof_pool), ("never repeated", proof_unique)):
        gap = float(proof_of["min_seconds_between_reads_of_a_token"])
        result.check(
            f"store read ≤ once per token per negative TTL ({label}): min s between reads",
            None if gap < 0 else gap,
            f"≥ TTL {ttl:g} s",
            bool(proof_of["ok"]),
            note=(
                f"{proof_of['store_reads']} reads of {proof_of['distinct_tokens_read']} tokens, "
                f"at most {proof_of['max_reads_per_token']} per token"
                + ("" if gap >= 0 else "; no token read twice after a completed read")
            ),
        )
        again = int(proof_of["rereads_within_ttl_after_a_cancelled_read"])
        result.check(
            f"no re-read within the TTL after a read cancelled by a client disconnect ({label})",
            float(again),
            "0",
            again == 0,
            note=f"{proof_of['cancelled_reads']} reads were cancelled mid-way",
        )
