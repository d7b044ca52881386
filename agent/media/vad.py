"""Silero VAD through Pipecat's ONNX analyzer (no torch), with its parameters settable."""

from __future__ import annotations

from pipecat.audio.vad.silero import SileroVADAnalyzer
from pipecat.audio.vad.vad_analyzer import VADParams
from pipecat.processors.audio.vad_processor import VADProcessor
from pydantic import BaseModel, ConfigDict, Field


class VADSettings(BaseModel):
    """Pipecat's ``VADParams``, validated: the same names and defaults."""

    model_config = ConfigDict(extra="forbid")

    confidence: float = Field(0.7, ge=0, le=1)
    start_secs: float = Field(0.2, ge=0)
    stop_secs: float = Field(0.2, ge=0)
    min_volume: float = Field(0.6, ge=0, le=1)


def silero_vad(
    settings: VADSettings | None = None, *, sample_rate: int | None = None
) -> VADProcessor:
    """A VADProcessor that emits VADUserStarted/StoppedSpeakingFrame on real speech."""
    s = settings or VADSettings()
    params = VADParams(
        confidence=s.confidence, start_secs=s.start_secs, stop_secs=s.stop_secs,
        min_volume=s.min_volume,
    )
    return VADProcessor(vad_analyzer=SileroVADAnalyzer(sample_rate=sample_rate, params=params))
