"""A certificate and key that do not load are explained, naming the file: the mix-ups an
operator makes (files swapped, a certificate where the key goes, an encrypted key, a key of
another certificate), never OpenSSL's "PEM lib". Real files, real OpenSSL, and
`edgeauth check-config` as a real process for the one an operator meets first.
"""

from __future__ import annotations

import shutil
import ssl
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from edgeauth import tls
from tests.conftest import edgeauth_command, service, write_config

EX_CONFIG = 78


def _encrypted_copy(key_file: Path, directory: Path) -> Path:
    key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
    path = directory / "encrypted.key"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"passphrase"),
        )
    )
    return path


def test_check_config_says_the_key_file_holds_a_certificate(
    tmp_path: Path, dev_cert: tls.DevCertificate
) -> None:
    config = write_config(
        tmp_path,
        dev_cert,
        [service("tools", "http://127.0.0.1:9/", ["/"])],
        tls_key_file=str(dev_cert.cert_file),
    )
    result = edgeauth_command("check-config", "-c", str(config))
    assert result.returncode == EX_CONFIG, result.stdout + result.stderr
    output = result.stdout + result.stderr
    assert f"{dev_cert.cert_file} holds a certificate, not a private key" in output, output
    assert "server.tls_key_file" in output
    assert "PEM lib" not in output
    assert "Traceback" not in output


def test_swapped_files_are_named_as_swapped(dev_cert: tls.DevCertificate) -> None:
    with pytest.raises(tls.KeyPairError) as caught:
        tls.server_context(dev_cert.key_file, dev_cert.cert_file)
    assert str(caught.value) == (
        f"the certificate and key files are swapped: {dev_cert.cert_file} holds a certificate"
        f" and {dev_cert.key_file} holds a private key"
    )


def test_a_private_key_as_the_certificate_says_so(dev_cert: tls.DevCertificate) -> None:
    with pytest.raises(tls.KeyPairError, match="holds a private key, not a certificate"):
        tls.server_context(dev_cert.key_file, dev_cert.key_file)


def test_an_encrypted_key_is_refused_without_asking_for_a_passphrase(
    tmp_path: Path, dev_cert: tls.DevCertificate
) -> None:
    encrypted = _encrypted_copy(dev_cert.key_file, tmp_path)
    with pytest.raises(tls.KeyPairError) as caught:
        tls.server_context(dev_cert.cert_file, encrypted)
    assert str(caught.value).startswith(f"{encrypted} is encrypted with a passphrase")


def test_a_key_of_another_certificate_is_named(
    tmp_path: Path, dev_cert: tls.DevCertificate
) -> None:
    other = tls.generate_dev_certificate(tmp_path / "other")
    with pytest.raises(tls.KeyPairError) as caught:
        tls.server_context(dev_cert.cert_file, other.key_file)
    assert str(caught.value) == (
        f"the private key in {other.key_file} does not belong to the certificate in"
        f" {dev_cert.cert_file}"
    )


def test_missing_and_non_pem_files_are_named(tmp_path: Path, dev_cert: tls.DevCertificate) -> None:
    missing = tmp_path / "missing.key"
    with pytest.raises(tls.KeyPairError, match=f"^{missing}: No such file"):
        tls.server_context(dev_cert.cert_file, missing)
    text = tmp_path / "notes.txt"
    text.write_text("not a key\n")
    with pytest.raises(tls.KeyPairError, match=f"^{text} holds no PEM private key"):
        tls.server_context(dev_cert.cert_file, text)
    with pytest.raises(tls.KeyPairError, match=f"^{text} holds no PEM certificate"):
        tls.server_context(text, dev_cert.key_file)


def test_a_combined_pem_file_still_loads(tmp_path: Path, dev_cert: tls.DevCertificate) -> None:
    """One file with the certificate and its key, named twice, is a working setup."""
    both = tmp_path / "both.pem"
    shutil.copy(dev_cert.cert_file, both)
    with both.open("ab") as fh:
        fh.write(dev_cert.key_file.read_bytes())
    assert tls.server_context(both, both).minimum_version == ssl.TLSVersion.TLSv1_2
