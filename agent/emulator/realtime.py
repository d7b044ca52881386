"""The emulated realtime WebSocket at ``realtime_endpoint`` (heygen-protocol.md §4).

The client streams its own TTS audio with ``agent.speak`` and closes each utterance with
``agent.speak_end``; the avatar lip-syncs it. The server reports ``session.state_updated``
once on connect and ``agent.state_updated`` on every change of what the avatar does.
"""

from __future__ import annotations

import asyncio

from aiohttp import WSMsgType, web
from loguru import logger

from agent.emulator.runtime import SessionRuntime
from agent.emulator.sessions import ServiceError
from agent.emulator.state import EMULATOR_KEY, injected_fault
from agent.heygen.protocol import ProtocolError
from agent.heygen.protocol import realtime as rt

IDLE, LISTENING, SPEAKING = "idle", "listening", "speaking"


async def handle(request: web.Request) -> web.StreamResponse:
    em = request.app[EMULATOR_KEY]
    failure = await injected_fault(em, request.path)
    if failure is not None:
        return failure
    try:
        session = em.registry.get(request.match_info["session_id"])
        em.registry.require_started(session)
    except ServiceError as exc:
        return web.json_response(exc.body(), status=exc.status)
    runtime = em.runtime(session)
    ws = web.WebSocketResponse(heartbeat=None, max_msg_size=4 * 1024 * 1024)
    try:
        await ws.prepare(request)
    except ConnectionResetError:  # the client left during the handshake
        return ws
    runtime.sockets.add(ws)
    agent = _Agent(ws, runtime)
    try:
        await ws.send_str(rt.session_state("connected").to_json())
        async for message in ws:
            if message.type != WSMsgType.TEXT:
                continue
            em.registry.touch(session)
            try:
                command = rt.parse_command(message.data)
            except ProtocolError as exc:
                logger.warning(f"emulator realtime: {exc}")
                await ws.send_json({"type": "error", "message": str(exc)})
                continue
            await agent.on(command)
    finally:
        runtime.sockets.discard(ws)
        agent.cancel()
    return ws


class _Agent:
    """The avatar's state as the realtime socket reports it."""

    def __init__(self, ws: web.WebSocketResponse, runtime: SessionRuntime) -> None:
        self.ws = ws
        self.runtime = runtime
        self.state = IDLE
        self.buffer = bytearray()
        self._waiters: set[asyncio.Task[None]] = set()

    async def set_state(self, new: str) -> None:
        if new != self.state and not self.ws.closed:
            await self.ws.send_str(rt.agent_state(self.state, new).to_json())
        self.state = new

    async def on(self, command: rt.Command) -> None:
        kind = command.type
        if kind in (rt.AGENT_SPEAK, rt.AGENT_AUDIO_BUFFER_APPEND):
            self.buffer += command.audio or b""
        elif kind in (rt.AGENT_SPEAK_END, rt.AGENT_AUDIO_BUFFER_COMMIT):
            await self._speak_buffer()
        elif kind in (rt.AGENT_INTERRUPT, rt.AGENT_AUDIO_BUFFER_CLEAR):
            self.buffer.clear()
            if kind == rt.AGENT_INTERRUPT:
                await self.runtime.interrupt()
                await self.set_state(IDLE)
        elif kind == rt.AGENT_START_LISTENING:
            self.runtime.session.listening = True
            await self.set_state(LISTENING)
        elif kind == rt.AGENT_STOP_LISTENING:
            self.runtime.session.listening = False
            await self.set_state(IDLE)
        # session.keep_alive: the touch in the read loop is all it does

    async def _speak_buffer(self) -> None:
        if not self.buffer:
            return
        _, done = self.runtime.play(bytes(self.buffer), rt.SAMPLE_RATE)
        self.buffer.clear()
        await self.set_state(SPEAKING)
        waiter = asyncio.create_task(self._back_to_idle(done))
        self._waiters.add(waiter)
        waiter.add_done_callback(self._waiters.discard)

    async def _back_to_idle(self, done: asyncio.Future[float]) -> None:
        await done
        if self.state == SPEAKING and not self.ws.closed:
            await self.set_state(IDLE)

    def cancel(self) -> None:
        for waiter in list(self._waiters):
            waiter.cancel()
