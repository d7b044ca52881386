"""The state one emulator instance shares between its REST handlers and its sockets.

Both the REST application (:mod:`agent.emulator.app`) and the WebSocket handlers
(:mod:`agent.emulator.voice_chat`, :mod:`agent.emulator.realtime`) need it; it lives here,
below all three, so that none of them imports another.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, TypeVar

from aiohttp import web
from loguru import logger
from pydantic import BaseModel, ValidationError

from agent.emulator.config import EmulatorConfig
from agent.emulator.faults import Faults
from agent.emulator.observe import RequestCounts
from agent.emulator.runtime import Avatar, SessionRuntime, TimedAvatar
from agent.emulator.sessions import ServiceError, Session, SessionRegistry, unauthorized
from agent.heygen.protocol import interactive as ia

AvatarFactory = Callable[[Session, "Emulator"], Avatar]
M = TypeVar("M", bound=BaseModel)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

AVATAR_IDENTITY = "heygen"
#: Answers carry ``code: 100`` and ``message: "success"`` like the real service's.
SUCCESS_CODE = 100

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
        #: sessions ended (stopped, expired, shut down), counted per session id, likewise
        self.ends = RequestCounts()
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
        """After the registry ended ``session``: stop what it runs. Every end passes here."""
        self.ends.arrived(session.session_id)
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
        publish_delay_s=emulator.faults.media_delay_s,
        listen_delay_s=emulator.faults.listen_delay_s,
    )


def parse_body(model: type[M], body: Any, *, status: int = 400, code: int = 400) -> M:
    """``body`` as ``model``, or the error answer naming the first thing wrong with it."""
    try:
        return model.model_validate(body if body is not None else {})
    except ValidationError as exc:
        problem = ia.first_problem(exc, whole="body")
        raise ServiceError(status, code, f"Invalid parameter {problem}") from None


async def read_json(request: web.Request, *, code: int = 400) -> Any:
    """The request's JSON body, ``None`` when it has none."""
    if not request.body_exists:  # (read already, or not: the body is cached)
        return None
    try:
        return await request.json()
    except ValueError:
        raise ServiceError(400, code, "Request body is not valid JSON") from None


def ok(data: Any = None) -> web.Response:
    return web.json_response({"code": SUCCESS_CODE, "data": data, "message": "success"})


def error_response(error: ServiceError) -> web.Response:
    return web.json_response(error.body(), status=error.status)


async def injected_fault(em: Emulator, path: str) -> web.Response | None:
    """Apply the armed latency, and answer with an armed failure if one matches ``path``
    (REST paths and WebSocket handshakes alike)."""
    em.requests.arrived(path)
    if latency := em.faults.latency_for(path):
        await asyncio.sleep(latency)
    injected = em.faults.take_failure(path)
    if injected is None:
        return None
    response = error_response(ServiceError(injected.status, injected.code, injected.message))
    if injected.retry_after is not None:
        response.headers["Retry-After"] = f"{injected.retry_after:g}"
    return response


class SocketDrops:
    """The armed ``ws_drop_after_*`` faults, applied to one socket: past so many messages
    or seconds the TCP connection is cut with no close frame, as a network failure would.
    Call :meth:`message` for each message read (``True``: dropped, stop reading) and run
    :meth:`deadline` beside the read loop."""

    def __init__(self, em: Emulator, request: web.Request, what: str) -> None:
        self.em = em
        self.request = request
        self.what = what
        self.messages = 0

    def message(self) -> bool:
        self.messages += 1
        limit = self.em.faults.ws_drop_after_messages
        if limit is not None and self.messages > limit:
            self.drop("message limit")
            return True
        return False

    async def deadline(self) -> None:
        seconds = self.em.faults.ws_drop_after_seconds
        if seconds is None:
            return
        await asyncio.sleep(seconds)
        self.drop("time limit")

    def drop(self, why: str) -> None:
        logger.info(f"emulator: dropping {self.what} socket ({why})")
        transport = self.request.transport
        if transport is not None:
            transport.abort()


def guarded(
    path: str,
    answer: Callable[[Emulator, web.Request], Awaitable[web.Response]],
    render: Callable[[ServiceError], web.Response] = error_response,
) -> Handler:
    """A REST route at ``path``: counted, with the armed faults applied, and a
    :class:`ServiceError` from ``answer`` turned into its answer by ``render``."""

    async def route(request: web.Request) -> web.StreamResponse:
        em = request.app[EMULATOR_KEY]
        failure = await injected_fault(em, path)
        if failure is not None:
            return failure
        try:
            return await answer(em, request)
        except ServiceError as exc:
            return render(exc)

    return route
