"""The emulated HeyGen service: REST (§1), admin and CORS, as one aiohttp application.

Paths, field names and error shapes come from :mod:`agent.heygen.protocol`, the same
module the client uses, so the two cannot drift apart silently. The WebSocket handlers
live in :mod:`agent.emulator.voice_chat` and :mod:`agent.emulator.realtime`, LiveAvatar's
REST API (§5) in :mod:`agent.emulator.liveavatar` (which adds its FULL and LITE modes,
:mod:`agent.emulator.liveavatar_full` and :mod:`agent.emulator.liveavatar_lite`); the
state all of them share, in :mod:`agent.emulator.state`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from aiohttp import web
from loguru import logger
from pydantic import SecretStr

from agent.emulator import liveavatar, realtime, voice_chat
from agent.emulator.config import EmulatorConfig
from agent.emulator.faults import FaultSettings
from agent.emulator.runtime import answer_text, estimate_duration_s
from agent.emulator.sessions import ServiceError, Session
from agent.emulator.state import (
    EMULATOR_KEY,
    AvatarFactory,
    Emulator,
    Handler,
    error_response,
    guarded,
    ok,
    parse_body,
    read_json,
)
from agent.heygen.protocol import interactive as ia
from agent.heygen.protocol.liveavatar import rest as la

ADMIN_PREFIX = "/_emulator"
REALTIME_PATH = "/v2-alpha/interactive-avatar/session/{session_id}"

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


#: Calls HeyGen carries out even when the client has stopped waiting for the answer (it
#: does not know): a ``new`` whose client timed out still creates the (billed) session.
FINISHED_REGARDLESS = frozenset({ia.NEW})


def rest_route(endpoint: ia.Endpoint, handler: RestHandler) -> Handler:
    async def answer(em: Emulator, request: web.Request) -> web.Response:
        owner, token = em.authenticate(request, endpoint)
        return ok(await handler(em, request, owner, token))

    route = guarded(endpoint.path, answer)
    return finished_regardless(route) if endpoint in FINISHED_REGARDLESS else route


def finished_regardless(route: Handler) -> Handler:
    """``route``, run to its end even when the client disconnects (aiohttp then cancels
    the handler; HeyGen's servers would go on)."""

    async def shielded(request: web.Request) -> web.StreamResponse:
        await request.read()  # it came with the request; kept for the handler
        task = asyncio.ensure_future(route(request))
        # the answer no one waits for any more: its error, if any, is retrieved here
        task.add_done_callback(lambda t: t.cancelled() or t.exception())
        return await asyncio.shield(task)

    return shielded


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
            "endpoints": [f"{e.method} {e.path}" for e in (*ia.ENDPOINTS, *la.ENDPOINTS)],
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
    """Browsers call HeyGen straight from a page; the emulator must let them too.

    LiveAvatar's official SDK sends ``credentials: "include"``, which a browser allows
    only with the page's own origin echoed and ``Access-Control-Allow-Credentials: true``
    (``*`` fails): its paths get both whenever the request names an origin."""
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
    if origin != "*" and request.path in liveavatar.PATHS:
        response.headers["Access-Control-Allow-Credentials"] = "true"
    return response


# ---------------------------------------------------------------------- app


def create_app(
    config: EmulatorConfig, avatar_factory: AvatarFactory | None = None
) -> web.Application:
    emulator = Emulator(config, avatar_factory)
    app = web.Application(middlewares=[cors])
    app[EMULATOR_KEY] = emulator
    for endpoint, handler in REST_HANDLERS.items():
        app.router.add_route(endpoint.method, endpoint.path, rest_route(endpoint, handler))
    liveavatar.register(app)
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
