"""The LiveAvatar backend: one session of HeyGen's successor streaming API.

``sessions/token`` (API key; creates the session) → ``sessions/start`` (session token;
billing starts, the avatar joins) → the LiveKit room, and in LITE mode the WebSocket →
keep-alive on a timer → ``sessions/stop``. The rule every session keeps (stop on every way
out, confirmed or said) and what both backends share live in :mod:`agent.heygen.backend`;
this module holds what is LiveAvatar's alone (heygen-protocol.md §5), such as confirming a
stop sent before ``connected`` (the service has been seen to leave those sessions open):

- FULL mode (HeyGen's brain): the user's microphone is a track in the room; commands are
  data messages on ``agent-control``; events come on ``agent-response``, from the avatar
  or its agent only. The session is ready when participants ``heygen`` and
  ``liveavatar-agent-<id>`` are in the room (waited for, with an error naming who is not).
- LITE mode (your brain, HeyGen's face): the bot's own speech goes as ``agent.speak``
  audio on the WebSocket; nothing is sent before ``session.state_updated: connected``;
  ``agent.speak_started|ended|interrupted`` say what the avatar does.

Both translate their events into :mod:`agent.heygen.events`, so the transport above is the
same for either backend and mode.
"""

from __future__ import annotations

import asyncio
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
from agent.heygen.api import (
    APIError,
    HeyGenError,
    InvalidResponseError,
    LiveAvatarClient,
    SessionStateError,
)
from agent.heygen.api.base import RestClient
from agent.heygen.backend import (
    AvatarSession,
    LifeOptions,
    SessionListener,
    SessionState,
)
from agent.heygen.ledger import Record
from agent.heygen.pacing import Chunk
from agent.heygen.protocol.liveavatar import rest as la
from agent.heygen.protocol.liveavatar import room as lar
from agent.heygen.protocol.liveavatar import socket as las
from agent.heygen.room_calls import despite_cancel

#: The microphone track in FULL mode: 16 kHz mono in 10 ms frames (as the Interactive one).
MICROPHONE_RATE = 16_000


#: The service's refusals of the push-to-talk button, by what was refused. Still
#: reported as events (``OtherEvent``, the wire event in ``raw``): the transport has no
#: error event, and a refused button is no reason to end the session.
PUSH_TO_TALK_REFUSALS = {lar.USER_PUSH_TO_TALK_START_FAILED: "start",
                         lar.USER_PUSH_TO_TALK_STOP_FAILED: "stop"}


class AvatarNotInRoom(HeyGenError):
    """The avatar did not join the room in time (FULL mode waits for it)."""

    retryable = True


class StopNotConfirmed(HeyGenError):
    """A stop sent before ``connected`` was answered, yet the session is still open: the
    service has been seen to leave such sessions open (and billed), so it is sent again."""

    retryable = True


@dataclass(frozen=True)
class LiveAvatarOptions(LifeOptions):
    """How to open a LiveAvatar session; ``request`` is the ``sessions/token`` body (its
    ``mode`` decides FULL or LITE)."""

    request: la.TokenRequest = field(
        default_factory=lambda: la.TokenRequest(mode="LITE", avatar_id=la.SANDBOX_AVATAR_ID,
                                                is_sandbox=True))
    #: FULL mode: how long to wait for the avatar to join the room.
    avatar_timeout_s: float = 30.0
    #: FULL mode: publish the user's microphone for HeyGen's brain to hear.
    microphone: bool = True
    keep_alive_interval_s: float | None = las.KEEP_ALIVE_INTERVAL_S

    @property
    def full(self) -> bool:
        return self.request.mode == "FULL"

    def for_own_brain(self, face: Literal["lipsync", "text"]) -> LiveAvatarOptions:
        # lipsync: LITE, the bot's audio on the socket; text: FULL for HeyGen's voice, with
        # no microphone, so that HeyGen's brain does not answer the user as well.
        mode = la.Mode.LITE if face == "lipsync" else la.Mode.FULL
        request = self.request.model_copy(update={"mode": mode})
        return dataclasses.replace(self, request=request, microphone=False)

    def open_client(self, api_key: str | None, base_url: str | None) -> LiveAvatarClient:
        return LiveAvatarClient(api_key, base_url=base_url)

    def new_session(self, client: RestClient, listener: SessionListener) -> LiveAvatarSession:
        if not isinstance(client, LiveAvatarClient):
            raise TypeError(f"a LiveAvatar session needs a LiveAvatarClient, not "
                            f"{type(client).__name__}")
        return LiveAvatarSession(client, self, listener)


class LiveAvatarEvents:
    """LiveAvatar's events (``agent-response`` topic, LITE socket) → :mod:`agent.heygen.events`."""

    def __init__(self) -> None:
        self._user: list[str] = []

    def from_room(self, event: lar.Event) -> list[ev.AvatarEvent]:
        kind = event.event_type
        if kind == lar.USER_SPEAK_STARTED:
            return [ev.UserStartedSpeaking(raw=event)]
        if kind == lar.USER_SPEAK_ENDED:
            return [ev.UserStoppedSpeaking(raw=event)]
        if kind == lar.USER_TRANSCRIPTION_CHUNK:
            self._user.append(event.text)
            return [ev.UserTranscriptSoFar(raw=event, text=ev.join_words(self._user))]
        if kind == lar.USER_TRANSCRIPTION:
            self._user.clear()
            return [ev.UserTranscript(raw=event, text=event.text.strip())]
        if kind == lar.AVATAR_SPEAK_STARTED:
            return [ev.AvatarStartedSpeaking(raw=event, task_id=event.source_event_id)]
        if kind == lar.AVATAR_SPEAK_ENDED:
            return [ev.AvatarStoppedSpeaking(raw=event, task_id=event.source_event_id)]
        if kind == lar.AVATAR_TRANSCRIPTION_CHUNK:
            return [ev.AvatarWords(raw=event, text=event.text)]
        if kind == lar.AVATAR_TRANSCRIPTION:
            return [ev.AvatarTranscript(raw=event, text=event.text.strip(),
                                        task_id=event.source_event_id)]
        return [ev.OtherEvent(raw=event)]

    def from_socket(self, event: las.ServerEvent) -> ev.AvatarEvent:
        if event.type == las.SPEAK_STARTED:
            return ev.AvatarStartedSpeaking(raw=event, task_id=event.event_id)
        if event.type == las.SPEAK_ENDED:
            return ev.AvatarStoppedSpeaking(raw=event, task_id=event.event_id)
        if event.type == las.SPEAK_INTERRUPTED:
            return ev.AvatarStoppedSpeaking(raw=event, task_id=event.event_id, interrupted=True)
        return ev.OtherEvent(raw=event)


class LiveAvatarSession(AvatarSession):
    """A LiveAvatar session, FULL or LITE as its token request says."""

    backend = "liveavatar"

    def __init__(
        self,
        client: LiveAvatarClient,
        options: LiveAvatarOptions | None = None,
        listener: SessionListener | None = None,
    ) -> None:
        self.options = options or LiveAvatarOptions()
        super().__init__(client, self.options, listener)
        self._account = client
        self._view: LiveAvatarClient | None = None
        self.info: la.StartAnswer | None = None
        self._ws: ClientConnection | None = None
        self._connected = asyncio.Event()  # LITE: the socket said ``connected``
        # FULL: who is in the room, and a wake-up when someone joins
        self._present: set[str] = set()
        self._arrival = asyncio.Event()
        self._intruders: set[str] = set()  # sent on agent-response, ignored (said once)
        #: ``sessions/start`` was sent (billing may have begun), and the service said
        #: ``session.state_updated: connected`` (socket or room) since
        self._start_sent = False
        self._was_connected = False
        self._events = LiveAvatarEvents()
        self._send_lock = asyncio.Lock()
        #: LITE: the utterance the avatar is saying (its event id), if any.
        self.speaking_event: str | None = None
        #: LITE: utterances sent and not yet ended or interrupted by the avatar
        self._unfinished: set[str] = set()

    # ------------------------------------------------------------------ the wire

    async def _stop_recorded(self, record: Record) -> None:
        await self._account.stop_recorded(record)

    async def _open(self) -> None:
        opts = self.options
        # If cancelled while the token call is in flight, the service may still create
        # the session; wait for its token so that it can be stopped, then honour it.
        token, cancelled = await despite_cancel(
            self._account.create_session_token(opts.request))
        self._view = self._account.with_session_token(token.session_token)
        # LiveAvatar stops a session only with its own token: the record keeps it.
        self._created(token.session_id, token.session_token.get_secret_value())
        if cancelled:
            raise asyncio.CancelledError
        logger.info(f"LiveAvatar session {token.session_id} created ({opts.request.mode})")
        self._start_sent = True
        self.info = info = await self._view.start_session()
        if not opts.full and info.ws_url is None:
            # LITE's every utterance goes over that socket: without it, all would be lost.
            raise InvalidResponseError(
                f"{la.START.path}: the answer for a LITE session has no 'ws_url' (the "
                "socket the avatar's speech goes over)")
        connects: list[Coroutine[Any, Any, None]] = []
        if info.livekit_url and info.livekit_client_token is not None:
            connects.append(self._connect_room(
                info.livekit_url, info.livekit_client_token.get_secret_value()))
        if not opts.full and info.ws_url is not None:
            connects.append(self._connect_socket(info.ws_url.get_secret_value()))
        async with asyncio.timeout(opts.connect_timeout_s):
            await self._connect_all(connects)
        if opts.full:
            await self._wait_for_avatar()
            if opts.microphone:
                await self._publish_microphone(MICROPHONE_RATE)
        elif self._ws is not None:
            self._spawn(self._read_socket(), "liveavatar-socket")
            try:
                async with asyncio.timeout(opts.connect_timeout_s):
                    await self._connected.wait()
            except TimeoutError:
                raise HeyGenError(
                    "LiveAvatar socket: no 'session.state_updated: connected' within "
                    f"{opts.connect_timeout_s:g} s") from None

    async def _wait_for_avatar(self) -> None:
        """FULL mode is ready once the avatar (``heygen``) and its agent
        (``liveavatar-agent-<id>``, which takes the commands and sends the events) are both
        in the room, as the official SDK waits; the error names whoever did not come."""
        room = self.room
        if room is None:
            raise InvalidResponseError(
                f"{la.START.path}: the answer for a FULL session gave no LiveKit room")
        self._present |= {p.identity for p in room.remote_participants.values()}
        try:
            async with asyncio.timeout(self.options.avatar_timeout_s):
                while missing := self._missing():
                    self._arrival.clear()
                    await self._arrival.wait()
        except TimeoutError:
            names = " and ".join(f"participant '{m}'" for m in missing)
            raise AvatarNotInRoom(
                f"LiveAvatar: {names} did not join the room within "
                f"{self.options.avatar_timeout_s:g} s") from None

    def _avatar_identities(self) -> tuple[str, ...]:
        """Who speaks for LiveAvatar in the room: the avatar and its agent."""
        return (lar.AVATAR_IDENTITY, lar.agent_identity(self.session_id or ""))

    def _missing(self) -> list[str]:
        return [i for i in self._avatar_identities() if i not in self._present]

    def _on_participant(self, identity: str) -> None:
        self._present.add(identity)
        self._arrival.set()

    @property
    def microphone_is_track(self) -> bool:
        return self.options.full and self.options.microphone

    @property
    def end_command(self) -> str:
        # stopped from the local record, which keeps the session's token
        return f"heygen-agent sessions --backend liveavatar stop {self.session_id}"

    async def _stop_at_service(self, session_id: str) -> None:
        assert self._view is not None  # set with the session id
        await self._view.stop_session(session_id, reason=self._stop_reason or None)
        if self._start_sent and not self._was_connected:
            await self._confirm_stopped(session_id)

    async def _confirm_stopped(self, session_id: str) -> None:
        """A stop before ``connected`` has been seen to leave the session open and billed
        (heygen-protocol.md §5): confirm it with a call that a session still open answers
        (keep-alive) and an ended one refuses; still open (or no answer either way)
        raises a retryable error, and the stop is sent again until the stop deadline."""
        assert self._view is not None
        try:
            await self._view.keep_alive()
        except APIError as exc:
            # LiveAvatar publishes no code for "ended": any refusal that is not a passing
            # trouble (overload, rate limit) says the session no longer takes calls.
            if isinstance(exc, SessionStateError) or not exc.retryable:
                logger.debug(f"LiveAvatar session {session_id}: keep-alive after the stop "
                             f"refused ({exc}): the stop held")
                return
            raise
        raise StopNotConfirmed(
            f"LiveAvatar session {session_id}: stopped before 'connected', and still open")

    async def _close_connections(self) -> None:
        if self._ws is not None:
            await self._ws.close()

    def _room_events(self, packet: rtc.DataPacket) -> list[ev.AvatarEvent]:
        if packet.topic != lar.TOPIC_AGENT_RESPONSE:
            return []
        # Anyone in the room may publish on the topic: only LiveAvatar's are events (the
        # avatar's, its agent's, or the server's own, which takes the room's secret).
        sender = packet.participant.identity if packet.participant is not None else None
        if sender is not None and sender not in self._avatar_identities():
            if sender not in self._intruders:
                self._intruders.add(sender)
                logger.warning(f"LiveAvatar session {self.session_id}: 'agent-response' "
                               f"data from participant '{sender}' ignored (only the "
                               "avatar's and its agent's are events)")
            return []
        event = lar.parse_event(packet.data)
        if event.event_type in PUSH_TO_TALK_REFUSALS:
            logger.warning(f"LiveAvatar session {self.session_id}: push-to-talk "
                           f"{PUSH_TO_TALK_REFUSALS[event.event_type]} refused by the "
                           "service (is the session's interactivity_type PUSH_TO_TALK, and "
                           "the button's state what it thinks?)")
        if event.event_type == lar.SESSION_STATE_UPDATED and event.state == lar.CONNECTED:
            self._was_connected = True
        if event.event_type == lar.SESSION_STOPPED and self.state is SessionState.RUNNING:
            # LiveAvatar ended it (sandbox or duration limit, idle, credits): end ours too,
            # so the pipeline ends instead of talking to no one.
            why = event.stop_reason or "no reason given"
            self._spawn(self.stop(reason=f"LiveAvatar ended the session ({why})"),
                        "liveavatar-stop")
        return self._texts_ended(self._events.from_room(event))

    async def keep_alive(self) -> None:
        self._require_running()
        assert self._view is not None
        await self._view.keep_alive()
        if self._ws is not None and self._connected.is_set():
            await self._send(las.command(las.KEEP_ALIVE))

    # ------------------------------------------------------------------ the LITE socket

    async def _connect_socket(self, url: str) -> None:
        try:
            self._ws = await ws_connect(url, compression=None, max_size=las.MAX_MESSAGE_BYTES,
                                        open_timeout=self.options.connect_timeout_s)
        except (OSError, websockets.WebSocketException) as exc:
            reason = self._account.redact(str(exc))
            raise HeyGenError(f"LiveAvatar socket: {reason}") from None
        logger.debug(f"LiveAvatar session {self.session_id}: socket connected")

    async def _read_socket(self) -> None:
        assert self._ws is not None
        # Without the socket a LITE session can say nothing: it ends with it.
        await self._read_until_closed(
            self._ws, "socket", closed="LiveAvatar closed the session's socket",
            dropped="LiveAvatar socket dropped", handle=self._on_socket_message)

    def _on_socket_message(self, message: str | bytes) -> ev.AvatarEvent:
        event = las.parse_server_event(message)
        if event.type == las.STATE_UPDATED:
            if event.state == las.CONNECTED:
                self._connected.set()
                self._was_connected = True
            elif event.state in (las.CLOSING, las.CLOSED):
                self._connected.clear()
        if event.type == las.SPEAK_STARTED:
            self.speaking_event = event.event_id
        elif event.type in (las.SPEAK_ENDED, las.SPEAK_INTERRUPTED):
            self.speaking_event = None
            self._unfinished.discard(event.event_id)
        return self._events.from_socket(event)

    async def _send(self, command: las.Command) -> bool:
        """One command on the LITE socket once it is ``connected``; ``False`` if not."""
        ws = self._ws
        if ws is None or not self._connected.is_set():
            return False
        message = las.encode(command)
        try:
            async with self._send_lock:
                await ws.send(message)
        except websockets.ConnectionClosed:
            return False
        return True

    # ------------------------------------------------------------------ operations

    async def _control(self, command: lar.Command) -> None:
        """A FULL-mode command, as a reliable data message on ``agent-control``."""
        self._require_running()
        if self.room is None:
            raise RuntimeError("LiveAvatar commands need the LiveKit room")
        await self.room.local_participant.publish_data(
            command.to_bytes(), reliable=True, topic=lar.TOPIC_AGENT_CONTROL)

    async def say(self, text: str) -> None:
        """Make the avatar say ``text`` verbatim (FULL mode: HeyGen's voice)."""
        self._require_full("say text (in LITE mode your TTS speaks; send its audio)")
        command = lar.speak_text(text)
        pending = self._text_sent(command.event_id)  # until its speak_ended names it
        try:
            await self._control(command)
        except BaseException:
            self._text_not_sent(pending)
            raise

    async def respond(self, text: str) -> None:
        """Make the avatar answer ``text`` (FULL mode: HeyGen's brain)."""
        self._require_full("answer text (LITE mode has no HeyGen brain)")
        await self._control(lar.speak_response(text))

    def _require_full(self, what: str) -> None:
        if not self.options.full:
            raise NotImplementedError(f"LiveAvatar LITE cannot {what}")

    async def interrupt(self) -> None:
        self._chunker.reset()
        self._drop_texts()
        if self.options.full:
            await self._control(lar.interrupt())
            return
        self._drop_speech()
        # Only while it speaks (or has our audio to speak), as the service asks.
        target = self.speaking_event or next(iter(self._unfinished), None)
        if target is not None:
            await self._send(las.command(las.INTERRUPT, target))

    @property
    def takes_audio(self) -> bool:
        return not self.options.full

    async def _send_speech(self, chunk: Chunk) -> None:
        self._unfinished.add(chunk.event_id)
        await self._send(las.speak(chunk.pcm, chunk.event_id))

    async def _send_speech_end(self, event_id: str) -> None:
        await self._send(las.command(las.SPEAK_END, event_id))

    async def start_listening(self) -> None:
        if self.options.full:
            await self._control(lar.command(lar.START_LISTENING))
        else:
            await self._send(las.command(las.START_LISTENING))

    async def stop_listening(self) -> None:
        if self.options.full:
            await self._control(lar.command(lar.STOP_LISTENING))
        else:
            await self._send(las.command(las.STOP_LISTENING))

    async def push_to_talk(self, talking: bool) -> None:
        self._require_full("take push-to-talk (your own STT hears the user)")
        await self._control(lar.command(lar.START_PUSH_TO_TALK if talking
                                        else lar.STOP_PUSH_TO_TALK))

    async def send_audio(self, pcm: bytes, sample_rate: int, num_channels: int = 1) -> int:
        """FULL mode: the user's audio into the room's microphone track (16 kHz mono);
        LITE has no microphone at HeyGen (the bot's own STT hears the user)."""
        if self.state is not SessionState.RUNNING or self._microphone is None:
            return 0
        return self._queue_microphone(self._chunker.push(pcm, sample_rate, num_channels))
