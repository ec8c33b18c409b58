"""Everything the fuzzer found, as explicit examples in minimal bytes, run on every
`make test`. Found against 7343301 (before the issue 12 fixes); each names its finding."""

from __future__ import annotations

from tests.fuzz.model import Conversation, Example, Unit

H = b"Host: fuzz.example\r\n"
TOKEN = b"Authorization: Bearer @TOKEN@\r\n"


def _u(
    marker: str,
    method: str,
    raw: bytes,
    expect: str = "valid",
    *,
    answer: str = "normal",
    early: bool = False,
    token: bool = False,
) -> Unit:
    return Unit(
        marker,
        method,
        raw,
        marker.startswith("p"),
        token,
        expect=expect,
        answer=answer,
        early=early,
    )


def _get(marker: str, path: str = "/app/", extra: bytes = b"") -> bytes:
    return f"GET {path}{marker} HTTP/1.1\r\n".encode() + H + extra + b"\r\n"


def _one(*units: Unit, pipelined: bool = True) -> Conversation:
    return Conversation(units, pipelined=pipelined)


CASES: list[tuple[str, Example]] = [
    # 1. CL.0 desync: an Upgrade request's Content-Length forwarded with no body; the
    #    upstream answers early, the connection is pooled, and the next client's head
    #    becomes its body (then the rest parses as a request nobody logged).
    (
        "cl0 via upgrade and content-length",
        Example(
            (
                _one(
                    _u(
                        "m1x",
                        "GET",
                        _get(
                            "m1x",
                            extra=b"Connection: Upgrade\r\nUpgrade: x\r\nContent-Length: 42\r\n",
                        ),
                        "closes",
                        early=True,
                    )
                ),
                _one(_u("m2x", "GET", _get("m2x"))),
            )
        ),
    ),
    (
        "cl0 via connect and content-length",
        Example(
            (
                _one(
                    _u(
                        "m1x",
                        "CONNECT",
                        b"CONNECT /app/m1x HTTP/1.1\r\n" + H + b"Content-Length: 42\r\n\r\n",
                        "closes",
                        early=True,
                    )
                ),
                _one(_u("m2x", "GET", _get("m2x"))),
            )
        ),
    ),
    # 3. chunked trailers are not bounded by the head limits (still so after f1ff822 when
    #    the whole trailer section arrives in one read: only reads that leave the body
    #    incomplete are counted)
    (
        "trailer over the header limit",
        Example(
            (
                _one(
                    _u(
                        "m1x",
                        "POST",
                        b"POST /app/m1x HTTP/1.1\r\n"
                        + H
                        + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-Trailer: "
                        + b"a" * 40_000
                        + b"\r\n\r\n",
                        "body_invalid",
                    )
                ),
            )
        ),
    ),
    # 4. a second upstream response in the same segment merges into the first
    (
        "extra upstream response",
        Example(
            (
                _one(
                    _u("m1x", "GET", _get("m1x"), answer="extra_response"),
                    _u("m2x", "GET", _get("m2x")),
                ),
            )
        ),
    ),
    # 5. route-prefix bypass: spellings a lenient backend reads as the protected path
    *[
        (f"prefix bypass {path}", Example((_one(_u("m1x", "GET", _get("m1x", path))),)))
        for path in (
            "/app/admin#/",
            "/app//admin/",
            "/app/admin;jsessionid=1/",
            "/app/admin%3B/",
            "/app/admin;/",
        )
    ],
    # 8. a pipelined request the parser rejects kills the answer to the forwarded one
    (
        "parse error behind a forwarded request",
        Example(
            (
                _one(
                    _u("m1x", "GET", _get("m1x"), answer="two_cl"),
                    _u(
                        "m2x",
                        "POST",
                        b"POST /app/m2x HTTP/1.1\r\n"
                        + H
                        + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n",
                        "body_invalid",
                    ),
                ),
            )
        ),
    ),
    # 9. a 204 leaves with the upstream's Content-Length
    (
        "204 with content-length",
        Example((_one(_u("m1x", "GET", _get("m1x"), answer="no_content_with_body")),)),
    ),
    # also found: duplicate and missing Host are accepted (RFC 9112 3.2: 400)
    ("duplicate host", Example((_one(_u("m1x", "GET", _get("m1x", extra=H), "head_invalid")),))),
    (
        "conflicting hosts",
        Example(
            (_one(_u("m1x", "GET", _get("m1x", extra=b"Host: other.example\r\n"), "head_invalid")),)
        ),
    ),
    (
        "missing host",
        Example((_one(_u("m1x", "GET", b"GET /app/m1x HTTP/1.1\r\n\r\n", "head_invalid")),)),
    ),
    # also found: the protocol's fixed 400 carries a body even in answer to HEAD
    (
        "400 to head has no body",
        Example(
            (
                _one(
                    _u(
                        "m1x",
                        "HEAD",
                        b"HEAD /app/m1x HTTP/1.1\r\n" + H + b"Content-Length: 0, 1\r\n\r\n",
                        "head_invalid",
                    )
                ),
            )
        ),
    ),
    # found after 290a01e: a refused head pipelined behind a good request in the same read is
    # answered 400 in the good request's place; the good request gets no answer of its own
    (
        "refusal answered in place of the request before it",
        Example(
            (
                _one(
                    _u("m1x", "HEAD", b"HEAD /app/m1x HTTP/1.1\r\n" + H + b"\r\n"),
                    _u("m2x", "GET", _get("m2x", extra=H), "head_invalid"),
                ),
            )
        ),
    ),
    # found by the long run after feb0456, in the oracle: trailers over the limit behind an
    # upstream that answers before reading the body; that early answer stands (the body's
    # refusal can only end the connection), and the upstream never gets the request whole
    (
        "oversized trailer behind an early answer",
        Example(
            (
                _one(
                    _u(
                        "m1x",
                        "GET",
                        b"GET /app/m1x HTTP/1.1\r\n"
                        + H
                        + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-Trailer: "
                        + b"a" * 40_000
                        + b"\r\n\r\n",
                        "body_invalid",
                        answer="close_delimited",
                        early=True,
                    ),
                    _u("m2x", "GET", _get("m2x")),
                ),
            )
        ),
    ),
    # found by the long run on 75a5160: an answer the upstream cut short aborts the client
    # connection, yet the request pipelined behind it was started (on a pooled connection, at
    # once) and went upstream, its answer undeliverable
    (
        "request pipelined behind a cut answer",
        Example(
            (
                _one(
                    _u("m2x", "GET", _get("m2x", extra=TOKEN), token=True),
                    _u(
                        "m3x",
                        "GET",
                        _get("m3x", "/app/admin/", TOKEN + b"Transfer-Encoding: chunked\r\n")
                        + b"0\r\nX-Trailer: 1\r\n\r\n",
                        answer="cl_long_close",
                        token=True,
                    ),
                    _u(
                        "m4x",
                        "GET",
                        _get("m4x", extra=TOKEN + b"Content-Length: 5\r\n") + b"hello",
                        answer="chunk_cut_close",
                        token=True,
                    ),
                    _u("m5x", "POST", b"POST /app/m5x HTTP/1.1\r\n" + H + b"\r\n"),
                ),
            )
        ),
    ),
    # found by the long run on 2d53fad: after an early answer the upload goes on while the
    # answer is relayed, but the access log counted the body as it stood when the answer
    # came, so the upstream had more body bytes than the gateway said it read
    (
        "body counted before an early answer's upload ended",
        Example(
            (
                Conversation(
                    (
                        _u(
                            "m1x",
                            "POST",
                            b"POST /app/m1x HTTP/1.1\r\n"
                            + H
                            + TOKEN
                            + b"Content-Length: 40\r\n\r\n"
                            + b"b" * 40,
                            answer="split",
                            early=True,
                            token=True,
                        ),
                    ),
                    pipelined=True,
                    cuts=(139, 149, 159, 169),  # the head is 133 bytes with the token in
                    pause=0.001,
                ),
            )
        ),
    ),
    # found by the long run on 9ece20b (and present before it): an HTTP/1.0 client gets an
    # answer of unknown length ended by the close, so a chunked answer the upstream cut off
    # after its last chunk reached it as a complete 200
    (
        "a cut chunked answer relayed whole to an HTTP/1.0 client",
        Example(
            (
                _one(
                    _u(
                        "m1x",
                        "POST",
                        b"POST /app/m1x HTTP/1.0\r\n" + H + TOKEN + b"Content-Length: 0\r\n\r\n",
                        "closes",
                        answer="chunk_cut_close",
                        token=True,
                    ),
                ),
            )
        ),
    ),
]
