"""Hypothesis strategies for request byte streams and the upstream answers they get.

A request starts valid (method, a target under the public or the protected route, headers,
a body framed by Content-Length or chunked) and may take one head mutation and one framing
mutation; each mutation says what RFC 9112 lets the gateway do with the result (model.ORDER).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from hypothesis import strategies as st

from tests.fuzz.answers import KINDS
from tests.fuzz.model import Conversation, Example, Unit, stronger

TOKEN_PLACEHOLDER = b"@TOKEN@"  # replaced by the real bearer token when sent
# In a form body: as long as the token (token_urlsafe(32)), so that the framing stays right.
FORM_TOKEN_PLACEHOLDER = b"@FORM-TOKEN@".ljust(43, b"-")
FORM = b"Content-Type: application/x-www-form-urlencoded"
FORM_METHODS = ("POST", "PUT", "PATCH")
PUBLIC = "/app/"
PROTECTED = "/app/admin/"
FORGED = (
    b"X-Consumer-Username: admin",
    b"X-Consumer-ID: 00000000-0000-0000-0000-000000000000",
    b"X-Authenticated-Userid: admin",
    b"X-Authenticated-Scope: admin",
    b"X-Credential-Identifier: forged",
    b"X-Anonymous-Consumer: false",
    b"X_Consumer_Username: admin",
)


@dataclass
class Draft:
    """A request under construction."""

    method: str
    target: str
    version: bytes = b"HTTP/1.1"
    host: list[bytes] = field(default_factory=lambda: [b"Host: fuzz.example"])
    lines: list[bytes] = field(default_factory=list)
    framing: list[bytes] = field(default_factory=list)  # Content-Length / Transfer-Encoding lines
    body: bytes = b""  # as sent on the wire (already chunk-framed if chunked)
    eol: bytes = b"\r\n"
    eols: dict[int, bytes] = field(default_factory=dict)  # per header line index
    expect: str = "valid"
    notes: list[str] = field(default_factory=list)

    def mark(self, expect: str, note: str) -> None:
        self.expect = stronger(self.expect, expect)
        self.notes.append(note)

    def encode(self) -> bytes:
        head = [f"{self.method} {self.target} ".encode() + self.version]
        head += self.host + self.lines + self.framing
        out = [head[0] + self.eol]
        for i, line in enumerate(head[1:]):
            out.append(line + self.eols.get(i, self.eol))
        out.append(self.eol)
        return b"".join(out) + self.body


def chunk(body: bytes, sizes: list[int], *, upper: bool = False, ext: bytes = b"") -> bytes:
    """`body` in chunks of the given sizes (the rest in one), then the last chunk."""
    out = []
    pos = 0
    for size in [*sizes, len(body)]:
        piece = body[pos : pos + size]
        if not piece:
            continue
        pos += len(piece)
        size_text = (b"%X" if upper else b"%x") % len(piece)
        out.append(size_text + ext + b"\r\n" + piece + b"\r\n")
        if pos >= len(body):
            break
    return b"".join(out) + b"0\r\n\r\n"


def smuggled_request(marker: str) -> bytes:
    """A request hidden in a body: aimed at the protected route, forging an identity."""
    return (
        f"GET {PROTECTED}{marker} HTTP/1.1\r\nHost: fuzz.example\r\n".encode()
        + b"\r\n".join(FORGED[:3])
        + b"\r\nX-Request-ID: smuggled\r\n\r\n"
    )


SUFFIXES = st.sampled_from(["", "/x", "/a/b", "?q=1", "/x?q=1&r=2", "/"])
METHODS = st.sampled_from(
    ["GET", "GET", "GET", "HEAD", "POST", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"]
)

# Spellings of the protected prefix that a lenient backend (Tomcat-like: `;` parameters
# stripped, `//` merged, `%` decoded, fragment dropped) reads as the protected path.
SPELLINGS = (
    "/app/admin/",
    "/app//admin/",
    "/app/admin;jsessionid=1/",
    "/app/admin%3B/",
    "/app/admin%3b/",
    "/app/ADMIN/",
    "/app/Admin/",
    "/app/%61dmin/",
    "/app/%2e/admin/",
    "/app/./admin/",
    "/app/x/../admin/",
    "/app/admin/./",
    "//app/admin/",
    "/app/admin#/",
    "/app/admin;/",
    "/app/admin%2f",
)


@st.composite
def target(draw: st.DrawFn, marker: str, protected: bool) -> tuple[str, str]:
    suffix = draw(SUFFIXES)
    if not protected:
        return f"{PUBLIC}{marker}{suffix}", ""
    spelling = draw(st.sampled_from(SPELLINGS)) if draw(st.integers(0, 3)) == 0 else PROTECTED
    fragment = draw(st.sampled_from(["", "", "", "#", "#frag", "#/x"]))
    if spelling == "/app/admin#/":
        return f"/app/admin#/{marker}{suffix}", "fragment in the prefix"
    note = "" if spelling == PROTECTED else f"spelling {spelling}"
    if fragment:
        note += f" fragment {fragment}"
    return f"{spelling}{marker}{suffix}{fragment}", note.strip()


def _body_bytes(draw: st.DrawFn, method: str, smuggle: str) -> bytes:
    kind = draw(st.sampled_from(["text", "request", "empty"]))
    if kind == "request":
        return smuggled_request(smuggle)
    if kind == "empty":
        return b""
    return draw(st.binary(min_size=1, max_size=40))


def _form_body(draw: st.DrawFn, smuggle: str) -> bytes:
    """A form body carrying the token (`accept_token_in_body` on the protected service)."""
    before = draw(st.sampled_from([b"", b"a=1&", b"&"]))
    after = draw(st.sampled_from([b"", b"&b=2", b"&", b"&r=" + smuggled_request(smuggle)]))
    return before + b"access_token=" + FORM_TOKEN_PLACEHOLDER + after


def _framing(draw: st.DrawFn, d: Draft, body: bytes) -> None:
    """A valid framing for `body`: Content-Length, chunked, or none (empty body)."""
    choice = draw(st.sampled_from(["cl", "cl", "chunked", "none"]))
    if choice == "none" or (not body and choice != "chunked"):
        if d.method in ("POST", "PUT", "PATCH") and draw(st.booleans()):
            d.framing = [b"Content-Length: 0"]
        return
    if choice == "cl":
        d.framing = [b"Content-Length: %d" % len(body)]
        d.body = body
        return
    sizes = draw(st.lists(st.integers(1, 16), max_size=4))
    upper = draw(st.booleans())
    ext = draw(st.sampled_from([b"", b"", b";a=1", b';name="v"', b";x"]))
    d.framing = [b"Transfer-Encoding: chunked"]
    d.body = chunk(body, sizes, upper=upper, ext=ext)
    if draw(st.integers(0, 4)) == 0:
        trailer = draw(st.sampled_from([b"X-Trailer: 1", FORGED[0], b"Content-Length: 5"]))
        d.body = d.body[:-2] + trailer + b"\r\n\r\n"
        d.notes.append("trailer")


# -- mutations: each changes a Draft and says what the rules let the gateway do ----------


def m_head(draw: st.DrawFn, d: Draft) -> None:
    """One mutation of the head."""
    what = draw(
        st.sampled_from(
            [
                "dup_header",
                "dup_host",
                "dup_host_other",
                "no_host",
                "fold",
                "space_colon",
                "bare_lf_all",
                "bare_lf_one",
                "forged_identity",
                "forged_request_id",
                "override",
                "connection_close",
                "http10",
                "bad_name",
                "nul_value",
                "bare_cr",
                "absolute_form",
                "long_header",
                "expect_continue",
                "tab_value",
            ]
        )
    )
    if what == "dup_header":
        d.lines += [b"Accept: */*", b"Accept: text/plain"]
        d.mark("valid", what)
    elif what == "dup_host":
        d.host = d.host * 2
        d.mark("head_invalid", what)  # RFC 9112 3.2: MUST 400
    elif what == "dup_host_other":
        d.host = [*d.host, b"Host: other.example"]
        d.mark("head_invalid", what)
    elif what == "no_host":
        d.host = []
        d.mark("head_invalid", what)
    elif what == "fold":
        d.lines += [b"X-Folded: a", b" b", b"\tc"]
        d.mark("either", what)  # 5.2: reject with 400 or unfold before forwarding
    elif what == "space_colon":
        d.lines.append(b"X-Spaced : 1")
        d.mark("head_invalid", what)  # 5.1: MUST 400
    elif what == "bare_lf_all":
        d.eol = b"\n"
        d.mark("either", what)  # 2.2: MAY recognize a single LF
    elif what == "bare_lf_one":
        d.lines.append(b"X-Lf: 1")
        d.eols[len(d.host) + len(d.lines) - 1] = b"\n"
        d.mark("either", what)
    elif what == "forged_identity":
        d.lines += list(draw(st.lists(st.sampled_from(FORGED), min_size=1, max_size=3)))
        d.mark("valid", what)
    elif what == "forged_request_id":
        d.lines.append(b"X-Request-ID: forged-id")
        d.mark("valid", what)
    elif what == "override":
        d.lines += [b"X-HTTP-Method-Override: DELETE", b"X-Original-URL: /app/admin/x"]
        d.mark("valid", what)
    elif what == "connection_close":
        d.lines.append(b"Connection: close")
        d.mark("closes", what)
    elif what == "http10":
        d.version = b"HTTP/1.0"
        d.mark("closes", what)
    elif what == "bad_name":
        d.lines.append(draw(st.sampled_from([b"X@Bad: 1", b"X\x7fBad: 1", b"X[1]: 1", b": empty"])))
        d.mark("head_invalid", what)
    elif what == "nul_value":
        d.lines.append(b"X-Nul: a\x00b")
        d.mark("head_invalid", what)
    elif what == "bare_cr":
        d.lines.append(b"X-Cr: a\rb")
        d.mark("either", what)  # 2.2: invalid, or replaced by SP before forwarding
    elif what == "absolute_form":
        d.target = "https://fuzz.example" + d.target
        d.mark("either", what)
    elif what == "long_header":
        d.lines.append(b"X-Long: " + b"a" * draw(st.sampled_from([4000, 33000])))
        d.mark("either", what)
    elif what == "expect_continue":
        d.lines.append(b"Expect: 100-continue")
        d.mark("valid", what)
    elif what == "tab_value":
        d.lines.append(b"X-Tab:\tv\t")
        d.mark("valid", what)


TE_EITHER = (b"\tchunked\t", b" chunked", b"chunked ", b"Chunked", b"CHUNKED")
TE_INVALID = (
    b"xchunked",
    b"chunked, identity",
    b"identity",
    b"chunked, chunked",
    b"chunk",
    b"chunked;q=1",
    b"\x0bchunked",
    b"chunked\x00",
    b'"chunked"',
)


def m_framing(draw: st.DrawFn, d: Draft, body: bytes) -> None:
    """One mutation of the body framing."""
    chunked = chunk(body, [3])
    what = draw(
        st.sampled_from(
            [
                "cl_te",
                "te_cl",
                "te_either",
                "te_invalid",
                "te_twice",
                "te_space_colon",
                "te_folded",
                "two_cl_differ",
                "two_cl_same",
                "cl_list_same",
                "cl_list_differ",
                "cl_bad_value",
                "cl_ows",
                "bad_chunk_size",
                "chunk_no_crlf",
                "chunk_ext_bad",
                "chunk_ext_long",
                "chunk_lf",
                "big_trailer",
                "trailer_no_end_stall",
                "cl_longer_stall",
                "upgrade",
                "upgrade_cl",
                "connect",
                "te_on_get",
            ]
        )
    )
    if what == "cl_te":
        n = draw(st.integers(0, len(chunked) + 8))
        d.framing = [b"Content-Length: %d" % n, b"Transfer-Encoding: chunked"]
        d.body = chunked
        d.mark("closes", what)  # 6.1: process as chunked or reject; close either way
    elif what == "te_cl":
        n = draw(st.integers(0, len(chunked) + 8))
        d.framing = [b"Transfer-Encoding: chunked", b"Content-Length: %d" % n]
        d.body = chunked
        d.mark("closes", what)
    elif what == "te_either":
        d.framing = [b"Transfer-Encoding:" + draw(st.sampled_from(TE_EITHER))]
        d.body = chunked
        d.mark("either", what)
    elif what == "te_invalid":
        d.framing = [b"Transfer-Encoding: " + draw(st.sampled_from(TE_INVALID))]
        d.body = chunked
        d.mark("head_invalid", what)  # 6.3: 400 (or 501) and close
    elif what == "te_twice":
        d.framing = [b"Transfer-Encoding: chunked", b"Transfer-Encoding: identity"]
        d.body = chunked
        d.mark("head_invalid", what)
    elif what == "te_space_colon":
        d.framing = [b"Transfer-Encoding : chunked"]
        d.body = chunked
        d.mark("head_invalid", what)
    elif what == "te_folded":
        d.framing = [b"Transfer-Encoding:", b" chunked"]
        d.body = chunked
        d.mark("either", what)
    elif what == "two_cl_differ":
        d.framing = [b"Content-Length: %d" % len(body), b"Content-Length: %d" % (len(body) + 1)]
        d.body = body
        d.mark("head_invalid", what)
    elif what == "two_cl_same":
        d.framing = [b"Content-Length: %d" % len(body)] * 2
        d.body = body
        d.mark("either", what)
    elif what == "cl_list_same":
        d.framing = [b"Content-Length: %d, %d" % (len(body), len(body))]
        d.body = body
        d.mark("either", what)
    elif what == "cl_list_differ":
        d.framing = [b"Content-Length: %d, %d" % (len(body), len(body) + 1)]
        d.body = body
        d.mark("head_invalid", what)
    elif what == "cl_bad_value":
        value = draw(st.sampled_from([b"+%d", b"0x%x", b"-%d", b"%d %d", b"%d.0", b"1%020d"]))
        count = value.count(b"%")
        d.framing = [b"Content-Length: " + value % ((len(body),) * count)]
        d.body = body
        d.mark("head_invalid", what)
    elif what == "cl_ows":
        d.framing = [b"Content-Length: \t%d \t" % len(body)]
        d.body = body
        d.mark("either", what)
    elif what == "bad_chunk_size":
        size = draw(st.sampled_from([b"zz", b"0x5", b"-5", b"ffffffffffffffffff5", b"5 5", b" 5"]))
        d.framing = [b"Transfer-Encoding: chunked"]
        d.body = size + b"\r\nhello\r\n0\r\n\r\n"
        d.mark("body_invalid", what)
    elif what == "chunk_no_crlf":
        d.framing = [b"Transfer-Encoding: chunked"]
        d.body = b"5\r\nhelloXX0\r\n\r\n"
        d.mark("body_invalid", what)
    elif what == "chunk_ext_bad":
        d.framing = [b"Transfer-Encoding: chunked"]
        d.body = b"5;\x00=1\r\nhello\r\n0\r\n\r\n"
        d.mark("body_invalid", what)
    elif what == "chunk_ext_long":
        d.framing = [b"Transfer-Encoding: chunked"]
        d.body = b"5;" + b"e" * draw(st.sampled_from([100, 40000])) + b"\r\nhello\r\n0\r\n\r\n"
        d.mark("either", what)
    elif what == "chunk_lf":
        d.framing = [b"Transfer-Encoding: chunked"]
        d.body = b"5\nhello\n0\n\n"
        d.mark("either", what)
    elif what == "big_trailer":
        trailer = draw(st.sampled_from([40_000, 300_000, 2_000_000]))
        d.framing = [b"Transfer-Encoding: chunked"]
        d.body = b"5\r\nhello\r\n0\r\nX-Trailer: " + b"a" * trailer + b"\r\n\r\n"
        d.mark("body_invalid", what)  # trailers count against the head limits
    elif what == "trailer_no_end_stall":
        d.framing = [b"Transfer-Encoding: chunked"]
        d.body = b"5\r\nhello\r\n0\r\nX-Trailer: 1\r\n"
        d.mark("stall", what)
    elif what == "cl_longer_stall":
        d.framing = [b"Content-Length: %d" % (len(body) + 10)]
        d.body = body
        d.mark("stall", what)
    elif what == "upgrade":
        d.lines += [b"Connection: Upgrade", b"Upgrade: websocket"]
        d.mark("closes", what)
    elif what == "upgrade_cl":
        d.lines += [
            b"Connection: Upgrade",
            b"Upgrade: " + draw(st.sampled_from([b"x", b"websocket", b"h2c"])),
        ]
        d.framing = [b"Content-Length: %d" % draw(st.integers(1, 300))]
        d.body = b""  # CL.0: nothing follows the head
        d.mark("closes", what)
    elif what == "connect":
        d.method = "CONNECT"
        d.mark("closes", what)
    elif what == "te_on_get":
        d.method = "GET"
        d.framing = [b"Transfer-Encoding: chunked"]
        d.body = chunked
        d.mark("valid", what)


@st.composite
def unit(draw: st.DrawFn, marker: str, smuggle: str) -> Unit:
    protected = draw(st.booleans())
    token = draw(st.integers(0, 3)) > 0 if protected else draw(st.integers(0, 7)) == 0
    method = draw(METHODS)
    path, note = draw(target(marker, protected))
    d = Draft(method, path)
    if note:
        d.notes.append(note)
    form = protected and method in FORM_METHODS and draw(st.integers(0, 2)) == 0
    in_body = form and token and draw(st.booleans())
    if form:
        d.lines.append(FORM)
    if token and not in_body:
        d.lines.append(b"Authorization: Bearer " + TOKEN_PLACEHOLDER)
    if in_body:
        body = _form_body(draw, smuggle)
        d.notes.append("token in the form body")
    elif method not in ("GET", "HEAD") or draw(st.integers(0, 5)) == 0:
        body = _body_bytes(draw, method, smuggle)
    else:
        body = b""
    _framing(draw, d, body)
    mutate = draw(st.integers(0, 9))
    if mutate in (1, 2, 3):
        m_head(draw, d)
    if mutate in (3, 4, 5, 6):
        m_framing(draw, d, body)
    answer = draw(st.sampled_from(sorted(KINDS))) if draw(st.integers(0, 2)) == 0 else "normal"
    early = draw(st.integers(0, 4)) == 0
    return Unit(
        marker,
        d.method,
        d.encode(),
        protected,
        token,
        expect=d.expect,
        answer=answer,
        early=early,
        note=", ".join(d.notes),
    )


@st.composite
def conversation(draw: st.DrawFn, first: int) -> Conversation:
    count = draw(st.integers(1, 4))
    units = []
    for i in range(count):
        u = draw(unit(f"m{first + i}x", f"m{900 + first + i}x"))
        units.append(u)
        if u.expect in ("stall",):
            break
    pipelined = draw(st.booleans())
    size = sum(len(u.raw) for u in units)
    cuts: tuple[int, ...] = ()
    if draw(st.integers(0, 2)) == 0 and size > 1:
        cuts = tuple(sorted(set(draw(st.lists(st.integers(1, size - 1), max_size=6)))))
    pause = draw(st.sampled_from([0.0, 0.0, 0.001, 0.003]))
    return Conversation(tuple(units), pipelined, cuts, pause)


@st.composite
def examples(draw: st.DrawFn) -> Example:
    convs = []
    first = 1
    for _ in range(draw(st.integers(1, 3))):
        conv = draw(conversation(first))
        convs.append(conv)
        first += len(conv.units)
    smuggled = tuple(f"m{900 + n}x" for n in range(1, first))
    return Example(tuple(convs), smuggled)


def with_answer(u: Unit, answer: str, *, early: bool = False) -> Unit:
    return replace(u, answer=answer, early=early)
