"""The server name (SNI) of a TLS ClientHello, read from the first bytes of a connection.

A listener shared by several streams chooses one by the name the client asks for before any
TLS is done: to terminate with that stream's certificate and client CA, or to pass the bytes
through untouched. The runtime peeks at the socket (the bytes stay queued for the TLS layer or
the upstream) and calls server_name on what it has, again with more until it has an answer.

Rule 1: three outcomes and no other. The host name (lower-cased ASCII, a trailing dot dropped),
None for a well-formed ClientHello without SNI, NEED_MORE while the bytes so far are a valid
prefix; anything else raises NotClientHello. No IndexError or struct.error escapes: every
length field is checked against what encloses it before it is used.
Rule 2: bounded. The records holding the ClientHello must end within MAX_HELLO_BYTES (one
full-size record and its header); a hello announced larger, or split into records that end
past it, is refused as soon as that is known, so NEED_MORE is never the answer for a prefix
that long and a peek buffer of MAX_HELLO_BYTES always suffices.
Rule 3: a ClientHello may be split over several handshake records (RFC 8446 §5.1); they are
joined. A record of another type before it ends, or an empty handshake record, is refused.
Rule 4: strict where the RFCs are (RFC 8446 §4.1.2, RFC 6066 §3): lengths fill exactly what
encloses them, one extension of each type, exactly one name in server_name and it of type
host_name (as OpenSSL, which the TLS layer uses, also accepts no other), a host name of
letters, digits, "-", "_" and "." at most 255 bytes long. A name that is not one would only
ever match the listener's default stream, and a client that sends it is not a TLS client this
gateway can serve.
Rule 5: a NotClientHello reason is a fixed phrase without data from the wire, so it can be a
metric label and a log field as it is.
"""

from __future__ import annotations

import enum
import re

MAX_HELLO_BYTES = 16384 + 5
MAX_HOST_NAME = 255  # OpenSSL's bound on an SNI host name

_RECORD_HEADER = 5
_MAX_FRAGMENT = 16384  # RFC 8446 §5.1: 2^14
_HANDSHAKE = b"\x16"  # the record content type handshake(22)
_CLIENT_HELLO = 1
_SERVER_NAME = 0
_HOST_NAME = 0
_MAX_SESSION_ID = 32
_HOST_CHARS = re.compile(rb"[A-Za-z0-9_.-]+")


class NeedMore(enum.Enum):
    """The answer while the bytes so far are the valid start of a ClientHello."""

    NEED_MORE = "need more bytes"


NEED_MORE = NeedMore.NEED_MORE


class NotClientHello(ValueError):
    """The bytes are not the start of a TLS ClientHello this gateway can route."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def server_name(data: bytes) -> str | NeedMore | None:
    """The SNI host name of the ClientHello that `data` starts with (Rule 1)."""
    hello = _client_hello(data)
    if hello is NEED_MORE:
        return NEED_MORE
    return _host_name(_extensions(hello))


class _Reader:
    """A cursor over a byte string that refuses to read past its end."""

    __slots__ = ("_data", "_pos")

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0

    def take(self, count: int, what: str) -> bytes:
        end = self._pos + count
        if end > len(self._data):
            raise NotClientHello(f"truncated {what}")
        chunk = self._data[self._pos : end]
        self._pos = end
        return chunk

    def integer(self, size: int, what: str) -> int:
        return int.from_bytes(self.take(size, what), "big")

    def vector(self, length_size: int, what: str) -> bytes:
        """A TLS vector: a big-endian length of `length_size` bytes, then that many bytes."""
        return self.take(self.integer(length_size, what), what)

    def at_end(self) -> bool:
        return self._pos == len(self._data)


def _client_hello(data: bytes) -> bytes | NeedMore:
    """The ClientHello body, joined from the handshake records it spans (Rules 2 and 3)."""
    fragments: list[bytes] = []
    have = 0
    needed: int | None = None  # 4 + the body length, once the handshake header is in
    offset = 0
    while needed is None or have < needed:
        if offset + _RECORD_HEADER >= MAX_HELLO_BYTES:  # no room left for one more byte
            raise NotClientHello("ClientHello too large")
        header = data[offset : offset + _RECORD_HEADER]
        _check_record_header(header)
        if len(header) < _RECORD_HEADER:
            return NEED_MORE
        length = int.from_bytes(header[3:5], "big")
        if length == 0 or length > _MAX_FRAGMENT:
            raise NotClientHello("bad record length")
        end = offset + _RECORD_HEADER + length
        if end > MAX_HELLO_BYTES:
            raise NotClientHello("ClientHello too large")
        fragment = data[offset + _RECORD_HEADER : end]
        fragments.append(fragment)
        have += len(fragment)
        if needed is None and have >= 4:
            needed = _handshake_length(b"".join(fragments)[:4])
        if len(fragment) < length:
            return NEED_MORE
        offset = end
    return b"".join(fragments)[4:needed]


def _check_record_header(header: bytes) -> None:
    """Refuse a record that is not a TLS handshake record, from as few bytes as are there."""
    if header[:1] not in (b"", _HANDSHAKE):
        raise NotClientHello("not a TLS handshake record")
    if len(header) >= 2 and header[1] != 3:
        raise NotClientHello("not a TLS record version")


def _handshake_length(header: bytes) -> int:
    """4 + the body length that a handshake message header announces, once it is known to
    be a ClientHello that can fit in MAX_HELLO_BYTES."""
    if header[0] != _CLIENT_HELLO:
        raise NotClientHello("handshake message is not a ClientHello")
    needed = 4 + int.from_bytes(header[1:4], "big")
    if needed > MAX_HELLO_BYTES - _RECORD_HEADER:
        raise NotClientHello("ClientHello too large")
    return needed


def _extensions(hello: bytes) -> dict[int, bytes]:
    """The extensions of a ClientHello body, by type (RFC 8446 §4.1.2; none before TLS 1.2
    is an empty dict)."""
    reader = _Reader(hello)
    if reader.integer(2, "client version") >> 8 != 3:
        raise NotClientHello("not a TLS client version")
    reader.take(32, "random")
    if len(reader.vector(1, "session id")) > _MAX_SESSION_ID:
        raise NotClientHello("bad session id")
    suites = reader.vector(2, "cipher suites")
    if not suites or len(suites) % 2:
        raise NotClientHello("bad cipher suites")
    if not reader.vector(1, "compression methods"):
        raise NotClientHello("bad compression methods")
    if reader.at_end():
        return {}
    block = _Reader(reader.vector(2, "extensions"))
    if not reader.at_end():
        raise NotClientHello("bytes after the extensions")
    found: dict[int, bytes] = {}
    while not block.at_end():
        kind = block.integer(2, "extension")
        body = block.vector(2, "extension")
        if kind in found:
            raise NotClientHello("duplicate extension")
        found[kind] = body
    return found


def _host_name(extensions: dict[int, bytes]) -> str | None:
    """The host name in a server_name extension (RFC 6066 §3), None without one (Rule 4)."""
    body = extensions.get(_SERVER_NAME)
    if body is None:
        return None
    outer = _Reader(body)
    names = _Reader(outer.vector(2, "server name list"))
    if not outer.at_end():
        raise NotClientHello("bad server name list")
    if names.integer(1, "server name type") != _HOST_NAME:
        raise NotClientHello("server name is not a host name")
    name = names.vector(2, "server name")
    if not names.at_end():
        raise NotClientHello("more than one server name")
    return _checked_host(name)


def _checked_host(name: bytes) -> str:
    if name.endswith(b"."):
        name = name[:-1]
    if (
        not name
        or len(name) > MAX_HOST_NAME
        or _HOST_CHARS.fullmatch(name) is None
        or b"" in name.split(b".")
    ):
        raise NotClientHello("bad server name")
    return name.decode("ascii").lower()
