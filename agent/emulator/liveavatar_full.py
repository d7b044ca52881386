"""LiveAvatar FULL mode in the emulator: HeyGen's brain in the session's room (§5).

In FULL mode LiveAvatar drives the conversation: besides the avatar (participant
``heygen``, :mod:`agent.emulator.avatar`), a participant ``liveavatar-agent-<session_id>``
joins the room, takes the client's commands as data on topic ``agent-control`` and tells
what happens on topic ``agent-response``. :class:`FullModeAgent` is that participant: a
room connection with no tracks (the avatar hears the user's microphone and hands it over,
as it does for the Interactive API's LiveKit voice transport).

What it does, as the real service does: ``avatar.speak_text`` is said verbatim,
``avatar.speak_response`` answered (by the Interactive emulator's deterministic brain, so
tests know the words); the user's speech is detected in the microphone track (or taken
between ``user.start_push_to_talk`` and ``user.stop_push_to_talk`` in a push-to-talk
session), "transcribed" and answered. The avatar's words go out as it says them, in the
Interactive emulator's real-time order. Following LiveAvatar's event reference,
``avatar.transcription`` (the whole text) goes out once the text is known ("immediately
with ``avatar.speak_text``", after generation for an answer), before the avatar starts
saying it. When the session ends for any reason, ``session.stopped`` goes out before the
agent and the avatar leave. Commands and events are parsed and built by
:mod:`agent.heygen.protocol.liveavatar.room`, the client's own module.
"""

from __future__ import annotations

import asyncio
import contextlib

from livekit import rtc
from loguru import logger

from agent.emulator.runtime import (
    SessionRuntime,
    answer_text,
    answer_to_speech,
    transcript_of_speech,
)
from agent.emulator.sessions import Session
from agent.emulator.speech_detector import SpeechChange, SpeechDetector, SpeechEdge
from agent.emulator.state import Emulator
from agent.heygen.protocol import ProtocolError
from agent.heygen.protocol import voice_chat as vc
from agent.heygen.protocol.liveavatar import rest as la
from agent.heygen.protocol.liveavatar import room

#: Why a session ended when its client sent ``session.stop``.
STOPPED_BY_CLIENT = "stopped by client"


class FullModeAgent:
    """Participant ``liveavatar-agent-<session_id>``: LiveAvatar's brain for one session."""

    def __init__(self, em: Emulator, session: Session, runtime: SessionRuntime) -> None:
        assert session.liveavatar is not None
        self.em = em
        self.session = session
        self.runtime = runtime
        self.identity = room.agent_identity(session.session_id)
        self.room = rtc.Room()
        self.push_to_talk = session.liveavatar.request.interactivity_type == la.PUSH_TO_TALK
        self.detector: SpeechDetector | None = None
        #: seconds of the user's microphone heard so far
        self.heard_s = 0.0
        self._turn_started_at: float | None = None  # heard_s at user.start_push_to_talk
        self._inbox: asyncio.Queue[bytes] = asyncio.Queue()
        self._client_here = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._ending: asyncio.Task[None] | None = None
        self._joined = False
        self._closing = False

    # ------------------------------------------------------------------ lifecycle

    async def join(self) -> None:
        livekit = self.em.config.livekit
        assert livekit is not None
        loop = asyncio.get_running_loop()

        @self.room.on("data_received")
        def _data(packet: rtc.DataPacket) -> None:
            if packet.topic == room.TOPIC_AGENT_CONTROL:
                self._inbox.put_nowait(bytes(packet.data))

        # "Active": ready to receive data. A message sent to a participant that has only
        # joined can be lost, and data is not kept for later.
        @self.room.on("participant_active")
        def _arrived(participant: rtc.RemoteParticipant) -> None:
            self._note(participant)

        # Registered before connecting: a session that ends meanwhile still sends
        # session.stopped and takes the agent out of the room.
        self.runtime.closers.append(self.close)
        self.runtime.listeners.append(self)
        token = self.em.livekit_token(self.session, self.identity)
        await self.room.connect(livekit.url, token, rtc.RoomOptions(auto_subscribe=False))
        self._joined = True
        for participant in self.room.remote_participants.values():
            if participant.state == rtc.ParticipantState.PARTICIPANT_STATE_ACTIVE:
                self._note(participant)
        self._tasks += [
            loop.create_task(self._obey(), name=f"liveavatar-agent-{self.session.session_id[:8]}"),
            loop.create_task(self._announce(), name="liveavatar-agent-announce"),
        ]

    async def close(self) -> None:
        """The session has ended: say so, then leave the room. Safe to call twice."""
        if self._closing:
            return
        self._closing = True
        await self.send(room.event(room.SESSION_STOPPED, self.session.session_id,
                                   stop_reason=self.session.end_reason or STOPPED_BY_CLIENT),
                        last=True)
        with contextlib.suppress(ValueError):
            self.runtime.listeners.remove(self)
        current = asyncio.current_task()
        for task in self._tasks:
            if task is not current:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        if self._joined:
            with contextlib.suppress(Exception):
                await self.room.disconnect()
        self._joined = False

    def _note(self, participant: rtc.RemoteParticipant) -> None:
        if participant.identity not in (room.AVATAR_IDENTITY, self.identity):
            self._client_here.set()

    async def _announce(self) -> None:
        """``session.state_updated: connected`` once the avatar is in the room with its
        media, as soon as a client is there and ready to hear it."""
        if not await self.runtime.avatar.in_room():
            return
        await self._client_here.wait()
        self.session.liveavatar_stats.connected = True
        await self.send(room.session_state(room.CONNECTED, self.session.session_id))

    async def send(self, event: room.Event, *, last: bool = False) -> None:
        """Publish ``event``; once the session is ending, only its ``last`` one."""
        if not self._joined or (self._closing and not last):
            return
        try:
            await self.room.local_participant.publish_data(
                event.to_bytes(), reliable=True, topic=room.TOPIC_AGENT_RESPONSE)
        except Exception as exc:  # a room that went away must not stop the brain
            logger.warning(f"emulator FULL: could not send {event.event_type}: {exc}")

    # ------------------------------------------------------------------ commands

    async def _obey(self) -> None:
        """Commands one after another, in the order they came."""
        while True:
            payload = await self._inbox.get()
            try:
                await self._on_command(payload)
            except Exception as exc:
                logger.warning(f"emulator FULL: a command failed: {exc}")

    async def _on_command(self, payload: bytes) -> None:
        stats = self.session.liveavatar_stats
        try:
            command = room.parse_command(payload)
        except ProtocolError as exc:
            stats.full_bad_messages += 1
            logger.warning(f"emulator FULL: ignored an agent-control message: {exc}")
            return
        kind = command.event_type
        stats.full_commands[kind] = stats.full_commands.get(kind, 0) + 1
        self.em.registry.touch(self.session)
        source = command.event_id or ""
        if kind == room.SPEAK_TEXT:
            await self._say(command.text or "", source)
        elif kind == room.SPEAK_RESPONSE:
            await self._say(answer_text(command.text or ""), source)
        elif kind == room.INTERRUPT:
            await self.runtime.interrupt()
        elif kind in (room.START_LISTENING, room.STOP_LISTENING):
            self.session.listening = kind == room.START_LISTENING
        elif kind == room.START_PUSH_TO_TALK:
            await self._start_push_to_talk(source)
        elif kind == room.STOP_PUSH_TO_TALK:
            await self._stop_push_to_talk(source)
        elif kind == room.SESSION_STOP:
            self._stop()

    async def _say(self, text: str, source_event_id: str) -> None:
        sid = self.session.session_id
        await self.send(room.event(room.AVATAR_TRANSCRIPTION, sid,
                                   source_event_id=source_event_id, text=text))
        self.runtime.say(text, narrator=_Narrator(self, source_event_id))

    def _stop(self) -> None:
        if not self.session.state.open:
            return
        self.em.registry.stop(self.session, reason=STOPPED_BY_CLIENT)
        # Not in this task: ending the session closes this agent, which cancels it.
        self._ending = asyncio.get_running_loop().create_task(
            self.em.end(self.session), name="liveavatar-session-stop")

    # ------------------------------------------------------------------ the user

    async def on_push_to_talk(self, talking: bool) -> None:
        return None  # the Interactive API's data message; FULL's comes as a command

    async def on_user_audio(self, pcm: bytes) -> None:
        """A frame of the user's microphone track, as the avatar heard it (16 kHz)."""
        seconds = len(pcm) / 2 / vc.SAMPLE_RATE
        self.session.audio.room_seconds += seconds
        self.heard_s += seconds
        if self.push_to_talk:
            return  # the commands, not a detector, say when a turn starts and ends
        if self.detector is None:
            self.detector = SpeechDetector(vc.SAMPLE_RATE)
        for change in self.detector.feed(pcm):
            await self._on_speech(change)

    async def _start_push_to_talk(self, source: str) -> None:
        sid = self.session.session_id
        if not self.push_to_talk or self._turn_started_at is not None:
            await self.send(room.event(room.USER_PUSH_TO_TALK_START_FAILED, sid,
                                       source_event_id=source))
            return
        self.session.push_to_talk_events.append("start")
        self._turn_started_at = self.heard_s
        await self.send(room.event(room.USER_PUSH_TO_TALK_STARTED, sid, source_event_id=source))
        await self._on_speech(SpeechChange(SpeechEdge.STARTED, self.heard_s))

    async def _stop_push_to_talk(self, source: str) -> None:
        sid = self.session.session_id
        if self._turn_started_at is None:
            await self.send(room.event(room.USER_PUSH_TO_TALK_STOP_FAILED, sid,
                                       source_event_id=source))
            return
        self.session.push_to_talk_events.append("stop")
        turn = self.heard_s - self._turn_started_at
        self._turn_started_at = None
        await self.send(room.event(room.USER_PUSH_TO_TALK_STOPPED, sid, source_event_id=source))
        await self._on_speech(SpeechChange(SpeechEdge.STOPPED, self.heard_s, speech_s=turn))

    async def _on_speech(self, change: SpeechChange) -> None:
        sid = self.session.session_id
        stats = self.session.audio
        if change.edge is SpeechEdge.STARTED:
            stats.user_starts += 1
            await self.send(room.event(room.USER_SPEAK_STARTED, sid))
            return
        stats.user_stops += 1
        await self.send(room.event(room.USER_SPEAK_ENDED, sid))
        heard = transcript_of_speech(change.speech_s)
        await self.send(room.event(room.USER_TRANSCRIPTION_CHUNK, sid, text=heard))
        transcription = room.event(room.USER_TRANSCRIPTION, sid, text=heard)
        await self.send(transcription)
        await self._say(answer_to_speech(change.speech_s), transcription.event_id)


class _Narrator:
    """The avatar's speech as ``agent-response`` events, for one utterance."""

    def __init__(self, agent: FullModeAgent, source_event_id: str) -> None:
        self.agent = agent
        self.source_event_id = source_event_id

    def _event(self, kind: str, text: str = "") -> room.Event:
        return room.event(kind, self.agent.session.session_id,
                          source_event_id=self.source_event_id, text=text)

    async def started(self, task_id: str) -> None:
        await self.agent.send(self._event(room.AVATAR_SPEAK_STARTED))

    async def word(self, task_id: str, word: str) -> None:
        await self.agent.send(self._event(room.AVATAR_TRANSCRIPTION_CHUNK, word))

    async def ended(self, task_id: str, duration_ms: float, *, interrupted: bool) -> None:
        await self.agent.send(self._event(room.AVATAR_SPEAK_ENDED))


async def join(em: Emulator, session: Session, runtime: SessionRuntime) -> FullModeAgent:
    """The agent of a FULL session, in its room (the emulator must have LiveKit)."""
    agent = FullModeAgent(em, session, runtime)
    await agent.join()
    return agent
