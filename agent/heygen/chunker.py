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
        self._pending += self.convert(pcm, sample_rate, num_channels)
        whole = len(self._pending) // self.chunk_bytes * self.chunk_bytes
        if not whole:
            return []
        ready = bytes(self._pending[:whole])
        del self._pending[:whole]
        if self.muted:
            ready = bytes(len(ready))
        return [ready[i : i + self.chunk_bytes] for i in range(0, whole, self.chunk_bytes)]

    @property
    def chunk_seconds(self) -> float:
        return self.chunk_bytes / vc.SAMPLE_WIDTH / self.sample_rate

    @property
    def pending_bytes(self) -> int:
        return len(self._pending)

    def convert(self, pcm: bytes, sample_rate: int, num_channels: int = 1) -> bytes:
        """``pcm`` downmixed to mono and resampled to :attr:`sample_rate`, uncut.

        The resampler streams: it holds back a little audio (:data:`RESAMPLER_HOLDBACK_S`)
        that a later call, or :meth:`finish`, gives out. ``push`` is this plus the cutting.
        """
        if num_channels != 1:
            pcm = _downmix(pcm, num_channels)
        if sample_rate == self.sample_rate:
            return self._drain_resampler() + pcm  # the old rate's stream, if any, ends first
        return self._resample(pcm, sample_rate)

    def finish(self) -> bytes:
        """End the stream: the remainder not yet a whole chunk and whatever the resampler
        still holds, so that every sample pushed comes out; the next push starts afresh."""
        rest = bytes(self._pending) + self._drain_resampler()
        self._pending.clear()
        return bytes(len(rest)) if self.muted else rest

    def reset(self) -> None:
        """Forget buffered audio, e.g. after an interruption or a reconnect."""
        self._pending.clear()
        self._resampler = None

    def _resample(self, pcm: bytes, sample_rate: int) -> bytes:
        tail = b""
        if self._resampler is None or sample_rate != self._source_rate:
            tail = self._drain_resampler()  # a new source rate: the old stream's last audio
            self._resampler = soxr.ResampleStream(
                sample_rate, self.sample_rate, 1, dtype="int16", quality="HQ"
            )
            self._source_rate = sample_rate
        samples = np.frombuffer(pcm, dtype="<i2")
        return tail + bytes(self._resampler.resample_chunk(samples).tobytes())

    def _drain_resampler(self) -> bytes:
        if self._resampler is None:
            return b""
        tail = self._resampler.resample_chunk(np.zeros(0, dtype="<i2"), last=True)
        self._resampler = None
        return bytes(tail.tobytes())


def _downmix(pcm: bytes, num_channels: int) -> bytes:
    frames = np.frombuffer(pcm, dtype="<i2").reshape(-1, num_channels)
    return bytes(frames.mean(axis=1).astype("<i2").tobytes())
