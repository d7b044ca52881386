"""The Interactive Avatar REST API (heygen-protocol.md §1), sans-I/O.

Request models forbid unknown fields so that a misspelt setting fails before any
session is created (and billed); answer models allow them so that a newer server
breaks nothing. Tokens in answers are :class:`~pydantic.SecretStr`, so printing an
answer never prints a secret; :func:`to_wire` reveals them for the emulator only.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, Field, SecretStr

from agent.heygen.protocol._rest import Answer as _Answer
from agent.heygen.protocol._rest import (
    Auth,
    Endpoint,
    first_problem,
    int_or_none,
    to_wire,
    validate,
    validate_list,
)
from agent.heygen.protocol._rest import Request as _Request
from agent.heygen.protocol.errors import ProtocolError

__all__ = ["Auth", "Endpoint", "first_problem", "to_wire"]  # re-exported: callers know them here

M = TypeVar("M", bound=BaseModel)

DEFAULT_BASE_URL = "https://api.heygen.com"
API_KEY_HEADER = "x-api-key"

#: HeyGen's published error codes (a non-2xx answer carries ``{"code", "message"}``).
CODE_UNAUTHORIZED = 400112
CODE_INVALID_CREDENTIALS = 40009
CODE_NO_API_ACCESS = 400599
CODE_SESSION_STATE = 400006
CODE_AVATAR_DEPRECATED = 400014
#: The concurrency limit's code is not published; clients match on this message.
CONCURRENT_LIMIT_MESSAGE = (
    "Concurrent limit reached, please make sure you have closed other testing sessions"
)

DEFAULT_IDLE_TIMEOUT_S = 120
IDLE_TIMEOUT_RANGE_S = (30, 3600)


# --------------------------------------------------------------------------- endpoints

# A token costs nothing and serves one session: a second one is as good as the first.
CREATE_TOKEN = Endpoint("create_token", "POST", "/v1/streaming.create_token", "api_key", "always")
NEW = Endpoint("new", "POST", "/v1/streaming.new", "session", "when_refused")
START = Endpoint("start", "POST", "/v1/streaming.start", "session", "when_refused")
TASK = Endpoint("task", "POST", "/v1/streaming.task", "session", "when_refused")
INTERRUPT = Endpoint("interrupt", "POST", "/v1/streaming.interrupt", "session", "always")
KEEP_ALIVE = Endpoint("keep_alive", "POST", "/v1/streaming.keep_alive", "session", "always")
START_LISTENING = Endpoint(
    "start_listening", "POST", "/v1/streaming.start_listening", "session", "always"
)
STOP_LISTENING = Endpoint(
    "stop_listening", "POST", "/v1/streaming.stop_listening", "session", "always"
)
STOP = Endpoint("stop", "POST", "/v1/streaming.stop", "session", "always")
LIST_SESSIONS = Endpoint("list", "GET", "/v1/streaming.list", "api_key", "always")
LIST_AVATARS = Endpoint("avatar_list", "GET", "/v1/streaming/avatar.list", "api_key", "always")
LIST_VOICES = Endpoint("voice_list", "GET", "/v1/voice.list", "api_key", "always")
LIST_VOICES_V2 = Endpoint("voices_v2", "GET", "/v2/voices", "api_key", "always")

ENDPOINTS: tuple[Endpoint, ...] = (
    CREATE_TOKEN,
    NEW,
    START,
    TASK,
    INTERRUPT,
    KEEP_ALIVE,
    START_LISTENING,
    STOP_LISTENING,
    STOP,
    LIST_SESSIONS,
    LIST_AVATARS,
    LIST_VOICES,
    LIST_VOICES_V2,
)


# --------------------------------------------------------------------------- requests


class AvatarQuality(StrEnum):
    """high = 720p at 2000 kbps, medium = 480p at 1000 kbps, low = 360p at 500 kbps."""

    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


class VideoEncoding(StrEnum):
    H264 = "H264"
    VP8 = "VP8"


class VoiceEmotion(StrEnum):
    EXCITED = "excited"
    SERIOUS = "serious"
    FRIENDLY = "friendly"
    SOOTHING = "soothing"
    BROADCASTER = "broadcaster"


class ElevenLabsSettings(_Request):
    stability: float | None = Field(None, ge=0, le=1)
    similarity_boost: float | None = Field(None, ge=0, le=1)
    style: float | None = Field(None, ge=0, le=1)
    use_speaker_boost: bool | None = None
    model_id: Literal["eleven_flash_v2_5", "eleven_multilingual_v2"] | None = None


class VoiceSettings(_Request):
    voice_id: str | None = None
    rate: float | None = Field(None, ge=0.5, le=1.5)
    emotion: VoiceEmotion | None = None
    elevenlabs_settings: ElevenLabsSettings | None = None


class STTSettings(_Request):
    provider: Literal["deepgram", "gladia"] | None = None
    confidence: float | None = Field(None, ge=0, le=1)


class NewSessionRequest(_Request):
    """``streaming.new``. ``avatar_name`` is what the official client sends; Pipecat
    sends ``avatar_id``; the service takes either."""

    avatar_name: str | None = None
    avatar_id: str | None = None
    quality: AvatarQuality | None = None
    voice: VoiceSettings | None = None
    knowledge_base_id: str | None = None
    knowledge_base: str | None = None
    language: str | None = None
    version: Literal["v2"] = "v2"
    video_encoding: VideoEncoding | None = None
    source: str = "sdk"
    disable_idle_timeout: bool | None = None
    activity_idle_timeout: int | None = Field(
        None, ge=IDLE_TIMEOUT_RANGE_S[0], le=IDLE_TIMEOUT_RANGE_S[1]
    )
    stt_settings: STTSettings | None = None
    ia_is_livekit_transport: bool | None = None
    silence_response: bool | None = None


class SessionRequest(_Request):
    """The body of every call that names only a session."""

    session_id: str


class TaskType(StrEnum):
    TALK = "talk"  # answer with HeyGen's LLM / knowledge base
    REPEAT = "repeat"  # say the text verbatim


class TaskMode(StrEnum):
    SYNC = "sync"  # the call returns when speaking ends
    ASYNC = "async"  # the call returns at once


class TaskRequest(_Request):
    session_id: str
    text: str = Field(min_length=1)
    task_type: TaskType = TaskType.REPEAT
    task_mode: TaskMode = TaskMode.SYNC


# --------------------------------------------------------------------------- answers


class TokenAnswer(_Answer):
    token: SecretStr


class NewSessionAnswer(_Answer):
    session_id: str
    access_token: SecretStr
    url: str
    is_paid: bool = False
    session_duration_limit: float | None = None
    livekit_agent_token: SecretStr | None = None
    realtime_endpoint: str | None = None


class TaskAnswer(_Answer):
    task_id: str
    duration_ms: float | None = None


class SessionInfo(_Answer):
    session_id: str
    status: str = ""
    created_at: float | str | None = None


class AvatarInfo(_Answer):
    avatar_id: str
    default_voice: str | None = None
    is_public: bool | None = None
    normal_preview: str | None = None
    pose_name: str | None = None
    status: str | None = None


class VoiceInfo(_Answer):
    voice_id: str
    name: str | None = None
    language: str | None = None
    gender: str | None = None
    support_realtime: bool | None = None


class ErrorBody(_Answer):
    code: int | None = None
    message: str = ""


def parse_data(model: type[M], body: Any, endpoint: Endpoint) -> M:
    """Validate the ``data`` of a 2xx answer into ``model``."""
    return validate(model, _data(body, endpoint), endpoint)


def parse_list(model: type[M], body: Any, endpoint: Endpoint, key: str) -> list[M]:
    """Listings answer either ``data: [...]`` or ``data: {key: [...]}``; accept both."""
    return validate_list(model, _data(body, endpoint), endpoint, (key,))


def parse_error(body: Any) -> ErrorBody:
    """HeyGen's ``{"code", "message"}``, also when nested under ``error``; never raises."""
    if isinstance(body, Mapping):
        inner = body.get("error")
        source = inner if isinstance(inner, Mapping) else body
        code = source.get("code")
        message = source.get("message") or source.get("msg") or ""
        return ErrorBody(code=int_or_none(code), message=str(message))
    return ErrorBody()


def _data(body: Any, endpoint: Endpoint) -> Any:
    if not isinstance(body, Mapping) or "data" not in body:
        raise ProtocolError(f"{endpoint.path}: answer has no 'data'")
    return body["data"]

