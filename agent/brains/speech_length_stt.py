"""An offline speech-to-text stand-in: it hears *that* and *how long* you spoke, not what.

Every real STT service wants a key and the network. This one is a real Pipecat
``SegmentedSTTService`` (it runs on the VAD's speech segments, as Whisper's does), so an
own-brain bot runs end to end with no key: each segment becomes a ``TranscriptionFrame``
saying its length, e.g. ``"(2.3 seconds of speech)"``, which the scripted LLM can answer.
It claims no more than it knows.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator

from pipecat.frames.frames import Frame, TranscriptionFrame
from pipecat.services.settings import STTSettings
from pipecat.services.stt_service import SegmentedSTTService
from pipecat.utils.time import time_now_iso8601


def describe(seconds: float) -> str:
    return f"({seconds:.1f} seconds of speech)"


class SpeechLengthSTTService(SegmentedSTTService):
    """Transcribes each speech segment as its length (see the module's docstring)."""

    placement = "before_heygen"

    def __init__(self, **kwargs: object) -> None:
        # No model and no language: ``None`` is Pipecat's "not supported" (left unset,
        # each start logged an ERROR).
        kwargs.setdefault("settings", STTSettings(model=None, language=None))
        super().__init__(trailing_silence_secs=0.0, **kwargs)  # type: ignore[arg-type]

    @property
    def wants_wav_segments(self) -> bool:
        return False  # raw PCM: its length is all that is read

    def can_generate_metrics(self) -> bool:
        return True

    async def run_stt(self, audio: bytes) -> AsyncGenerator[Frame | None, None]:
        seconds = len(audio) / 2 / self.sample_rate
        yield TranscriptionFrame(describe(seconds), self._user_id, time_now_iso8601())
