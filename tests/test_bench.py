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


@pytest.mark.livekit
@pytest.mark.timeout(300)  # tiny, but a dozen processes one after another on a loaded machine
async def test_session_bench_runs_and_writes_well_formed_json() -> None:
    """The session benchmark, tiny: one round of each case, one session for a second,
    both video modes and video alone; what it writes must survive JSON and render as the
    document."""
    import json

    from agent.bench_options import BenchConfig
    from agent.performance_report import render, table
    from agent.session_bench import (
        COMMAND_VARIANTS,
        LIVEAVATAR_START_VARIANTS,
        START_VARIANTS,
        TURN_VARIANTS,
        run,
    )
    from tests.machine import require_livekit_binary

    require_livekit_binary()
    config = BenchConfig(start_rounds=1, turn_rounds=1, lipsync_rounds=1, utterance_s=2.0,
                         session_counts=(1,), soak_s=1.0, decodes=("i420", "rgb"))
    data = json.loads(json.dumps(await run(config)))
    for variant in START_VARIANTS:
        assert data["start"]["variants"][variant]["video_ms"]["median"] > 0
    for variant in LIVEAVATAR_START_VARIANTS:
        assert data["start_liveavatar"]["variants"][variant]["video_ms"]["median"] > 0
    for variant in COMMAND_VARIANTS:
        command = data["command"]["variants"][variant]
        assert 0 < command["created_ms"]["median"] < command["video_ms"]["median"]
    for variant in TURN_VARIANTS:
        assert data["turn"]["variants"][variant]["end_to_user_stop_ms"]["n"] == 1
    assert data["lipsync"]["first_audio_ms"]["n"] == 1
    for lip in (data["lipsync"], data["lipsync_liveavatar"]):
        assert lip["transport_first_audio_ms"]["median"] > 0 < lip["first_audio_ms"]["median"]
    assert data["lipsync"]["drift"]["avatar_audio_s"] > 0
    runs = data["sessions"]["runs"]
    assert [(r["decode"], r["sessions"], r["avatar_audio"]) for r in runs] == [
        ("i420", 1, True), ("rgb", 1, True), ("i420", 1, False)]
    assert all(r["started"] == 1 and r["video_frames"] > 0 for r in runs)
    assert all(r["agent_cpu_by_thread"]["python"] > 0 for r in runs)
    assert "| i420, video only | 1 |" in render(data)
    assert "# Performance" in render(data) and "start → first video frame" in table(data)
    assert "heygen-agent run → first video frame" in table(data)
    assert "### LiveAvatar (LITE, sandbox)" in render(data)
    assert "start → first video frame (LiveAvatar, concurrent)" in table(data)
