"""Upstream response streams, scripted per request: the good ones, and the broken ones a
compromised or confused backend could send. Every byte a broken answer adds beyond its first
complete response carries POISON, which must never reach a client."""

from __future__ import annotations

from tests.fuzz.upstream import Answer

POISON = b"POISON"


def body_of(marker: str | None) -> bytes:
    """The body a good answer carries: it names the request it answers."""
    return b"ok " + (marker or "-").encode()


def _head(status: str, *lines: str) -> bytes:
    return (
        "HTTP/1.1 " + status + "\r\n" + "".join(f"{line}\r\n" for line in lines) + "\r\n"
    ).encode()


def _normal(method: str, marker: str | None) -> bytes:
    body = body_of(marker)
    head = _head("200 OK", f"Content-Length: {len(body)}", "Content-Type: text/plain")
    return head if method == "HEAD" else head + body


def _chunked(method: str, marker: str | None) -> bytes:
    body = body_of(marker)
    head = _head("200 OK", "Transfer-Encoding: chunked", "Content-Type: text/plain")
    if method == "HEAD":
        return head
    return head + b"%x\r\n%b\r\n%x;ext=1\r\n%b\r\n0\r\n\r\n" % (
        3,
        body[:3],
        len(body) - 3,
        body[3:],
    )


_EXTRA = _head("200 OK", "Content-Length: 13", "X-Poison: 1") + POISON + b" extra!"

# kind -> (method, marker) -> (bytes, close after). The classes the client may see are in
# EXPECT: "exact" (the 200 with exactly the body above), "exact-or-error" (that, or a 502,
# or an abort), "error" (a 5xx from the gateway or an abort), "nobody" (a 204/304).
KINDS: dict[str, str] = {
    "normal": "exact",
    "chunked": "exact",
    "close_delimited": "exact",
    "interim_before": "exact",
    "split": "exact",
    "extra_response": "exact-or-error",
    "interim_after": "exact-or-error",
    "cl_short": "exact-or-error",
    "head_with_body": "exact-or-error",
    "chunked_then_junk": "exact-or-error",
    "two_cl": "error",
    "cl_long_close": "error",
    "bad_chunk": "error",
    "chunk_cut_close": "error",
    "garbage": "error",
    "switching": "error",
    "close_silently": "error",
    "cl_and_te": "exact-or-error",
    "no_content": "nobody",
    "no_content_with_body": "nobody",
    "not_modified_with_body": "nobody",
}

# faults only in the body: to a HEAD the head is a good answer
BODY_ONLY_FAULTS = frozenset({"bad_chunk", "cl_long_close", "chunk_cut_close"})


def answer(kind: str, method: str, marker: str | None, *, early: bool = False) -> Answer:
    """The scripted bytes of `kind` for a request."""
    good = _normal(method, marker)
    body = body_of(marker)
    close = False
    segments: tuple[bytes, ...]
    if kind == "normal":
        segments = (good,)
    elif kind == "chunked":
        segments = (_chunked(method, marker),)
    elif kind == "close_delimited":
        head = _head("200 OK", "Content-Type: text/plain")
        segments = (head if method == "HEAD" else head + body,)
        close = True
    elif kind == "interim_before":
        segments = (
            _head("100 Continue") + _head("103 Early Hints", "Link: </a>; rel=preload") + good,
        )
    elif kind == "split":
        cut = [good[:5], good[5:17], good[17:-2], good[-2:]]
        segments = tuple(s for s in cut if s)
    elif kind == "extra_response":
        segments = (good + _EXTRA,)
    elif kind == "interim_after":
        segments = (good + _head("100 Continue", "X-Poison: " + POISON.decode()),)
    elif kind == "cl_short":
        head = _head("200 OK", f"Content-Length: {len(body)}")
        segments = ((head if method == "HEAD" else head + body) + POISON + b"\r\n\r\n",)
    elif kind == "head_with_body":
        head = _head("200 OK", f"Content-Length: {len(body)}")
        segments = (head + body + POISON,) if method == "HEAD" else (good,)
    elif kind == "chunked_then_junk":
        segments = (_chunked(method, marker) + POISON + b"\r\n",)
    elif kind == "two_cl":
        segments = (
            _head("200 OK", f"Content-Length: {len(body)}", f"Content-Length: {len(body) + 6}")
            + body
            + POISON,
        )
    elif kind == "cl_long_close":
        segments = (_head("200 OK", f"Content-Length: {len(body) + 100}") + body,)
        close = True
    elif kind == "bad_chunk":
        segments = (
            _head("200 OK", "Transfer-Encoding: chunked") + b"zz\r\n" + POISON + b"\r\n0\r\n\r\n",
        )
    elif kind == "chunk_cut_close":
        segments = (
            _head("200 OK", "Transfer-Encoding: chunked") + b"%x\r\n%b\r\n" % (len(body), body),
        )
        close = True
    elif kind == "garbage":
        segments = (POISON + b" not http at all\r\n\r\n",)
    elif kind == "switching":
        segments = (
            _head("101 Switching Protocols", "Upgrade: websocket", "Connection: Upgrade") + POISON,
        )
    elif kind == "close_silently":
        segments = ()
        close = True
    elif kind == "cl_and_te":
        segments = (
            _head("200 OK", "Content-Length: 3", "Transfer-Encoding: chunked")
            + b"%x\r\n%b\r\n0\r\n\r\n" % (len(body), body),
        )
    elif kind == "no_content":
        segments = (_head("204 No Content"),)
    elif kind == "no_content_with_body":
        segments = (_head("204 No Content", "Content-Length: 7") + POISON + b"!",)
    elif kind == "not_modified_with_body":
        segments = (_head("304 Not Modified", "Content-Length: 7") + POISON + b"!",)
    else:
        raise ValueError(kind)
    return Answer(segments, early=early, close=close, pause=0.002 if kind == "split" else 0.0)
