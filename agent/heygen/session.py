"""The Interactive Avatar backend: one session of HeyGen's (deprecated) streaming API.

``create_token`` (for the voice chat) → ``new`` → ``start`` → LiveKit and the voice-chat
(or realtime) socket, connected concurrently → keep-alive on a timer → ``stop``. The rule
every session keeps (stop on every way out, confirmed or said) and what both backends
share live in :mod:`agent.heygen.backend`; this module holds what is Interactive's alone: its REST
sequence, the voice-chat socket and its reconnects, the LiveKit voice transport, and the
translation of its events (socket and data messages) into :mod:`agent.heygen.events`.

The session knows nothing of Pipecat; :class:`~agent.heygen.transport.HeyGenTransport`
turns its callbacks into frames. It is usable on its own from plain asyncio code.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, Literal

import websockets
from livekit import rtc
from loguru import logger
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect

from agent.heygen import events as ev
from agent.heygen.api import HeyGenClient, HeyGenError
from agent.heygen.api.base import RestClient
from agent.heygen.backend import (
    DEFAULT_KEEP_ALIVE_S,
    DEFAULT_MEDIA_GRACE_S,
    DEFAULT_STOP_DEADLINE_S,
    AvatarSession,
    LifeOptions,
    SessionAborted,
    SessionListener,
    SessionState,
    all_or_nothing,
)
from agent.heygen.chunker import AudioChunker
from agent.heygen.ledger import Record
from agent.heygen.pacing import Chunk
from agent.heygen.protocol import ProtocolError
from agent.heygen.protocol import interactive as ia
from agent.heygen.protocol import realtime as rt
from agent.heygen.protocol import room_events as rev
from agent.heygen.protocol import voice_chat as vc
from agent.heygen.redact import redact_url
from agent.heygen.room_calls import despite_cancel

__all__ = [
    "DEFAULT_KEEP_ALIVE_S",
    "DEFAULT_MEDIA_GRACE_S",
    "DEFAULT_STOP_DEADLINE_S",
    "HeyGenSession",
    "InteractiveEvents",
    "SessionAborted",
    "SessionListener",
    "SessionOptions",
    "SessionState",
]

#: Reconnect a dropped voice-chat socket this many times before giving the session up.
VOICE_CHAT_RECONNECTS = 3
#: The voice-chat pieces this client allows itself: 10 ms to 0.5 s of 16 kHz audio.
MIN_CHUNK_SAMPLES, MAX_CHUNK_SAMPLES = 160, 8000


@dataclass(frozen=True)
class SessionOptions(LifeOptions):
    """How to open an Interactive session; ``request`` is the ``streaming.new`` body."""

    request: ia.NewSessionRequest = field(default_factory=ia.NewSessionRequest)
    #: Mint a session token first and use it for every session call (the official
    #: client's flow). ``None``: only when the voice-chat socket needs one (its URL
    #: carries it); otherwise every call takes the API key, as Pipecat's HeyGen client
    #: sends it, and the start is one round trip shorter.
    use_session_token: bool | None = None
    voice_chat: bool = True
    livekit: bool = True
    push_to_talk: bool = False
    #: Your own brain, HeyGen's face: the bot's TTS audio goes to the realtime socket
    #: (``realtime_endpoint``) for the avatar to lip-sync, instead of the voice chat.
    realtime: bool = False
    #: Join the LiveKit room while ``streaming.start`` is in flight rather than after it
    #: (the room's URL and token come with ``streaming.new``). Off by default: HeyGen's
    #: official client joins after ``start``, and joining earlier is proven only against
    #: the emulator, not the real service (docs/PERFORMANCE.md measures what it saves).
    livekit_during_start: bool = False
    #: Samples of 16 kHz user audio per voice-chat message. 512 (32 ms) is what HeyGen's
    #: official client sends; smaller pieces reach HeyGen's speech detection sooner (320,
    #: one 20 ms frame, saves about 15 ms of a turn on average) but are proven only
    #: against the emulator, not the real service (docs/PERFORMANCE.md measures it).
    voice_chat_chunk_samples: int = vc.CHUNK_SAMPLES

    def __post_init__(self) -> None:
        if not MIN_CHUNK_SAMPLES <= self.voice_chat_chunk_samples <= MAX_CHUNK_SAMPLES:
            raise ValueError(f"voice_chat_chunk_samples must be {MIN_CHUNK_SAMPLES}-"
                             f"{MAX_CHUNK_SAMPLES}, not {self.voice_chat_chunk_samples}")
        if self.realtime and self.voice_chat:
            raise ValueError("realtime (own-brain lip-sync) replaces voice chat: "
                             "set voice_chat=False")
        # The socket URL carries its credential; a short-lived token may travel there,
        # the account key must not.
        if self.voice_chat and self.use_session_token is False:
            raise ValueError("voice chat needs a session token: use_session_token=False "
                             "is for sessions without it")
        if self.voice_over_livekit and not self.livekit:
            raise ValueError("ia_is_livekit_transport needs livekit=True")
        if self.push_to_talk and not self.voice_over_livekit:
            # Our emulator accepts it; HeyGen's official client refuses it.
            logger.warning("push-to-talk: HeyGen's official client allows it only with the "
                           "LiveKit voice transport (ia_is_livekit_transport: true)")

    def open_client(self, api_key: str | None, base_url: str | None) -> HeyGenClient:
        return HeyGenClient(api_key, base_url=base_url)

    def new_session(self, client: RestClient, listener: SessionListener) -> HeyGenSession:
        if not isinstance(client, HeyGenClient):
            raise TypeError(f"an Interactive session needs a HeyGenClient, not "
                            f"{type(client).__name__}")
        return HeyGenSession(client, self, listener)

    def for_own_brain(self, face: Literal["lipsync", "text"]) -> SessionOptions:
        # No voice chat: HeyGen's brain must not answer the user as well.
        return dataclasses.replace(self, voice_chat=False, realtime=face == "lipsync")

    @property
    def voice_over_livekit(self) -> bool:
        """The LiveKit voice transport: the microphone is a track in the room and async
        talks are data messages; the voice-chat socket then only brings events."""
        return bool(self.request.ia_is_livekit_transport)


class InteractiveEvents:
    """Interactive's wire events → :mod:`agent.heygen.events`.

    The voice-chat socket carries HeyGen's detection of the user's turns; LiveKit data
    messages carry the avatar's speech and both transcripts, in chunks, from which the
    whole utterances are assembled here."""

    def __init__(self) -> None:
        self._avatar: list[str] = []
        self._user: list[str] = []

    def from_chat(self, event: vc.VoiceChatEvent) -> ev.AvatarEvent:
        if isinstance(event, vc.UserStart):
            return ev.UserStartedSpeaking(raw=event)
        if isinstance(event, vc.UserStop):
            return ev.UserStoppedSpeaking(raw=event)
        if isinstance(event, vc.UserSilence):
            return ev.UserSilence(raw=event, silence_times=event.silence_times,
                                  count_down=event.count_down)
        return ev.OtherEvent(raw=event)

    def from_realtime(self, event: rt.ServerEvent) -> ev.AvatarEvent:
        """The realtime socket's state updates: speaking starts and ends."""
        if event.type == rt.AGENT_STATE_UPDATED:
            if event.state == "speaking":
                return ev.AvatarStartedSpeaking(raw=event)
            if event.previous_state == "speaking":
                return ev.AvatarStoppedSpeaking(raw=event)
        return ev.OtherEvent(raw=event)

    def from_room(self, event: rev.RoomEvent) -> list[ev.AvatarEvent]:
        if isinstance(event, rev.AvatarStartTalking):
            return [ev.AvatarStartedSpeaking(raw=event, task_id=event.task_id)]
        if isinstance(event, rev.AvatarStopTalking):
            return [ev.AvatarStoppedSpeaking(raw=event, task_id=event.task_id,
                                             duration_ms=event.duration_ms)]
        if isinstance(event, rev.AvatarTalkingMessage):
            self._avatar.append(event.message)
            return [ev.AvatarWords(raw=event, text=event.message)]
        if isinstance(event, rev.AvatarEndMessage):
            text = ev.join_words(self._avatar)
            self._avatar.clear()
            if not text:
                return []
            return [ev.AvatarTranscript(raw=event, text=text, task_id=event.task_id)]
        if isinstance(event, rev.UserTalkingMessage):
            self._user.append(event.message)
            return [ev.UserTranscriptSoFar(raw=event, text=ev.join_words(self._user))]
        if isinstance(event, rev.UserEndMessage):
            text = ev.join_words(self._user)
            self._user.clear()
            return [ev.UserTranscript(raw=event, text=text)] if text else []
        return [ev.OtherEvent(raw=event)]


class HeyGenSession(AvatarSession):
    """An Interactive Avatar session. Use ``async with`` or pair :meth:`start` with
    :meth:`stop`; :meth:`stop` is idempotent and safe from any state."""

    backend = "interactive"

    def __init__(
        self,
        client: HeyGenClient,
        options: SessionOptions | None = None,
        listener: SessionListener | None = None,
    ) -> None:
        self.options = options or SessionOptions()
        super().__init__(client, self.options, listener)
        self._heygen = client
        self._client = client
        self._chunker = AudioChunker(chunk_samples=self.options.voice_chat_chunk_samples)
        self.info: ia.NewSessionAnswer | None = None
        self._token: str | None = None
        self._ws: ClientConnection | None = None
        self._realtime: ClientConnection | None = None
        self._send_lock = asyncio.Lock()
        self._events = InteractiveEvents()

    # ------------------------------------------------------------------ the wire

    async def _stop_recorded(self, record: Record) -> None:
        await self._heygen.stop_session(record.session_id)

    async def _open(self) -> None:
        opts = self.options
        if opts.use_session_token or (opts.use_session_token is None and opts.voice_chat):
            token = await self._heygen.create_token()
            self._token = token.get_secret_value()
            self._client = self._heygen.with_session_token(token)
        # If cancelled while ``new`` is in flight, the service may still create the
        # session; wait for its id so that it can be stopped, then honour the cancel.
        info, cancelled = await despite_cancel(self._client.new_session(opts.request))
        self.info = info
        self._created(info.session_id)
        if cancelled:
            raise asyncio.CancelledError
        logger.info(f"HeyGen session {info.session_id} created")
        room_early = opts.livekit and opts.livekit_during_start
        if room_early:
            async with asyncio.timeout(opts.connect_timeout_s):
                await all_or_nothing([
                    self._client.start_session(info.session_id),
                    self._connect_room(info.url, info.access_token.get_secret_value()),
                ])
        else:
            await self._client.start_session(info.session_id)
        connects: list[Coroutine[Any, Any, None]] = []
        if opts.livekit and not room_early:
            connects.append(self._connect_room(info.url, info.access_token.get_secret_value()))
        if opts.voice_chat:
            connects.append(self._connect_voice_chat())
        if opts.realtime:
            connects.append(self._connect_realtime())
        async with asyncio.timeout(opts.connect_timeout_s):
            await self._connect_all(connects)
            if opts.voice_over_livekit:
                await self._publish_microphone(vc.SAMPLE_RATE)
        if opts.voice_chat:
            self._spawn(self._read_voice_chat(), "heygen-voice-chat")
        if opts.realtime:
            self._spawn(self._read_realtime(), "heygen-realtime")

    async def _stop_at_service(self, session_id: str) -> None:
        await self._client.stop_session(session_id)

    async def _close_connections(self) -> None:
        for ws in (self._ws, self._realtime):
            if ws is not None:
                with contextlib.suppress(Exception):
                    await ws.close()

    def _room_events(self, packet: rtc.DataPacket) -> list[ev.AvatarEvent]:
        return self._texts_ended(self._events.from_room(rev.parse_room_event(packet.data)))

    # ------------------------------------------------------------------ operations

    @property
    def microphone_is_track(self) -> bool:
        return self.options.voice_over_livekit

    async def say(self, text: str) -> None:
        """Make the avatar say ``text`` verbatim."""
        await self.speak(text, task_type=ia.TaskType.REPEAT)

    async def respond(self, text: str) -> None:
        """Make the avatar answer ``text`` (HeyGen's brain)."""
        await self.speak(text, task_type=ia.TaskType.TALK)

    async def speak(
        self,
        text: str,
        *,
        task_type: ia.TaskType = ia.TaskType.REPEAT,
        task_mode: ia.TaskMode = ia.TaskMode.ASYNC,
    ) -> str | None:
        """Make the avatar say (``repeat``) or answer (``talk``) ``text``.

        An async talk goes over the voice-chat socket as a text frame (with the LiveKit
        voice transport: as a data message), as the official client does; everything else
        is ``streaming.task``. Returns the task id when HeyGen gives one."""
        session_id = self._require_running()
        if task_type == ia.TaskType.TALK and task_mode == ia.TaskMode.ASYNC:
            if self.options.voice_over_livekit and self.room is not None:
                await self.room.local_participant.publish_data(rev.encode_talk(text),
                                                               reliable=True)
                return None
            if self._ws:
                await self.send_raw(vc.encode_text(text))
                return None
        # Said verbatim: speech on its way until the avatar has said it (its stop names
        # the task) or it is interrupted.
        pending = self._text_sent() if task_type == ia.TaskType.REPEAT else None
        try:
            answer = await self._client.speak(session_id, text, task_type=task_type,
                                              task_mode=task_mode)
        except BaseException:
            if pending is not None:
                self._text_not_sent(pending)
            raise
        if pending is not None:
            pending.task_id = answer.task_id
        return answer.task_id

    async def interrupt(self) -> None:
        self._chunker.reset()
        self._drop_texts()
        if self._realtime is not None:
            self._drop_speech()
            await self._send_realtime(rt.Command(rt.AGENT_INTERRUPT))
        await self._client.interrupt(self._require_running())

    async def start_listening(self) -> None:
        await self._client.start_listening(self._require_running())

    async def stop_listening(self) -> None:
        await self._client.stop_listening(self._require_running())

    async def keep_alive(self) -> None:
        await self._client.keep_alive(self._require_running())

    async def push_to_talk(self, talking: bool) -> None:
        """Start or stop a push-to-talk turn (sessions created with push-to-talk only)."""
        if not self.options.push_to_talk:
            raise RuntimeError("this session was not created with push-to-talk")
        if self.room is None:
            raise RuntimeError("push-to-talk needs the LiveKit room")
        message = rev.PUSH_TO_TALK_START if talking else rev.PUSH_TO_TALK_STOP
        await self.room.local_participant.publish_data(message.encode(), reliable=True)

    async def send_audio(self, pcm: bytes, sample_rate: int, num_channels: int = 1) -> int:
        """Send user audio at any rate, as 16 kHz mono: protobuf messages of
        ``voice_chat_chunk_samples`` on the voice-chat socket, or 10 ms frames of the room's
        microphone track with the LiveKit voice transport. Returns how many pieces went out."""
        if self.state is not SessionState.RUNNING:
            return 0
        chunks = self._chunker.push(pcm, sample_rate, num_channels)
        if self._microphone is not None:
            return self._queue_microphone(chunks)
        sent = 0
        for chunk in chunks:
            if await self.send_raw(vc.encode_audio(chunk)):
                sent += 1
        return sent

    async def send_raw(self, message: bytes) -> bool:
        """One binary message on the voice-chat socket; ``False`` if it is not open."""
        ws = self._ws
        if ws is None or self.state is not SessionState.RUNNING:
            return False
        try:
            async with self._send_lock:
                await ws.send(message)
        except websockets.ConnectionClosed:
            return False  # the reader notices and reconnects
        return True

    # ------------------------------------------------------------------ voice chat

    def _chat_url(self) -> str:
        assert self.session_id is not None and self._token is not None
        return vc.chat_url(
            self._client.base_url,
            session_id=self.session_id,
            session_token=self._token,
            silence_response=bool(self.options.request.silence_response),
            push_to_talk=self.options.push_to_talk,
            livekit_transport=bool(self.options.request.ia_is_livekit_transport),
        )

    async def _connect_voice_chat(self) -> None:
        self._ws = await self._open_socket(self._chat_url(), "voice chat")

    async def _open_socket(self, url: str, what: str) -> ClientConnection:
        """A WebSocket of this session; a failure is a redacted one-line HeyGenError."""
        try:
            ws = await ws_connect(url, compression=None, max_size=2**22,
                                  open_timeout=self.options.connect_timeout_s)
        except (OSError, websockets.WebSocketException) as exc:
            reason = self._client.redact(str(exc))
            raise HeyGenError(f"{what} {redact_url(url)}: {reason}") from None
        logger.debug(f"HeyGen session {self.session_id}: {what} connected")
        return ws

    async def _read_voice_chat(self) -> None:
        reconnects = 0
        while True:
            ws = self._ws
            assert ws is not None
            try:
                async for message in ws:
                    reconnects = 0
                    if isinstance(message, bytes):
                        continue
                    try:
                        event = vc.parse_event(message)
                    except ProtocolError as exc:
                        logger.warning(f"HeyGen voice-chat message ignored: {exc}")
                        continue
                    await self._notify(self.listener.on_event(self._events.from_chat(event)))
                # Closed cleanly by HeyGen: the session ended there (expired, stopped
                # elsewhere). Stop ours too, so the pipeline ends instead of talking to no one.
                self._spawn(self.stop(reason="HeyGen closed the session"), "heygen-stop")
                return
            except websockets.ConnectionClosedError as exc:
                code = exc.rcvd.code if exc.rcvd is not None else 1006
                reason = f"voice-chat socket dropped (code {code})"
            await self._notify(self.listener.on_connection_lost("voice_chat", reason))
            if reconnects >= VOICE_CHAT_RECONNECTS:
                logger.error(f"HeyGen session {self.session_id}: {reason}; giving up")
                self._spawn(self.stop(reason=reason), "heygen-stop")
                return
            reconnects += 1
            await asyncio.sleep(0.2 * 2**reconnects)
            try:
                await self._connect_voice_chat()
                self._chunker.reset()
                logger.info(f"HeyGen session {self.session_id}: voice chat reconnected")
                await self._notify(self.listener.on_connection_restored("voice_chat"))
            except HeyGenError as exc:
                logger.warning(f"HeyGen session {self.session_id}: reconnect failed: {exc}")

    # ------------------------------------------------------------------ the realtime socket

    @property
    def takes_audio(self) -> bool:
        return self.options.realtime

    async def _connect_realtime(self) -> None:
        assert self.info is not None
        url = self.info.realtime_endpoint
        if not url:
            raise HeyGenError("streaming.new gave no realtime_endpoint (needed for lip-sync)")
        self._realtime = await self._open_socket(url, "realtime socket")

    async def _read_realtime(self) -> None:
        assert self._realtime is not None
        # Without the socket the avatar can say nothing more: the session ends with it.
        await self._read_until_closed(
            self._realtime, "realtime", closed="HeyGen closed the realtime socket",
            dropped="realtime socket dropped",
            handle=lambda message: self._events.from_realtime(rt.parse_server_event(message)))

    async def _send_realtime(self, command: rt.Command) -> None:
        ws = self._realtime
        if ws is None or self.state is not SessionState.RUNNING:
            return
        with contextlib.suppress(websockets.ConnectionClosed):  # the reader ends the session
            async with self._send_lock:
                await ws.send(command.to_json())

    async def _send_speech(self, chunk: Chunk) -> None:
        await self._send_realtime(rt.Command(rt.AGENT_SPEAK, event_id=chunk.event_id,
                                             audio=chunk.pcm))

    async def _send_speech_end(self, event_id: str) -> None:
        await self._send_realtime(rt.Command(rt.AGENT_SPEAK_END, event_id=event_id))
