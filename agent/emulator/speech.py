"""The emulated avatar's voice: espeak-ng where installed, a gentle tone otherwise.

Real speech matters: the client's VAD, a recording, a person listening to the demo all
need a voice, not a beep. The tone keeps the emulator usable where espeak-ng is absent.
"""

from __future__ import annotations

import numpy as np

from agent.emulator.runtime import SECONDS_PER_CHARACTER
from agent.media import espeak


def resample(pcm: bytes, rate: int, target: int) -> bytes:
    """Linear interpolation: plenty for an emulator's voice, and no dependency."""
    if rate == target or not pcm:
        return pcm
    samples = np.frombuffer(pcm, "<i2").astype(np.float32)
    count = round(len(samples) * target / rate)
    positions = np.arange(count) * (rate / target)
    out = np.interp(positions, np.arange(len(samples)), samples)
    return bytes(np.clip(out, -32768, 32767).astype("<i2").tobytes())


def synthesize(text: str, sample_rate: int) -> bytes:
    """``text`` spoken as PCM s16le mono at ``sample_rate`` (blocking; run it in a thread)."""
    if text.strip():
        try:
            pcm, rate = espeak.speak(text)
        except espeak.EspeakError:
            pass  # missing or failing: the tone below keeps the emulator usable
        else:
            if pcm:
                return resample(pcm, rate, sample_rate)
    return tone(max(0.3, len(text) * SECONDS_PER_CHARACTER), sample_rate)


def tone(seconds: float, sample_rate: int) -> bytes:
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    envelope = np.minimum(1.0, np.minimum(t, seconds - t) / 0.05)  # no clicks at the ends
    wave_ = np.sin(2 * np.pi * 220 * t) * 0.25 * envelope * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))
    return bytes((wave_ * 32767).astype("<i2").tobytes())


def word_timings(text: str, duration_s: float) -> list[tuple[float, str]]:
    """When each word starts, spread by length over the utterance: the transcript chunks
    arrive in step with the voice, as HeyGen's do."""
    words = text.split()
    if not words:
        return []
    total = sum(len(w) + 1 for w in words)
    timings, offset = [], 0.0
    for word in words:
        timings.append((offset, word))
        offset += duration_s * (len(word) + 1) / total
    return timings
