"""Shared fixtures: real services on free loopback ports (port 0), real clients through the client factory."""
from __future__ import annotations

import pytest

from fxplat.catalog import BuildContext, build_host
from services.market_analysis.grpc import MarketAnalysisGrpcClient
from services.market_analysis.rest import MarketAnalysisRestClient
from transport.client_factory import ClientFactory

LOOPBACK = "127.0.0.1"


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("fxplat-data")


@pytest.fixture(scope="session")
async def factory():
    f = ClientFactory()
    yield f
    await f.close()


@pytest.fixture(scope="session")
async def market_host(data_dir):
    svc = await build_host("market_analysis", BuildContext(data_dir), LOOPBACK, 0, 0)
    await svc.start()
    yield svc
    await svc.stop(grace=0)


@pytest.fixture(scope="session")
def market_clients(market_host, factory):
    """Every implementation of the MarketAnalysis interface, against one running service."""
    return {
        "domain": market_host.impl,
        "grpc": MarketAnalysisGrpcClient(factory.channel(market_host.grpc_target)),
        "rest": MarketAnalysisRestClient(factory.http(market_host.rest_url)),
    }
