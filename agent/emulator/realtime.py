"""The emulated realtime WebSocket at ``realtime_endpoint`` (heygen-protocol.md §4).

The client streams its own TTS audio with ``agent.speak`` and closes each utterance with
``agent.speak_end``; the avatar lip-syncs it (:mod:`agent.emulator.lipsync`, shared with
LiveAvatar's LITE socket). The server reports ``session.state_updated`` once on connect
and ``agent.state_updated`` on every change of what the avatar does.
"""

from __future__ import annotations

from aiohttp import WSMsgType, web
from loguru import logger

from agent.emulator.lipsync import LipSync, Utterance
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
        agent.lipsync.close()
    return ws


class _Agent:
    """The avatar's state as the realtime socket reports it."""

    def __init__(self, ws: web.WebSocketResponse, runtime: SessionRuntime) -> None:
        self.ws = ws
        self.runtime = runtime
        self.state = IDLE
        self.lipsync = LipSync(runtime, self, sample_rate=rt.SAMPLE_RATE, by_event_id=False)

    async def set_state(self, new: str) -> None:
        if new != self.state and not self.ws.closed:
            await self.ws.send_str(rt.agent_state(self.state, new).to_json())
        self.state = new

    async def on(self, command: rt.Command) -> None:
        kind = command.type
        if kind in (rt.AGENT_SPEAK, rt.AGENT_AUDIO_BUFFER_APPEND):
            if command.audio:
                self.lipsync.speak(command.audio, command.event_id)
        elif kind in (rt.AGENT_SPEAK_END, rt.AGENT_AUDIO_BUFFER_COMMIT):
            self.lipsync.end()
        elif kind == rt.AGENT_AUDIO_BUFFER_CLEAR:
            self.lipsync.discard()
        elif kind == rt.AGENT_INTERRUPT:
            await self.lipsync.interrupt()
            await self.set_state(IDLE)
        elif kind == rt.AGENT_START_LISTENING:
            self.runtime.session.listening = True
            await self.set_state(LISTENING)
        elif kind == rt.AGENT_STOP_LISTENING:
            self.runtime.session.listening = False
            await self.set_state(IDLE)
        # session.keep_alive: the touch in the read loop is all it does

    async def utterance_started(self, utterance: Utterance) -> None:
        await self.set_state(SPEAKING)

    async def utterance_ended(self, utterance: Utterance, *, interrupted: bool) -> None:
        if self.state == SPEAKING and not self.lipsync.speaking:
            await self.set_state(IDLE)
