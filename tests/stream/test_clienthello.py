"""SNI from a peeked ClientHello: real hellos from OpenSSL (through Python's ssl module), every
prefix of them, re-split records, hand-built malformed ones for each refusal, the size bound,
and random corruptions that must end in an answer or NotClientHello, never another error."""

from __future__ import annotations

import ssl
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgeauth.stream.clienthello import (
    MAX_HELLO_BYTES,
    NEED_MORE,
    NotClientHello,
    server_name,
)


def real_hello(
    hostname: str | None, maximum: ssl.TLSVersion = ssl.TLSVersion.MAXIMUM_SUPPORTED
) -> bytes:
    """The first flight of an OpenSSL client: what a do_handshake writes before it waits."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.maximum_version = maximum
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(incoming, outgoing, server_hostname=hostname)
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


def handshake_message(records: bytes) -> bytes:
    """The handshake bytes of a single-record flight (header dropped)."""
    assert records[0] == 22
    length = int.from_bytes(records[3:5], "big")
    assert len(records) == 5 + length, "expected one record"
    return records[5:]


def as_records(message: bytes, size: int, version: bytes = b"\x03\x01") -> bytes:
    """`message` as consecutive handshake records of at most `size` bytes each."""
    chunks = [message[i : i + size] for i in range(0, len(message), size)]
    return b"".join(b"\x16" + version + struct.pack("!H", len(c)) + c for c in chunks)


def vector(length_size: int, body: bytes) -> bytes:
    return len(body).to_bytes(length_size, "big") + body


def sni_extension(*entries: tuple[int, bytes]) -> bytes:
    names = b"".join(bytes([kind]) + vector(2, name) for kind, name in entries)
    return b"\x00\x00" + vector(2, vector(2, names))


def hello_body(
    extensions: bytes | None = b"",
    *,
    version: bytes = b"\x03\x03",
    session_id: bytes = b"",
    suites: bytes = b"\x13\x01",
    compression: bytes = b"\x00",
    trailer: bytes = b"",
) -> bytes:
    body = version + b"\x00" * 32 + vector(1, session_id) + vector(2, suites)
    body += vector(1, compression)
    if extensions is not None:
        body += vector(2, extensions)
    return body + trailer


def flight(body: bytes, msg_type: int = 1) -> bytes:
    """A hand-built handshake message in one record."""
    return as_records(bytes([msg_type]) + vector(3, body), 16384)


WITH_SNI = real_hello("iris.example.com")
TLS12 = real_hello("tls12.example.com", ssl.TLSVersion.TLSv1_2)
WITHOUT_SNI = real_hello(None)


# Real hellos --------------------------------------------------------------------------------------


def test_a_tls13_capable_hello_gives_its_name() -> None:
    assert b"\x00\x2b" in WITH_SNI  # supported_versions: OpenSSL offers TLS 1.3
    assert server_name(WITH_SNI) == "iris.example.com"


def test_a_tls12_only_hello_gives_its_name() -> None:
    assert server_name(TLS12) == "tls12.example.com"


def test_a_hello_without_sni_gives_none() -> None:
    assert server_name(WITHOUT_SNI) is None


def test_an_ip_address_is_never_sent_as_sni() -> None:
    # RFC 6066 forbids IP literals in SNI and OpenSSL follows it: routing sees no name.
    assert server_name(real_hello("127.0.0.1")) is None


def test_the_name_is_lower_cased() -> None:
    hello = real_hello("IRIS.Example.COM")
    assert b"IRIS.Example.COM" in hello  # the client sent it as typed
    assert server_name(hello) == "iris.example.com"


def test_bytes_after_the_hello_are_not_read() -> None:
    change_cipher_spec = b"\x14\x03\x03\x00\x01\x01"
    assert server_name(WITH_SNI + change_cipher_spec + b"\x17garbage") == "iris.example.com"


@pytest.mark.parametrize("hello", [WITH_SNI, TLS12, WITHOUT_SNI], ids=["sni", "tls12", "none"])
def test_every_proper_prefix_needs_more(hello: bytes) -> None:
    for end in range(len(hello)):
        assert server_name(hello[:end]) is NEED_MORE, end


@pytest.mark.parametrize("size", [1, 2, 3, 4, 5, 100, 511])
def test_a_hello_split_over_records_is_joined(size: int) -> None:
    data = as_records(handshake_message(WITH_SNI), size)
    assert data.count(b"\x16\x03\x01") >= len(handshake_message(WITH_SNI)) // size
    assert server_name(data) == "iris.example.com"
    for end in range(len(data)):
        assert server_name(data[:end]) is NEED_MORE, end


@given(st.lists(st.integers(min_value=1, max_value=600), min_size=1, max_size=40))
@settings(max_examples=60, deadline=None)
def test_any_split_into_records_gives_the_same_name(sizes: list[int]) -> None:
    message, data, start = handshake_message(WITH_SNI), b"", 0
    for size in sizes:
        if start >= len(message):
            break
        data += as_records(message[start : start + size], size)
        start += size
    data += as_records(message[start:], 16384) if start < len(message) else b""
    assert server_name(data) == "iris.example.com"


# Refusals, one per check --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"GET / HTTP/1.1\r\n", "not a TLS handshake record"),
        (b"\x15\x03\x03\x00\x02\x02\x28", "not a TLS handshake record"),  # an alert
        (b"\x80\x2e\x01\x03\x01", "not a TLS handshake record"),  # SSLv2-style hello
        (b"\x16\x02", "not a TLS record version"),
        (b"\x16\x03\x01\x00\x00", "bad record length"),
        (b"\x16\x03\x01\x40\x01", "bad record length"),  # 16385 > 2^14
        (b"\x16\x03\x01\x00\x04\x02\x00\x00\x00", "handshake message is not a ClientHello"),
        (b"\x16\x03\x01\x00\x04\x01\x00\x40\x00", "ClientHello too large"),
    ],
    ids=lambda value: value if isinstance(value, str) else "",
)
def test_not_a_client_hello_is_refused_from_its_first_bytes(data: bytes, reason: str) -> None:
    with pytest.raises(NotClientHello) as caught:
        server_name(data)
    assert caught.value.reason == reason
    assert str(caught.value) == reason


def test_another_record_type_between_fragments_is_refused() -> None:
    message = handshake_message(WITH_SNI)
    data = (
        as_records(message[:100], 100)
        + b"\x14\x03\x03\x00\x01\x01"
        + as_records(message[100:], 500)
    )
    with pytest.raises(NotClientHello, match="not a TLS handshake record"):
        server_name(data)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (hello_body(version=b"\x02\x00"), "not a TLS client version"),
        (hello_body(session_id=b"x" * 33), "bad session id"),
        (hello_body(suites=b""), "bad cipher suites"),
        (hello_body(suites=b"\x13\x01\x13"), "bad cipher suites"),
        (hello_body(compression=b""), "bad compression methods"),
        (hello_body(trailer=b"\x00"), "bytes after the extensions"),
        (hello_body(b"\x00\x17\x00\x00" * 2), "duplicate extension"),
        (hello_body(b"\x00\x17\x00"), "truncated extension"),
        (hello_body(b"\x00\x17\x00\x05abc"), "truncated extension"),
        (hello_body(b"\x00\x00\x00\x00"), "truncated server name list"),
        (hello_body(b"\x00\x00\x00\x03\x00\x00\x00"), "bad server name list"),
        (hello_body(b"\x00\x00\x00\x02\x00\x00"), "truncated server name type"),
        (hello_body(sni_extension((1, b"example.com"))), "server name is not a host name"),
        (
            hello_body(sni_extension((0, b"a.example"), (0, b"b.example"))),
            "more than one server name",
        ),
        (hello_body(sni_extension((0, b""))), "bad server name"),
        (hello_body(sni_extension((0, b"."))), "bad server name"),
        (hello_body(sni_extension((0, b"a..example"))), "bad server name"),
        (hello_body(sni_extension((0, b"a b.example"))), "bad server name"),
        (hello_body(sni_extension((0, b"a\x00.example"))), "bad server name"),
        (hello_body(sni_extension((0, "é.example".encode()))), "bad server name"),
        (hello_body(sni_extension((0, b"a" * 256))), "bad server name"),
    ],
    ids=lambda value: value if isinstance(value, str) else "",
)
def test_a_malformed_hello_is_refused_with_its_reason(body: bytes, reason: str) -> None:
    with pytest.raises(NotClientHello) as caught:
        server_name(flight(body))
    assert caught.value.reason == reason


def test_a_truncated_body_is_refused_not_waited_for() -> None:
    # The handshake header says 10 bytes and they are all there: the body itself is short.
    with pytest.raises(NotClientHello, match="truncated random"):
        server_name(flight(b"\x03\x03" + b"\x00" * 8))


# Accepted shapes ----------------------------------------------------------------------------------


def test_a_hello_without_any_extensions_has_no_name() -> None:
    assert server_name(flight(hello_body(None))) is None


def test_a_trailing_dot_is_dropped_and_underscores_pass() -> None:
    assert server_name(flight(hello_body(sni_extension((0, b"Sub_1.Example.com."))))) == (
        "sub_1.example.com"
    )


def test_a_name_of_255_bytes_passes() -> None:
    name = b".".join([b"a" * 63] * 4)[:255]
    assert server_name(flight(hello_body(sni_extension((0, name))))) == name.decode()


# The bound ----------------------------------------------------------------------------------------


def padded_hello(message_size: int) -> bytes:
    """A ClientHello handshake message of exactly `message_size` bytes with SNI "big.example"."""
    sni = sni_extension((0, b"big.example"))
    base = 4 + len(hello_body(sni + b"\x00\x15\x00\x00"))
    padding = b"\x00\x15" + vector(2, b"\x00" * (message_size - base))  # RFC 7685 padding
    message = b"\x01" + vector(3, hello_body(sni + padding))
    assert len(message) == message_size
    return message


def test_the_largest_hello_in_one_record_passes() -> None:
    data = as_records(padded_hello(16384), 16384)
    assert len(data) == MAX_HELLO_BYTES == 16389
    assert server_name(data) == "big.example"
    assert server_name(data[:-1]) is NEED_MORE


def test_a_hello_announced_larger_is_refused_from_its_header() -> None:
    data = as_records(padded_hello(16385), 16384)
    with pytest.raises(NotClientHello, match="ClientHello too large"):
        server_name(data[:9])  # record header + handshake header are enough to know


def test_records_ending_past_the_bound_are_refused() -> None:
    data = as_records(padded_hello(16384), 8192)  # two records: 10 more header bytes
    assert len(data) == MAX_HELLO_BYTES + 5
    with pytest.raises(NotClientHello, match="ClientHello too large"):
        server_name(data)
    with pytest.raises(NotClientHello, match="ClientHello too large"):
        server_name(data[: 5 + 8192 + 5])  # known from the second record's header
    tiny = as_records(padded_hello(3000), 1)  # 6 bytes a record: 18000 in all
    for cut in (MAX_HELLO_BYTES, len(tiny)):
        with pytest.raises(NotClientHello, match="ClientHello too large"):
            server_name(tiny[:cut])
    # A record ending at 16386 is still within the bound; the one after it cannot be.
    assert server_name(tiny[: MAX_HELLO_BYTES - 4]) is NEED_MORE


# Never another exception --------------------------------------------------------------------------


# Every refusal, as a fixed phrase: a metric label and a log field never carry wire bytes.
REASONS = {
    "not a TLS handshake record",
    "not a TLS record version",
    "bad record length",
    "handshake message is not a ClientHello",
    "ClientHello too large",
    "not a TLS client version",
    "bad session id",
    "bad cipher suites",
    "bad compression methods",
    "bytes after the extensions",
    "duplicate extension",
    "bad server name list",
    "server name is not a host name",
    "more than one server name",
    "bad server name",
} | {
    f"truncated {part}"
    for part in (
        "client version",
        "random",
        "session id",
        "cipher suites",
        "compression methods",
        "extensions",
        "extension",
        "server name list",
        "server name type",
        "server name",
    )
}


def _answer_or_refusal(data: bytes) -> None:
    try:
        result = server_name(data)
    except NotClientHello as exc:
        reason = exc.reason
    else:
        assert result is NEED_MORE or result is None or isinstance(result, str)
        if result is NEED_MORE:
            assert len(data) < MAX_HELLO_BYTES  # a bounded peek always gets an answer
        return
    assert reason in REASONS


@given(st.data())
@settings(max_examples=400, deadline=None)
def test_corrupted_real_hellos_answer_or_refuse(data: st.DataObject) -> None:
    hello = bytearray(data.draw(st.sampled_from([WITH_SNI, TLS12, WITHOUT_SNI])))
    for _ in range(data.draw(st.integers(min_value=1, max_value=8))):
        hello[data.draw(st.integers(0, len(hello) - 1))] = data.draw(st.integers(0, 255))
    end = data.draw(st.integers(0, len(hello)))
    _answer_or_refusal(bytes(hello[:end]))


@given(st.binary(max_size=600))
@settings(max_examples=300, deadline=None)
def test_random_bytes_after_a_record_header_answer_or_refuse(tail: bytes) -> None:
    _answer_or_refusal(b"\x16\x03\x01" + tail)
    _answer_or_refusal(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc" + tail)


@given(st.binary(max_size=64))
@settings(max_examples=100, deadline=None)
def test_a_full_peek_buffer_never_needs_more(pattern: bytes) -> None:
    # Records that keep a prefix valid for as long as possible: short handshake records, and
    # random bytes repeated to fill the whole buffer.
    for unit in (b"\x16\x03\x01\x00\x01" + pattern[:1], b"\x16\x03" + pattern):
        _answer_or_refusal((unit * (MAX_HELLO_BYTES // len(unit) + 1))[:MAX_HELLO_BYTES])
