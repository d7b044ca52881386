"""The emulated service's rules, with a fake clock: no sockets, no waiting."""

from __future__ import annotations

import numpy as np
import pytest

from agent.emulator.faults import FailNext, Faults, FaultSettings
from agent.emulator.sessions import ServiceError, SessionRegistry, SessionState
from agent.emulator.speech_detector import SpeechDetector, SpeechEdge
from agent.heygen.protocol import interactive as ia


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def registry(clock: Clock, **kwargs: float) -> SessionRegistry:
    return SessionRegistry(clock=clock, **kwargs)  # type: ignore[arg-type]


def test_idle_timeout_and_keep_alive() -> None:
    clock = Clock()
    reg = registry(clock)
    session = reg.create(ia.NewSessionRequest(activity_idle_timeout=30), owner_key="k")
    reg.start(session)
    clock.now += 29
    assert reg.expire_due() == []
    reg.touch(session)  # keep_alive
    clock.now += 29
    assert reg.expire_due() == []
    clock.now += 1.5
    assert reg.expire_due() == [session]
    assert session.state is SessionState.EXPIRED and session.end_reason == "idle timeout"
    with pytest.raises(ServiceError) as caught:
        reg.get(session.session_id)
    assert caught.value.code == ia.CODE_SESSION_STATE


def test_default_idle_timeout_is_120s_and_can_be_disabled() -> None:
    clock = Clock()
    reg = registry(clock, duration_limit_s=10_000)
    default = reg.create(ia.NewSessionRequest(), owner_key="k")
    never = reg.create(ia.NewSessionRequest(disable_idle_timeout=True), owner_key="k")
    clock.now += 119
    assert reg.expire_due() == []
    clock.now += 1
    assert reg.expire_due() == [default]
    clock.now += 5000
    assert reg.expire_due() == [] and never.state.open


def test_duration_limit_ends_even_active_sessions() -> None:
    clock = Clock()
    reg = registry(clock, duration_limit_s=600)
    session = reg.create(ia.NewSessionRequest(), owner_key="k")
    for _ in range(6):
        clock.now += 100
        reg.touch(session)
    assert reg.expire_due() == [session]
    assert session.end_reason == "session duration limit"
    assert reg.counts() == {"created": 1, "started": 0, "stopped": 0, "expired": 1, "open": 0}


def test_concurrency_counts_only_open_sessions() -> None:
    reg = registry(Clock(), max_concurrent=2)
    first = reg.create(ia.NewSessionRequest(), owner_key="k")
    reg.create(ia.NewSessionRequest(), owner_key="k")
    with pytest.raises(ServiceError) as caught:
        reg.create(ia.NewSessionRequest(), owner_key="k")
    assert caught.value.message == ia.CONCURRENT_LIMIT_MESSAGE
    reg.stop(first)
    reg.create(ia.NewSessionRequest(), owner_key="k")


def test_state_machine_refuses_out_of_order_calls() -> None:
    reg = registry(Clock())
    session = reg.create(ia.NewSessionRequest(), owner_key="k")
    with pytest.raises(ServiceError):
        reg.require_started(session)
    reg.start(session)
    with pytest.raises(ServiceError):
        reg.start(session)
    reg.stop(session)
    with pytest.raises(ServiceError, match="correct state"):
        reg.get(session.session_id)


def test_sessions_belong_to_their_account_and_tokens_to_one_session() -> None:
    reg = registry(Clock())
    token = reg.mint_token("key-a")
    assert reg.token_owner(token) == "key-a" and reg.token_owner("forged") is None
    session = reg.create(ia.NewSessionRequest(), owner_key="key-a", token=token)
    assert reg.token_allows(token, session.session_id)
    assert not reg.token_allows(token, "other")
    with pytest.raises(ServiceError) as reused:
        reg.create(ia.NewSessionRequest(), owner_key="key-a", token=token)
    assert reused.value.status == 401
    with pytest.raises(ServiceError, match="not found"):
        reg.get(session.session_id, owner_key="key-b")


def tone(seconds: float, rate: int = 16000, level: float = 0.3) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    return (np.sin(2 * np.pi * 220 * t) * level * 32767).astype("<i2").tobytes()


def silence(seconds: float, rate: int = 16000) -> bytes:
    return bytes(int(seconds * rate) * 2)


def test_speech_detector_finds_one_utterance_fed_in_odd_pieces() -> None:
    audio = silence(0.5) + tone(1.2) + silence(1.0)
    detector = SpeechDetector(16000)
    changes = []
    for start in range(0, len(audio), 1000):  # 500-sample pieces: not window-aligned
        changes += detector.feed(audio[start:start + 1000])
    assert [c.edge for c in changes] == [SpeechEdge.STARTED, SpeechEdge.STOPPED]
    started, stopped = changes
    assert 0.55 <= started.at_s <= 0.7  # 0.5 s of silence plus the 0.1 s it must last
    assert stopped.speech_s == pytest.approx(1.2, abs=0.05)
    assert stopped.at_s == pytest.approx(0.5 + 1.2 + 0.7, abs=0.05)


def test_speech_detector_ignores_clicks_quiet_noise_and_short_pauses() -> None:
    rng = np.random.default_rng(1)
    noise = (rng.normal(0, 30, 16000)).astype("<i2").tobytes()  # about -60 dBFS
    click = tone(0.04)
    detector = SpeechDetector(16000)
    assert detector.feed(noise + click + silence(0.5)) == []
    changes = detector.feed(tone(0.5) + silence(0.3) + tone(0.5) + silence(1.0))
    assert [c.edge for c in changes] == [SpeechEdge.STARTED, SpeechEdge.STOPPED]


def test_faults_are_used_up_in_order_and_by_path() -> None:
    faults = Faults()
    faults.apply(FaultSettings(fail_next=FailNext(count=2, status=503, path="/v1/streaming.new")))
    assert faults.take_failure("/v1/streaming.start") is None
    assert [faults.take_failure("/v1/streaming.new") is not None for _ in range(3)] == [
        True, True, False]
    faults.apply(FaultSettings(latency_ms=250, ws_drop_after_messages=3))
    assert faults.latency_s == 0.25 and faults.ws_drop_after_messages == 3
    faults.apply(FaultSettings(reset=True))
    assert faults.describe()["latency_ms"] == 0 and faults.ws_drop_after_messages is None
