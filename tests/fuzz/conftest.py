"""One gateway process and one recording upstream for the whole fuzz module."""

from __future__ import annotations

import ssl
from collections.abc import Iterator

import pytest

from edgeauth import tls
from tests.fuzz.harness import Harness


@pytest.fixture(scope="module")
def harness(
    tmp_path_factory: pytest.TempPathFactory,
    dev_cert: tls.DevCertificate,
    client_ssl: ssl.SSLContext,
) -> Iterator[Harness]:
    h = Harness(tmp_path_factory.mktemp("fuzz"), dev_cert, client_ssl)
    yield h
    h.close()
