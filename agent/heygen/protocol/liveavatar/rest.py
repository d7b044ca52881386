"""LiveAvatar's REST API (heygen-protocol.md §5), sans-I/O.

LiveAvatar answers every call with an envelope ``{"code", "data", "message"}`` and its
official web SDK treats any code but a success code as a failure, even on HTTP 200. So a
success here is: HTTP 2xx, a code in :data:`SUCCESS_CODES`, and (where the call answers
something) a ``data`` object; :func:`parse_envelope` reads any answer, success or not, and
:func:`parse_data` holds an answer to all of that.

The session token is a JWT whose payload the SDK reads without verifying it;
:func:`mint_session_token` makes one for the emulator and :func:`token_mode` reads it as
the SDK does.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal, TypeVar

from pydantic import AliasChoices, BaseModel, Field, SecretStr

from agent.heygen.protocol._json import json_object
from agent.heygen.protocol._rest import Answer, Endpoint, Request, int_or_none
from agent.heygen.protocol._rest import validate as _validate
from agent.heygen.protocol._rest import validate_list as _validate_list
from agent.heygen.protocol.errors import ProtocolError
from agent.heygen.protocol.interactive import VideoEncoding

M = TypeVar("M", bound=BaseModel)

DEFAULT_BASE_URL = "https://api.liveavatar.com"
API_KEY_HEADER = "X-API-KEY"

#: Success codes: 1000 for the session calls (the SDK accepts nothing else); the API
#: reference's example answer to ``sessions/token`` shows 100.
CODE_OK = 1000
CODE_TOKEN_OK = 100
SUCCESS_CODES = frozenset({CODE_OK, CODE_TOKEN_OK})

# LiveAvatar publishes no failure codes. These are the emulator's; the client decides on
# the HTTP status and on "not a success code", and uses them only to type an error.
CODE_BAD_REQUEST = 4000
CODE_UNAUTHORIZED = 4001
#: The session is not in a state the call needs: ended (stopped or expired), already
#: started. The emulator answers these with HTTP 200, as the SDK's code check allows for.
CODE_SESSION_STATE = 4009
#: What the emulator says when LiveAvatar is given a HeyGen API key; the client turns an
#: answer that says so into :class:`~agent.heygen.api.errors.WrongServiceKeyError`.
HEYGEN_KEY_MESSAGE = "This is a HeyGen API key"

#: The one avatar a sandbox session may use: Wayne. Its id as listed by LiveAvatar's
#: ``GET /v1/avatars/public`` (read off a public project's copy of that listing).
SANDBOX_AVATAR_ID = "dd73ea75-1218-4ef3-92ce-606d5f7fbc0a"
SANDBOX_AVATAR_NAME = "Wayne"
#: Sandbox sessions end after about a minute; any session after 5 minutes idle.
SANDBOX_DURATION_S = 60.0
IDLE_TIMEOUT_S = 300.0


# --------------------------------------------------------------------------- endpoints

# ``sessions/token`` creates the session (its id exists from then on). Nothing is billed
# before ``start``, but an answer lost on the way would leave a session whose token we
# never got, so that we could not even stop it; and whether such sessions count against
# the account's limits is not documented. So it is sent again only when refused, like
# the Interactive API's ``new``. ``start`` begins billing: likewise.
TOKEN = Endpoint("token", "POST", "/v1/sessions/token", "api_key", "when_refused")
START = Endpoint("start", "POST", "/v1/sessions/start", "bearer", "when_refused")
STOP = Endpoint("stop", "POST", "/v1/sessions/stop", "bearer", "always")
KEEP_ALIVE = Endpoint("keep_alive", "POST", "/v1/sessions/keep-alive", "bearer", "always")
LIST_AVATARS = Endpoint("avatars", "GET", "/v1/avatars", "api_key", "always")
#: The documentation names a public-avatar listing without its path; this one is what
#: public projects call (and what the emulator serves).
LIST_PUBLIC_AVATARS = Endpoint("public_avatars", "GET", "/v1/avatars/public", "api_key", "always")
LIST_VOICES = Endpoint("voices", "GET", "/v1/voices", "api_key", "always")
LIST_CONTEXTS = Endpoint("contexts", "GET", "/v1/contexts", "api_key", "always")

ENDPOINTS: tuple[Endpoint, ...] = (
    TOKEN,
    START,
    STOP,
    KEEP_ALIVE,
    LIST_AVATARS,
    LIST_PUBLIC_AVATARS,
    LIST_VOICES,
    LIST_CONTEXTS,
)


# --------------------------------------------------------------------------- requests


class Mode(StrEnum):
    """FULL: HeyGen's brain (LiveKit data commands); LITE: your brain, a lip-sync socket."""

    FULL = "FULL"
    LITE = "LITE"


class VideoQuality(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    VERY_HIGH = "very_high"


class VideoSettings(Request):
    encoding: VideoEncoding | None = None
    quality: VideoQuality | None = None


class VoiceSettings(Request):
    """FULL mode only."""

    provider: str | None = None
    speed: float | None = Field(None, gt=0)
    stability: float | None = Field(None, ge=0, le=1)
    similarity_boost: float | None = Field(None, ge=0, le=1)
    style: float | None = Field(None, ge=0, le=1)
    use_speaker_boost: bool | None = None
    model: str | None = None


class STTConfig(Request):
    """FULL mode only."""

    provider: str | None = None


class AvatarPersona(Request):
    voice_id: str | None = None
    context_id: str | None = None
    language: str | None = None
    voice_settings: VoiceSettings | None = None
    stt_config: STTConfig | None = None


class LiveKitConfig(Request):
    """Your own LiveKit room, for the avatar to join instead of one of LiveAvatar's."""

    livekit_url: str
    livekit_room: str
    livekit_client_token: SecretStr


#: ``interactivity_type`` of a FULL session whose user speaks only between
#: ``user.start_push_to_talk`` and ``user.stop_push_to_talk`` (audio outside is ignored).
PUSH_TO_TALK = "PUSH_TO_TALK"


class TokenRequest(Request):
    """``sessions/token``: everything about the session is decided here; the mode in the
    token decides the mode."""

    mode: Mode
    avatar_id: str = Field(min_length=1)
    is_sandbox: bool = False
    max_session_duration: int | None = Field(None, gt=0)
    video_settings: VideoSettings | None = None
    avatar_persona: AvatarPersona | None = None
    interactivity_type: str | None = None
    llm_configuration_id: str | None = None
    livekit_config: LiveKitConfig | None = None


class StopRequest(Request):
    """``sessions/stop``: the official SDK sends no body; Pipecat sends the id."""

    session_id: str | None = None
    reason: str | None = None


# --------------------------------------------------------------------------- answers


class TokenAnswer(Answer):
    session_id: str
    session_token: SecretStr


class StartAnswer(Answer):
    """``sessions/start``. Url and client token may be missing (the SDK then joins no
    room); ``ws_url`` is there in LITE mode only and may carry a credential."""

    session_id: str
    livekit_url: str | None = None
    livekit_client_token: SecretStr | None = None
    livekit_agent_token: SecretStr | None = None
    max_session_duration: float | None = None
    ws_url: SecretStr | None = None


def _id_field(*aliases: str) -> Any:
    return Field(validation_alias=AliasChoices("id", *aliases))


class Avatar(Answer):
    id: str = _id_field("avatar_id")
    name: str = ""


class Voice(Answer):
    id: str = _id_field("voice_id")
    name: str = ""


class Context(Answer):
    id: str = _id_field("context_id")
    name: str = ""


# --------------------------------------------------------------------------- envelope


@dataclass(frozen=True, slots=True)
class Envelope:
    """Any answer: ``code`` (``None`` when there is none), ``message``, ``data``."""

    code: int | None
    message: str = ""
    data: Any = None

    @property
    def ok(self) -> bool:
        return self.code in SUCCESS_CODES


def parse_envelope(body: Any) -> Envelope:
    """Code, message and data of any answer, success or failure; never raises. A message
    may also come as FastAPI's ``detail`` (a text, or a list of problems)."""
    if not isinstance(body, Mapping):
        return Envelope(None)
    message = body.get("message") or _detail(body.get("detail")) or ""
    return Envelope(int_or_none(body.get("code")), str(message), body.get("data"))


def _detail(detail: Any) -> str:
    if isinstance(detail, list) and detail and isinstance(detail[0], Mapping):
        problem = detail[0]
        where = problem.get("loc")
        where_text = ".".join(str(p) for p in where) if isinstance(where, list) else ""
        return f"{where_text}: {problem.get('msg', '')}" if where_text else str(problem.get("msg"))
    return detail if isinstance(detail, str) else ""


def parse_data(model: type[M], body: Any, endpoint: Endpoint) -> M:
    """The ``data`` of a success answer as ``model``; :class:`ProtocolError` for anything
    else, a failure code included (check :func:`parse_envelope` first to tell those)."""
    envelope = _success(body, endpoint)
    if not isinstance(envelope.data, Mapping):
        raise ProtocolError(f"{endpoint.path}: answer has no 'data' object")
    return _validate(model, envelope.data, endpoint)


def parse_list(model: type[M], body: Any, endpoint: Endpoint, key: str) -> list[M]:
    """A listing: ``data`` is the list, or holds it under ``results`` (paginated, as
    public projects read it) or under ``key``."""
    return _validate_list(model, _success(body, endpoint).data, endpoint, ("results", key))


def _success(body: Any, endpoint: Endpoint) -> Envelope:
    envelope = parse_envelope(body)
    if envelope.code is None:
        raise ProtocolError(f"{endpoint.path}: answer has no 'code'")
    if not envelope.ok:
        raise ProtocolError(f"{endpoint.path}: failure code {envelope.code}: {envelope.message}")
    return envelope


def success(data: Any = None, code: int = CODE_OK) -> dict[str, Any]:
    """A success answer as the service sends it (emulator side)."""
    return {"code": code, "data": data, "message": "success"}


def failure(code: int | None, message: str) -> dict[str, Any]:
    """A failure answer as the service sends it (emulator side)."""
    return {"code": code, "data": None, "message": message}


# --------------------------------------------------------------------------- session token

#: The emulator signs its session tokens only so that they are well-formed JWTs; this is
#: not a secret (the SDK verifies nothing, and the emulator looks tokens up).
EMULATOR_TOKEN_SECRET = b"heygen-agent emulator: not a secret"


def mint_session_token(
    payload: Mapping[str, Any], secret: bytes = EMULATOR_TOKEN_SECRET
) -> str:
    """An HS256 JWT carrying ``payload`` (emulator side)."""
    header = _b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = _b64url(json.dumps(dict(payload), separators=(",", ":")).encode())
    signed = f"{header}.{body}"
    signature = hmac.new(secret, signed.encode(), hashlib.sha256).digest()
    return f"{signed}.{_b64url(signature)}"


def session_token_claims(
    *, session_id: str, request: TokenRequest, expires_at: float
) -> dict[str, Any]:
    """The payload of a session token as the SDK reads it: ``start_session_data.mode``
    decides the mode; ``exp`` is a Unix time."""
    return {
        "session_id": session_id,
        "start_session_data": {
            "mode": Mode(request.mode).value,
            "avatar_id": request.avatar_id,
            "is_sandbox": request.is_sandbox,
        },
        "exp": int(expires_at),
    }


def session_token_payload(token: str | SecretStr) -> dict[str, Any]:
    """The payload of a session token, decoded without verifying it (as the SDK does)."""
    if isinstance(token, SecretStr):
        token = token.get_secret_value()
    parts = token.split(".")
    if len(parts) != 3:
        raise ProtocolError("session token is not a JWT (three dot-separated parts)")
    try:
        raw = base64.b64decode(parts[1] + "=" * (-len(parts[1]) % 4), b"-_", validate=True)
    except (binascii.Error, ValueError):
        raise ProtocolError("session token payload is not base64url") from None
    return json_object(raw, "session token payload")


def token_mode(token: str | SecretStr) -> Literal["FULL", "LITE"]:
    """The session's mode as the SDK reads it from the token: LITE only when
    ``start_session_data.mode`` says so; anything else counts as FULL."""
    data = session_token_payload(token).get("start_session_data")
    mode = data.get("mode") if isinstance(data, Mapping) else None
    return "LITE" if mode == Mode.LITE.value else "FULL"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")
