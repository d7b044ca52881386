from __future__ import annotations

from collections.abc import Callable

import pytest

from agent.bench import Case, cases, measure


class Ticks:
    """A clock that moves only when the code under test says: each call costs its ticks,
    so the ratios are exact whatever else the machine is doing."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def costs(self, seconds: float) -> Callable[[], None]:
        def call() -> None:
            self.now += seconds
        return call


def test_ratio_compares_candidate_with_baseline_in_the_same_run() -> None:
    clock = Ticks()
    case = Case("slow", clock.costs(0.002), "fast", clock.costs(0.001))
    ratio, candidate, baseline = measure(case, rounds=3, calls=4, clock=clock)
    assert ratio == pytest.approx(2.0) and candidate == pytest.approx(0.002)
    assert baseline == pytest.approx(0.001)


def test_one_slow_round_does_not_move_the_median() -> None:
    clock = Ticks()
    slow_rounds = iter([0.5] + [0.0] * 100)  # load hit the candidate once, hard

    def candidate() -> None:
        clock.now += 0.003 + next(slow_rounds)

    def baseline() -> None:
        clock.now += 0.001

    ratio, _, _ = measure(Case("c", candidate, "b", baseline), rounds=5, calls=1, clock=clock)
    assert ratio == pytest.approx(3.0)


def test_every_case_runs_and_is_named() -> None:
    for case in cases():
        ratio, _, _ = measure(case, rounds=1, calls=1)
        assert ratio > 0 and case.name and case.baseline_name
