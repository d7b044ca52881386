"""What a pipeline file may say: pydantic models, every level ``extra="forbid"``.

Unknown keys are errors (with a did-you-mean) because a misspelt setting that is silently
ignored costs a billed session to discover. The HeyGen session settings are the REST
client's own ``NewSessionRequest``, so the file and the wire cannot drift apart.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated, Literal, Self, TypeVar

from loguru import logger
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from agent.heygen.backend import (
    DEFAULT_KEEP_ALIVE_S,
    DEFAULT_MEDIA_GRACE_S,
    DEFAULT_STOP_DEADLINE_S,
    LifeOptions,
)
from agent.heygen.liveavatar import LiveAvatarOptions
from agent.heygen.protocol import interactive as ia
from agent.heygen.protocol import voice_chat as vc
from agent.heygen.protocol.liveavatar import rest as la
from agent.heygen.session import MAX_CHUNK_SAMPLES, MIN_CHUNK_SAMPLES, SessionOptions
from agent.heygen.settings import NOT_A_BASE_URL, is_base_url
from agent.heygen.transport import HeyGenParams
from agent.media.vad import VADSettings

OptionsT = TypeVar("OptionsT", bound=LifeOptions)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _LifeSettings(BaseModel):
    """How the client runs a session, whichever backend."""

    keep_alive_interval_s: float | None = Field(DEFAULT_KEEP_ALIVE_S, gt=0)
    #: how long a failing stop is retried before the run says the session is open
    stop_deadline_s: float = Field(DEFAULT_STOP_DEADLINE_S, gt=0)
    #: how long the avatar may be gone from the room before the session is ended
    media_grace_s: float = Field(DEFAULT_MEDIA_GRACE_S, gt=0)

    def _life(self, options: OptionsT) -> OptionsT:
        return dataclasses.replace(options, keep_alive_interval_s=self.keep_alive_interval_s,
                                   stop_deadline_s=self.stop_deadline_s,
                                   media_grace_s=self.media_grace_s)


class SessionSettings(ia.NewSessionRequest, _LifeSettings):
    """Interactive Avatar: every ``streaming.new`` setting, plus how the client runs it."""

    push_to_talk: bool = False
    #: opt-in, proven only against the emulator: join LiveKit while streaming.start runs
    livekit_during_start: bool = False
    #: opt-in below 512 (HeyGen's official client), proven only against the emulator:
    #: samples of 16 kHz user audio per voice-chat message
    voice_chat_chunk_samples: int = Field(vc.CHUNK_SAMPLES, ge=MIN_CHUNK_SAMPLES,
                                          le=MAX_CHUNK_SAMPLES)

    def options(self) -> SessionOptions:
        request = ia.NewSessionRequest.model_validate(
            self.model_dump(include=set(ia.NewSessionRequest.model_fields), exclude_none=True))
        return self._life(SessionOptions(
            request=request, push_to_talk=self.push_to_talk,
            livekit_during_start=self.livekit_during_start,
            voice_chat_chunk_samples=self.voice_chat_chunk_samples))


class LiveAvatarSettings(_Strict, _LifeSettings):
    """LiveAvatar: the ``sessions/token`` request, in a file's words."""

    #: full: HeyGen's brain answers the microphone (2 credits a minute); lite: your own
    #: brain and TTS, HeyGen's face lip-synced to it (1 credit a minute)
    mode: Literal["full", "lite"] = "full"
    #: free test sessions: about a minute each, and only the sandbox avatar
    sandbox: bool = False
    #: unset in the sandbox: its avatar (Wayne); required otherwise
    avatar_id: str | None = Field(None, min_length=1)
    #: FULL mode: the context (persona and instructions) that lets the avatar answer
    context_id: str | None = None
    voice_id: str | None = None
    language: str | None = None
    max_session_duration: int | None = Field(None, gt=0)
    video_quality: la.VideoQuality | None = None
    #: FULL mode: how long to wait for the avatar to join the room
    avatar_timeout_s: float = Field(30.0, gt=0)
    #: FULL mode: the user speaks only between push-to-talk start and stop
    push_to_talk: bool = False

    @field_validator("avatar_id")
    @classmethod
    def _the_sandbox_avatar(cls, value: str | None, info: ValidationInfo) -> str | None:
        # the sandbox refuses any other avatar, at the first (billed-looking) start
        if info.data.get("sandbox") and value not in (None, la.SANDBOX_AVATAR_ID):
            raise ValueError(
                f"the sandbox takes only its own avatar, {la.SANDBOX_AVATAR_NAME} "
                f"({la.SANDBOX_AVATAR_ID}): leave avatar_id unset, or set sandbox: false")
        return value

    @model_validator(mode="after")
    def _an_avatar(self) -> Self:
        if self.avatar_id is None and not self.sandbox:
            raise ValueError("avatar_id is required outside the sandbox (sandbox: true uses "
                             "the sandbox avatar)")
        return self

    def options(self) -> LiveAvatarOptions:
        persona = None
        if self.context_id or self.voice_id or self.language:
            persona = la.AvatarPersona(context_id=self.context_id, voice_id=self.voice_id,
                                       language=self.language)
        request = la.TokenRequest(
            mode=la.Mode(self.mode.upper()),
            avatar_id=self.avatar_id or la.SANDBOX_AVATAR_ID,
            is_sandbox=self.sandbox,
            max_session_duration=self.max_session_duration,
            avatar_persona=persona,
            video_settings=la.VideoSettings(quality=self.video_quality)
            if self.video_quality else None,
            interactivity_type=la.PUSH_TO_TALK if self.push_to_talk else None,
        )
        return self._life(LiveAvatarOptions(request=request,
                                            avatar_timeout_s=self.avatar_timeout_s))


class HeyGenSection(_Strict):
    #: which of HeyGen's APIs: interactive (the Interactive Avatar API, deprecated by
    #: HeyGen; a HeyGen key) or liveavatar (its successor; a LiveAvatar key)
    backend: Literal["interactive", "liveavatar"] = "interactive"
    #: Unset: the backend's ``HEYGEN_BASE_URL`` / ``LIVEAVATAR_BASE_URL``, then its default.
    base_url: str | None = None
    #: Unset: ``HEYGEN_API_KEY`` / ``LIVEAVATAR_API_KEY``. Write ``${...}``, not the key.
    api_key: SecretStr | None = None
    #: Run the project's emulator (and a local LiveKit server) for this agent, and use it.
    emulator: bool = False
    #: the Interactive backend's session
    session: SessionSettings = Field(default_factory=SessionSettings)
    #: the LiveAvatar backend's session
    liveavatar: LiveAvatarSettings | None = None

    @field_validator("base_url")
    @classmethod
    def _a_url(cls, value: str | None) -> str | None:
        if value is not None and not is_base_url(value):
            raise ValueError(NOT_A_BASE_URL)
        return value

    @model_validator(mode="after")
    def _one_backend(self) -> Self:
        if self.liveavatar is not None and self.backend != "liveavatar":
            raise ValueError("a 'liveavatar:' section needs 'backend: liveavatar'")
        if self.backend == "liveavatar" and "session" in self.model_fields_set:
            raise ValueError("'session:' is the interactive backend's; with 'backend: "
                             "liveavatar' write 'liveavatar:'")
        return self

    def session_options(self, brain: Literal["lipsync", "text"] | None = None) -> LifeOptions:
        """The options of the chosen backend (they know its client and session), for
        your own ``brain`` if there is one."""
        sections: dict[str, _LifeSettings] = {
            "interactive": self.session,
            "liveavatar": self.liveavatar or LiveAvatarSettings(sandbox=True),
        }
        chosen = sections[self.backend]
        assert isinstance(chosen, SessionSettings | LiveAvatarSettings)
        options = chosen.options()
        return options.for_own_brain(brain) if brain is not None else options


class MicrophoneInput(_Strict):
    type: Literal["microphone"]
    device: int | str | None = None
    sample_rate: int = Field(16_000, gt=0)


class WavInput(_Strict):
    type: Literal["wav"]
    path: str
    after_end: Literal["silence", "end", "loop"] = "silence"
    #: Quiet before the file, counted from when the avatar is there (the file plays
    #: only once the session runs, as a person would wait to speak).
    lead_in_s: float = Field(0.0, ge=0)


class NoInput(_Strict):
    type: Literal["none"]


Input = Annotated[MicrophoneInput | WavInput | NoInput, Field(discriminator="type")]


class ProcessorEntry(_Strict):
    #: A built-in short name, ``module:Class``, or an entry-point name.
    name: str = Field(min_length=1)
    args: dict[str, object] = Field(default_factory=dict)


class BrainSection(_Strict):
    """Your own brain: Pipecat services named by ``module:Class`` (or a built-in name)
    with their arguments, wired between Pipecat's context aggregators. HeyGen is then
    only the face: with a ``tts`` it lip-syncs your TTS's audio; without one, HeyGen's
    voice says your LLM's text."""

    #: speech-to-text, e.g. pipecat.services.openai.stt:OpenAISTTService
    stt: ProcessorEntry
    #: the LLM, e.g. pipecat.services.openai.llm:OpenAILLMService
    llm: ProcessorEntry
    #: the LLM's instructions: the system message of its context
    system_prompt: str | None = None
    #: text-to-speech, e.g. pipecat.services.cartesia.tts:CartesiaTTSService
    tts: ProcessorEntry | None = None

    @property
    def face(self) -> Literal["lipsync", "text"]:
        return "lipsync" if self.tts is not None else "text"

    @field_validator("stt", "llm", "tts", mode="before")
    @classmethod
    def _bare_name(cls, value: object) -> object:
        """``stt: speech_length_stt`` is short for ``stt: {name: speech_length_stt}``."""
        return {"name": value} if isinstance(value, str) else value


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
    brain: BrainSection | None = None
    outputs: list[Output] = Field(default_factory=lambda: [_default_output()])
    video: HeyGenParams | None = None
    logging: LoggingSection = Field(default_factory=LoggingSection)

    @model_validator(mode="after")
    def _liveavatar_will_speak(self) -> Self:
        """Warnings, not errors (a file that runs, to no purpose): a LiveAvatar session
        the avatar says nothing in. A custom processor could still make it speak (a
        HeyGenSpeakFrame, its own TTS audio), which is why neither is refused."""
        heygen = self.heygen
        if heygen.backend != "liveavatar" or self.brain is not None:
            return self  # with a brain, its TTS or its text makes the avatar speak
        settings = heygen.liveavatar or LiveAvatarSettings(sandbox=True)
        if settings.mode == "full" and not settings.sandbox and not settings.context_id:
            logger.warning(
                "heygen.liveavatar.context_id: not set: outside the sandbox a FULL-mode "
                "avatar with no context does not answer (heygen-agent contexts lists "
                "yours)")
        elif settings.mode == "lite":
            logger.warning(
                "heygen.liveavatar.mode: lite with no brain: nothing will make the avatar "
                "speak (LITE lip-syncs your TTS's audio: add a brain with a tts, or use "
                "mode: full)")
        return self

    @field_validator("processors", mode="before")
    @classmethod
    def _bare_names(cls, value: object) -> object:
        """``- latency_probe`` is short for ``- {name: latency_probe}``."""
        if isinstance(value, list):
            return [{"name": v} if isinstance(v, str) else v for v in value]
        return value
