"""The speech pacer: sizes, release times against a fake clock, conversion, utterances."""

from __future__ import annotations

import numpy as np
import pytest
import soxr
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.heygen.pacing import (
    Chunk,
    PacingRules,
    SpeechPacer,
    measure_drift,
)
from agent.heygen.protocol.liveavatar import socket as lite

RATE = 24_000
EPS = 1e-9


def ramp(n: int, start: int = 0) -> bytes:
    """``n`` distinct-looking 24 kHz mono samples, so order and loss show."""
    return ((np.arange(start, start + n) * 7) % 60000 - 30000).astype("<i2").tobytes()


def seconds(s: float) -> int:
    return round(s * RATE)


def samples(chunk: Chunk) -> int:
    return len(chunk.pcm) // 2


def drain(pacer: SpeechPacer, now: float) -> list[tuple[float, Chunk]]:
    """Run the I/O loop on a fake clock: sleep until ``next_due_at``, call ``due``."""
    out: list[tuple[float, Chunk]] = []
    while (at := pacer.next_due_at()) is not None:
        assert at >= now, "next_due_at never points into the past"
        now = at
        released = pacer.due(now)
        assert released, "next_due_at promised a chunk"
        out += [(now, c) for c in released]
    return out


def catch_up(pacer: SpeechPacer, now: float) -> list[tuple[float, Chunk]]:
    """What the I/O loop released while it slept until ``now``."""
    out: list[tuple[float, Chunk]] = []
    while (at := pacer.next_due_at()) is not None and at <= now:
        out += [(at, c) for c in pacer.due(at)]
    return out


def speak_fast(pcm: bytes, rate: int = RATE, channels: int = 1) -> list[tuple[float, Chunk]]:
    """A TTS far faster than real time: the whole answer at t=0, then the clock runs."""
    pacer = SpeechPacer()
    pacer.begin()
    out = [(0.0, c) for c in pacer.push(pcm, rate, channels, 0.0)]
    out += [(0.0, c) for c in pacer.end(0.0)]
    return out + drain(pacer, 0.0)


def check_buffer(releases: list[tuple[float, Chunk]], lead_s: float) -> None:
    """Model HeyGen's buffer (it plays whatever it holds, in real time): when a chunk is
    released, no more than ``lead_s`` of earlier audio is still waiting to be played."""
    play_end = -np.inf
    for t, chunk in releases:
        assert max(0.0, play_end - t) <= lead_s + EPS
        play_end = max(play_end, t) + chunk.duration_s


# ---------------------------------------------------------------- sizes and times


def test_the_first_chunk_is_400_ms_and_goes_as_soon_as_it_is_complete() -> None:
    pacer = SpeechPacer()
    event_id = pacer.begin()
    assert pacer.speaking and pacer.event_id == event_id
    assert pacer.push(ramp(seconds(0.3)), RATE, 1, now=5.0) == []
    assert pacer.next_due_at() is None, "nothing to wait for but audio"
    (chunk,) = pacer.push(ramp(seconds(0.15), seconds(0.3)), RATE, 1, now=5.1)
    assert chunk == Chunk(event_id, ramp(seconds(0.4)), 0.0, 0.4, final=False)
    assert pacer.sent_s == pytest.approx(0.4)
    assert pacer.queued_s == pytest.approx(0.05)


def test_later_chunks_are_1_s_and_at_most_1_s_ahead_of_real_time() -> None:
    pacer = SpeechPacer()
    pacer.begin()
    first, second = pacer.push(ramp(seconds(3)), RATE, 1, now=10.0)
    assert (samples(first), samples(second)) == (seconds(0.4), seconds(1))
    assert second.offset_s == pytest.approx(0.4) and second.pcm == ramp(seconds(1), seconds(0.4))
    # 1.4 s sent at 10.0: the next may go when 0.4 s has played (1 s left in the buffer)
    assert pacer.next_due_at() == pytest.approx(10.4)
    assert pacer.due(10.39) == []
    (third,) = pacer.due(10.4)
    assert samples(third) == seconds(1) and third.offset_s == pytest.approx(1.4)
    assert pacer.next_due_at() is None, "0.6 s left: not a whole chunk until end"
    assert pacer.end(now=10.5) == [], "the remainder is not due before 11.4"
    assert not pacer.speaking
    assert pacer.next_due_at() == pytest.approx(11.4)
    (last,) = pacer.due(11.4)
    assert samples(last) == seconds(0.6) and last.final
    assert b"".join(c.pcm for c in (first, second, third, last)) == ramp(seconds(3))
    assert pacer.next_due_at() is None and pacer.queued_s == 0


def test_a_60_s_answer_pushed_at_once_is_released_in_step_with_real_time() -> None:
    releases = speak_fast(ramp(seconds(60)))
    sizes = [samples(c) for _, c in releases]
    assert sizes == [seconds(0.4)] + [seconds(1)] * 59 + [seconds(0.6)]
    assert [c.final for _, c in releases] == [False] * 60 + [True]
    for t, chunk in releases:  # each goes exactly 1 s before it is played
        assert t == pytest.approx(max(0.0, chunk.offset_s - 1.0), abs=EPS)
    check_buffer(releases, lead_s=1.0)
    drift = measure_drift((t, c.offset_s) for t, c in releases)
    assert drift.max_lead_s == pytest.approx(1.0)
    assert drift.max_lag_s == 0
    assert drift.final_lead_s == pytest.approx(1.0), "no drift accumulated over 60 s"
    assert releases[-1][0] == pytest.approx(58.4)
    assert b"".join(c.pcm for _, c in releases) == ramp(seconds(60))


def test_a_tts_slower_than_real_time_gets_its_chunks_sent_as_soon_as_complete() -> None:
    pacer = SpeechPacer()
    pacer.begin()
    frame = seconds(0.02)
    releases: list[tuple[float, Chunk]] = []
    for i in range(250):  # 5 s of audio in 20 ms frames, each 25 ms after the last
        now = (i + 1) * 0.025
        releases += [(now, c) for c in pacer.push(ramp(frame, i * frame), RATE, 1, now)]
        assert pacer.next_due_at() is None, "no complete chunk is ever held back"
    releases += [(6.25, c) for c in pacer.end(6.25)]
    assert [samples(c) for _, c in releases] == [seconds(0.4)] + [seconds(1)] * 4 + [seconds(0.6)]
    for t, chunk in releases[:-1]:  # each goes with the frame that completes it
        assert t == pytest.approx((chunk.offset_s + chunk.duration_s) / 0.8, abs=EPS)
    assert releases[-1][1].final and releases[-1][0] == 6.25
    # the avatar waits for the audio (1 s chunks of a slow TTS), never for the pacer
    drift = measure_drift((t, c.offset_s) for t, c in releases)
    assert drift.max_lead_s == 0 and drift.max_lag_s > 0


def test_after_a_stall_the_clock_restarts_rather_than_bursting() -> None:
    pacer = SpeechPacer()
    pacer.begin()
    assert len(pacer.push(ramp(seconds(1.4)), RATE, 1, now=0.0)) == 2  # played by 1.4
    # the TTS stalls for 5 s, then delivers 10 s at once
    releases = [(10.0, c) for c in pacer.push(ramp(seconds(10)), RATE, 1, now=10.0)]
    releases += drain(pacer, 10.0)
    check_buffer(releases, lead_s=1.0)
    assert [t for t, _ in releases].count(10.0) == 2, "1 s ahead again, not 9 s ahead"
    assert releases[2][0] == pytest.approx(10.0 + 1.0)


# ---------------------------------------------------------------- conversion


def tone(rate: int, duration_s: float, channels: int) -> np.ndarray:
    t = np.arange(round(rate * duration_s)) / rate
    left = np.sin(2 * np.pi * 440 * t) * 9000
    right = np.sin(2 * np.pi * 660 * t) * 5000
    both = np.column_stack([left, right][:channels])
    return both.astype("<i2")


@pytest.mark.parametrize(
    ("rate", "channels"), [(16000, 1), (22050, 1), (44100, 1), (48000, 2), (22050, 2)]
)
def test_other_rates_and_stereo_come_out_24k_mono_every_sample_once(
    rate: int, channels: int
) -> None:
    audio = tone(rate, 2.5, channels)
    pacer = SpeechPacer()
    pacer.begin()
    out: list[Chunk] = []
    step = rate // 50 + 3  # ~20 ms frames that do not divide the chunks
    for i in range(0, len(audio), step):
        out += pacer.push(audio[i : i + step].tobytes(), rate, channels, now=0.0)
    out += pacer.end(0.0) + [c for _, c in drain(pacer, 0.0)]
    pcm = np.frombuffer(b"".join(c.pcm for c in out), dtype="<i2")
    assert len(pcm) == pytest.approx(2.5 * RATE, abs=1), "the resampler's tail is flushed"
    mono = audio.astype(float).mean(axis=1).astype("<i2")
    reference = soxr.resample(mono, rate, RATE, quality="HQ")
    assert len(pcm) == len(reference)
    assert np.abs(pcm.astype(int) - reference.astype(int)).max() <= 4, "in order, none twice"
    assert [samples(c) for c in out[:3]] == [seconds(0.4), seconds(1), seconds(1)]


def test_a_change_of_rate_within_an_utterance_loses_nothing() -> None:
    pacer = SpeechPacer()
    pacer.begin()
    out = pacer.push(tone(16000, 1, 1).tobytes(), 16000, 1, 0.0)
    out += pacer.push(tone(48000, 1, 2).tobytes(), 48000, 2, 0.0)
    out += pacer.push(ramp(seconds(1)), RATE, 1, 0.0)
    out += pacer.end(0.0) + [c for _, c in drain(pacer, 0.0)]
    pcm = b"".join(c.pcm for c in out)
    assert len(pcm) // 2 == pytest.approx(3 * RATE, abs=2), "each old stream's tail flushed"
    assert pcm.endswith(ramp(seconds(1)))


def test_24k_stereo_is_downmixed_without_resampling() -> None:
    left, right = np.arange(4800, dtype="<i2"), np.full(4800, 100, dtype="<i2")
    stereo = np.column_stack([left, right]).astype("<i2").tobytes()
    releases = speak_fast(stereo, RATE, 2)
    pcm = np.frombuffer(b"".join(c.pcm for _, c in releases), dtype="<i2")
    assert np.array_equal(pcm, ((left.astype(int) + 100) // 2).astype("<i2"))


def test_bad_input_is_refused() -> None:
    pacer = SpeechPacer()
    with pytest.raises(RuntimeError, match="begin"):
        pacer.push(ramp(10), RATE, 1, 0.0)
    pacer.begin()
    with pytest.raises(ValueError, match="whole"):
        pacer.push(b"\x00\x01\x02", RATE, 1, 0.0)
    with pytest.raises(ValueError, match="whole"):
        pacer.push(bytes(6), RATE, 2, 0.0)
    with pytest.raises(ValueError, match="format"):
        pacer.push(bytes(4), 0, 1, 0.0)
    with pytest.raises(ValueError):
        PacingRules(chunk_s=0)
    with pytest.raises(ValueError):
        PacingRules(lead_s=-1)


# ---------------------------------------------------------------- utterances


def test_end_flushes_a_short_remainder_at_once() -> None:
    pacer = SpeechPacer()
    event_id = pacer.begin()
    assert pacer.push(ramp(seconds(0.1)), RATE, 1, 0.0) == []
    (chunk,) = pacer.end(0.0)
    assert chunk == Chunk(event_id, ramp(seconds(0.1)), 0.0, pytest.approx(0.1), final=True)


def test_an_utterance_ending_on_a_chunk_boundary_gets_an_empty_final_chunk() -> None:
    pacer = SpeechPacer()
    event_id = pacer.begin()
    (chunk,) = pacer.push(ramp(seconds(0.4)), RATE, 1, 0.0)
    assert not chunk.final
    (last,) = pacer.end(0.1)
    assert last == Chunk(event_id, b"", pytest.approx(0.4), 0.0, final=True)


def test_an_utterance_without_audio_yields_nothing() -> None:
    pacer = SpeechPacer()
    pacer.begin()
    assert pacer.end(0.0) == [] and pacer.next_due_at() is None and pacer.queued_s == 0
    assert pacer.end(0.0) == [], "ending twice is harmless"


def test_interrupt_drops_the_queue_and_the_resampler_state() -> None:
    pacer = SpeechPacer()
    old = pacer.begin()
    audio = tone(48000, 10, 1).tobytes()
    assert len(pacer.push(audio, 48000, 1, 0.0)) == 2
    assert pacer.queued_s > 8 and pacer.next_due_at() is not None
    pacer.interrupt()
    assert not pacer.speaking and pacer.queued_s == 0 and pacer.next_due_at() is None
    assert pacer.due(100.0) == [] and pacer.end(100.0) == []
    assert pacer.event_id == old, "the caller can still name what it interrupted"
    new = pacer.begin()
    assert new != old
    (chunk,) = pacer.push(ramp(seconds(0.5)), RATE, 1, 0.5)  # the avatar is silent: at once
    assert chunk == Chunk(new, ramp(seconds(0.4)), 0.0, 0.4, final=False)


def test_each_utterance_has_its_own_id_and_they_queue_in_order() -> None:
    pacer = SpeechPacer()
    first = pacer.begin()
    releases = [(0.0, c) for c in pacer.push(ramp(seconds(5)), RATE, 1, 0.0) + pacer.end(0.0)]
    second = pacer.begin()
    assert first != second and len(second) == 32 and pacer.event_id == second
    releases += [(0.0, c) for c in pacer.push(ramp(seconds(3)), RATE, 1, 0.0)]
    releases += [(0.0, c) for c in pacer.end(0.0)]
    assert pacer.sent_s == 0, "the second waits behind the first"
    releases += drain(pacer, 0.0)
    ids = [c.event_id for _, c in releases]
    assert ids == [first] * ids.count(first) + [second] * ids.count(second)
    assert [c.final for _, c in releases].count(True) == 2
    mine = [(t, c) for t, c in releases if c.event_id == second]
    assert mine[0][1].offset_s == 0 and samples(mine[0][1]) == seconds(0.4)
    assert mine[0][0] == pytest.approx(5 - 1.0), "one clock: 1 s before the first ends"
    check_buffer(releases, lead_s=1.0)
    assert b"".join(c.pcm for _, c in mine) == ramp(seconds(3))


def test_begin_refuses_while_an_utterance_is_open() -> None:
    pacer = SpeechPacer()
    pacer.begin()
    with pytest.raises(RuntimeError, match="end it"):
        pacer.begin()


# ---------------------------------------------------------------- message size


def test_no_chunk_exceeds_the_byte_limit_and_the_default_fits_a_lite_message() -> None:
    pacer = SpeechPacer(PacingRules(first_chunk_s=30, chunk_s=30))
    pacer.begin()
    chunks = pacer.push(ramp(seconds(40)), RATE, 1, 0.0) + pacer.end(0.0)
    chunks += [c for _, c in drain(pacer, 0.0)]
    limit = PacingRules().max_chunk_bytes
    assert max(len(c.pcm) for c in chunks) == limit
    assert sum(len(c.pcm) for c in chunks) == seconds(40) * 2
    message = lite.encode(lite.speak(chunks[0].pcm, chunks[0].event_id))
    assert len(message.encode()) <= lite.MAX_MESSAGE_BYTES

    small = SpeechPacer(PacingRules(max_chunk_bytes=1001))
    small.begin()
    out = small.push(ramp(seconds(1)), RATE, 1, 0.0) + small.end(0.0)
    out += [c for _, c in drain(small, 0.0)]
    assert {len(c.pcm) for c in out[:-1]} == {1000}
    assert b"".join(c.pcm for c in out) == ramp(seconds(1))


# ---------------------------------------------------------------- properties


@settings(max_examples=60, deadline=None)
@given(
    rate=st.sampled_from([8000, 16000, 22050, 24000, 44100, 48000]),
    channels=st.integers(1, 2),
    lead_s=st.sampled_from([0.0, 0.5, 1.0, 3.0]),
    frames=st.lists(
        st.tuples(st.integers(0, 6000), st.floats(0, 0.5, allow_nan=False)),
        min_size=1,
        max_size=40,
    ),
)
def test_any_frames_and_timing_keep_duration_order_and_the_rule(
    rate: int, channels: int, lead_s: float, frames: list[tuple[int, float]]
) -> None:
    pacer = SpeechPacer(PacingRules(lead_s=lead_s))
    event_id = pacer.begin()
    rng = np.random.default_rng(len(frames))
    now, taken = 0.0, 0
    releases: list[tuple[float, Chunk]] = []
    for n, gap in frames:
        now += gap
        releases += catch_up(pacer, now)
        pcm = rng.integers(-20000, 20000, n * channels, dtype="<i2").tobytes()
        releases += [(now, c) for c in pacer.push(pcm, rate, channels, now)]
        taken += n
        at = pacer.next_due_at()
        assert at is None or at > now, "a due, complete chunk is never held back"
    releases += [(now, c) for c in pacer.end(now)]
    releases += drain(pacer, now)

    total = sum(samples(c) for _, c in releases)
    assert abs(total - taken * RATE / rate) <= 1
    if rate == RATE and channels == 1:
        assert pacer.sent_s * RATE == pytest.approx(taken)
    times = [t for t, _ in releases]
    assert times == sorted(times)
    assert all(c.event_id == event_id for _, c in releases)
    if total:
        *body, (_, last) = releases
        assert last.final and not any(c.final for _, c in body)
        assert [samples(c) for _, c in body] == (
            [seconds(0.4)] + [seconds(1)] * (len(body) - 1) if body else []
        )
        offsets = np.cumsum([0] + [samples(c) for _, c in releases[:-1]]) / RATE
        assert [c.offset_s for _, c in releases] == pytest.approx(list(offsets))
        start = times[0]
        for t, chunk in releases:  # the brief's rule, and HeyGen's buffer bounded
            assert t >= start + chunk.offset_s - lead_s - EPS
        check_buffer(releases, lead_s)
    else:
        assert releases == []
    assert pacer.queued_s == 0 and not pacer.speaking
