"""User audio → the voice-chat socket's 32 ms messages, with no I/O.

HeyGen's official client sends 512 samples of 16 kHz mono s16le per message. Microphones
and WAV files deliver other rates and other frame sizes, so this resamples (a streaming
soxr resampler, so no clicks at frame edges) and carries the remainder from one call to
the next. Muting keeps the cadence and sends zeros, as the official client does, so that
HeyGen's own speech detection sees silence rather than a stalled stream.
"""

from __future__ import annotations

import numpy as np
import soxr

from agent.heygen.protocol import voice_chat as vc

#: The most audio the streaming resampler holds back at any moment, measured for sources
#: of 22.05-48 kHz in 20 ms frames (about 40 ms; 8 kHz sources hold up to ~120 ms).
RESAMPLER_HOLDBACK_S = 0.045


class AudioChunker:
    def __init__(
        self, *, sample_rate: int = vc.SAMPLE_RATE, chunk_samples: int = vc.CHUNK_SAMPLES
    ) -> None:
        self.sample_rate = sample_rate
        self.chunk_bytes = chunk_samples * vc.SAMPLE_WIDTH
        self.muted = False
        self._pending = bytearray()
        self._resampler: soxr.ResampleStream | None = None
        self._source_rate = sample_rate

    def push(self, pcm: bytes, sample_rate: int, num_channels: int = 1) -> list[bytes]:
        """Add audio; return every whole chunk now ready (possibly none)."""
        if num_channels != 1:
            pcm = _downmix(pcm, num_channels)
        if sample_rate != self.sample_rate:
            pcm = self._resample(pcm, sample_rate)
        self._pending += pcm
        whole = len(self._pending) // self.chunk_bytes * self.chunk_bytes
        if not whole:
            return []
        ready = bytes(self._pending[:whole])
        del self._pending[:whole]
        if self.muted:
            ready = bytes(len(ready))
        return [ready[i : i + self.chunk_bytes] for i in range(0, whole, self.chunk_bytes)]

    @property
    def pending_bytes(self) -> int:
        return len(self._pending)

    def reset(self) -> None:
        """Forget buffered audio, e.g. after an interruption or a reconnect."""
        self._pending.clear()
        self._resampler = None

    def _resample(self, pcm: bytes, sample_rate: int) -> bytes:
        if self._resampler is None or sample_rate != self._source_rate:
            self._resampler = soxr.ResampleStream(
                sample_rate, self.sample_rate, 1, dtype="int16", quality="HQ"
            )
            self._source_rate = sample_rate
        samples = np.frombuffer(pcm, dtype="<i2")
        return bytes(self._resampler.resample_chunk(samples).tobytes())


def _downmix(pcm: bytes, num_channels: int) -> bytes:
    frames = np.frombuffer(pcm, dtype="<i2").reshape(-1, num_channels)
    return bytes(frames.mean(axis=1).astype("<i2").tobytes())
