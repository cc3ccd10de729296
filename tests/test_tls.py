"""TLS on both transports: a host given a certificate serves gRPC and https to clients that trust its CA, and refuses
plaintext and clients that do not trust it. The certificates are made here (a CA and a server certificate for
127.0.0.1 and localhost)."""
from __future__ import annotations

import datetime as dt
import ipaddress
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from transport import config
from fxplat.catalog import BuildContext, build_host
from services.common.errors import Unavailable
from services.market_analysis.grpc import MarketAnalysisGrpcClient
from services.market_analysis.models import CandlesQuery
from services.market_analysis.rest import MarketAnalysisRestClient
from transport.client_factory import ClientFactory
from transport.server import TlsFiles

QUERY = CandlesQuery("EURUSD", limit=5)


def _cert(subject: str, key, issuer_key, issuer: x509.Name | None, *, ca: bool) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    now = dt.datetime.now(dt.timezone.utc)
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(issuer or name).public_key(key.public_key())
               .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
               .not_valid_after(now + dt.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if ca:
        builder = builder.add_extension(x509.KeyUsage(
            digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
            key_encipherment=False, data_encipherment=False, key_agreement=False, encipher_only=False,
            decipher_only=False), critical=True)
    else:
        builder = builder.add_extension(x509.SubjectAlternativeName(
            [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> tuple[TlsFiles, Path]:
    """(the server's TlsFiles, the CA bundle path)."""
    folder = tmp_path_factory.mktemp("pki")
    ca_key, server_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = _cert("fxplat test CA", ca_key, ca_key, None, ca=True)
    server = _cert("127.0.0.1", server_key, ca_key, ca.subject, ca=False)
    pem = serialization.Encoding.PEM
    (folder / "ca.pem").write_bytes(ca.public_bytes(pem))
    (folder / "server.pem").write_bytes(server.public_bytes(pem))
    (folder / "server.key").write_bytes(server_key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                                                 serialization.NoEncryption()))
    return TlsFiles(folder / "server.pem", folder / "server.key"), folder / "ca.pem"


@pytest.fixture(scope="module")
async def tls_host(pki, data_dir, auth):
    host = await build_host("market_analysis", BuildContext(data_dir, auth=auth, tls=pki[0]), "127.0.0.1", 0, 0)
    await host.start()
    yield host
    await host.stop(grace=0)


def clients(host, factory: ClientFactory, rest_url: str | None = None) -> dict:
    return {"grpc": MarketAnalysisGrpcClient(factory.channel(host.grpc_target)),
            "rest": MarketAnalysisRestClient(factory.http(rest_url or host.rest_url))}


async def test_both_transports_serve_clients_that_trust_the_ca(tls_host, pki, tokens):
    assert tls_host.rest_url.startswith("https://")
    async with ClientFactory(ca_file=pki[1], token_source=tokens) as factory:
        pages = {wire: await client.get_candles(QUERY) for wire, client in clients(tls_host, factory).items()}
    assert len(pages["grpc"].series) == len(pages["rest"].series) == 5


async def test_plaintext_and_untrusting_clients_are_refused(tls_host, tokens):
    plain_url = tls_host.rest_url.replace("https://", "http://")
    async with ClientFactory(token_source=tokens) as plaintext, \
            ClientFactory(tls=True, token_source=tokens) as untrusting:  # TLS, but only the system's roots
        for client in [*clients(tls_host, plaintext, plain_url).values(), *clients(tls_host, untrusting).values()]:
            with pytest.raises(Unavailable):
                await client.get_candles(QUERY)


def test_endpoints_are_https_when_tls_is_on(monkeypatch, pki):
    monkeypatch.delenv("FXPLAT_MARKET_ANALYSIS_REST_URL", raising=False)
    monkeypatch.setenv("FXPLAT_TLS_CA", str(pki[1]))
    assert config.endpoint("market_analysis").rest_url.startswith("https://")
    monkeypatch.setenv("FXPLAT_TLS_CERT", str(pki[0].cert_file))
    with pytest.raises(ValueError, match="FXPLAT_TLS_CERT and FXPLAT_TLS_KEY must be set together"):
        config.server_tls()
    monkeypatch.setenv("FXPLAT_TLS_KEY", str(pki[0].key_file))
    assert config.server_tls() == pki[0]
