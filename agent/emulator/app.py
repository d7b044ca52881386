"""The emulated HeyGen service: REST (§1), admin and CORS, as one aiohttp application.

Paths, field names and error shapes come from :mod:`agent.heygen.protocol`, the same
module the client uses, so the two cannot drift apart silently. The WebSocket handlers
live in :mod:`agent.emulator.voice_chat` and :mod:`agent.emulator.realtime`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from typing import Any, TypeVar

from aiohttp import web
from loguru import logger
from pydantic import BaseModel, SecretStr, ValidationError

from agent.emulator.config import EmulatorConfig
from agent.emulator.faults import Faults, FaultSettings
from agent.emulator.observe import RequestCounts
from agent.emulator.runtime import (
    Avatar,
    SessionRuntime,
    TimedAvatar,
    answer_text,
    estimate_duration_s,
)
from agent.emulator.sessions import (
    ServiceError,
    Session,
    SessionRegistry,
    unauthorized,
)
from agent.heygen.protocol import interactive as ia

M = TypeVar("M", bound=BaseModel)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
AvatarFactory = Callable[[Session, "Emulator"], Avatar]

ADMIN_PREFIX = "/_emulator"
REALTIME_PATH = "/v2-alpha/interactive-avatar/session/{session_id}"
AVATAR_IDENTITY = "heygen"
#: Answers carry ``code: 100`` and ``message: "success"`` like the real service's.
SUCCESS_CODE = 100

AVATARS = [
    {"avatar_id": "Emulated_Anna", "default_voice": "emu-voice-en", "is_public": True,
     "normal_preview": "", "pose_name": "Anna (emulated)", "status": "ACTIVE"},
    {"avatar_id": "Emulated_Wayne", "default_voice": "emu-voice-en", "is_public": True,
     "normal_preview": "", "pose_name": "Wayne (emulated)", "status": "ACTIVE"},
]
VOICES = [
    {"voice_id": "emu-voice-en", "name": "espeak-ng English", "language": "English",
     "gender": "neutral", "support_realtime": True},
    {"voice_id": "emu-voice-offline", "name": "Recorded only", "language": "English",
     "gender": "neutral", "support_realtime": False},
]

EMULATOR_KEY: web.AppKey[Emulator] = web.AppKey("emulator")


class Emulator:
    """State shared by every handler of one emulator instance."""

    def __init__(self, config: EmulatorConfig, avatar_factory: AvatarFactory | None = None):
        self.config = config
        self.registry = SessionRegistry(
            max_concurrent=config.max_concurrent_sessions,
            duration_limit_s=config.session_duration_limit_s,
        )
        self.faults = Faults()
        self.faults.apply(config.faults)
        self.runtimes: dict[str, SessionRuntime] = {}
        #: requests seen per path (REST calls and socket handshakes), for tests to await
        self.requests = RequestCounts()
        self._avatar_factory = avatar_factory or default_avatar_factory

    # ------------------------------------------------------------------ auth

    def authenticate(self, request: web.Request, endpoint: ia.Endpoint) -> tuple[str, str | None]:
        """The account key behind the request, and the session token if one was used."""
        key = request.headers.get(ia.API_KEY_HEADER)
        if key is not None:
            if self.config.accepts_key(key):
                return key, None
            raise ServiceError(401, ia.CODE_INVALID_CREDENTIALS, "Invalid credentials")
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if endpoint.auth == "session" and scheme.lower() == "bearer" and token:
            owner = self.registry.token_owner(token)
            if owner is not None:
                return owner, token
        raise unauthorized()

    def session_for(self, session_id: str, owner: str, token: str | None) -> Session:
        if token is not None and not self.registry.token_allows(token, session_id):
            raise unauthorized("Session token does not belong to this session")
        return self.registry.get(session_id, owner_key=owner)

    # ------------------------------------------------------------------ sessions

    def livekit_token(self, session: Session, identity: str) -> str:
        """A LiveKit JWT for ``identity`` in the session's room."""
        from livekit import api as lk_api

        livekit = self.config.livekit
        if livekit is None:
            return "no-livekit-" + session.session_id
        grants = lk_api.VideoGrants(
            room_join=True, room=session.room, can_publish=True, can_subscribe=True,
            can_publish_data=True,
        )
        token = (
            lk_api.AccessToken(livekit.api_key, livekit.api_secret)
            .with_identity(identity)
            .with_grants(grants)
            .with_ttl(timedelta(seconds=session.duration_limit_s + 60))
        )
        return str(token.to_jwt())

    async def start_runtime(self, session: Session) -> SessionRuntime:
        avatar = self._avatar_factory(session, self)
        await avatar.join()
        runtime = SessionRuntime(session, avatar, touch=lambda: self.registry.touch(session))
        self.runtimes[session.session_id] = runtime
        return runtime

    def runtime(self, session: Session) -> SessionRuntime:
        runtime = self.runtimes.get(session.session_id)
        if runtime is None:
            raise ServiceError(400, ia.CODE_SESSION_STATE, "Session is not in correct state")
        return runtime

    async def end(self, session: Session) -> None:
        runtime = self.runtimes.pop(session.session_id, None)
        if runtime is not None:
            await runtime.close()

    async def expire_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.expiry_check_interval_s)
            for session in self.registry.expire_due():
                logger.info(f"emulator: session {session.session_id[:8]} {session.end_reason}")
                await self.end(session)

    async def close(self) -> None:
        for session in list(self.registry):
            if session.state.open:
                self.registry.stop(session, reason="emulator shut down")
            await self.end(session)

    def describe(self) -> dict[str, Any]:
        return {
            "sessions": self.registry.counts(),
            "per_session": {s.session_id: s.describe() for s in self.registry},
            "faults": self.faults.describe(),
            "requests": dict(self.requests),
        }


def default_avatar_factory(session: Session, emulator: Emulator) -> Avatar:
    livekit = emulator.config.livekit
    if livekit is None:
        return TimedAvatar()
    from agent.emulator.avatar import AvatarParticipant

    config = emulator.config
    return AvatarParticipant(
        livekit_url=livekit.url,
        token=emulator.livekit_token(session, AVATAR_IDENTITY),
        width=config.avatar_width,
        height=config.avatar_height,
        fps=config.avatar_fps,
    )


# ---------------------------------------------------------------------- answers


def ok(data: Any = None) -> web.Response:
    return web.json_response({"code": SUCCESS_CODE, "data": data, "message": "success"})


def error_response(error: ServiceError) -> web.Response:
    return web.json_response(error.body(), status=error.status)


def parse_body(model: type[M], body: Any) -> M:
    try:
        return model.model_validate(body if body is not None else {})
    except ValidationError as exc:
        problem = ia.first_problem(exc, whole="body")
        raise ServiceError(400, 400, f"Invalid parameter {problem}") from None


async def read_json(request: web.Request) -> Any:
    if not request.can_read_body:
        return None
    try:
        return await request.json()
    except ValueError:
        raise ServiceError(400, 400, "Request body is not valid JSON") from None


# ---------------------------------------------------------------------- REST handlers


async def create_token(em: Emulator, request: web.Request, owner: str, token: str | None) -> Any:
    return {"token": em.registry.mint_token(owner)}


async def new(em: Emulator, request: web.Request, owner: str, token: str | None) -> Any:
    body = parse_body(ia.NewSessionRequest, await read_json(request))
    session = em.registry.create(body, owner_key=owner, token=token)
    livekit = em.config.livekit
    ws_scheme = "wss" if request.secure else "ws"
    answer = ia.NewSessionAnswer(
        session_id=session.session_id,
        access_token=SecretStr(em.livekit_token(session, f"client-{session.session_id[:8]}")),
        livekit_agent_token=SecretStr(
            em.livekit_token(session, f"agent-{session.session_id[:8]}")
        ),
        url=livekit.url if livekit else "",
        is_paid=False,
        session_duration_limit=session.duration_limit_s,
        realtime_endpoint=(
            f"{ws_scheme}://{request.host}"
            + REALTIME_PATH.format(session_id=session.session_id)
        ),
    )
    return ia.to_wire(answer)


async def start(em: Emulator, request: web.Request, owner: str, token: str | None) -> Any:
    session = await _session(em, request, owner, token)
    em.registry.start(session)
    try:
        await em.start_runtime(session)
    except Exception as exc:
        logger.error(f"emulator: avatar could not join the room: {exc}")
        em.registry.stop(session, reason="avatar failed to join")
        raise ServiceError(500, 500, "Avatar failed to join the session") from None
    return None


async def task(em: Emulator, request: web.Request, owner: str, token: str | None) -> Any:
    body = parse_body(ia.TaskRequest, await read_json(request))
    session = em.session_for(body.session_id, owner, token)
    em.registry.require_started(session)
    em.registry.touch(session)
    text = body.text if body.task_type == ia.TaskType.REPEAT else answer_text(body.text)
    task_id, done = em.runtime(session).say(text)
    if body.task_mode == ia.TaskMode.SYNC:
        duration_ms = await done
    else:  # the real service also answers an async task with its expected length
        duration_ms = estimate_duration_s(text) * 1000
    return {"task_id": task_id, "duration_ms": round(duration_ms)}


async def interrupt(em: Emulator, request: web.Request, owner: str, token: str | None) -> Any:
    session = await _started_session(em, request, owner, token)
    await em.runtime(session).interrupt()


async def keep_alive(em: Emulator, request: web.Request, owner: str, token: str | None) -> Any:
    await _session(em, request, owner, token)


async def start_listening(
    em: Emulator, request: web.Request, owner: str, token: str | None
) -> Any:
    (await _started_session(em, request, owner, token)).listening = True


async def stop_listening(em: Emulator, request: web.Request, owner: str, token: str | None) -> Any:
    (await _started_session(em, request, owner, token)).listening = False


async def stop(em: Emulator, request: web.Request, owner: str, token: str | None) -> Any:
    session = await _session(em, request, owner, token)
    em.registry.stop(session)
    await em.end(session)


async def list_sessions(em: Emulator, request: web.Request, owner: str, token: str | None) -> Any:
    sessions = [
        {"session_id": s.session_id, "status": s.state.listing_status,
         "created_at": round(s.created_unix)}
        for s in em.registry if s.state.open and s.owner_key == owner
    ]
    return {"sessions": sessions}


async def list_avatars(em: Emulator, request: web.Request, owner: str, token: str | None) -> Any:
    return AVATARS


async def list_voices(em: Emulator, request: web.Request, owner: str, token: str | None) -> Any:
    return {"voices": VOICES}


async def _session(em: Emulator, request: web.Request, owner: str, token: str | None) -> Session:
    body = parse_body(ia.SessionRequest, await read_json(request))
    session = em.session_for(body.session_id, owner, token)
    em.registry.touch(session)
    return session


async def _started_session(
    em: Emulator, request: web.Request, owner: str, token: str | None
) -> Session:
    session = await _session(em, request, owner, token)
    em.registry.require_started(session)
    return session


RestHandler = Callable[[Emulator, web.Request, str, str | None], Awaitable[Any]]
REST_HANDLERS: dict[ia.Endpoint, RestHandler] = {
    ia.CREATE_TOKEN: create_token,
    ia.NEW: new,
    ia.START: start,
    ia.TASK: task,
    ia.INTERRUPT: interrupt,
    ia.KEEP_ALIVE: keep_alive,
    ia.START_LISTENING: start_listening,
    ia.STOP_LISTENING: stop_listening,
    ia.STOP: stop,
    ia.LIST_SESSIONS: list_sessions,
    ia.LIST_AVATARS: list_avatars,
    ia.LIST_VOICES: list_voices,
    ia.LIST_VOICES_V2: list_voices,
}


async def injected_fault(em: Emulator, path: str) -> web.Response | None:
    """Apply the armed latency, and answer with an armed failure if one matches ``path``
    (REST paths and WebSocket handshakes alike)."""
    em.requests.arrived(path)
    if em.faults.latency_s:
        await asyncio.sleep(em.faults.latency_s)
    injected = em.faults.take_failure(path)
    if injected is None:
        return None
    return error_response(ServiceError(injected.status, injected.code, injected.message))


def rest_route(endpoint: ia.Endpoint, handler: RestHandler) -> Handler:
    async def route(request: web.Request) -> web.StreamResponse:
        em = request.app[EMULATOR_KEY]
        failure = await injected_fault(em, endpoint.path)
        if failure is not None:
            return failure
        try:
            owner, token = em.authenticate(request, endpoint)
            return ok(await handler(em, request, owner, token))
        except ServiceError as exc:
            return error_response(exc)

    return route


# ---------------------------------------------------------------------- admin


async def admin_state(request: web.Request) -> web.Response:
    return web.json_response(request.app[EMULATOR_KEY].describe())


async def admin_faults(request: web.Request) -> web.Response:
    em = request.app[EMULATOR_KEY]
    try:
        settings = parse_body(FaultSettings, await read_json(request))
    except ServiceError as exc:
        return error_response(exc)
    em.faults.apply(settings)
    return web.json_response(em.faults.describe())


async def admin_avatar_leave(request: web.Request) -> web.Response:
    """The avatar leaves the LiveKit room while the session stays open, as when
    HeyGen's media side fails: the client must notice and cope."""
    em = request.app[EMULATOR_KEY]
    runtime = em.runtimes.get(request.match_info["session_id"])
    if runtime is None:
        return error_response(ServiceError(404, None, "no running session with that id"))
    await runtime.avatar.leave()
    return web.json_response({"left": True})


async def index(request: web.Request) -> web.Response:
    em = request.app[EMULATOR_KEY]
    return web.json_response(
        {
            "service": "heygen-agent emulator",
            "livekit_url": em.config.livekit.url if em.config.livekit else None,
            "endpoints": [f"{e.method} {e.path}" for e in ia.ENDPOINTS],
        }
    )


# ---------------------------------------------------------------------- CORS


CORS_HEADERS = {
    "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
    "Access-Control-Allow-Headers": "authorization, content-type, x-api-key",
    "Access-Control-Max-Age": "600",
}


@web.middleware
async def cors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Browsers call HeyGen straight from a page; the emulator must let them too."""
    origin = request.headers.get("Origin", "*")
    if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
        response: web.StreamResponse = web.Response(status=204)
        response.headers.update(CORS_HEADERS)
    else:
        response = await handler(request)
        if isinstance(response, web.WebSocketResponse):
            return response
    response.headers["Access-Control-Allow-Origin"] = origin
    response.headers["Vary"] = "Origin"
    return response


# ---------------------------------------------------------------------- app


def create_app(
    config: EmulatorConfig, avatar_factory: AvatarFactory | None = None
) -> web.Application:
    from agent.emulator import realtime, voice_chat

    emulator = Emulator(config, avatar_factory)
    app = web.Application(middlewares=[cors])
    app[EMULATOR_KEY] = emulator
    for endpoint, handler in REST_HANDLERS.items():
        app.router.add_route(endpoint.method, endpoint.path, rest_route(endpoint, handler))
    app.router.add_get(voice_chat.CHAT_PATH, voice_chat.handle)
    app.router.add_get(REALTIME_PATH, realtime.handle)
    app.router.add_get("/", index)
    app.router.add_get(f"{ADMIN_PREFIX}/state", admin_state)
    app.router.add_post(f"{ADMIN_PREFIX}/faults", admin_faults)
    app.router.add_post(f"{ADMIN_PREFIX}/sessions/{{session_id}}/avatar/leave", admin_avatar_leave)
    app.cleanup_ctx.append(_background)
    return app


async def _background(app: web.Application) -> AsyncIterator[None]:
    emulator = app[EMULATOR_KEY]
    expiry = asyncio.create_task(emulator.expire_loop(), name="emulator-expiry")
    yield
    expiry.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await expiry
    await emulator.close()
