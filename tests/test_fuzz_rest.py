"""schemathesis against each service's live OpenAPI document, with a token: every operation, FXPLAT_FUZZ_EXAMPLES
examples each (a quick pass by default; scripts/fuzz_tier.sh runs 50), schemathesis' default checks.

Fails on any 5xx, a response that does not match its documented schema, a status, content type or header the
document does not declare, a schema-invalid request accepted, or a schema-valid request refused - except where the
refusal names one of the few rules a JSON schema cannot state (CONTEXTUAL below): those depend on another field or
on server state, and the document says so in their descriptions.
Streams (text/event-stream) are left out: a valid request never ends, and their inputs are the unary ones' (symbol,
timeframe) plus a resume token; tests/test_streams.py covers their typed errors on both transports."""
from __future__ import annotations

import re

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import positive_data_acceptance

from fuzz_platform import EXAMPLES, threaded_platform  # noqa: F401  (the fixture)

# Refusals of schema-valid requests that only the server can judge: the range's start before its end, a page token
# it issued, parameters that depend on the chosen indicator or strategy, a pair of two different symbols, symbols
# distinct once upper-cased.
CONTEXTUAL = re.compile(r"range|page_token|(indicators\[\d+\]\.)?params(\..*)?|pairs\[\d+\]|pair|symbols\[\d+\]")
SERVICES = ("market_analysis", "causal_analysis", "backtesting", "analysis_coordinator")


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=["valid", "invalid"])
@pytest.mark.parametrize("service", SERVICES)
def test_every_operation_against_its_schema(threaded_platform, service, mode):  # noqa: F811
    schema = schemathesis.openapi.from_url(f"{threaded_platform.hosts[service].rest_url}/openapi.json")

    @schema.auth()
    class Bearer:  # schemathesis' own auth: its probes without a token, or with a bad one, must be refused
        def get(self, case, context):
            return threaded_platform.tokens()

        def set(self, case, token, context):
            case.headers = {**(case.headers or {}), "Authorization": f"Bearer {token}"}
    operations = [op for op in (result.ok() for result in schema.get_all_operations()) if not _streams(op)]
    assert operations
    failures: list[str] = []
    statuses: list[int] = []
    for operation in operations:
        calls = 0

        @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy(generation_mode=mode))
        def run(case):
            nonlocal calls
            calls += 1
            statuses.append(_check(case, mode))

        try:
            run()
        except Exception as exc:  # collect every operation's failures, then report them all
            found = "\n".join(str(e)[:1500] for e in getattr(exc, "exceptions", [exc]))
            failures.append(f"{operation.method.upper()} {operation.path}: {found}")
        assert calls > 0, f"{operation.path}: no example was generated"
    assert not failures, "\n\n".join(failures)
    if mode == GenerationMode.POSITIVE:  # (invalid requests include invalid credentials: 401 is right for them)
        assert 401 not in statuses and 403 not in statuses, f"the fuzzer's token was refused: {statuses}"


def _streams(operation) -> bool:
    content = operation.definition.raw.get("responses", {}).get("200", {}).get("content", {})
    return "text/event-stream" in content


def _check(case, mode) -> int:
    response = case.call_and_validate(timeout=60, excluded_checks=[positive_data_acceptance])  # judged below
    if response.status_code == 400 and mode == GenerationMode.POSITIVE:
        fields = [v["field"] for v in response.json().get("field_violations", [])]
        assert fields and all(CONTEXTUAL.fullmatch(f) for f in fields), (
            f"schema-valid request refused: {case.method} {case.formatted_path} -> {response.text[:500]}")
    return response.status_code
