"""The four properties, judged from what the client and the upstream saw and what the
gateway logged:

(a) every request the upstream receives parses cleanly (h11, plus the byte-level rules h11
    forgives), is one the gateway logged as forwarded (same request id, method, marker), and
    is byte-framed exactly as the gateway read it (its body is the bytes the gateway counted
    in; no upstream connection is left holding part of a request);
(b) nothing reaches the protected route's upstream path (as a lenient backend reads it)
    without the valid token on that request, and identity headers reach the upstream only
    on requests that carried it, with the gateway's values;
(c) the client receives exactly one response per request, in order, or a close; nothing
    after an answer that ends the connection; a forwarded request is answered;
(d) no worker dies (checked by the harness) and RSS stays bounded (checked at the end).
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import orjson

from tests.fuzz import answers
from tests.fuzz.client import Outcome, Parsed, Resp, parse
from tests.fuzz.model import Conversation, Example, Unit
from tests.fuzz.upstream import MARKER, UpConnection, UpRequest

IDENTITY = ("x-consumer-", "x-credential-", "x-authenticated-", "x-anonymous-")
PROTECTED_PATH = "/app/admin"
REFUSALS = {400, 404, 405, 408, 411, 413, 414, 417, 421, 431, 500, 501, 505}
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


class AccessLog:
    """The gateway's access log, read incrementally; entries by request id."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.partial = b""
        self.entries: dict[str, dict[str, Any]] = {}

    def read(self) -> None:
        if not self.path.exists():
            return
        with self.path.open("rb") as f:
            f.seek(self.offset)
            data = f.read()
        self.offset += len(data)
        data = self.partial + data
        *lines, self.partial = data.split(b"\n")
        for line in lines:
            if line:
                entry = orjson.loads(line)
                self.entries[entry["request_id"]] = entry

    def wait_for(self, rids: set[str], within: float) -> set[str]:
        """Poll until every id is logged or `within` seconds pass; the ids still missing."""
        deadline = time.monotonic() + within
        while True:
            self.read()
            missing = {r for r in rids if r not in self.entries}
            if not missing or time.monotonic() > deadline:
                return missing
            time.sleep(0.01)


def lenient_path(target: str) -> str:
    """How a lenient backend (Tomcat-like) reads a request-target's path: the fragment
    and query dropped, `;` parameters stripped (also when escaped), escapes decoded, empty
    segments merged and dot-segments resolved."""
    path = target.split("#", 1)[0].split("?", 1)[0]
    if "://" in path:
        path = "/" + path.split("://", 1)[1].partition("/")[2]
    path = re.sub("%3[bB]", ";", path)
    segments = [unquote(seg.split(";", 1)[0]) for seg in path.split("/")]
    out: list[str] = []
    for seg in "/".join(segments).split("/"):
        if seg in ("", "."):
            continue
        if seg == "..":
            if out:
                out.pop()
            continue
        out.append(seg)
    return "/" + "/".join(out)


def is_protected(target: str, case_insensitive: bool) -> bool:
    path = lenient_path(target)
    if case_insensitive:
        path = path.lower()
    return path == PROTECTED_PATH or path.startswith(PROTECTED_PATH + "/")


def marker_of(text: str) -> str | None:
    found = MARKER.search(text.encode("utf-8", "surrogateescape"))
    return found.group(0).decode() if found else None


def head_problems(raw: bytes) -> list[str]:
    """The byte-level rules of RFC 9112 that h11 forgives, for a head the gateway sent."""
    problems = []
    if not raw:
        return ["no CRLF CRLF ends the head"]
    body = raw[:-4]
    if b"\n" in body.replace(b"\r\n", b"") or b"\r" in body.replace(b"\r\n", b""):
        problems.append("a bare CR or LF in the head")
    lines = body.split(b"\r\n")
    names: list[bytes] = []
    for line in lines[1:]:
        if line[:1] in (b" ", b"\t"):
            problems.append(f"an obs-fold line {line[:60]!r}")
            continue
        name, sep, value = line.partition(b":")
        if not sep or not _TOKEN.fullmatch(name):
            problems.append(f"a malformed header line {line[:60]!r}")
            continue
        if b"\x00" in value:
            problems.append("a NUL in a header value")
        names.append(name.lower())
    for must_once in (b"host", b"x-request-id"):
        if names.count(must_once) != 1:
            problems.append(f"{names.count(must_once)} {must_once.decode()} headers")
    framing = [n for n in names if n in (b"content-length", b"transfer-encoding")]
    if len(framing) > 1:
        problems.append(f"framing headers {framing}")
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.lower() == b"transfer-encoding" and value.strip() != b"chunked":
            problems.append(f"Transfer-Encoding {value!r} forwarded")
        if name.lower() == b"upgrade":
            problems.append("an Upgrade header forwarded")
    return problems


def judge(
    example: Example,
    outcomes: list[Outcome],
    conns: list[UpConnection],
    held: list[int],
    log: AccessLog,
    *,
    consumer: str,
    case_insensitive: bool = False,
) -> list[str]:
    """Every property violation of one example, as readable lines."""
    failures: list[str] = []
    units = {u.marker: u for u in example.units()}
    parsed = [
        parse(out.data, conv.units, out.eof)
        for conv, out in zip(example.conversations, outcomes, strict=True)
    ]
    rids: set[str] = set()
    for conn in conns:
        for req in conn.requests:
            rids.update(req.values("x-request-id"))
    for p in parsed:
        for resp in p.responses:
            rids.update(v.decode("latin-1") for v in resp.header(b"x-request-id"))
    missing = log.wait_for(rids, 3.0)
    seen: dict[str, UpRequest] = {}  # marker -> its complete upstream request
    touched: set[str] = set()  # markers of which any byte went upstream

    # (a) and (b): the upstream side
    for conn in conns:
        if conn.error:
            failures.append(
                f"(a) upstream conn {conn.ident}: {conn.error}; bytes {conn.pending[:300]!r}"
            )
        if conn.ident in held:
            failures.append(
                f"(a) upstream conn {conn.ident} was kept open holding part of a request: "
                f"{conn.pending[:300]!r}"
            )
        for req in conn.requests:
            failures += _check_upstream_request(
                req, units, example, log, missing, consumer, case_insensitive
            )
            if req.marker:
                touched.add(req.marker)
                if req.complete:
                    seen[req.marker] = req
    for marker, unit in units.items():
        if unit.expect == "head_invalid" and marker in touched:
            failures.append(
                f"(a) {marker} ({unit.note}) must be refused, but its head went upstream"
            )
        if unit.expect == "body_invalid" and marker in seen:
            failures.append(
                f"(a) {marker} ({unit.note}) must be refused, but went upstream complete"
            )

    # (c): the client side
    for i, (conv, out, p) in enumerate(zip(example.conversations, outcomes, parsed, strict=True)):
        failures += [
            f"(c) connection {i}: {line}"
            for line in _check_conversation(conv, out, p, seen, log, missing)
        ]
    return failures


def _check_upstream_request(
    req: UpRequest,
    units: dict[str, Unit],
    example: Example,
    log: AccessLog,
    missing: set[str],
    consumer: str,
    case_insensitive: bool,
) -> list[str]:
    f: list[str] = []
    where = f"upstream conn {req.conn} {req.method} {req.target[:80]!r}"
    rid_values = req.values("x-request-id")
    if req.complete:
        f += [f"(a) {where}: {p}" for p in head_problems(req.raw_head)]
    if req.marker in example.smuggled:
        f.append(f"(a) {where}: a request smuggled inside a body reached the upstream")
    entry = log.entries.get(rid_values[0]) if len(rid_values) == 1 else None
    if req.complete:
        if entry is None:
            f.append(
                f"(a) {where}: no access-log entry for request id {rid_values} "
                f"(missing {sorted(missing)[:3]})"
            )
        else:
            if entry["method"] != req.method and not (
                entry["method"] == "HEAD" and req.method == "GET"
            ):
                f.append(f"(a) {where}: logged as {entry['method']}")
            if marker_of(entry["path"]) != req.marker:
                f.append(f"(a) {where}: logged for another path {entry['path'][:80]!r}")
            if entry.get("bytes_in") != len(req.body):
                f.append(
                    f"(a) {where}: upstream body {len(req.body)} bytes, the gateway read "
                    f"{entry.get('bytes_in')} ({bytes(req.body[:80])!r})"
                )
    unit = units.get(req.marker or "")
    identity = [(n, v) for n, v in req.headers if n.replace("_", "-").startswith(IDENTITY)]
    authenticated = entry is not None and entry.get("consumer") == consumer
    if is_protected(req.target, case_insensitive):
        if unit is None or not unit.token or not authenticated:
            f.append(f"(b) {where}: reached the protected path without the valid token on it")
        if req.values("x-consumer-username") != [consumer]:
            f.append(
                f"(b) {where}: protected request with X-Consumer-Username "
                f"{req.values('x-consumer-username')}"
            )
    if identity:
        if not authenticated or unit is None or not unit.token:
            f.append(f"(b) {where}: identity headers {identity} on a request without the token")
        forged = [(n, v) for n, v in identity if v in ("admin", "forged", "false") or "0000" in v]
        if forged:
            f.append(f"(b) {where}: forged identity headers reached the upstream: {forged}")
    return f


def _check_conversation(
    conv: Conversation,
    out: Outcome,
    p: Parsed,
    seen: dict[str, UpRequest],
    log: AccessLog,
    missing: set[str],
) -> list[str]:
    f: list[str] = []
    if answers.POISON in out.data:
        f.append(
            "bytes of a second upstream answer reached the client: "
            f"{_around(out.data, answers.POISON)!r}"
        )
    if p.error:
        f.append(f"the answer does not parse: {p.error}; received {out.data[-300:]!r}")
    if p.extra:
        f.append(f"bytes after the last response: {p.extra[:200]!r}")
    units = conv.units
    ended_at: int | None = None
    for j, resp in enumerate(p.responses):
        unit = units[j]
        tag = f"response {j} to {unit.marker} ({unit.note or 'plain'}), status {resp.status}"
        rid = [v.decode("latin-1") for v in resp.header(b"x-request-id")]
        if ended_at is not None:
            f.append(
                f"{tag}: answered after the request {units[ended_at].marker} "
                "that ends the connection"
            )
        if rid:
            entry = log.entries.get(rid[0])
            if entry is None:
                f.append(f"{tag}: request id {rid[0]} not in the access log")
            elif marker_of(entry["path"]) != unit.marker:
                f.append(
                    f"{tag}: carries the answer to {entry['path'][:80]!r}, not to {unit.marker}"
                )
            up = seen.get(unit.marker)
            if up is not None and up.values("x-request-id") != rid:
                f.append(
                    f"{tag}: the upstream got request id {up.values('x-request-id')}, "
                    f"the client {rid}"
                )
        elif resp.status not in REFUSALS or not (p.closing and j == len(p.responses) - 1):
            f.append(f"{tag}: an answer without a request id that does not end the connection")
        if (resp.status == 204 or resp.status < 200) and resp.header(b"content-length"):
            f.append(f"{tag}: Content-Length {resp.header(b'content-length')} on a {resp.status}")
        for status, headers in resp.interim:
            if any(n == b"content-length" for n, _ in headers):
                f.append(f"{tag}: Content-Length on an interim {status}")
        # A body found broken after an upstream answered early (before reading it) can only
        # end the connection: that answer stands.
        refused = unit.expect == "head_invalid" or (
            unit.expect == "body_invalid" and not unit.early
        )
        if refused and resp.status < 400:
            f.append(f"{tag}: a request that must be refused was answered {resp.status}")
        if unit.expect in ("closes", "body_invalid", "stall") and ended_at is None:
            ended_at = j
        if unit.marker in seen and resp.status < 500 and rid:
            f += _check_relayed(tag, unit, resp)
    n = len(p.responses)
    if n < len(units):
        first = units[n]
        waiting = out.timed_out and not out.eof and not (p.closing or ended_at is not None)
        if waiting and not any(u.expect == "stall" for u in units[n:]):
            f.append(
                f"no answer to {first.marker} ({first.note or 'plain'}) within the bound "
                "and the connection stays open"
            )
        for k, u in enumerate(units[n:], start=n):
            if u.marker in seen and not (k == n and p.partial) and u.expect != "stall":
                f.append(
                    f"{u.marker} ({u.note or 'plain'}) went upstream complete but got no "
                    f"answer (client saw {out.data[-200:]!r})"
                )
    return f


def _check_relayed(tag: str, unit: Unit, resp: Resp) -> list[str]:
    """A relayed answer: the upstream's own, not anything its broken bytes made of it."""
    kind = answers.KINDS.get(unit.answer, "exact")
    if unit.method == "HEAD" and unit.answer in answers.BODY_ONLY_FAULTS:
        kind = "exact-or-error"  # the head is good; the broken body must end the connection
    expected = b"" if unit.method == "HEAD" else answers.body_of(unit.marker)
    if kind == "nobody":
        if resp.body:
            return [f"{tag}: a body on a no-body answer: {resp.body[:80]!r}"]
        return []
    if kind == "error" and resp.status < 500:
        return [f"{tag}: a broken upstream answer ({unit.answer}) was relayed as {resp.status}"]
    if resp.status == 200 and (resp.body != expected or resp.reason != b"OK"):
        return [
            f"{tag}: relayed {resp.reason!r} {resp.body[:120]!r}, "
            f"the upstream said OK {expected!r} ({unit.answer})"
        ]
    return []


def _around(data: bytes, needle: bytes) -> bytes:
    at = data.find(needle)
    return data[max(0, at - 200) : at + 60]
