"""TLS for the listeners: the server SSLContext, the client one upstreams are connected with,
and development certificates.

The server context follows Mozilla's "intermediate" profile: TLS 1.2+ only, AEAD ciphers
with forward secrecy, no compression, no renegotiation, session tickets on (handshakes are
expensive in Python, resumption is cheap). Development certificates are a throw-away CA and a
leaf for localhost/127.0.0.1/::1; the CA key is never written, so nothing can be signed later.
A certificate and key that do not load are explained (files swapped, a key encrypted with a
passphrase, a key of another certificate) by a KeyPairError naming the file, never OpenSSL's
"PEM lib"; a passphrase is never asked for, as a service has no one to ask.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import re
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# Mozilla intermediate (v5.7) TLS 1.2 cipher list; TLS 1.3 suites are OpenSSL's defaults.
INTERMEDIATE_CIPHERS = ":".join(
    (
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        "ECDHE-RSA-CHACHA20-POLY1305",
        "DHE-RSA-AES128-GCM-SHA256",
        "DHE-RSA-AES256-GCM-SHA384",
        "DHE-RSA-CHACHA20-POLY1305",
    )
)

_VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}
_PEM_LABEL = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----")


class KeyPairError(ssl.SSLError):
    """A certificate and key that cannot serve, with the reason an operator can act on."""

    def __str__(self) -> str:
        return str(self.args[0])  # SSLError would print the args tuple


def server_context(
    cert_file: Path, key_file: Path, min_version: str = "1.2", *, alpn: bool = True
) -> ssl.SSLContext:
    """Build the one SSLContext a listener uses for every connection; `alpn` offers
    "http/1.1" (a stream listener relays a protocol it does not know, so offers none)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = _VERSIONS[min_version]
    ctx.set_ciphers(INTERMEDIATE_CIPHERS)
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
    if alpn:
        ctx.set_alpn_protocols(["http/1.1"])
    load_key_pair(ctx, cert_file, key_file)
    return ctx


def upstream_context(verify: bool, ca_file: Path | None) -> ssl.SSLContext:
    """The client context of a TLS upstream, an https:// service's or a tls:// stream's alike:
    the certificate and host name checked against the system's CAs plus `ca_file` when given,
    or nothing checked when `verify` is off."""
    ctx = ssl.create_default_context()
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    elif ca_file is not None:
        ctx.load_verify_locations(ca_file)
    return ctx


def load_key_pair(ctx: ssl.SSLContext, cert_file: Path, key_file: Path) -> None:
    """Load a certificate chain and its key into `ctx`; KeyPairError says what is wrong."""
    cert_pem, key_pem = _read(cert_file), _read(key_file)

    def no_passphrase() -> str:
        raise KeyPairError(
            f"{key_file} is encrypted with a passphrase, which a service cannot be asked for:"
            f" decrypt it (openssl pkey -in {key_file} -out NEW.key) and keep it 0600"
        )

    try:
        ctx.load_cert_chain(cert_file, key_file, password=no_passphrase)
    except KeyPairError:
        raise
    except ssl.SSLError as exc:
        reason = _mix_up(cert_pem, key_pem, cert_file, key_file)
        if reason is None:
            raise
        raise KeyPairError(reason) from exc


def _read(path: Path) -> bytes:
    """The file's bytes; ssl's own errors for a missing or unreadable file do not name it."""
    try:
        return path.read_bytes()
    except OSError as exc:
        raise KeyPairError(f"{path}: {exc.strerror or exc}") from exc


def _labels(pem: bytes) -> set[str]:
    return {m.decode() for m in _PEM_LABEL.findall(pem)}


def _has_key(labels: set[str]) -> bool:
    return any(label.endswith("PRIVATE KEY") for label in labels)


def _has_cert(labels: set[str]) -> bool:
    return any(label.endswith("CERTIFICATE") for label in labels)


def _mix_up(cert_pem: bytes, key_pem: bytes, cert_file: Path, key_file: Path) -> str | None:
    """The common way a certificate and key fail to load, in words; None if not one of them."""
    cert_labels, key_labels = _labels(cert_pem), _labels(key_pem)
    if not _has_key(key_labels):
        if _has_cert(key_labels) and _has_key(cert_labels) and not _has_cert(cert_labels):
            return (
                f"the certificate and key files are swapped: {key_file} holds a certificate"
                f" and {cert_file} holds a private key"
            )
        if _has_cert(key_labels):
            return f"{key_file} holds a certificate, not a private key (tls_key_file names the key)"
        return f"{key_file} holds no PEM private key (-----BEGIN PRIVATE KEY-----)"
    if not _has_cert(cert_labels):
        if _has_key(cert_labels):
            return f"{cert_file} holds a private key, not a certificate (tls_cert_file names it)"
        return f"{cert_file} holds no PEM certificate (-----BEGIN CERTIFICATE-----)"
    if not _same_public_key(cert_pem, key_pem):
        return f"the private key in {key_file} does not belong to the certificate in {cert_file}"
    return None


def _same_public_key(cert_pem: bytes, key_pem: bytes) -> bool:
    """Whether the first certificate is for the key; True when either does not parse (then
    OpenSSL's own error is the better one)."""
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError):
        return True
    spki = serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    return bool(cert.public_key().public_bytes(*spki) == key.public_key().public_bytes(*spki))


@dataclass(frozen=True, slots=True)
class DevCertificate:
    ca_file: Path
    cert_file: Path
    key_file: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "edgeauth development"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _write_private(path: Path, data: bytes) -> None:
    """Create a file readable by its owner only, whatever the umask."""
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def generate_dev_certificate(directory: Path, days: int = 825) -> DevCertificate:
    """Write dev-ca.crt, edgeauth.crt and edgeauth.key (0600) into `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("edgeauth development CA")
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf_cert = (
        x509.CertificateBuilder()
        .subject_name(_name("localhost"))
        .issuer_name(ca_name)
        .public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    x509.IPAddress(ipaddress.ip_address("::1")),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    paths = DevCertificate(
        ca_file=directory / "dev-ca.crt",
        cert_file=directory / "edgeauth.crt",
        key_file=directory / "edgeauth.key",
    )
    _write_private(
        paths.key_file,
        leaf_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )
    paths.cert_file.write_bytes(leaf_cert.public_bytes(serialization.Encoding.PEM))
    paths.ca_file.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    return paths


def expires_at(cert_file: Path) -> float:
    """The end of validity (epoch seconds) of the first certificate in a PEM file."""
    cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
    return cert.not_valid_after_utc.timestamp()
