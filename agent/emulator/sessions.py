"""The emulated service's sessions: their states, limits and expiry, with no I/O.

Kept apart from the HTTP layer so that the rules the real service enforces (one state
machine, a concurrency limit, idle and duration limits, stopped ids refused) are tested
with a fake clock in microseconds, and the server only turns them into answers.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from agent.heygen.protocol import interactive as ia
from agent.heygen.protocol.liveavatar import rest as la


class SessionState(StrEnum):
    CREATED = "created"
    STARTED = "started"
    STOPPED = "stopped"
    EXPIRED = "expired"

    @property
    def open(self) -> bool:
        return self in (SessionState.CREATED, SessionState.STARTED)

    @property
    def listing_status(self) -> str:
        """The ``status`` that ``streaming.list`` reports (new|connecting|connected)."""
        return "new" if self is SessionState.CREATED else "connected"


class ServiceError(Exception):
    """An error answer, as the real service would give it: status, code and message."""

    def __init__(self, status: int, code: int | None, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def body(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message}


def unauthorized(message: str = "Unauthorized") -> ServiceError:
    return ServiceError(401, ia.CODE_UNAUTHORIZED, message)


#: The concurrency limit's code is not published by HeyGen; this one is the emulator's
#: choice. Clients recognise the error by its message, as they must with the real service.
EMULATOR_CONCURRENT_LIMIT_CODE = 10004


@dataclass
class AudioStats:
    """What the voice-chat socket received, for tests to check against what was sent."""

    frames: int = 0
    samples: int = 0
    seconds: float = 0.0
    sample_rates: set[int] = field(default_factory=set)
    frame_samples: dict[int, int] = field(default_factory=dict)
    text_frames: int = 0
    #: Over the LiveKit voice transport: seconds of the microphone track the avatar's
    #: subscription delivered, and texts sent on its data channel. A subscribed track
    #: delivers audio in real time even while its publisher sends nothing (the receiver
    #: conceals the gap), so this grows with time subscribed, not with audio sent.
    room_seconds: float = 0.0
    room_texts: int = 0
    bad_frames: int = 0
    user_starts: int = 0
    user_stops: int = 0
    #: the WebSocket extensions the client offered (raw audio should go uncompressed)
    extensions_offered: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "frames": self.frames,
            "samples": self.samples,
            "seconds": round(self.seconds, 4),
            "sample_rates": sorted(self.sample_rates),
            "frame_samples": {str(k): v for k, v in sorted(self.frame_samples.items())},
            "text_frames": self.text_frames,
            "room_seconds": round(self.room_seconds, 4),
            "room_texts": self.room_texts,
            "bad_frames": self.bad_frames,
            "user_starts": self.user_starts,
            "user_stops": self.user_stops,
            "extensions_offered": list(self.extensions_offered),
        }


@dataclass
class LiveAvatarStats:
    """What a LiveAvatar session's client sent, for tests to hold clients to the protocol:
    on LITE's socket, and as FULL mode's ``agent-control`` commands."""

    #: LITE: seconds of ``agent.speak`` audio (at 24 kHz), utterances (``event_id``s)
    lite_audio_seconds: float = 0.0
    lite_utterances: int = 0
    lite_interrupts: int = 0
    #: LITE: messages refused (not JSON, unknown type, audio not base64 or not whole
    #: samples, over 1 MB) and messages sent before ``connected`` (both ignored)
    lite_bad_messages: int = 0
    lite_before_connected: int = 0
    #: FULL: ``agent-control`` commands by ``event_type``, and messages refused there
    full_commands: dict[str, int] = field(default_factory=dict)
    full_bad_messages: int = 0
    #: a client was told ``session.state_updated: connected`` (LITE socket, FULL room)
    connected: bool = False
    #: stops answered success and ignored (the ``ignore_stops_before_connected`` fault)
    ignored_stops: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "lite": {"audio_seconds": round(self.lite_audio_seconds, 4),
                     "utterances": self.lite_utterances,
                     "interrupts": self.lite_interrupts,
                     "bad_messages": self.lite_bad_messages,
                     "before_connected": self.lite_before_connected},
            "full": {"commands": dict(sorted(self.full_commands.items())),
                     "bad_messages": self.full_bad_messages},
            "connected": self.connected,
            "ignored_stops": self.ignored_stops,
        }


@dataclass(frozen=True)
class LiveAvatarSpec:
    """What makes a session a LiveAvatar one: its token request, and the credential its
    LITE socket's ``ws_url`` carries."""

    request: la.TokenRequest
    ws_token: str = field(default_factory=lambda: secrets.token_urlsafe(18))

    @property
    def mode(self) -> la.Mode:
        return la.Mode(self.request.mode)


@dataclass
class Session:
    session_id: str
    #: The ``streaming.new`` request of an Interactive Avatar session (``None`` for a
    #: LiveAvatar one, which has :attr:`liveavatar`).
    request: ia.NewSessionRequest | None
    created_at: float
    #: when it was created as a Unix time, for listings (the other times are the clock's)
    created_unix: float
    idle_timeout_s: float
    duration_limit_s: float
    last_activity: float
    owner_key: str
    state: SessionState = SessionState.CREATED
    started_at: float | None = None
    ended_at: float | None = None
    end_reason: str = ""
    listening: bool = False
    audio: AudioStats = field(default_factory=AudioStats)
    tasks: list[dict[str, Any]] = field(default_factory=list)
    push_to_talk_events: list[str] = field(default_factory=list)
    liveavatar: LiveAvatarSpec | None = None
    liveavatar_stats: LiveAvatarStats = field(default_factory=LiveAvatarStats)

    @property
    def room(self) -> str:
        return f"heygen-{self.session_id}"

    def describe(self) -> dict[str, Any]:
        return {
            "session_id": self.session_id,
            "state": self.state.value,
            "created_at": self.created_at,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "end_reason": self.end_reason,
            "listening": self.listening,
            "idle_timeout_s": self.idle_timeout_s,
            "audio": self.audio.as_dict(),
            "tasks": list(self.tasks),
            "push_to_talk_events": list(self.push_to_talk_events),
            **self._describe_liveavatar(),
        }

    def _describe_liveavatar(self) -> dict[str, Any]:
        if self.liveavatar is None:
            return {}
        request = self.liveavatar.request
        return {"liveavatar": {"mode": self.liveavatar.mode.value,
                               "is_sandbox": request.is_sandbox,
                               "avatar_id": request.avatar_id,
                               **self.liveavatar_stats.as_dict()}}


class SessionRegistry:
    """Every session the emulated account ever created, and the tokens it minted."""

    def __init__(
        self,
        *,
        max_concurrent: int = 3,
        duration_limit_s: float = 600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_concurrent = max_concurrent
        self.duration_limit_s = duration_limit_s
        self._clock = clock
        self._sessions: dict[str, Session] = {}
        #: session token → [the key that minted it, the session it serves ("" until used)]
        self._tokens: dict[str, list[str]] = {}
        #: LiveAvatar session token → its session (kept apart: those serve only LiveAvatar)
        self._liveavatar_tokens: dict[str, Session] = {}
        self.expired_total = 0

    def __iter__(self) -> Iterator[Session]:
        return iter(self._sessions.values())

    # ---------------------------------------------------------------- tokens

    def mint_token(self, owner_key: str) -> str:
        token = "emu-st-" + secrets.token_urlsafe(24)
        self._tokens[token] = [owner_key, ""]
        return token

    def token_owner(self, token: str) -> str | None:
        """The API key behind a session token, or ``None`` for a token never minted."""
        entry = self._tokens.get(token)
        return entry[0] if entry else None

    def token_allows(self, token: str, session_id: str) -> bool:
        """A session token serves the one session it created."""
        entry = self._tokens.get(token)
        return entry is not None and entry[1] == session_id

    # ---------------------------------------------------------------- lifecycle

    def create(
        self, request: ia.NewSessionRequest, *, owner_key: str, token: str | None = None
    ) -> Session:
        if token is not None and self._tokens[token][1]:
            raise unauthorized("Session token has already been used for a session")
        idle = request.activity_idle_timeout or ia.DEFAULT_IDLE_TIMEOUT_S
        session = self._add(request, owner_key, float(idle), self.duration_limit_s)
        if token is not None:
            self._tokens[token][1] = session.session_id
        return session

    def create_liveavatar(
        self, spec: LiveAvatarSpec, *, owner_key: str, idle_timeout_s: float,
        duration_limit_s: float,
    ) -> Session:
        """A LiveAvatar session, as ``sessions/token`` creates it (its token comes next,
        with :meth:`add_liveavatar_token`: the token names the session)."""
        session = self._add(None, owner_key, idle_timeout_s, duration_limit_s)
        session.liveavatar = spec
        return session

    def add_liveavatar_token(self, token: str, session: Session) -> None:
        self._liveavatar_tokens[token] = session

    def liveavatar_session(self, token: str) -> Session | None:
        """The session a LiveAvatar session token was minted for, in whatever state."""
        return self._liveavatar_tokens.get(token)

    def _add(
        self, request: ia.NewSessionRequest | None, owner_key: str, idle_timeout_s: float,
        duration_limit_s: float,
    ) -> Session:
        if sum(1 for s in self if s.state.open) >= self.max_concurrent:
            raise ServiceError(400, EMULATOR_CONCURRENT_LIMIT_CODE, ia.CONCURRENT_LIMIT_MESSAGE)
        now = self._clock()
        session = Session(
            session_id=secrets.token_hex(16),
            request=request,
            created_at=now,
            created_unix=time.time(),
            idle_timeout_s=idle_timeout_s,
            duration_limit_s=duration_limit_s,
            last_activity=now,
            owner_key=owner_key,
        )
        self._sessions[session.session_id] = session
        return session

    def find(self, session_id: str) -> Session | None:
        """The session with that id, in whatever state; ``None`` if there is none."""
        return self._sessions.get(session_id)

    def get(self, session_id: str, *, owner_key: str | None = None) -> Session:
        """An open session, or the error the service gives for any other id."""
        session = self._sessions.get(session_id)
        if session is None or (owner_key is not None and session.owner_key != owner_key):
            raise ServiceError(400, ia.CODE_SESSION_STATE, f"Session not found: {session_id}")
        if not session.state.open:
            raise ServiceError(
                400, ia.CODE_SESSION_STATE, f"Session is not in correct state: {session.state}"
            )
        return session

    def start(self, session: Session) -> None:
        if session.state is not SessionState.CREATED:
            raise ServiceError(400, ia.CODE_SESSION_STATE, "Session is not in correct state")
        session.state = SessionState.STARTED
        session.started_at = self._clock()
        self.touch(session)

    def require_started(self, session: Session) -> None:
        if session.state is not SessionState.STARTED:
            raise ServiceError(400, ia.CODE_SESSION_STATE, "Session is not in correct state")

    def touch(self, session: Session) -> None:
        """Activity: restarts the idle timer."""
        session.last_activity = self._clock()

    def stop(self, session: Session, reason: str = "stopped by client") -> None:
        self._end(session, SessionState.STOPPED, reason)

    def expire_due(self) -> list[Session]:
        """End sessions past their idle timeout or duration limit; return them."""
        now = self._clock()
        ended = []
        for session in self:
            if not session.state.open:
                continue
            idle_timeout = not (session.request and session.request.disable_idle_timeout)
            if idle_timeout and now - session.last_activity >= session.idle_timeout_s:
                self._end(session, SessionState.EXPIRED, "idle timeout")
            elif now - session.created_at >= session.duration_limit_s:
                sandbox = session.liveavatar is not None and session.liveavatar.request.is_sandbox
                reason = "sandbox session duration limit" if sandbox else "session duration limit"
                self._end(session, SessionState.EXPIRED, reason)
            else:
                continue
            self.expired_total += 1
            ended.append(session)
        return ended

    def _end(self, session: Session, state: SessionState, reason: str) -> None:
        session.state = state
        session.ended_at = self._clock()
        session.end_reason = reason

    def counts(self) -> dict[str, int]:
        sessions = list(self)
        return {
            "created": len(sessions),
            "started": sum(1 for s in sessions if s.started_at is not None),
            "stopped": sum(1 for s in sessions if s.state is SessionState.STOPPED),
            "expired": sum(1 for s in sessions if s.state is SessionState.EXPIRED),
            "open": sum(1 for s in sessions if s.state.open),
        }
