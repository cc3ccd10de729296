"""A pytest plugin that records every REST exchange the tests make, to prove a change left the REST payloads alone.

    FXPLAT_RECORD_REST=old.jsonl python -m pytest -p rest_recorder tests/test_*_parity.py   # on the old commit
    FXPLAT_RECORD_REST=new.jsonl python -m pytest -p rest_recorder tests/test_*_parity.py   # on the new one
    python tests/rest_recorder.py old.jsonl new.jsonl

Each line: the test, the exchange's number within it, method, path and query, request body, status, and the response
body (base64). The comparison pairs exchanges by (test, number) and reports those byte-identical, those that differ
only in values that differ between any two runs (ids, creation times, latencies, page tokens that encode them), and
the rest, which must be none."""
from __future__ import annotations

import base64
import json
import os
import re
import sys

import httpx
import pytest

_VOLATILE = {"id", "created_at", "latency_ms", "next_page_token", "request_id"}


class _Recorder:
    def __init__(self, path: str) -> None:
        self.out = open(path, "w")
        self.test, self.count = "", 0

    def record(self, request: httpx.Request, response: httpx.Response) -> None:
        self.count += 1
        self.out.write(json.dumps({
            "test": self.test, "n": self.count, "method": request.method,
            "url": request.url.raw_path.decode(), "request": request.content.decode("utf-8", "replace"),
            "status": response.status_code, "body": base64.b64encode(response.content).decode()}) + "\n")


_recorder: _Recorder | None = None


def pytest_configure(config):
    global _recorder
    if path := os.environ.get("FXPLAT_RECORD_REST"):
        _recorder = _Recorder(path)
        send = httpx.AsyncClient.send

        async def recording_send(self, request, **kw):
            response = await send(self, request, **kw)
            await response.aread()
            if _recorder is not None:
                _recorder.record(request, response)
            return response

        httpx.AsyncClient.send = recording_send


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    if _recorder is not None:
        _recorder.test, _recorder.count = item.nodeid, 0


_ID = re.compile(r"[0-9a-f]{32}")  # a stored resource's id, wherever it is quoted (paths, messages)


def _masked(value):
    if isinstance(value, dict):
        return {k: "<volatile>" if k in _VOLATILE else _masked(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_masked(v) for v in value]
    return _ID.sub("<id>", value) if isinstance(value, str) else value


def compare(old_path: str, new_path: str) -> int:
    def load(path):
        return {(r["test"], r["n"]): r for r in map(json.loads, open(path))}

    old, new = load(old_path), load(new_path)
    same = volatile = 0
    different = []
    for key in sorted(old.keys() & new.keys()):
        a, b = old[key], new[key]
        if (a["method"], a["url"], a["status"], a["body"]) == (b["method"], b["url"], b["status"], b["body"]):
            same += 1
            continue
        ja, jb = (json.loads(base64.b64decode(r["body"]) or b"null") for r in (a, b))
        if (a["method"], _masked(a["url"].split("?")[0]), a["status"], _masked(ja)) == \
                (b["method"], _masked(b["url"].split("?")[0]), b["status"], _masked(jb)):
            volatile += 1
        else:
            different.append(key)
    print(f"exchanges: old {len(old)}, new {len(new)}, paired {len(old.keys() & new.keys())}")
    print(f"byte-identical: {same}; differing only in run-specific values ({', '.join(sorted(_VOLATILE))}): "
          f"{volatile}; otherwise different: {len(different)}")
    for key in different[:20]:
        print("  DIFFERENT", key, old[key]["method"], old[key]["url"][:120], old[key]["status"], new[key]["status"])
        if os.environ.get("SHOW"):
            print("    old:", base64.b64decode(old[key]["body"])[:3000])
            print("    new:", base64.b64decode(new[key]["body"])[:3000])
    return 1 if different else 0


if __name__ == "__main__":
    sys.exit(compare(sys.argv[1], sys.argv[2]))
