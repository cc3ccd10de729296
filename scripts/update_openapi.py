"""Write (or --check) the committed OpenAPI documents in docs/openapi/, one per service.

The REST API is the contract existing consumers rely on: change it only on purpose, by running this script and
committing the diff (tests/test_openapi_snapshot.py fails on any unintended change).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from fxplat.catalog import CATALOG  # noqa: E402
from transport.auth import include_guarded, scope_table  # noqa: E402
from transport.rest_app import create_app  # noqa: E402

SNAPSHOTS = ROOT / "docs" / "openapi"


class _Unbuilt:
    """Routers only need an implementation when called; the schema is built without one."""


def live_document(name: str) -> dict:
    entry = CATALOG[name]
    app = create_app(name, entry.title, entry.description)
    # Mounted as build_host mounts it: the bearer scheme, scopes and 401/403 are part of the contract.
    include_guarded(app, entry.rest_router(_Unbuilt()), None, scope_table(entry.grpc_methods(_Unbuilt())))
    return app.openapi()


def render(doc: dict) -> str:
    return json.dumps(doc, indent=2, sort_keys=True) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="exit 1 if a committed document differs")
    check = parser.parse_args().check
    SNAPSHOTS.mkdir(parents=True, exist_ok=True)
    stale = []
    for name in CATALOG:
        path = SNAPSHOTS / f"{name}.json"
        text = render(live_document(name))
        if check:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
        else:
            path.write_text(text)
            print(f"wrote {path.relative_to(ROOT)}")
    if stale:
        sys.exit(f"OpenAPI differs from docs/openapi for: {', '.join(stale)}")


if __name__ == "__main__":
    main()
