"""The REST contract is frozen: the live OpenAPI document of every service equals the committed one."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("update_openapi", ROOT / "scripts" / "update_openapi.py")
update_openapi = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(update_openapi)


@pytest.mark.parametrize("name", list(update_openapi.CATALOG))
def test_openapi_matches_committed_snapshot(name):
    committed = json.loads((ROOT / "docs" / "openapi" / f"{name}.json").read_text())
    live = update_openapi.live_document(name)
    assert live == committed, (
        f"the REST contract of {name} changed. If intended, run `python scripts/update_openapi.py` and commit "
        "docs/openapi/; existing REST consumers will see this change.")


async def test_served_document_is_the_snapshot(market_host, factory):
    served = (await factory.http(market_host.rest_url).get("/openapi.json")).json()
    assert served == json.loads((ROOT / "docs" / "openapi" / "market_analysis.json").read_text())
