"""Header rules of the proxy path as plain values (design §5 step 4)."""

from __future__ import annotations

import ipaddress
import subprocess
import sys

from edgeauth.proxy import headers as hdr

TRUSTED = (ipaddress.ip_network("10.0.0.0/8"),)


def _peer(address: str = "192.0.2.7", trusted: bool = False) -> hdr.Peer:
    return hdr.Peer(address=address, scheme="https", host="gw.example", port=8443, trusted=trusted)


def _names(headers: list[tuple[str, str]]) -> list[str]:
    return [name.lower() for name, _ in headers]


def test_untrusted_peer_forwarded_values_are_the_gateways_own() -> None:
    fwd = hdr.forwarded(_peer(), {"x-forwarded-for": "1.2.3.4"}, "/events", TRUSTED)
    assert fwd == hdr.Forwarded("192.0.2.7", "https", "gw.example", "8443", "/events", "192.0.2.7")


def test_trusted_peer_extends_chain_and_keeps_its_proto_host_port() -> None:
    client = {
        "x-forwarded-for": "198.51.100.1, 10.0.0.9",
        "x-forwarded-proto": "http",
        "x-forwarded-host": "api.example",
        "x-forwarded-port": "80",
    }
    fwd = hdr.forwarded(_peer("10.0.0.1", trusted=True), client, None, TRUSTED)
    assert fwd.for_chain == "198.51.100.1, 10.0.0.9, 10.0.0.1"
    assert (fwd.proto, fwd.host, fwd.port) == ("http", "api.example", "80")
    assert fwd.real_ip == "198.51.100.1"


def test_is_trusted() -> None:
    assert hdr.is_trusted("10.1.2.3", TRUSTED)
    assert not hdr.is_trusted("11.1.2.3", TRUSTED)
    assert not hdr.is_trusted("not-an-ip", TRUSTED)
    assert not hdr.is_trusted("10.1.2.3", ())


def test_request_id_kept_only_from_trusted_peers_and_only_when_well_formed() -> None:
    assert hdr.request_id("lb-1", True) == "lb-1"
    assert hdr.request_id("lb-1", False) != "lb-1"
    assert hdr.request_id("bad id\r\n", True) != "bad id\r\n"
    assert len(hdr.request_id(None, True)) == 32


def test_upstream_request_headers_drop_hop_by_hop_identity_and_hidden() -> None:
    client = [
        ("Host", "gw.example"),
        ("Connection", "close, X-Hop"),
        ("X-Hop", "1"),
        ("Transfer-Encoding", "chunked"),
        ("Expect", "100-continue"),
        ("Proxy-Authorization", "x"),
        ("X-Consumer-ID", "spoof"),
        ("x_authenticated_userid", "spoof"),
        ("X-Anonymous-Consumer", "spoof"),
        ("X-Credential-Identifier", "spoof"),
        ("Authorization", "Bearer abc"),
        ("Content-Length", "5"),
        ("Accept", "a"),
        ("Accept", "b"),
    ]
    fwd = hdr.forwarded(_peer(), {}, None, ())
    out = hdr.upstream_request_headers(
        client,
        fwd,
        request_id_header="X-Request-ID",
        request_id="rid",
        identity=[("X-Consumer-ID", "c1")],
        hidden=frozenset({"authorization"}),
    )
    names = _names(out)
    for gone in (
        "host",
        "connection",
        "x-hop",
        "transfer-encoding",
        "content-length",  # the upstream leg computes the framing itself
        "expect",
        "proxy-authorization",
        "x_authenticated_userid",
        "x-anonymous-consumer",
        "x-credential-identifier",
        "authorization",
    ):
        assert gone not in names, gone
    assert ("X-Consumer-ID", "c1") in out
    assert names.count("x-consumer-id") == 1
    assert [v for n, v in out if n == "Accept"] == ["a", "b"]
    assert ("X-Request-ID", "rid") in out
    assert ("Via", "1.1 edgeauth") in out


def test_downstream_response_headers() -> None:
    upstream = [
        ("Content-Type", "application/json"),
        ("Connection", "keep-alive, X-Up-Hop"),
        ("X-Up-Hop", "1"),
        ("Keep-Alive", "timeout=5"),
        ("Transfer-Encoding", "chunked"),
        ("Via", "1.0 iris"),
        ("X-Request-ID", "from-upstream"),
        ("Set-Cookie", "a=1"),
        ("Set-Cookie", "b=2"),
    ]
    out = hdr.downstream_response_headers(
        upstream, request_id_header="X-Request-ID", request_id="r"
    )
    names = _names(out)
    for gone in ("connection", "x-up-hop", "keep-alive", "transfer-encoding"):
        assert gone not in names
    assert ("Via", "1.0 iris, 1.1 edgeauth") in out
    assert ("Server", "edgeauth") in out
    assert ("X-Request-ID", "r") in out
    assert names.count("x-request-id") == 1
    assert [v for n, v in out if n == "Set-Cookie"] == ["a=1", "b=2"]


def test_fresh_request_ids_are_distinct_hex_and_differ_across_processes() -> None:
    ids = [hdr.request_id(None, False) for _ in range(1000)]
    assert len(set(ids)) == 1000
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)
    other = subprocess.run(
        [
            sys.executable,
            "-c",
            "from edgeauth.proxy import headers; print(headers.request_id(None, False))",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert len(other) == 32
    assert other[:20] != ids[0][:20]  # each process draws its own random part
