"""LiveAvatar LITE mode in the emulator: the socket at ``ws_url`` (heygen-protocol.md §5).

In LITE mode the client brings its own brain and voice and LiveAvatar only lends the face:
the client streams its TTS as ``agent.speak`` chunks and the avatar lip-syncs them in the
room. This is the socket's handler, at :data:`socket.EMULATOR_WS_PATH` with the
credential ``start`` put in ``ws_url``; the lip-sync itself is
:mod:`agent.emulator.lipsync`, shared with the realtime socket (§4), which does the same
under other names. Messages are parsed and built by
:mod:`agent.heygen.protocol.liveavatar.socket`, the client's own module.

What it does, as the real service does: ``session.state_updated`` says ``connecting``,
then ``connected`` once the avatar is in the room with its media; each utterance is told
as ``agent.speak_started`` when the avatar starts saying it and ``agent.speak_ended`` (or
``agent.speak_interrupted``) with its ``event_id``; a message over 1 MB closes the socket
with 1009; the session's end says ``closing`` and ``closed`` and closes the socket. What
the emulator decides where the real service's behaviour is not known: see
:meth:`_LiteSocket.on_message`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac

from aiohttp import WSMessage, WSMsgType, web
from loguru import logger

from agent.emulator.lipsync import LipSync, Utterance
from agent.emulator.runtime import SessionRuntime
from agent.emulator.sessions import ServiceError, Session
from agent.emulator.state import EMULATOR_KEY, Emulator, SocketDrops, injected_fault
from agent.heygen.protocol import ProtocolError
from agent.heygen.protocol.liveavatar import rest as la
from agent.heygen.protocol.liveavatar import socket as lite

PATH = lite.EMULATOR_WS_PATH


async def handle(request: web.Request) -> web.StreamResponse:
    em = request.app[EMULATOR_KEY]
    failure = await injected_fault(em, PATH)
    if failure is not None:
        return failure
    try:
        session, runtime = _authorise(em, request)
    except ServiceError as exc:
        return web.json_response(la.failure(exc.code, exc.message), status=exc.status)
    # One byte over the limit for aiohttp, which refuses a message of exactly its size.
    ws = web.WebSocketResponse(heartbeat=None, max_msg_size=lite.MAX_MESSAGE_BYTES + 1)
    try:
        await ws.prepare(request)
    except ConnectionResetError:  # the client left during the handshake
        return ws
    socket = _LiteSocket(em, session, runtime, ws, request)
    runtime.sockets.add(ws)
    try:
        await socket.run()
    finally:
        runtime.sockets.discard(ws)
    return ws


def _authorise(em: Emulator, request: web.Request) -> tuple[Session, SessionRuntime]:
    """The session the socket's credential names; refused before the upgrade otherwise."""
    session = em.registry.find(request.match_info["session_id"])
    token = request.query.get(lite.EMULATOR_WS_TOKEN_PARAM, "")
    if (session is None or session.liveavatar is None
            or not hmac.compare_digest(token.encode(), session.liveavatar.ws_token.encode())):
        raise ServiceError(401, la.CODE_UNAUTHORIZED, "Invalid or missing session credential")
    if session.liveavatar.mode is not la.Mode.LITE:
        raise ServiceError(400, la.CODE_BAD_REQUEST, "Not a LITE session: FULL takes its "
                           "commands in the LiveKit room")
    if not session.state.open:
        raise ServiceError(400, la.CODE_SESSION_STATE,
                           f"Session {session.session_id} has already ended "
                           f"({session.end_reason})")
    runtime = em.runtimes.get(session.session_id)
    if runtime is None or runtime.closed:
        raise ServiceError(400, la.CODE_SESSION_STATE,
                           f"Session {session.session_id} has not started")
    return session, runtime


class _LiteSocket:
    """One LITE connection: its state, its utterances, what it tells the client."""

    def __init__(
        self, em: Emulator, session: Session, runtime: SessionRuntime,
        ws: web.WebSocketResponse, request: web.Request,
    ) -> None:
        self.em = em
        self.session = session
        self.runtime = runtime
        self.ws = ws
        self.stats = session.liveavatar_stats
        self.drops = SocketDrops(em, request, "LITE")
        self.lipsync = LipSync(runtime, self, sample_rate=lite.SAMPLE_RATE, by_event_id=True)
        self.connected = False
        self.ended = False

    async def run(self) -> None:
        self.runtime.closers.append(self._session_ended)
        await self.send(lite.state_updated(lite.CONNECTING))
        helpers = [asyncio.create_task(self.drops.deadline()),
                   asyncio.create_task(self._connect())]
        try:
            async for message in self.ws:
                if self.drops.message():
                    break
                await self.on_message(message)
        finally:
            with contextlib.suppress(ValueError):
                self.runtime.closers.remove(self._session_ended)
            self.lipsync.close()
            for helper in helpers:
                helper.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await helper

    async def _connect(self) -> None:
        if await self.runtime.avatar.in_room():
            self.connected = self.stats.connected = True
            await self.send(lite.state_updated(lite.CONNECTED))
        else:
            logger.warning("emulator LITE: the avatar left before its media was up; "
                           "the socket stays 'connecting'")

    async def _session_ended(self) -> None:
        """The session ended (stopped, expired): say so; the runtime closes the socket."""
        self.connected = False
        self.ended = True
        await self.send(lite.state_updated(lite.CLOSING))
        await self.send(lite.state_updated(lite.CLOSED))

    async def send(self, event: lite.ServerEvent) -> None:
        if self.ws.closed:
            return
        try:
            await self.ws.send_str(event.to_json())
        except ConnectionError as exc:
            logger.debug(f"emulator LITE: could not send {event.type}: {exc}")

    async def on_message(self, message: WSMessage) -> None:
        """Anything before ``connected`` is a protocol fault: LiveAvatar says to send
        nothing until then, but not what it does with what comes anyway (drop it, queue
        it, or close the socket are all possible). The emulator counts it
        (``before_connected``) and ignores it. Likewise a message it cannot read (not
        JSON, an unknown type, audio that is not base64 or not whole 16-bit samples):
        counted (``bad_messages``) and ignored. Audio in the wrong format but the right
        shape (another rate, say) cannot be told apart: it plays garbled, as on the
        real service."""
        if message.type == WSMsgType.ERROR:  # over 1 MB: aiohttp has closed with 1009
            self.stats.lite_bad_messages += 1
            logger.warning(f"emulator LITE: {message.data}")
            return
        if message.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
            return
        if not self.connected:
            self.stats.lite_before_connected += 1
            logger.warning("emulator LITE: a message before 'connected', ignored")
            return
        try:
            command = lite.parse_command(message.data)
            if command.type == lite.SPEAK and command.audio is None:
                raise ProtocolError("agent.speak has no 'audio'")
        except ProtocolError as exc:
            self.stats.lite_bad_messages += 1
            logger.warning(f"emulator LITE: ignored: {exc}")
            return
        self.em.registry.touch(self.session)
        await self.on_command(command)

    async def on_command(self, command: lite.Command) -> None:
        kind = command.type
        if kind == lite.SPEAK:
            audio = command.audio or b""
            self.stats.lite_audio_seconds += len(audio) / 2 / lite.SAMPLE_RATE
            if audio and self.lipsync.speak(audio, command.event_id):
                self.stats.lite_utterances += 1
        elif kind == lite.SPEAK_END:
            self.lipsync.end(command.event_id)
        elif kind == lite.INTERRUPT:
            self.stats.lite_interrupts += 1
            await self.lipsync.interrupt()
        elif kind in (lite.START_LISTENING, lite.STOP_LISTENING):
            self.session.listening = kind == lite.START_LISTENING
        # session.keep_alive: the touch above is all it does

    async def utterance_started(self, utterance: Utterance) -> None:
        if self.ended:
            return
        await self.send(lite.speak_event(lite.SPEAK_STARTED, utterance.event_id))

    async def utterance_ended(self, utterance: Utterance, *, interrupted: bool) -> None:
        if self.ended:
            return
        kind = lite.SPEAK_INTERRUPTED if interrupted else lite.SPEAK_ENDED
        await self.send(lite.speak_event(kind, utterance.event_id))
