"""The four checks and the numbers behind them: each passes on good evidence and fails, saying why, on bad."""
from __future__ import annotations

import pytest

from rollout.analysis import analyse
from rollout.evidence import Evidence, _quantile
from rollout.model import Thresholds, parse_duration, parse_steps

T = Thresholds()


def good(**changes) -> Evidence:
    e = Evidence(window_s=300, calls={"grpc": 1000, "rest": 1000}, errors={"grpc": 1, "rest": 1},
                 p99_ms={"grpc": 10.0, "rest": 12.0}, fallbacks=2, grpc_attempts=1000, breakers_open=0,
                 shadow_samples=200, shadow_mismatches=0)
    for k, v in changes.items():
        setattr(e, k, v)
    return e


def verdicts(e: Evidence, t: Thresholds = T) -> dict[str, bool]:
    return {c.name: c.passed for c in analyse(e, t)}


def test_good_evidence_passes_every_check():
    assert verdicts(good()) == {"parity": True, "errors": True, "latency": True, "resilience": True}


@pytest.mark.parametrize("changes, failing", [
    ({"shadow_samples": 49}, "parity"),  # too little evidence is not good evidence
    ({"shadow_mismatches": 1, "shadow_samples": 200}, "parity"),  # 0.5 % > 0.1 %
    ({"errors": {"grpc": 25, "rest": 1}}, "errors"),  # 2.5 % vs 0.1 %: more than 1 point worse
    ({"p99_ms": {"grpc": 19.0, "rest": 12.0}}, "latency"),  # > 1.5 x
    ({"fallbacks": 30}, "resilience"),  # 3 % of gRPC attempts
    ({"breakers_open": 1}, "resilience"),
])
def test_each_check_fails_alone_on_its_own_bad_number(changes, failing):
    got = verdicts(good(**changes))
    assert [name for name, ok in got.items() if not ok] == [failing]


def test_domain_errors_do_not_count_and_gRPC_within_the_margin_passes():
    # Evidence.errors only ever holds transport errors (evidence.TRANSPORT_ERROR_CODES); 1.9 % vs 1 % is in margin.
    assert verdicts(good(errors={"grpc": 19, "rest": 10}))["errors"]
    assert verdicts(good(calls={"rest": 1000}, errors={}))["errors"]  # no gRPC calls yet: nothing worse


def test_latency_without_one_side_is_not_judged_and_thresholds_come_from_the_rollout():
    assert verdicts(good(p99_ms={"grpc": 50.0}))["latency"]
    assert not verdicts(good(p99_ms={"grpc": 13.0, "rest": 12.0}), Thresholds(latency_factor=1.05))["latency"]
    check = next(c for c in analyse(good(shadow_samples=3), T) if c.name == "parity")
    assert "only 3 shadow comparisons" in check.detail and check.limit == ">= 50 samples"


def test_p99_from_histogram_buckets_interpolates_as_prometheus_does():
    # 100 observations: 90 at or below 10 ms, 99 at or below 25 ms, all at or below 50 ms.
    buckets = [(0.005, 50), (0.01, 90), (0.025, 99), (0.05, 100), (float("inf"), 100)]
    assert _quantile(0.99, buckets) == pytest.approx(25.0)
    assert _quantile(0.5, buckets) == pytest.approx(5.0)
    assert _quantile(0.99, [(0.01, 0), (float("inf"), 0)]) is None


def test_steps_and_durations_are_checked_with_clear_errors():
    assert parse_steps("1,5,25,50,100") == [1, 5, 25, 50, 100]
    assert parse_duration("5m") == 300 and parse_duration("3s") == 3 and parse_duration("1.5h") == 5400
    for bad, words in (("5,1,100", "increase"), ("1,50", "end at 100"), ("0,100", "between 1 and 100"),
                       ("a,b", "comma-separated")):
        with pytest.raises(ValueError, match=words):
            parse_steps(bad)
    with pytest.raises(ValueError, match="positive duration"):
        parse_duration("soon")
