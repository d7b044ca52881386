"""The emulated voice-chat WebSocket (heygen-protocol.md §2).

It decodes the client's protobuf frames, keeps count of the audio it received (so tests
can hold the client to 16 kHz mono in 512-sample frames), detects speech in it and
answers like HeyGen: ``user_start``/``user_stop`` on the socket, the user's transcript on
the LiveKit data channel, then the avatar's spoken reply.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

from aiohttp import WSMsgType, web
from loguru import logger

from agent.emulator.runtime import (
    SessionRuntime,
    answer_text,
    answer_to_speech,
    transcript_of_speech,
)
from agent.emulator.sessions import ServiceError, Session, unauthorized
from agent.emulator.speech_detector import SpeechChange, SpeechDetector, SpeechEdge
from agent.emulator.state import EMULATOR_KEY, Emulator, SocketDrops, injected_fault
from agent.heygen.protocol import ProtocolError
from agent.heygen.protocol import room_events as rev
from agent.heygen.protocol import voice_chat as vc

CHAT_PATH = vc.CHAT_PATH


def _authorise(em: Emulator, request: web.Request) -> Session:
    query = request.query
    session_id = query.get("session_id", "")
    token = query.get("session_token", "")
    session = em.registry.get(session_id)
    # The official client passes its session token; a key-only client passes the key
    # that created the session.
    if not (em.registry.token_allows(token, session_id) or token == session.owner_key):
        raise unauthorized()
    em.registry.require_started(session)
    return session


async def handle(request: web.Request) -> web.StreamResponse:
    em = request.app[EMULATOR_KEY]
    failure = await injected_fault(em, CHAT_PATH)
    if failure is not None:
        return failure
    try:
        session = _authorise(em, request)
    except ServiceError as exc:
        return web.json_response(exc.body(), status=exc.status)
    runtime = em.runtime(session)
    offered = request.headers.get("Sec-WebSocket-Extensions")
    session.audio.extensions_offered.append(offered or "")
    ws = web.WebSocketResponse(heartbeat=None, compress=False, max_msg_size=4 * 1024 * 1024)
    try:
        await ws.prepare(request)
    except ConnectionResetError:  # the client left during the handshake
        return ws
    runtime.sockets.add(ws)
    chat = _Chat(em, session, runtime, ws, request)
    try:
        await chat.run()
    finally:
        runtime.sockets.discard(ws)
    return ws


class _Chat:
    def __init__(
        self,
        em: Emulator,
        session: Session,
        runtime: SessionRuntime,
        ws: web.WebSocketResponse,
        request: web.Request,
    ) -> None:
        self.em = em
        self.session = session
        self.runtime = runtime
        self.ws = ws
        self.request = request
        self.push_to_talk = request.query.get("push_to_talk") == "true"
        self.silence_response = request.query.get("silence_response") == "true"
        self.detector: SpeechDetector | None = None
        self.drops = SocketDrops(em, request, "voice-chat")
        self.last_voice = time.monotonic()
        #: Seconds of the user's audio heard so far, on this socket or in the room.
        self.heard_s = 0.0
        self._turn_started_at: float | None = None  # heard_s at push_to_talk:start

    async def run(self) -> None:
        helpers = [asyncio.create_task(self.drops.deadline())]
        if self.silence_response:
            helpers.append(asyncio.create_task(self._prompt_on_silence()))
        self.runtime.listeners.append(self)
        try:
            async for message in self.ws:
                if self.drops.message():
                    break
                if message.type == WSMsgType.BINARY:
                    await self._on_frame(message.data)
                elif message.type == WSMsgType.TEXT:
                    logger.debug("emulator voice chat: ignoring a text message")
        finally:
            with contextlib.suppress(ValueError):
                self.runtime.listeners.remove(self)
            for helper in helpers:
                helper.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await helper

    async def _on_frame(self, data: bytes) -> None:
        stats = self.session.audio
        try:
            frame = vc.decode_frame(data)
        except ProtocolError as exc:
            stats.bad_frames += 1
            logger.warning(f"emulator voice chat: {exc}")
            return
        self.em.registry.touch(self.session)
        if isinstance(frame, vc.TextMessage):
            stats.text_frames += 1
            self.runtime.say(answer_text(frame.text))
        elif isinstance(frame, vc.AudioChunk):
            stats.frames += 1
            stats.samples += frame.num_samples
            stats.seconds += frame.duration_s
            self.heard_s += frame.duration_s
            stats.sample_rates.add(frame.sample_rate)
            stats.frame_samples[frame.num_samples] = (
                stats.frame_samples.get(frame.num_samples, 0) + 1
            )
            if frame.num_channels == 1 and frame.sample_rate:
                await self._hear(frame.audio, frame.sample_rate)

    async def on_user_audio(self, pcm: bytes) -> None:
        """The user's microphone as a track in the room (the LiveKit voice transport)."""
        seconds = len(pcm) / 2 / vc.SAMPLE_RATE
        self.session.audio.room_seconds += seconds
        self.heard_s += seconds
        await self._hear(pcm, vc.SAMPLE_RATE)

    async def _hear(self, pcm: bytes, sample_rate: int) -> None:
        if self.push_to_talk:
            return  # the button, not a detector, says when a turn starts and ends
        if self.detector is None or self.detector.sample_rate != sample_rate:
            self.detector = SpeechDetector(sample_rate)
        for change in self.detector.feed(pcm):
            await self._on_speech(change)

    async def on_push_to_talk(self, talking: bool) -> None:
        """In push-to-talk sessions the user's turn is the button's, not a detector's."""
        if not self.push_to_talk:
            return
        now = self.heard_s
        if talking:
            self._turn_started_at = now
            await self._on_speech(SpeechChange(SpeechEdge.STARTED, now))
        elif self._turn_started_at is not None:
            turn = now - self._turn_started_at
            self._turn_started_at = None
            await self._on_speech(SpeechChange(SpeechEdge.STOPPED, now, speech_s=turn))

    async def _on_speech(self, change: SpeechChange) -> None:
        stats = self.session.audio
        self.last_voice = time.monotonic()
        if change.edge is SpeechEdge.STARTED:
            stats.user_starts += 1
            await self.ws.send_str(vc.UserStart().to_json())
            return
        stats.user_stops += 1
        await self.ws.send_str(vc.UserStop().to_json())
        heard = transcript_of_speech(change.speech_s)
        task_id = f"user-{stats.user_stops}"
        await self.runtime.send_event(rev.UserTalkingMessage(task_id=task_id, message=heard))
        await self.runtime.send_event(rev.UserEndMessage(task_id=task_id))
        self.runtime.say(answer_to_speech(change.speech_s))

    async def _prompt_on_silence(self) -> None:
        """``user_silence`` each time the user stays quiet for the prompt interval."""
        interval = self.em.config.silence_prompt_s
        times = 0
        while True:
            await asyncio.sleep(interval / 4)
            quiet = time.monotonic() - self.last_voice
            speaking = self.detector is not None and self.detector.speaking
            if quiet >= interval and not speaking and not self.runtime.speaking:
                times += 1
                self.last_voice = time.monotonic()
                event = vc.UserSilence(silence_times=times, count_down=interval)
                await self.ws.send_str(event.to_json())
