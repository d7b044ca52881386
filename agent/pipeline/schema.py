"""What a pipeline file may say: pydantic models, every level ``extra="forbid"``.

Unknown keys are errors (with a did-you-mean) because a misspelt setting that is silently
ignored costs a billed session to discover. The HeyGen session settings are the REST
client's own ``NewSessionRequest``, so the file and the wire cannot drift apart.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from agent.heygen.protocol import interactive as ia
from agent.heygen.session import (
    DEFAULT_KEEP_ALIVE_S,
    DEFAULT_MEDIA_GRACE_S,
    DEFAULT_STOP_DEADLINE_S,
)
from agent.heygen.settings import NOT_A_BASE_URL, is_base_url
from agent.heygen.transport import HeyGenParams
from agent.media.vad import VADSettings


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SessionSettings(ia.NewSessionRequest):
    """Every ``streaming.new`` setting, plus how the client runs the session."""

    push_to_talk: bool = False
    keep_alive_interval_s: float | None = Field(DEFAULT_KEEP_ALIVE_S, gt=0)
    #: how long a failing ``streaming.stop`` is retried before the run says it is open
    stop_deadline_s: float = Field(DEFAULT_STOP_DEADLINE_S, gt=0)
    #: how long the avatar may be gone from the room before the session is ended
    media_grace_s: float = Field(DEFAULT_MEDIA_GRACE_S, gt=0)


class HeyGenSection(_Strict):
    #: Unset: ``HEYGEN_BASE_URL``, then https://api.heygen.com.
    base_url: str | None = None
    #: Unset: ``HEYGEN_API_KEY``. Write ``${HEYGEN_API_KEY}`` rather than the key itself.
    api_key: SecretStr | None = None
    #: Run the project's emulator (and a local LiveKit server) for this agent, and use it.
    emulator: bool = False
    session: SessionSettings = Field(default_factory=SessionSettings)

    @field_validator("base_url")
    @classmethod
    def _a_url(cls, value: str | None) -> str | None:
        if value is not None and not is_base_url(value):
            raise ValueError(NOT_A_BASE_URL)
        return value


class MicrophoneInput(_Strict):
    type: Literal["microphone"]
    device: int | str | None = None
    sample_rate: int = Field(16_000, gt=0)


class WavInput(_Strict):
    type: Literal["wav"]
    path: str
    after_end: Literal["silence", "end", "loop"] = "silence"
    lead_in_s: float = Field(0.0, ge=0)


class NoInput(_Strict):
    type: Literal["none"]


Input = Annotated[MicrophoneInput | WavInput | NoInput, Field(discriminator="type")]


class ProcessorEntry(_Strict):
    #: A built-in short name, ``module:Class``, or an entry-point name.
    name: str = Field(min_length=1)
    args: dict[str, object] = Field(default_factory=dict)


class SpeakerOutput(_Strict):
    type: Literal["speaker"]
    device: int | str | None = None


class ViewerOutput(_Strict):
    type: Literal["viewer"]
    host: str = "127.0.0.1"
    port: int = Field(0, ge=0, le=65535)


class RecorderOutput(_Strict):
    type: Literal["recorder"]
    path: str = "recording.mp4"


class NoOutput(_Strict):
    type: Literal["none"]


Output = Annotated[
    SpeakerOutput | ViewerOutput | RecorderOutput | NoOutput, Field(discriminator="type")
]


def _default_output() -> Output:
    return SpeakerOutput(type="speaker")


class LoggingSection(_Strict):
    level: Literal["TRACE", "DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    metrics: bool = False


class PipelineFile(_Strict):
    version: Literal[1] = 1
    heygen: HeyGenSection = Field(default_factory=HeyGenSection)
    input: Input = Field(default_factory=lambda: MicrophoneInput(type="microphone"))
    vad: VADSettings | None = Field(default_factory=VADSettings)
    processors: list[ProcessorEntry] = Field(default_factory=list)
    outputs: list[Output] = Field(default_factory=lambda: [_default_output()])
    video: HeyGenParams | None = None
    logging: LoggingSection = Field(default_factory=LoggingSection)

    @field_validator("processors", mode="before")
    @classmethod
    def _bare_names(cls, value: object) -> object:
        """``- latency_probe`` is short for ``- {name: latency_probe}``."""
        if isinstance(value, list):
            return [{"name": v} if isinstance(v, str) else v for v in value]
        return value
