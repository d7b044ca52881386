"""The emulated LiveAvatar REST API (heygen-protocol.md §5), on the Interactive API's app.

LiveAvatar is where HeyGen's users are going, so the emulator serves it next to the
Interactive API, from the same session table, fault injection and request counts:
:func:`register` adds its routes to the app :func:`agent.emulator.app.create_app` builds.
Paths, models, codes and the session token come from
:mod:`agent.heygen.protocol.liveavatar`, the same modules the client uses.

What it does as the real service does: ``sessions/token`` takes a LiveAvatar key (a
HeyGen key is refused, and said to be one), validates the body and creates a session with
a JWT session token; the session calls take that token as ``Bearer``; ``start`` answers
the LiveKit room and, in LITE mode, the ``ws_url`` of its socket; a session that has ended
answers a failure code (with HTTP 200, which the SDK's code check allows for); sandbox
sessions take only Wayne and end after about a minute; every session ends after 5 minutes
without activity. What the avatar does once a session starts is :func:`on_started`'s:
FULL mode's brain is :mod:`agent.emulator.liveavatar_full`, LITE mode's socket
:mod:`agent.emulator.liveavatar_lite`.

Beyond the shared faults, what clients must survive of this service alone: an answer
lacking fields (``omit_fields``), a stop before ``connected`` answered and ignored, as the
real service has been seen to (``ignore_stops_before_connected``), and a FULL session's
agent that never joins its room (``liveavatar_agent_absent``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from loguru import logger
from pydantic import SecretStr

from agent.emulator import liveavatar_full, liveavatar_lite
from agent.emulator.sessions import LiveAvatarSpec, ServiceError, Session, SessionState
from agent.emulator.state import Emulator, Handler, guarded, parse_body, read_json
from agent.heygen.protocol._rest import Endpoint, to_wire
from agent.heygen.protocol.liveavatar import rest as la
from agent.heygen.protocol.liveavatar import socket as lite

#: Every path this module serves, for CORS (the official SDK sends credentials).
PATHS = frozenset(endpoint.path for endpoint in la.ENDPOINTS)

PUBLIC_AVATARS = [
    {"id": la.SANDBOX_AVATAR_ID, "name": la.SANDBOX_AVATAR_NAME, "is_sandbox": True,
     "status": "ACTIVE"},
    {"id": "0f0e5c7a-emu0-4a11-anna-000000000001", "name": "Anna (emulated)",
     "is_sandbox": False, "status": "ACTIVE"},
    {"id": "0f0e5c7a-emu0-4a11-dext-000000000002", "name": "Dexter (emulated)",
     "is_sandbox": False, "status": "ACTIVE"},
]
OWN_AVATARS = [
    {"id": "0f0e5c7a-emu0-4a11-mine-000000000003", "name": "My avatar (emulated)",
     "is_sandbox": False, "status": "ACTIVE"},
]
VOICES = [
    {"id": "0f0e5c7a-emu0-4a11-voic-000000000001", "name": "espeak-ng English",
     "language": "en", "gender": "neutral"},
    {"id": "0f0e5c7a-emu0-4a11-voic-000000000002", "name": "espeak-ng German",
     "language": "de", "gender": "neutral"},
]
CONTEXTS = [
    {"id": "0f0e5c7a-emu0-4a11-ctxt-000000000001", "name": "Emulated assistant",
     "prompt": "You answer by repeating what you heard.", "opening_text": "Hello!"},
]


def register(app: web.Application) -> None:
    """Adds the LiveAvatar routes to the emulator's app."""
    for endpoint, answer in HANDLERS.items():
        app.router.add_route(endpoint.method, endpoint.path, _route(endpoint, answer))
    app.router.add_get(liveavatar_lite.PATH, liveavatar_lite.handle)


async def on_started(em: Emulator, session: Session) -> None:
    """What runs once a LiveAvatar session has started, before ``start`` answers.

    The avatar: with a LiveKit server it joins the session's room as participant
    ``heygen`` and publishes a video and an audio track (which is what the official SDK
    waits for before it calls the stream ready); without one, a media-less avatar keeps
    time. In FULL mode (with LiveKit) participant ``liveavatar-agent-<session_id>`` joins
    too, and takes the ``agent-control`` commands. In LITE mode the client connects to
    ``ws_url`` next (:mod:`agent.emulator.liveavatar_lite`). A failure here fails
    ``start`` with HTTP 500, and the session is stopped."""
    runtime = await em.start_runtime(session)
    if not _lite(session) and em.config.livekit is not None:
        if em.faults.liveavatar_agent_absent:
            logger.warning(f"emulator: FULL session {session.session_id}: its agent does not "
                           "join the room (injected fault)")
            return
        await liveavatar_full.join(em, session, runtime)


# ---------------------------------------------------------------------- handlers


Answer = Callable[[Emulator, web.Request], Awaitable[Any]]


async def create_token(em: Emulator, request: web.Request) -> Any:
    key = _account_key(em, request)
    body = parse_body(la.TokenRequest, await read_json(request, code=la.CODE_BAD_REQUEST),
                      status=422, code=la.CODE_BAD_REQUEST)
    if body.is_sandbox and body.avatar_id != la.SANDBOX_AVATAR_ID:
        raise ServiceError(
            400, la.CODE_BAD_REQUEST,
            f"Sandbox sessions can only use the sandbox avatar "
            f"{la.SANDBOX_AVATAR_NAME} ({la.SANDBOX_AVATAR_ID})",
        )
    config = em.config
    if body.is_sandbox:
        duration = config.liveavatar_sandbox_duration_s
    else:
        duration = min(body.max_session_duration or math.inf, config.session_duration_limit_s)
    session = em.registry.create_liveavatar(
        LiveAvatarSpec(body), owner_key=key, idle_timeout_s=config.liveavatar_idle_timeout_s,
        duration_limit_s=duration,
    )
    claims = la.session_token_claims(
        session_id=session.session_id, request=body, expires_at=time.time() + duration
    )
    token = la.mint_session_token(claims)
    em.registry.add_liveavatar_token(token, session)
    return la.success({"session_id": session.session_id, "session_token": token},
                      code=la.CODE_TOKEN_OK)


async def start(em: Emulator, request: web.Request) -> Any:
    session = _open_session(em, request)
    if session.state is not SessionState.CREATED:
        raise _state_error(f"Session {session.session_id} has already started")
    em.registry.start(session)
    try:
        await on_started(em, session)
    except Exception as exc:
        logger.error(f"emulator: LiveAvatar session could not start its avatar: {exc}")
        em.registry.stop(session, reason="avatar failed to join")
        await em.end(session)
        raise ServiceError(500, None, "Avatar failed to join the session") from None
    livekit = em.config.livekit
    answer = la.StartAnswer(
        session_id=session.session_id,
        livekit_url=livekit.url if livekit else "",
        livekit_client_token=SecretStr(
            em.livekit_token(session, f"client-{session.session_id[:8]}")),
        livekit_agent_token=SecretStr(
            em.livekit_token(session, f"agent-{session.session_id[:8]}")),
        max_session_duration=math.ceil(session.duration_limit_s),
        ws_url=SecretStr(_ws_url(request, session)) if _lite(session) else None,
    )
    return la.success(to_wire(answer))


async def stop(em: Emulator, request: web.Request) -> Any:
    session = _bearer_session(em, request)
    body = parse_body(la.StopRequest, await read_json(request, code=la.CODE_BAD_REQUEST),
                      status=422, code=la.CODE_BAD_REQUEST)
    if body.session_id is not None and body.session_id != session.session_id:
        raise ServiceError(401, la.CODE_UNAUTHORIZED,
                           "Session token does not belong to this session")
    _require_open(session)
    stats = session.liveavatar_stats
    if (session.state is not SessionState.CREATED and not stats.connected
            and em.faults.take_ignored_stop()):
        # as the real service has been seen to: "stopped", yet open and billed
        stats.ignored_stops += 1
        logger.warning(f"emulator: LiveAvatar stop of {session.session_id} before "
                       "'connected' ignored (injected fault)")
        return la.success()
    em.registry.stop(session, reason=body.reason or "stopped by client")
    await em.end(session)
    return la.success()


async def keep_alive(em: Emulator, request: web.Request) -> Any:
    em.registry.touch(_open_session(em, request))
    return la.success()


def listing(items: list[dict[str, Any]]) -> Answer:
    async def answer(em: Emulator, request: web.Request) -> Any:
        _account_key(em, request)
        return la.success({"count": len(items), "next": None, "previous": None,
                           "results": items})

    return answer


HANDLERS: dict[Endpoint, Answer] = {
    la.TOKEN: create_token,
    la.START: start,
    la.STOP: stop,
    la.KEEP_ALIVE: keep_alive,
    la.LIST_AVATARS: listing(OWN_AVATARS),
    la.LIST_PUBLIC_AVATARS: listing(PUBLIC_AVATARS),
    la.LIST_VOICES: listing(VOICES),
    la.LIST_CONTEXTS: listing(CONTEXTS),
}


# ---------------------------------------------------------------------- helpers


def _route(endpoint: Endpoint, answer: Answer) -> Handler:
    async def respond(em: Emulator, request: web.Request) -> web.Response:
        body = await answer(em, request)
        omitted = em.faults.take_omissions(endpoint.path)
        if omitted and isinstance(body.get("data"), dict):  # an answer lacking fields
            body["data"] = {k: v for k, v in body["data"].items() if k not in omitted}
        return web.json_response(body)

    return guarded(endpoint.path, respond, _failure)


def _failure(error: ServiceError) -> web.Response:
    return web.json_response(la.failure(error.code, error.message), status=error.status)


def _account_key(em: Emulator, request: web.Request) -> str:
    key = request.headers.get(la.API_KEY_HEADER, "")
    if em.config.accepts_liveavatar_key(key):
        return key
    if not key:
        message = f"Missing API key: send it in the {la.API_KEY_HEADER} header"
    elif em.config.is_heygen_key(key):
        message = (f"{la.HEYGEN_KEY_MESSAGE}, not a LiveAvatar one: LiveAvatar has its own "
                   "API keys")
    else:
        message = "Invalid API key"
    raise ServiceError(401, la.CODE_UNAUTHORIZED, message)


def _bearer_session(em: Emulator, request: web.Request) -> Session:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise ServiceError(401, la.CODE_UNAUTHORIZED,
                           "Missing session token: send Authorization: Bearer <session_token>")
    session = em.registry.liveavatar_session(token.strip())
    if session is None:
        raise ServiceError(401, la.CODE_UNAUTHORIZED, "Invalid session token")
    return session


def _open_session(em: Emulator, request: web.Request) -> Session:
    session = _bearer_session(em, request)
    _require_open(session)
    return session


def _require_open(session: Session) -> None:
    if not session.state.open:
        raise _state_error(
            f"Session {session.session_id} has already ended ({session.end_reason})"
        )


def _state_error(message: str) -> ServiceError:
    return ServiceError(200, la.CODE_SESSION_STATE, message)


def _lite(session: Session) -> bool:
    return session.liveavatar is not None and session.liveavatar.mode is la.Mode.LITE


def _ws_url(request: web.Request, session: Session) -> str:
    assert session.liveavatar is not None
    scheme = "wss" if request.secure else "ws"
    path = lite.EMULATOR_WS_PATH.format(session_id=session.session_id)
    query = f"{lite.EMULATOR_WS_TOKEN_PARAM}={session.liveavatar.ws_token}"
    return f"{scheme}://{request.host}{path}?{query}"

