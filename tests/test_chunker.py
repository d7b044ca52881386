from __future__ import annotations

import numpy as np
import pytest

from agent.heygen.chunker import AudioChunker


def ramp(n: int, start: int = 0) -> bytes:
    return (np.arange(start, start + n) % 30000).astype("<i2").tobytes()


def test_16k_is_cut_into_512_sample_chunks_and_the_remainder_carried() -> None:
    chunker = AudioChunker()
    assert chunker.push(ramp(320), 16000) == []  # 20 ms: not a chunk yet
    assert chunker.pending_bytes == 640
    chunks = chunker.push(ramp(900, 320), 16000)  # 1220 samples in all
    assert [len(c) for c in chunks] == [1024, 1024]
    assert b"".join(chunks) == ramp(1024)  # nothing lost, nothing reordered
    assert chunker.pending_bytes == (1220 - 1024) * 2


def test_one_big_frame_yields_many_chunks() -> None:
    chunks = AudioChunker().push(ramp(512 * 5 + 7), 16000)
    assert len(chunks) == 5 and all(len(c) == 1024 for c in chunks)


@pytest.mark.parametrize("rate", [8000, 24000, 44100, 48000])
def test_other_rates_are_resampled_to_16k_without_losing_time(rate: int) -> None:
    chunker = AudioChunker()
    t = np.arange(rate * 2) / rate
    tone = (np.sin(2 * np.pi * 440 * t) * 10000).astype("<i2").tobytes()
    step = rate // 50  # 20 ms frames, as a microphone gives
    chunks = []
    for i in range(0, len(tone), step * 2):
        chunks += chunker.push(tone[i : i + step * 2], rate)
    samples = len(chunks) * 512 + chunker.pending_bytes // 2
    assert samples == pytest.approx(32000, abs=640)  # 2 s at 16 kHz, less <= 40 ms filter delay
    out = np.frombuffer(b"".join(chunks), dtype="<i2").astype(float)[2000:]
    spectrum = np.abs(np.fft.rfft(out))
    peak_hz = np.argmax(spectrum) * 16000 / len(out)
    assert peak_hz == pytest.approx(440, abs=5), "the pitch survives resampling"


def test_stereo_is_downmixed() -> None:
    left = np.full(1024, 1000, dtype="<i2")
    right = np.full(1024, 3000, dtype="<i2")
    stereo = np.column_stack([left, right]).astype("<i2").tobytes()
    (chunk, chunk2) = AudioChunker().push(stereo, 16000, num_channels=2)
    assert set(np.frombuffer(chunk + chunk2, dtype="<i2")) == {2000}


def test_muted_keeps_the_cadence_with_zeros() -> None:
    chunker = AudioChunker()
    chunker.muted = True
    chunks = chunker.push(ramp(1024, 1), 16000)
    assert chunks == [bytes(1024), bytes(1024)]
    chunker.muted = False
    assert chunker.push(ramp(512, 1), 16000) == [ramp(512, 1)]


def test_finish_gives_the_remainder_and_the_resampler_tail_then_starts_afresh() -> None:
    chunker = AudioChunker()
    tone = (np.sin(np.arange(4800) / 7) * 8000).astype("<i2").tobytes()  # 100 ms at 48 kHz
    chunks = chunker.push(tone, 48000)
    rest = chunker.finish()
    assert len(b"".join(chunks) + rest) == 1600 * 2, "every sample out, the tail included"
    assert chunker.pending_bytes == 0 and chunker.finish() == b""
    chunker.muted = True
    chunker.push(ramp(100), 16000)
    assert chunker.finish() == bytes(200)
