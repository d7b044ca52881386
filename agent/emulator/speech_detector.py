"""Server-side speech detection for the emulated voice chat, with no I/O.

HeyGen tells the client ``user_start``/``user_stop`` from its own detection. The emulator
uses a plain energy detector on purpose: it must be independent of the client's Silero
VAD, so that a test where both agree says something about the audio, not about one model
agreeing with itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import numpy as np

WINDOW_S = 0.02
#: Quiet this long ends the user's turn (the detector's stop delay).
HANGOVER_S = 0.7


class SpeechEdge(Enum):
    STARTED = "started"
    STOPPED = "stopped"


@dataclass(frozen=True, slots=True)
class SpeechChange:
    edge: SpeechEdge
    at_s: float  # audio time (seconds of samples received) at which it was decided
    speech_s: float = 0.0  # for STOPPED: how long the utterance lasted


class SpeechDetector:
    """Feed PCM s16le mono; get start/stop decisions in audio time.

    Speech starts after ``min_speech_s`` of windows louder than ``threshold_dbfs`` and
    stops after ``hangover_s`` of quieter ones, like HeyGen's own pauses between turns.
    """

    def __init__(
        self,
        sample_rate: int,
        *,
        threshold_dbfs: float = -40.0,
        min_speech_s: float = 0.1,
        hangover_s: float = HANGOVER_S,
    ) -> None:
        self.sample_rate = sample_rate
        self._window = max(1, int(sample_rate * WINDOW_S))
        self._threshold = 32768.0 * 10 ** (threshold_dbfs / 20)
        self._min_loud = max(1, round(min_speech_s / WINDOW_S))
        self._min_quiet = max(1, round(hangover_s / WINDOW_S))
        self._pending = np.zeros(0, dtype=np.int16)
        self._windows = 0
        self._loud_run = 0
        self._quiet_run = 0
        self._speaking = False
        self._started_at = 0.0

    @property
    def speaking(self) -> bool:
        return self._speaking

    def feed(self, pcm: bytes) -> list[SpeechChange]:
        samples = np.concatenate([self._pending, np.frombuffer(pcm, dtype="<i2")])
        whole = len(samples) // self._window * self._window
        self._pending = samples[whole:].copy()
        if not whole:
            return []
        windows = samples[:whole].astype(np.float32).reshape(-1, self._window)
        loud = np.sqrt(np.mean(windows * windows, axis=1)) >= self._threshold
        changes = []
        for is_loud in loud:
            self._windows += 1
            change = self._step(bool(is_loud))
            if change is not None:
                changes.append(change)
        return changes

    def _step(self, loud: bool) -> SpeechChange | None:
        now = self._windows * WINDOW_S
        if loud:
            self._loud_run += 1
            self._quiet_run = 0
        else:
            self._quiet_run += 1
            self._loud_run = 0
        if not self._speaking and self._loud_run >= self._min_loud:
            self._speaking = True
            self._started_at = now - self._loud_run * WINDOW_S
            return SpeechChange(SpeechEdge.STARTED, now)
        if self._speaking and self._quiet_run >= self._min_quiet:
            self._speaking = False
            speech = now - self._quiet_run * WINDOW_S - self._started_at
            return SpeechChange(SpeechEdge.STOPPED, now, speech_s=speech)
        return None
