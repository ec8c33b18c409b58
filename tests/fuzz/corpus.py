"""Public request-smuggling payload families as explicit examples: PortSwigger's desync
research (CL.TE, TE.CL, the TE.TE obfuscations, CL.0 on Upgrade/CONNECT) and the kinds of
parser discrepancies HTTP Garden reports (bare LF, NUL, chunk-line oddities, trailers).
Each is rewritten for this gateway's routes: the smuggled part aims at the protected route
with a forged identity, and a second connection follows to catch a poisoned upstream."""

from __future__ import annotations

from tests.fuzz.model import Conversation, Example, Unit
from tests.fuzz.strategies import smuggled_request

HOST = b"Host: fuzz.example\r\n"
SMUGGLED = smuggled_request("m901x")


def _unit(
    marker: str,
    raw: bytes,
    expect: str,
    note: str,
    *,
    method: str = "POST",
    answer: str = "normal",
    early: bool = False,
) -> Unit:
    return Unit(
        marker, method, raw, False, False, expect=expect, answer=answer, early=early, note=note
    )


def _follow(marker: str = "m2x") -> Conversation:
    """A plain request on a new connection: it must get its own answer."""
    raw = f"GET /app/{marker} HTTP/1.1\r\n".encode() + HOST + b"\r\n"
    return Conversation((_unit(marker, raw, "valid", "follow-up", method="GET"),))


def _case(
    name: str, raw: bytes, expect: str, *, method: str = "POST", early: bool = False
) -> tuple[str, Example]:
    first = Conversation(
        (_unit("m1x", raw, expect, name, method=method, early=early),), pipelined=True
    )
    return name, Example((first, _follow()), ("m901x",))


def _post(headers: bytes, body: bytes) -> bytes:
    return b"POST /app/m1x HTTP/1.1\r\n" + HOST + headers + b"\r\n" + body


_CHUNKED_SMUGGLE = b"0\r\n\r\n" + SMUGGLED
_TE_TE = {
    "te-te xchunked": b"Transfer-Encoding: xchunked\r\n",
    "te-te space before colon": b"Transfer-Encoding : chunked\r\n",
    "te-te second te x": b"Transfer-Encoding: chunked\r\nTransfer-Encoding: x\r\n",
    "te-te tab": b"Transfer-Encoding:\tchunked\r\n",
    "te-te leading space line": b"X-A: 1\r\n Transfer-Encoding: chunked\r\n",
    "te-te bare lf before": b"X: X\nTransfer-Encoding: chunked\r\n",
    "te-te lf before colon": b"Transfer-Encoding\n: chunked\r\n",
    "te-te quoted": b'Transfer-Encoding: "chunked"\r\n',
    "te-te vertical tab": b"Transfer-Encoding:\x0bchunked\r\n",
    "te-te comma": b"Transfer-Encoding: chunked, \r\n",
    "te-te identity then chunked": b"Transfer-Encoding: identity, chunked\r\n",
}
_TE_TE_EXPECT = {
    "te-te tab": "closes",
    "te-te leading space line": "closes",
    "te-te bare lf before": "closes",
    "te-te identity then chunked": "closes",
}

CASES: list[tuple[str, Example]] = [
    _case(
        "cl.te",
        _post(
            b"Content-Length: %d\r\nTransfer-Encoding: chunked\r\n" % len(_CHUNKED_SMUGGLE),
            _CHUNKED_SMUGGLE,
        ),
        "closes",
    ),
    _case(
        "te.cl",
        _post(
            b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n",
            b"%x\r\n%b\r\n0\r\n\r\n" % (len(SMUGGLED), SMUGGLED),
        ),
        "closes",
    ),
    *[
        _case(
            name,
            _post(te + b"Content-Length: %d\r\n" % len(_CHUNKED_SMUGGLE), _CHUNKED_SMUGGLE),
            _TE_TE_EXPECT.get(name, "head_invalid"),
        )
        for name, te in _TE_TE.items()
    ],
    _case(
        "two content-lengths",
        _post(b"Content-Length: 0\r\nContent-Length: %d\r\n" % len(SMUGGLED), SMUGGLED),
        "head_invalid",
    ),
    _case(
        "cl.0 on upgrade",
        b"GET /app/m1x HTTP/1.1\r\n"
        + HOST
        + b"Connection: Upgrade\r\nUpgrade: x\r\nContent-Length: %d\r\n\r\n" % len(SMUGGLED),
        "closes",
        method="GET",
        early=True,
    ),
    _case(
        "cl.0 on upgrade with body",
        b"GET /app/m1x HTTP/1.1\r\n"
        + HOST
        + b"Connection: Upgrade\r\nUpgrade: websocket\r\nContent-Length: %d\r\n\r\n" % len(SMUGGLED)
        + SMUGGLED,
        "closes",
        method="GET",
        early=True,
    ),
    _case(
        "cl.0 on connect",
        b"CONNECT /app/m1x HTTP/1.1\r\n" + HOST + b"Content-Length: 40\r\n\r\n",
        "closes",
        method="CONNECT",
        early=True,
    ),
    _case(
        "h2c upgrade",
        b"GET /app/m1x HTTP/1.1\r\n"
        + HOST
        + b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
        + b"HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n",
        "closes",
        method="GET",
    ),
    _case(
        "bad chunk size hex prefix",
        _post(b"Transfer-Encoding: chunked\r\n", b"0x5\r\nhello\r\n0\r\n\r\n"),
        "body_invalid",
    ),
    _case(
        "chunk size overflow",
        _post(b"Transfer-Encoding: chunked\r\n", b"1" + b"0" * 16 + b"5\r\nhello\r\n0\r\n\r\n"),
        "body_invalid",
    ),
    _case(
        "chunk ext with bare lf",
        _post(b"Transfer-Encoding: chunked\r\n", b"5;a\nhello\r\n0\r\n\r\n"),
        "body_invalid",
    ),
    _case(
        "chunk data longer than size",
        _post(b"Transfer-Encoding: chunked\r\n", b"3\r\nhello\r\n0\r\n\r\n"),
        "body_invalid",
    ),
    _case(
        "last chunk bare lf",
        _post(b"Transfer-Encoding: chunked\r\n", b"5\r\nhello\r\n0\n\r\n"),
        "either",
    ),
    _case(
        "trailer content-length",
        _post(b"Transfer-Encoding: chunked\r\n", b"5\r\nhello\r\n0\r\nContent-Length: 99\r\n\r\n"),
        "valid",
    ),
    _case(
        "trailer forged identity",
        _post(
            b"Transfer-Encoding: chunked\r\n",
            b"5\r\nhello\r\n0\r\nX-Consumer-Username: admin\r\n\r\n",
        ),
        "valid",
    ),
    _case("nul in method", b"PO\x00ST /app/m1x HTTP/1.1\r\n" + HOST + b"\r\n", "head_invalid"),
    _case(
        "two spaces in request line",
        b"GET  /app/m1x HTTP/1.1\r\n" + HOST + b"\r\n",
        "either",
        method="GET",
    ),
    _case(
        "version 1.10", b"GET /app/m1x HTTP/1.10\r\n" + HOST + b"\r\n", "head_invalid", method="GET"
    ),
    _case(
        "lower-case version",
        b"GET /app/m1x http/1.1\r\n" + HOST + b"\r\n",
        "head_invalid",
        method="GET",
    ),
    _case(
        "leading empty line",
        b"\r\nGET /app/m1x HTTP/1.1\r\n" + HOST + b"\r\n",
        "either",
        method="GET",
    ),
    _case(
        "duplicate host",
        b"GET /app/m1x HTTP/1.1\r\n" + HOST + HOST + b"\r\n",
        "head_invalid",
        method="GET",
    ),
    _case("missing host", b"GET /app/m1x HTTP/1.1\r\n\r\n", "head_invalid", method="GET"),
    _case(
        "space before colon",
        b"GET /app/m1x HTTP/1.1\r\n" + HOST + b"X-A : 1\r\n\r\n",
        "head_invalid",
        method="GET",
    ),
    _case(
        "cl with plus", _post(b"Content-Length: +%d\r\n" % len(SMUGGLED), SMUGGLED), "head_invalid"
    ),
    _case(
        "fragment bypass",
        b"GET /app/admin#/m1x HTTP/1.1\r\n" + HOST + b"\r\n",
        "either",
        method="GET",
    ),
    _case(
        "double slash bypass",
        b"GET /app//admin/m1x HTTP/1.1\r\n" + HOST + b"\r\n",
        "either",
        method="GET",
    ),
    _case(
        "path parameter bypass",
        b"GET /app/admin;jsessionid=1/m1x HTTP/1.1\r\n" + HOST + b"\r\n",
        "either",
        method="GET",
    ),
    _case(
        "escaped semicolon bypass",
        b"GET /app/admin%3B/m1x HTTP/1.1\r\n" + HOST + b"\r\n",
        "either",
        method="GET",
    ),
    _case(
        "get with body smuggle",
        b"GET /app/m1x HTTP/1.1\r\n"
        + HOST
        + b"Content-Length: %d\r\n\r\n" % len(SMUGGLED)
        + SMUGGLED,
        "valid",
        method="GET",
        early=True,
    ),
]


def _answer_case(kind: str, method: str = "GET", early: bool = False) -> tuple[str, Example]:
    raw = f"{method} /app/m1x HTTP/1.1\r\n".encode() + HOST + b"\r\n"
    second = b"GET /app/m2x HTTP/1.1\r\n" + HOST + b"\r\n"
    first = Conversation(
        (
            _unit("m1x", raw, "valid", f"upstream {kind}", method=method, answer=kind, early=early),
            _unit("m2x", second, "valid", "same connection", method="GET"),
        )
    )
    return f"answer {kind} to {method}", Example((first, _follow("m3x")))


ANSWER_CASES: list[tuple[str, Example]] = [
    _answer_case(kind, method)
    for kind in (
        "extra_response",
        "interim_after",
        "cl_short",
        "two_cl",
        "bad_chunk",
        "no_content_with_body",
        "not_modified_with_body",
        "switching",
        "cl_and_te",
        "chunked_then_junk",
    )
    for method in ("GET",)
] + [_answer_case("head_with_body", "HEAD"), _answer_case("normal", "HEAD")]
