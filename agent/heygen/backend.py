"""An avatar session's life and the rule it keeps, whatever HeyGen API it speaks.

HeyGen bills every open minute, so the rule this module exists to keep is: once the
service has created a session, it is stopped on every way out — success, error at any
later step, cancellation, a :meth:`AvatarSession.stop` from elsewhere while starting, a
crash of a background task, or media lost for good — and the stop is retried until the
service confirms it or a deadline passes; a stop it could not confirm is said, with the
session's id (:attr:`AvatarSession.stop_error`), never silently dropped.

HeyGen has two streaming APIs: Interactive Avatar (:mod:`agent.heygen.session`) and its
successor LiveAvatar. Each is a subclass that supplies the wire steps (open, stop at the
service, keep-alive, parse the room's data messages, speak, interrupt, ...) and reports
what happens as the backend-neutral events of :mod:`agent.heygen.events`. This class holds
what they share: the state machine, the local record of created sessions, the LiveKit
room and its media watch, the keep-alive timer and background tasks. Nothing above a
backend (the transport, the pipeline, the CLI) asks which one runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal, Self

import numpy as np
import websockets
from livekit import rtc
from loguru import logger
from websockets.asyncio.client import ClientConnection

from agent.heygen import events as ev
from agent.heygen.api import HeyGenError, SessionStateError
from agent.heygen.api.base import RestClient
from agent.heygen.chunker import AudioChunker
from agent.heygen.ledger import Record, SessionLedger, stop_left_behind
from agent.heygen.pacing import Chunk, SpeechPacer
from agent.heygen.protocol import ProtocolError
from agent.heygen.room_calls import despite_cancel, publish_track

#: HeyGen ends a session after a while without activity (120 s by default for
#: Interactive, 5 minutes for LiveAvatar).
DEFAULT_KEEP_ALIVE_S = 60.0
#: How long the stop is retried before the session is reported as left open.
DEFAULT_STOP_DEADLINE_S = 20.0
#: How long the room may be without the avatar before the session is given up (HeyGen's
#: media side restarting takes a few seconds; a billed session showing nothing must end).
DEFAULT_MEDIA_GRACE_S = 10.0
#: A microphone track in the room takes frames of any size: 10 ms ones (LiveKit's own)
#: keep the user's audio waiting least (a 512-sample piece waits up to 32 ms to fill).
MICROPHONE_FRAME_S = 0.01
#: User audio waiting to be played into the room; beyond it the oldest goes, rather than
#: the user's words arriving ever later.
MICROPHONE_QUEUE_S = 1.0
#: How far ahead of real time the microphone track may be fed: what is queued in it
#: plays out in real time, so it is latency the user's every later word carries too.
#: Beyond it, quiet audio is dropped; speech is kept up to MICROPHONE_SPEECH_LAG_S (words
#: lost cost more than one late turn), and the lag is won back in the next pause.
MICROPHONE_LAG_S = 0.1
MICROPHONE_SPEECH_LAG_S = 1.0
#: Audio quieter than this (RMS, dBFS) is a pause, safe to drop: well below any speech
#: detector's threshold (the emulator's is -40 dBFS).
MICROPHONE_QUIET_DBFS = -50.0
_QUIET_RMS = 32768 * 10 ** (MICROPHONE_QUIET_DBFS / 20)
#: How long the start waits for the avatar to subscribe to the microphone track. Until it
#: does, what the user says is lost (a track carries nothing to no one), so the session is
#: running only once the avatar listens; past this, it runs anyway and says so.
MICROPHONE_LISTEN_WAIT_S = 10.0


class SessionAborted(HeyGenError):
    """:meth:`AvatarSession.stop` was called while the session was starting."""


class SessionState(StrEnum):
    IDLE = "idle"
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"


@dataclass(frozen=True)
class LifeOptions:
    """What every backend's session options have: timers, deadlines, the local record."""

    keep_alive_interval_s: float | None = DEFAULT_KEEP_ALIVE_S
    connect_timeout_s: float = 20.0
    stop_deadline_s: float = DEFAULT_STOP_DEADLINE_S
    media_grace_s: float = DEFAULT_MEDIA_GRACE_S
    #: Record the session locally until its stop is confirmed, and stop sessions that a
    #: killed process of this key left behind (see :mod:`agent.heygen.ledger`).
    record: bool = True
    #: Subscribe to the avatar's video. Off when nothing uses it: LiveKit then neither
    #: receives nor decodes it (the audio, and the media watch, go on as before).
    video: bool = True
    #: Subscribe to the avatar's audio. Off when nothing uses it: LiveKit then neither
    #: receives, decodes nor plays it out.
    audio: bool = True

    # Each backend's options know their client and their session, so that whoever holds
    # options (the transport, the YAML builder) never asks which backend they are for.

    def open_client(self, api_key: str | None, base_url: str | None) -> RestClient:
        """A client for this backend's API (key and URL default to its environment)."""
        raise NotImplementedError(f"{type(self).__name__} names no backend")

    def new_session(self, client: RestClient, listener: SessionListener) -> AvatarSession:
        raise NotImplementedError(f"{type(self).__name__} names no backend")

    def for_own_brain(self, face: Literal["lipsync", "text"]) -> Self:
        """These options for a bot with its own STT and LLM, HeyGen being its face:
        ``lipsync`` (the bot's TTS audio drives the avatar) or ``text`` (HeyGen's voice
        says the bot's text); HeyGen's brain stays out of it."""
        raise NotImplementedError(f"{type(self).__name__} names no backend")


@dataclass(eq=False)
class PendingText:
    """One text sent for the avatar to say, until it ends; its task id once known."""

    task_id: str | None = None


class SessionListener:
    """Callbacks from a running session; override what you need. They run on the event
    loop and must not block; an exception in one is logged, never raised into the session."""

    async def on_started(self, session: AvatarSession) -> None: ...
    async def on_event(self, event: ev.AvatarEvent) -> None: ...
    async def on_track(self, track: rtc.Track, participant: rtc.RemoteParticipant) -> None: ...
    async def on_avatar_left(self, identity: str) -> None: ...
    async def on_connection_lost(self, part: str, reason: str) -> None: ...
    async def on_connection_restored(self, part: str) -> None: ...
    async def on_stopped(self, reason: str) -> None: ...


class AvatarSession(ABC):
    """A streaming avatar session. Use ``async with`` or pair :meth:`start` with
    :meth:`stop`; :meth:`stop` is idempotent and safe from any state."""

    #: The backend's name, as the YAML's ``heygen.backend`` says it.
    backend: str = ""

    def __init__(
        self, client: RestClient, options: LifeOptions, listener: SessionListener | None
    ) -> None:
        self._root_client = client
        self.life = options
        self.listener = listener or SessionListener()
        self.state = SessionState.IDLE
        self.session_id: str | None = None
        self.room: rtc.Room | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stop_reason = ""
        self._stopped = asyncio.Event()
        self._starting: asyncio.Task[Any] | None = None
        self._abort_reason: str | None = None
        self._avatars: set[str] = set()  # remote participants that published media
        self._media_watch: asyncio.TimerHandle | None = None
        self._ledger = SessionLedger() if options.record else None
        # A microphone published to the room: chunks wait here for the task that feeds
        # the track, so a caller never waits on LiveKit's real-time pacing.
        self._microphone: asyncio.Queue[bytes] | None = None
        self._chunker = AudioChunker()
        #: Seconds of user audio a microphone track dropped rather than fall behind.
        self.microphone_dropped_s = 0.0
        #: Why the last stop could not be confirmed (the session may still be open and
        #: billed), or ``None`` when it was, or nothing needed stopping.
        self.stop_error: str | None = None
        # The bot's own speech, lip-synced: paced here, sent by the backend.
        self._pacer = SpeechPacer()
        self._pacer_wake = asyncio.Event()
        self._speech_lock = asyncio.Lock()
        #: Text the avatar was asked to say (``repeat``) and has not finished saying: it
        #: is speech on its way too, from its send until its end (or an interruption).
        self._texts: list[PendingText] = []

    # ------------------------------------------------------------------ the wire, per backend

    @abstractmethod
    async def _open(self) -> None:
        """Create, start and connect the session. Call :meth:`_created` as soon as the
        service has given the session's id (before anything that may fail after it)."""

    @abstractmethod
    async def _stop_at_service(self, session_id: str) -> None:
        """Ask the service to stop the session; raise :class:`SessionStateError` if it
        says the session had already ended, another :class:`HeyGenError` if it failed."""

    @abstractmethod
    async def _close_connections(self) -> None:
        """Close the backend's own sockets (the room is closed by the base)."""

    def _room_events(self, packet: rtc.DataPacket) -> list[ev.AvatarEvent]:
        """The events in a data message of the room; raise ProtocolError to ignore it."""
        return []

    @abstractmethod
    async def _stop_recorded(self, record: Record) -> None:
        """Stop a session a killed process of this key left open, from its record."""

    async def _stop_left_behind(self) -> None:
        if self._ledger is None:
            return
        for record in await stop_left_behind(self._root_client, self._ledger,
                                             self._stop_recorded):
            logger.warning(f"stopped HeyGen session {record.session_id}, left open by "
                           f"process {record.pid} (it ended without stopping it)")

    def _on_participant(self, identity: str) -> None:
        """A participant joined the room (a backend waiting for the avatar hears it)."""
        return None

    # ------------------------------------------------------------------ operations

    @abstractmethod
    async def keep_alive(self) -> None: ...

    @abstractmethod
    async def say(self, text: str) -> None:
        """Make the avatar say ``text`` verbatim, in HeyGen's voice."""

    @abstractmethod
    async def respond(self, text: str) -> None:
        """Make the avatar answer ``text`` (HeyGen's brain)."""

    @abstractmethod
    async def interrupt(self) -> None:
        """Stop the avatar speaking and drop what it had still to say."""

    @abstractmethod
    async def start_listening(self) -> None: ...

    @abstractmethod
    async def stop_listening(self) -> None: ...

    @abstractmethod
    async def push_to_talk(self, talking: bool) -> None:
        """Start or end the user's push-to-talk turn."""

    @abstractmethod
    async def send_audio(self, pcm: bytes, sample_rate: int, num_channels: int = 1) -> int:
        """The user's audio to HeyGen's ears (any rate); returns the pieces sent."""

    @property
    def audio_piece_s(self) -> float:
        """How long each piece :meth:`send_audio` counts lasts: 10 ms frames for a
        microphone track, the socket's pieces otherwise."""
        return self._chunker.chunk_seconds

    # ------------------------------------------------------------------ lip-sync

    @property
    def takes_audio(self) -> bool:
        """The avatar lip-syncs audio the bot sends (:meth:`speak_audio`), in this mode."""
        return False

    @property
    def speech_pending(self) -> bool:
        """The bot's speech is on its way to the avatar: audio still being taken in or
        waiting to be sent, or text sent to be said that the avatar has not yet finished
        (queued behind another, or not begun)."""
        return self._pacer.speaking or self._pacer.queued_s > 0 or bool(self._texts)

    def _text_sent(self, task_id: str | None = None) -> PendingText:
        """A text is (being) sent for the avatar to say; ``task_id`` may come later, with
        the service's answer."""
        text = PendingText(task_id)
        self._texts.append(text)
        return text

    def _text_not_sent(self, text: PendingText) -> None:
        with contextlib.suppress(ValueError):
            self._texts.remove(text)

    def _texts_ended(self, events: list[ev.AvatarEvent]) -> list[ev.AvatarEvent]:
        """Note the texts these events (from the channel that tells of them) end; returns
        ``events``. A stop that names a task ends that one (or none of ours: another
        speech); one that names none ends the oldest."""
        for event in events:
            if isinstance(event, ev.AvatarStoppedSpeaking) and self._texts:
                ended = (next((t for t in self._texts if t.task_id == event.task_id), None)
                         if event.task_id else self._texts[0])
                if ended is not None:
                    self._texts.remove(ended)
        return events

    def _drop_texts(self) -> None:
        """An interruption: HeyGen drops what it had still to say."""
        self._texts.clear()

    async def _send_speech(self, chunk: Chunk) -> None:
        """Send one paced chunk of the bot's speech (backends that take audio)."""
        raise NotImplementedError(f"{self.backend} in this mode takes no audio to lip-sync")

    async def _send_speech_end(self, event_id: str) -> None:
        raise NotImplementedError(f"{self.backend} in this mode takes no audio to lip-sync")

    async def speak_audio(self, pcm: bytes, sample_rate: int, num_channels: int = 1) -> None:
        """The bot's speech (any rate, mono or stereo s16le), for the avatar to say with
        its lips: a short first chunk, then real time (:mod:`agent.heygen.pacing`). The
        first audio after :meth:`end_speech` (or ever) starts a new utterance."""
        if not self.takes_audio:
            raise RuntimeError(f"{self.backend} in this mode takes no audio to lip-sync")
        if self.state is not SessionState.RUNNING:
            return
        if not self._pacer.speaking:
            self._pacer.begin()
        now = asyncio.get_running_loop().time()
        await self._send_chunks(self._pacer.push(pcm, sample_rate, num_channels, now))

    async def end_speech(self) -> None:
        """The utterance is complete: the rest goes (paced), then its end."""
        if not self._pacer.speaking or self.state is not SessionState.RUNNING:
            return
        await self._send_chunks(self._pacer.end(asyncio.get_running_loop().time()))

    def _drop_speech(self) -> None:
        """Forget the bot's speech not yet sent (on an interruption)."""
        self._pacer.interrupt()
        self._pacer_wake.set()

    async def _send_chunks(self, chunks: list[Chunk]) -> None:
        async with self._speech_lock:
            for chunk in chunks:
                if chunk.pcm:
                    await self._send_speech(chunk)
                if chunk.final:
                    await self._send_speech_end(chunk.event_id)
        self._pacer_wake.set()  # the next release may now be due sooner

    async def _pace(self) -> None:
        """Release the chunks that wait for their time; sleeps until the next is due."""
        loop = asyncio.get_running_loop()
        while True:
            due_at = self._pacer.next_due_at()
            self._pacer_wake.clear()
            if due_at is None:
                await self._pacer_wake.wait()
                continue
            delay = due_at - loop.time()
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._pacer_wake.wait(), delay)
                continue
            await self._send_chunks(self._pacer.due(loop.time()))

    @property
    @abstractmethod
    def microphone_is_track(self) -> bool:
        """The user's audio plays into the room in real time: holding it back while the
        session starts would only add lasting latency."""

    # ------------------------------------------------------------------ life

    async def __aenter__(self) -> AvatarSession:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def start(self) -> None:
        if self.state is not SessionState.IDLE:
            raise RuntimeError(f"session already {self.state}")
        self.state = SessionState.STARTING
        self._starting = asyncio.current_task()
        try:
            await self._stop_left_behind()
            await self._open()
            if self.life.keep_alive_interval_s:
                self._spawn(self._keep_alive_loop(self.life.keep_alive_interval_s),
                            "heygen-keep-alive")
            if self.takes_audio:
                self._spawn(self._pace(), "heygen-speech-pacing")
        except BaseException as exc:
            # Whatever failed, and even on cancellation, a created session is stopped.
            aborted = self._abort_reason
            # the service's status and message are the reason (errors here are redacted)
            cause = str(exc) if isinstance(exc, HeyGenError) else type(exc).__name__
            await self.stop(reason=aborted or f"start failed: {cause}")
            if aborted is not None and isinstance(exc, asyncio.CancelledError):
                task = asyncio.current_task()
                if task is not None and task.uncancel() == 0:  # the cancel was ours alone
                    raise SessionAborted(f"stopped while starting: {aborted}") from None
            raise
        finally:
            self._starting = None
        self.state = SessionState.RUNNING
        if self.room is not None and not self._avatars:
            self._watch_media(f"the avatar's media did not arrive within "
                              f"{self.life.media_grace_s:g} s")
        await self._notify(self.listener.on_started(self))

    @property
    def end_command(self) -> str:
        """The command that ends this session if its stop could not be confirmed."""
        return f"heygen-agent sessions stop {self.session_id}"

    def _created(self, session_id: str, stop_token: str = "") -> None:
        """The service created the session: from here on it must be stopped. Where the
        service stops a session only with its own token, ``stop_token`` is that token."""
        self.session_id = session_id
        if self._ledger is not None:
            self._ledger.add(session_id, self._root_client.base_url,
                             self._root_client.key_fingerprint, stop_token)

    async def stop(self, reason: str = "stopped by client") -> None:
        """Close the connections and the room, then stop the session at the service;
        never raises.

        Runs to the end even if the caller is cancelled meanwhile (a pipeline tearing
        down, Ctrl-C): the cancellation is honoured once the session is stopped."""
        if self.state in (SessionState.STOPPING, SessionState.STOPPED):
            await self._stopped.wait()
            return
        caller = asyncio.current_task()
        starting = self._starting
        if starting is not None and starting is not caller and not starting.done():
            # start() is in flight elsewhere: cancel it; its own way out stops what it
            # created (it alone knows whether the service has created the session).
            self._abort_reason = reason
            starting.cancel()
            _, cancelled = await despite_cancel(asyncio.wait({starting}))
            if self.state not in (SessionState.STOPPING, SessionState.STOPPED):
                # it had just finished starting when the cancel came: stop it here
                _, late = await despite_cancel(self.stop(reason=reason))
                cancelled = cancelled or late
            await self._stopped.wait()
            if cancelled:
                raise asyncio.CancelledError
            return
        self.state = SessionState.STOPPING
        _, cancelled = await despite_cancel(self._shut_down(reason, caller))
        if cancelled:
            raise asyncio.CancelledError

    async def _shut_down(self, reason: str, caller: asyncio.Task[Any] | None) -> None:
        self._stop_reason = reason
        # The caller may be one of our own tasks (a reader giving up): never wait on it.
        others = [t for t in self._tasks if t is not caller]
        for task in others:
            task.cancel()
        for task in others:
            with contextlib.suppress(BaseException):
                await task
        with contextlib.suppress(Exception):
            await self._close_connections()
        if self._media_watch is not None:
            self._media_watch.cancel()
        if self.room is not None:
            with contextlib.suppress(Exception):
                await self.room.disconnect()
        if self.session_id is not None:
            await self._stop_until_confirmed(self.session_id, reason)
        self.state = SessionState.STOPPED
        self._stopped.set()
        await self._notify(self.listener.on_stopped(reason))

    async def _stop_until_confirmed(self, session_id: str, reason: str) -> None:
        """Stop until the service confirms it (or says the session had ended), retried
        with backoff while the error may pass, up to the stop deadline."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.life.stop_deadline_s
        attempt = 0
        while True:
            try:
                await self._stop_at_service(session_id)
                logger.info(f"HeyGen session {session_id} stopped ({reason})")
                self._forget(session_id)
                return
            except SessionStateError:
                logger.info(f"HeyGen session {session_id} had already ended ({reason})")
                self._forget(session_id)
                return
            except HeyGenError as exc:
                attempt += 1
                delay = random.uniform(0.5, 1.0) * min(2.0**attempt, 8.0)
                if not exc.retryable or loop.time() + delay > deadline:
                    self.stop_error = str(exc)
                    logger.error(f"HeyGen session {session_id} may still be open (billed): "
                                 f"stop failed: {exc}")
                    return
                logger.warning(f"HeyGen session {session_id}: stop failed ({exc}); "
                               f"retrying in {delay:.1f} s")
                await asyncio.sleep(delay)

    def _forget(self, session_id: str) -> None:
        if self._ledger is not None:
            self._ledger.remove(session_id)

    async def wait_stopped(self) -> str:
        await self._stopped.wait()
        return self._stop_reason

    # ------------------------------------------------------------------ the user's audio

    @property
    def muted(self) -> bool:
        return self._chunker.muted

    def mute(self) -> None:
        """Keep sending, but zeros: HeyGen hears silence, not a stalled stream."""
        self._chunker.muted = True

    def unmute(self) -> None:
        self._chunker.muted = False

    # ------------------------------------------------------------------ the room

    async def _connect_all(self, connects: list[Coroutine[Any, Any, None]]) -> None:
        """The session's connections (the room, a socket) at once: none needs another.
        HeyGen's own clients make them one after the other; the session benchmark times
        both ways."""
        await all_or_nothing(connects)

    async def _connect_room(self, url: str, token: str) -> None:
        room = rtc.Room()
        self.room = room

        @room.on("track_subscribed")
        def _track(track: rtc.Track, _pub: Any, participant: rtc.RemoteParticipant) -> None:
            self._media_arrived(participant.identity)
            self._spawn(self._notify(self.listener.on_track(track, participant)), "heygen-track")

        # One queue and one consumer: the events mean something only in order.
        events: asyncio.Queue[ev.AvatarEvent] = asyncio.Queue()
        self._spawn(self._deliver_events(events), "heygen-events")

        @room.on("data_received")
        def _data(packet: rtc.DataPacket) -> None:
            try:
                for event in self._room_events(packet):
                    events.put_nowait(event)
            except ProtocolError as exc:
                logger.warning(f"HeyGen data event ignored: {exc}")

        @room.on("track_published")
        def _published(publication: rtc.RemoteTrackPublication,
                       participant: rtc.RemoteParticipant) -> None:
            self._subscribe(publication, participant)

        @room.on("participant_connected")
        def _joined(participant: rtc.RemoteParticipant) -> None:
            self._on_participant(participant.identity)

        @room.on("participant_disconnected")
        def _left(participant: rtc.RemoteParticipant) -> None:
            self._spawn(
                self._notify(self.listener.on_avatar_left(participant.identity)), "heygen-left"
            )
            self._avatars.discard(participant.identity)
            if not self._avatars and self.state is SessionState.RUNNING:
                self._watch_media(f"the avatar left the room and did not come back within "
                                  f"{self.life.media_grace_s:g} s")

        @room.on("disconnected")
        def _disconnected(reason: Any) -> None:
            if self.state is SessionState.RUNNING:
                # LiveKit gave up reconnecting: no media will come; end the billed session.
                why = f"LiveKit connection lost ({_reason_name(reason)})"
                self._spawn(
                    self._notify(self.listener.on_connection_lost("livekit", why)),
                    "heygen-lk-lost",
                )
                self._spawn(self.stop(reason=why), "heygen-stop")

        # A connect cancelled half-way leaves LiveKit's native side waiting ~10 s for the
        # room it is still joining (and the process cannot exit meanwhile): let it finish,
        # then honour the cancel; the shutdown disconnects the room properly.
        _, cancelled = await despite_cancel(room.connect(url, token, self._room_options()))
        for participant in room.remote_participants.values():  # there before we joined
            for publication in participant.track_publications.values():
                self._subscribe(publication, participant)
        if cancelled:
            raise asyncio.CancelledError
        logger.debug(f"HeyGen session {self.session_id}: LiveKit room joined")

    def _room_options(self) -> rtc.RoomOptions:
        """Both of the avatar's tracks wanted (the usual case): LiveKit subscribes to them
        as the room is joined, as in HeyGen's official client; asking for each after the
        join costs a renegotiation per track, and the first video frame comes that much
        later (the session benchmark's ``track_by_track`` row). With a track not wanted,
        subscriptions are ours to choose: no media that no one takes."""
        return rtc.RoomOptions(auto_subscribe=self.life.video and self.life.audio)

    def _subscribe(self, publication: rtc.RemoteTrackPublication,
                   participant: rtc.RemoteParticipant) -> None:
        wanted = {rtc.TrackKind.KIND_VIDEO: self.life.video,
                  rtc.TrackKind.KIND_AUDIO: self.life.audio}
        if wanted.get(publication.kind, False):
            # present once the track is subscribed (by LiveKit itself when it subscribes all)
            if not self._room_options().auto_subscribe:
                publication.set_subscribed(True)
        else:
            # Not taken, so never subscribed: its publication is the avatar's media here.
            self._media_arrived(participant.identity)

    def _media_arrived(self, identity: str) -> None:
        """``identity`` has media in the room: the avatar is there (or back in time)."""
        self._avatars.add(identity)
        if self._media_watch is not None:
            self._media_watch.cancel()
            self._media_watch = None

    def _watch_media(self, reason: str) -> None:
        """Stop the session unless the avatar's media is back within the grace time."""
        if self._media_watch is None:
            self._media_watch = asyncio.get_running_loop().call_later(
                self.life.media_grace_s, self._media_lost, reason)

    def _media_lost(self, reason: str) -> None:
        """The grace time is over: stop, with the cause. When our own connection to LiveKit
        is down, the avatar's leaving (seen first) is only what followed from it."""
        room = self.room
        if room is not None and room.connection_state != rtc.ConnectionState.CONN_CONNECTED:
            reason = (f"LiveKit connection lost (not back within {self.life.media_grace_s:g} s; "
                      "the avatar's media stopped with it)")
        self._spawn(self.stop(reason=reason), "heygen-stop")

    async def _publish_microphone(self, sample_rate: int) -> None:
        """Publish the user's microphone as a track in the room; :meth:`_queue_microphone`
        feeds it chunks of ``sample_rate`` mono s16le."""
        assert self.room is not None
        # room for the speech lag allowed, so that capture_frame never waits on it
        source = rtc.AudioSource(sample_rate, 1,
                                 queue_size_ms=round(MICROPHONE_SPEECH_LAG_S * 1000) + 100)
        muted = self._chunker.muted
        self._chunker = AudioChunker(sample_rate=sample_rate,
                                     chunk_samples=round(sample_rate * MICROPHONE_FRAME_S))
        self._chunker.muted = muted
        publication = await publish_track(
            self.room, rtc.LocalAudioTrack.create_audio_track("microphone", source),
            rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE),
        )
        self._microphone = asyncio.Queue(maxsize=round(MICROPHONE_QUEUE_S / MICROPHONE_FRAME_S))
        self._spawn(self._feed_microphone(source, sample_rate, self._microphone),
                    "heygen-microphone")
        logger.debug(f"HeyGen session {self.session_id}: microphone published to the room")
        try:
            async with asyncio.timeout(MICROPHONE_LISTEN_WAIT_S):
                await publication.wait_for_subscription()
        except TimeoutError:
            logger.warning(f"HeyGen session {self.session_id}: the avatar has not subscribed "
                           f"to the microphone within {MICROPHONE_LISTEN_WAIT_S:g} s; what "
                           f"is said before it does is not heard")
        else:
            logger.debug(f"HeyGen session {self.session_id}: the avatar listens")

    def _queue_microphone(self, chunks: list[bytes]) -> int:
        microphone = self._microphone
        if microphone is None:
            return 0
        for chunk in chunks:
            if microphone.full():  # the track fell behind: the oldest audio goes
                self._drop_microphone(len(microphone.get_nowait()), self._chunker.sample_rate)
            microphone.put_nowait(chunk)
        return len(chunks)

    def _drop_microphone(self, size: int, sample_rate: int) -> None:
        if not self.microphone_dropped_s:
            logger.info(f"HeyGen session {self.session_id}: the microphone came faster than "
                        f"real time; pauses beyond {MICROPHONE_LAG_S * 1000:.0f} ms of lag, "
                        f"and speech beyond {MICROPHONE_SPEECH_LAG_S * 1000:.0f} ms, are "
                        "dropped")
        self.microphone_dropped_s += size / 2 / sample_rate

    async def _feed_microphone(
        self, source: rtc.AudioSource, sample_rate: int, chunks: asyncio.Queue[bytes]
    ) -> None:
        try:
            while True:
                chunk = await chunks.get()
                lag = source.queued_duration
                # The track plays in real time: audio that came in a burst (a busy loop
                # catching up, a start-up backlog) would stay that late for good. Pauses
                # go first; speech only past its own, larger bound.
                if lag > MICROPHONE_LAG_S and (lag > MICROPHONE_SPEECH_LAG_S
                                               or _quiet(chunk)):
                    self._drop_microphone(len(chunk), sample_rate)
                    continue
                await source.capture_frame(rtc.AudioFrame(chunk, sample_rate, 1, len(chunk) // 2))
        finally:
            await source.aclose()

    async def _read_until_closed(
        self, ws: ClientConnection, part: str, *, closed: str, dropped: str,
        handle: Callable[[str | bytes], ev.AvatarEvent],
    ) -> None:
        """Read a socket the session cannot go on without (LiveAvatar LITE, the realtime
        socket): each message through ``handle`` (a ProtocolError is logged and skipped)
        to the listener; when the socket ends, so does the (billed) session, with
        ``closed`` or ``dropped (code N)`` as the reason."""
        try:
            async for message in ws:
                try:
                    event = handle(message)
                except ProtocolError as exc:
                    logger.warning(f"HeyGen {part} message ignored: {exc}")
                    continue
                await self._notify(self.listener.on_event(event))
            reason = closed
        except websockets.ConnectionClosedError as exc:
            code = exc.rcvd.code if exc.rcvd is not None else 1006
            reason = f"{dropped} (code {code})"
            await self._notify(self.listener.on_connection_lost(part, reason))
        self._spawn(self.stop(reason=reason), "heygen-stop")

    async def _deliver_events(self, events: asyncio.Queue[ev.AvatarEvent]) -> None:
        while True:
            await self._notify(self.listener.on_event(await events.get()))

    async def _keep_alive_loop(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await self.keep_alive()
            except HeyGenError as exc:
                logger.warning(f"HeyGen session {self.session_id}: keep-alive failed: {exc}")

    # ------------------------------------------------------------------ helpers

    def _require_running(self) -> str:
        if self.state is not SessionState.RUNNING or self.session_id is None:
            raise RuntimeError(f"session is {self.state}, not running")
        return self.session_id

    def _spawn(self, coro: Awaitable[Any], name: str) -> None:
        task = asyncio.ensure_future(coro)
        task.set_name(name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled() or task.exception() is None:
            return
        exc = task.exception()
        logger.error(f"HeyGen session task {task.get_name()} crashed: {exc!r}")
        if self.state is SessionState.RUNNING:
            self._spawn(self.stop(reason=f"task {task.get_name()} crashed"), "heygen-stop")

    async def _notify(self, call: Awaitable[None]) -> None:
        try:
            await call
        except Exception as exc:
            logger.exception(f"HeyGen session listener failed: {exc}")


def _reason_name(reason: Any) -> str:
    """A LiveKit disconnect reason (a protobuf enum number) by name."""
    try:
        return str(rtc.DisconnectReason.Name(reason))
    except (ValueError, TypeError, AttributeError):
        return str(reason)


async def all_or_nothing(calls: Sequence[Awaitable[None]]) -> None:
    """Run ``calls`` concurrently; if one fails, cancel the others and raise its error."""
    tasks = [asyncio.ensure_future(c) for c in calls]
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


def _quiet(pcm: bytes) -> bool:
    """A pause: s16le audio whose RMS is under :data:`MICROPHONE_QUIET_DBFS`."""
    samples = np.frombuffer(pcm, "<i2").astype(np.float32)
    return not samples.size or float(np.sqrt(np.mean(samples * samples))) < _QUIET_RMS
