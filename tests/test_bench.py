from __future__ import annotations

import time

from agent.bench import Case, cases, measure


def test_ratio_compares_candidate_with_baseline_in_the_same_run() -> None:
    slow = Case("slow", lambda: time.sleep(0.002), "fast", lambda: time.sleep(0.001))
    ratio, candidate, baseline = measure(slow, rounds=3, calls=3)
    assert 1.3 < ratio < 3.0 and candidate > baseline


def test_every_case_runs_and_is_named() -> None:
    for case in cases():
        ratio, _, _ = measure(case, rounds=1, calls=1)
        assert ratio > 0 and case.name and case.baseline_name
