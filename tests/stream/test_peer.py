"""Client certificate identities and SNI patterns. The certificates are made here with the
`cryptography` package and read back through a real TLS handshake (two SSLObjects over memory
BIOs), so the dicts checked are the ones getpeercert() really gives."""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import given, settings
from hypothesis import strategies as st

from edgeauth.stream.peer import (
    PeerCert,
    certificate_allowed,
    parse_san,
    parse_subject,
    server_name_matches,
    subject_text,
)
from tests.stream.conftest import write_pair

NOW = dt.datetime.now(dt.UTC)


@dataclass(frozen=True, slots=True)
class Issuer:
    name: x509.Name
    key: ec.EllipticCurvePrivateKey
    pem: bytes


def _name(*rdns: Sequence[tuple[x509.ObjectIdentifier, str]]) -> x509.Name:
    """A name from its RDNs in the certificate's order (most significant first)."""
    return x509.Name(
        [x509.RelativeDistinguishedName([x509.NameAttribute(o, v) for o, v in rdn]) for rdn in rdns]
    )


def _issue(
    subject: x509.Name,
    issuer: Issuer | None,
    sans: Sequence[x509.GeneralName] = (),
    ca: bool = False,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.name if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - dt.timedelta(minutes=5))
        .not_valid_after(NOW + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=not subject)
    return builder.sign(issuer.key if issuer else key, hashes.SHA256()), key


def _ca() -> Issuer:
    name = _name([(NameOID.COMMON_NAME, "Stream Test CA")])
    cert, key = _issue(name, None, ca=True)
    return Issuer(name, key, cert.public_bytes(serialization.Encoding.PEM))


def peer_cert(
    directory: Path,
    subject: x509.Name,
    sans: Sequence[x509.GeneralName] = (),
    maximum: ssl.TLSVersion = ssl.TLSVersion.TLSv1_3,
) -> PeerCert:
    """getpeercert() on the server side of a real mutual-TLS handshake with this client cert."""
    ca = _ca()
    server = write_pair(directory, "server", *_issue(_name(), ca, [x509.DNSName("localhost")]))
    client = write_pair(directory, "client", *_issue(subject, ca, sans))
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(*server)
    server_ctx.verify_mode = ssl.CERT_REQUIRED
    server_ctx.load_verify_locations(cadata=ca.pem.decode())
    client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client_ctx.maximum_version = maximum
    client_ctx.load_verify_locations(cadata=ca.pem.decode())
    client_ctx.load_cert_chain(*client)
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    client_tls = client_ctx.wrap_bio(c_in, c_out, server_hostname="localhost")
    server_tls = server_ctx.wrap_bio(s_in, s_out, server_side=True)
    pending = {client_tls, server_tls}
    for _ in range(10):
        for tls in list(pending):
            try:
                tls.do_handshake()
                pending.discard(tls)
            except ssl.SSLWantReadError:
                pass
        s_in.write(c_out.read())
        c_in.write(s_out.read())
        if not pending:
            break
    assert not pending, "the handshake did not finish"
    cert = server_tls.getpeercert()
    assert cert
    return cert


STUDIO = _name(
    [(NameOID.COUNTRY_NAME, "US")],
    [(NameOID.ORGANIZATION_NAME, "Acme")],
    [(NameOID.ORGANIZATIONAL_UNIT_NAME, "Dev Tools")],
    [(NameOID.COMMON_NAME, "studio")],
)
STUDIO_SANS = [
    x509.DNSName("studio.example.com"),
    x509.RFC822Name("dev@Example.COM"),
    x509.UniformResourceIdentifier("spiffe://acme.example/ns/dev/sa/Studio"),
    x509.IPAddress(ipaddress.ip_address("2001:db8::1")),
    x509.IPAddress(ipaddress.ip_address("10.1.2.3")),
]


@pytest.fixture(scope="module")
def studio(tmp_path_factory: pytest.TempPathFactory) -> PeerCert:
    return peer_cert(tmp_path_factory.mktemp("studio"), STUDIO, STUDIO_SANS)


# The real dict ------------------------------------------------------------------------------------


def test_the_handshake_gives_the_shape_the_checks_read(studio: PeerCert) -> None:
    assert studio["subject"] == (
        (("countryName", "US"),),
        (("organizationName", "Acme"),),
        (("organizationalUnitName", "Dev Tools"),),
        (("commonName", "studio"),),
    )
    assert studio["subjectAltName"] == (
        ("DNS", "studio.example.com"),
        ("email", "dev@Example.COM"),
        ("URI", "spiffe://acme.example/ns/dev/sa/Studio"),
        ("IP Address", "2001:DB8:0:0:0:0:0:1"),  # OpenSSL's spelling: compared by value
        ("IP Address", "10.1.2.3"),
    )


def test_subject_text_is_rfc4514_most_specific_first(studio: PeerCert) -> None:
    assert subject_text(studio) == "CN=studio,OU=Dev Tools,O=Acme,C=US"


def test_subject_text_without_a_certificate_is_empty() -> None:
    assert subject_text(None) == ""
    assert subject_text({}) == ""


# Subjects -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "allowed",
    [
        "CN=studio,OU=Dev Tools,O=Acme,C=US",
        "cn=STUDIO, ou=dev  tools, o=acme, c=us",  # caseIgnoreMatch, spaces aside
        "commonName=studio,organizationalUnitName=Dev Tools,O=Acme,countryName=US",
        "CN=stu\\64io,OU=Dev\\ Tools,O=Acme,C=US",  # escapes undone
    ],
)
def test_the_whole_subject_is_allowed(studio: PeerCert, allowed: str) -> None:
    assert certificate_allowed(studio, (allowed,), ())
    assert certificate_allowed(studio, ("CN=other", allowed), ())


@pytest.mark.parametrize(
    "allowed",
    [
        "CN=studio",  # a part is not the whole
        "CN=studio,OU=Dev Tools,O=Acme",
        "CN=studio,OU=Dev Tools,O=Acme,C=US,DC=extra",
        "C=US,O=Acme,OU=Dev Tools,CN=studio",  # the certificate's order is not RFC 4514's
        "CN=studio+OU=Dev Tools,O=Acme,C=US",
        "CN=studio2,OU=Dev Tools,O=Acme,C=US",
    ],
)
def test_another_subject_is_refused(studio: PeerCert, allowed: str) -> None:
    assert not certificate_allowed(studio, (allowed,), ())


def test_a_multi_valued_rdn_matches_in_any_order(tmp_path: Path) -> None:
    subject = _name(
        [(NameOID.ORGANIZATION_NAME, "Acme")],
        [(NameOID.COMMON_NAME, "ecp"), (NameOID.USER_ID, "u42")],
    )
    cert = peer_cert(tmp_path, subject)
    assert subject_text(cert) in ("CN=ecp+UID=u42,O=Acme", "UID=u42+CN=ecp,O=Acme")
    assert certificate_allowed(cert, ("UID=u42+CN=ecp,O=Acme",), ())
    assert certificate_allowed(cert, ("CN=ecp+UID=u42,O=Acme",), ())
    assert not certificate_allowed(cert, ("CN=ecp,UID=u42,O=Acme",), ())


def test_special_characters_are_escaped_and_read_back(tmp_path: Path) -> None:
    subject = _name(
        [(NameOID.ORGANIZATION_NAME, "Acme, Inc. + Sons")],
        [(NameOID.ORGANIZATIONAL_UNIT_NAME, "#ops ")],
        [(NameOID.COMMON_NAME, 'Zoë "Z" <z>;\\')],
    )
    cert = peer_cert(tmp_path, subject, maximum=ssl.TLSVersion.TLSv1_2)
    text = subject_text(cert)
    assert text == 'CN=Zoë \\"Z\\" \\<z\\>\\;\\\\,OU=\\#ops\\ ,O=Acme\\, Inc. \\+ Sons'
    assert certificate_allowed(cert, (text,), ())
    assert certificate_allowed(
        cert, ("CN=Zo\\C3\\AB \\22Z\\22 \\3Cz\\3E\\3B\\5C,OU=\\#ops,O=Acme\\, Inc. \\+ Sons",), ()
    )


def test_an_attribute_without_a_short_name_keeps_openssls(tmp_path: Path) -> None:
    subject = _name(
        [(NameOID.COMMON_NAME, "studio")], [(NameOID.EMAIL_ADDRESS, "dev@acme.example")]
    )
    cert = peer_cert(tmp_path, subject)
    assert subject_text(cert) == "emailAddress=dev@acme.example,CN=studio"
    assert certificate_allowed(cert, ("emailaddress=DEV@acme.example,CN=studio",), ())


ATTRIBUTES = st.sampled_from(["commonName", "organizationName", "domainComponent", "2.5.4.97"])
VALUES = st.text(min_size=1, max_size=12).filter(str.strip)


@given(
    st.lists(
        st.lists(st.tuples(ATTRIBUTES, VALUES), min_size=1, max_size=2), min_size=1, max_size=4
    )
)
@settings(max_examples=200, deadline=None)
def test_subject_text_reads_back_as_the_same_subject(rdns: list[list[tuple[str, str]]]) -> None:
    # The shape the handshake test above shows getpeercert() gives, with any values.
    cert: PeerCert = {"subject": tuple(tuple(rdn) for rdn in rdns)}
    assert certificate_allowed(cert, (subject_text(cert),), ())


# SANs ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "allowed",
    [
        "DNS:studio.example.com",
        "DNS:Studio.Example.com",
        "email:dev@example.com",  # the domain without regard to case
        "URI:spiffe://acme.example/ns/dev/sa/Studio",
        "IP:2001:db8::1",
        "IP:10.1.2.3",
    ],
)
def test_a_san_is_allowed(studio: PeerCert, allowed: str) -> None:
    assert certificate_allowed(studio, (), (allowed,))
    assert certificate_allowed(studio, ("CN=nobody",), ("DNS:other.example.com", allowed))


@pytest.mark.parametrize(
    "allowed",
    [
        "DNS:other.example.com",
        "DNS:*.example.com",  # a pattern is only ever a literal SAN
        "email:DEV@example.com",  # the local part is case-sensitive
        "email:studio.example.com",
        "URI:spiffe://acme.example/ns/dev/sa/studio",
        "URI:studio.example.com",
        "IP:2001:db8::2",
        "IP:10.1.2.4",
        "DNS:10.1.2.3",
    ],
)
def test_another_san_is_refused(studio: PeerCert, allowed: str) -> None:
    assert not certificate_allowed(studio, (), (allowed,))


def test_no_lists_allow_any_verified_certificate_and_no_certificate_is_never_allowed(
    studio: PeerCert,
) -> None:
    assert certificate_allowed(studio, (), ())
    assert not certificate_allowed(None, (), ())
    assert not certificate_allowed({}, (), ())
    assert not certificate_allowed(None, ("CN=studio",), ("DNS:studio.example.com",))


def test_a_certificate_with_only_sans(tmp_path: Path) -> None:
    cert = peer_cert(tmp_path, _name(), [x509.DNSName("node1.ecp.example")])
    assert subject_text(cert) == ""
    assert certificate_allowed(cert, (), ())
    assert certificate_allowed(cert, ("CN=node1",), ("DNS:node1.ecp.example",))
    assert not certificate_allowed(cert, ("CN=node1",), ())


# Parsing the configured lists ---------------------------------------------------------------------


def test_parse_subject_normalises() -> None:
    assert parse_subject(" CN = A  B ,o=Acme") == (
        frozenset({("CN", "a b")}),
        frozenset({("O", "acme")}),
    )
    assert parse_subject("1.2.3.4=x") == (frozenset({("1.2.3.4", "x")}),)
    assert parse_subject("EMAILADDRESS=A@B") == parse_subject("emailAddress=a@b")
    # an escaped trailing space, as subject_text writes one, is read (and then, like every
    # space around a value, not compared); after an escaped backslash a space is just a space
    assert parse_subject("CN=a\\ ") == (frozenset({("CN", "a")}),)
    assert parse_subject("CN=a\\\\ ") == (frozenset({("CN", "a\\")}),)


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "expected TYPE=value"),
        ("CN", "expected TYPE=value"),
        ("CN=", "expected TYPE=value"),
        ("=x", "expected TYPE=value"),
        ("CN=a,", "expected TYPE=value"),
        ("CN=a++O=b", "expected TYPE=value"),
        ("CN=#0403616263", "hex values are not taken"),
        ("CN=a\\", "bad escape"),
        ("CN=a\\x", "bad escape"),
        ("CN=\\C3", "escapes are not UTF-8"),
    ],
)
def test_parse_subject_refuses_with_a_reason(text: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        parse_subject(text)


def test_parse_san() -> None:
    assert parse_san("DNS:a.example") == ("DNS", "a.example")
    assert parse_san("email:a@b.example") == ("email", "a@b.example")
    assert parse_san("URI:spiffe://x/y") == ("URI", "spiffe://x/y")
    assert parse_san("IP:::1") == ("IP Address", "::1")


@pytest.mark.parametrize(
    "text", ["", "DNS", "DNS:", "dns:a", "IP Address:1.2.3.4", "IP:1.2.3", "X:y"]
)
def test_parse_san_refuses(text: str) -> None:
    with pytest.raises(ValueError, match=r"SAN|IP address"):
        parse_san(text)


# Server names -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "name", "matches"),
    [
        ("iris.example.com", "iris.example.com", True),
        ("IRIS.example.com", "iris.EXAMPLE.com", True),
        ("iris.example.com.", "iris.example.com", True),
        ("iris.example.com", "iris2.example.com", False),
        ("iris.example.com", "example.com", False),
        ("*.example.com", "iris.example.com", True),
        ("*.Example.com", "IRIS.example.com", True),
        ("*.example.com", "example.com", False),
        ("*.example.com", ".example.com", False),
        ("*.example.com", "a.b.example.com", False),
        ("*.example.com", "iris.example.org", False),
        ("*.example.com", "irisexample.com", False),
    ],
)
def test_server_name_matches(pattern: str, name: str, matches: bool) -> None:
    assert server_name_matches(pattern, name) is matches
