"""One avatar session's whole life, from token to stop.

``create_token`` → ``new`` → ``start`` → LiveKit and the voice-chat socket, connected
concurrently → keep-alive on a timer → ``stop``. HeyGen bills every open minute, so the
rule this module exists to keep is: once ``new`` has answered, ``stop`` is sent on every
way out — success, error at any later step, cancellation, a :meth:`stop` from elsewhere
while starting, a crash of a background task, or media lost for good — and retried until
HeyGen confirms it or a deadline passes; a stop it could not confirm is said, with the
session's id (:attr:`HeyGenSession.stop_error`), never silently dropped.

The session knows nothing of Pipecat; :class:`~agent.heygen.transport.HeyGenTransport`
turns its callbacks into frames. It is usable on its own from plain asyncio code.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Awaitable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TypeVar

import websockets
from livekit import rtc
from loguru import logger
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect

from agent.heygen.api import HeyGenClient, HeyGenError, SessionStateError
from agent.heygen.chunker import AudioChunker
from agent.heygen.ledger import SessionLedger, stop_left_behind
from agent.heygen.protocol import ProtocolError
from agent.heygen.protocol import interactive as ia
from agent.heygen.protocol import room_events as rev
from agent.heygen.protocol import voice_chat as vc
from agent.heygen.redact import redact_url

T = TypeVar("T")

#: HeyGen ends a session after ``activity_idle_timeout`` (default 120 s) without activity.
DEFAULT_KEEP_ALIVE_S = 60.0
#: Reconnect a dropped voice-chat socket this many times before giving the session up.
VOICE_CHAT_RECONNECTS = 3
#: With the LiveKit voice transport: user audio (512-sample chunks, about 1 s) waiting for
#: the track; beyond it the oldest goes, rather than the user's words arriving ever later.
MICROPHONE_QUEUE_CHUNKS = 32
#: How long ``streaming.stop`` is retried before the session is reported as left open.
DEFAULT_STOP_DEADLINE_S = 20.0
#: How long the room may be without the avatar before the session is given up (HeyGen's
#: media side restarting takes a few seconds; a billed session showing nothing must end).
DEFAULT_MEDIA_GRACE_S = 10.0


class SessionAborted(HeyGenError):
    """:meth:`HeyGenSession.stop` was called while the session was starting."""


class SessionState(StrEnum):
    IDLE = "idle"
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"


@dataclass(frozen=True)
class SessionOptions:
    """How to open the session; ``request`` is the ``streaming.new`` body."""

    request: ia.NewSessionRequest = field(default_factory=ia.NewSessionRequest)
    #: Mint a session token first and use it for every session call (the official flow);
    #: the voice-chat socket needs one.
    use_session_token: bool = True
    voice_chat: bool = True
    livekit: bool = True
    push_to_talk: bool = False
    keep_alive_interval_s: float | None = DEFAULT_KEEP_ALIVE_S
    connect_timeout_s: float = 20.0
    stop_deadline_s: float = DEFAULT_STOP_DEADLINE_S
    media_grace_s: float = DEFAULT_MEDIA_GRACE_S
    #: Record the session locally until its stop is confirmed, and stop sessions that a
    #: killed process of this key left behind (see :mod:`agent.heygen.ledger`).
    record: bool = True

    def __post_init__(self) -> None:
        # The socket URL carries its credential; a short-lived token may travel there,
        # the account key must not.
        if self.voice_chat and not self.use_session_token:
            raise ValueError("voice chat needs use_session_token=True")
        if self.voice_over_livekit and not self.livekit:
            raise ValueError("ia_is_livekit_transport needs livekit=True")
        if self.push_to_talk and not self.voice_over_livekit:
            # Our emulator accepts it; HeyGen's official client refuses it.
            logger.warning("push-to-talk: HeyGen's official client allows it only with the "
                           "LiveKit voice transport (ia_is_livekit_transport: true)")

    @property
    def voice_over_livekit(self) -> bool:
        """The LiveKit voice transport: the microphone is a track in the room and async
        talks are data messages; the voice-chat socket then only brings events."""
        return bool(self.request.ia_is_livekit_transport)


class SessionListener:
    """Callbacks from a running session; override what you need. They run on the event
    loop and must not block; an exception in one is logged, never raised into the session."""

    async def on_started(self, session: HeyGenSession) -> None: ...
    async def on_room_event(self, event: rev.RoomEvent) -> None: ...
    async def on_chat_event(self, event: vc.VoiceChatEvent) -> None: ...
    async def on_track(self, track: rtc.Track, participant: rtc.RemoteParticipant) -> None: ...
    async def on_avatar_left(self, identity: str) -> None: ...
    async def on_connection_lost(self, part: str, reason: str) -> None: ...
    async def on_connection_restored(self, part: str) -> None: ...
    async def on_stopped(self, reason: str) -> None: ...


class HeyGenSession:
    """A HeyGen streaming session. Use ``async with`` or pair :meth:`start` with
    :meth:`stop`; :meth:`stop` is idempotent and safe from any state."""

    def __init__(
        self,
        client: HeyGenClient,
        options: SessionOptions | None = None,
        listener: SessionListener | None = None,
    ) -> None:
        self._root_client = client
        self._client = client
        self.options = options or SessionOptions()
        self.listener = listener or SessionListener()
        self.state = SessionState.IDLE
        self.session_id: str | None = None
        self.info: ia.NewSessionAnswer | None = None
        self.room: rtc.Room | None = None
        self._token: str | None = None
        self._ws: ClientConnection | None = None
        # The LiveKit voice transport's microphone: chunks wait here for the task that
        # feeds the track, so a caller never waits on LiveKit's real-time pacing.
        self._microphone: asyncio.Queue[bytes] | None = None
        self._chunker = AudioChunker()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._send_lock = asyncio.Lock()
        self._stop_reason = ""
        self._stopped = asyncio.Event()
        self._starting: asyncio.Task[Any] | None = None
        self._abort_reason: str | None = None
        self._avatars: set[str] = set()  # remote participants that published media
        self._media_watch: asyncio.TimerHandle | None = None
        self._ledger = SessionLedger() if self.options.record else None
        #: Why the last ``streaming.stop`` could not be confirmed (the session may still be
        #: open and billed), or ``None`` when it was, or nothing needed stopping.
        self.stop_error: str | None = None

    # ------------------------------------------------------------------ life

    async def __aenter__(self) -> HeyGenSession:
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
            await self._start_sequence()
        except BaseException as exc:
            # Whatever failed, and even on cancellation, a created session is stopped.
            aborted = self._abort_reason
            # HeyGen's status and message are the reason (errors here are redacted)
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
        if self.options.livekit and not self._avatars:
            self._watch_media(f"the avatar's media did not arrive within "
                              f"{self.options.media_grace_s:g} s")
        await self._notify(self.listener.on_started(self))

    async def _start_sequence(self) -> None:
        opts = self.options
        if self._ledger is not None:
            for record in await stop_left_behind(self._root_client, self._ledger):
                logger.warning(f"stopped HeyGen session {record.session_id}, left open by "
                               f"process {record.pid} (it ended without stopping it)")
        if opts.use_session_token:
            token = await self._root_client.create_token()
            self._token = token.get_secret_value()
            self._client = self._root_client.with_session_token(token)
        # If cancelled while ``new`` is in flight, the service may still create the
        # session; wait for its id so that it can be stopped, then honour the cancel.
        info, cancelled = await _despite_cancel(self._client.new_session(opts.request))
        self.info, self.session_id = info, info.session_id
        if self._ledger is not None:
            self._ledger.add(info.session_id, self._root_client.base_url,
                             self._root_client.key_fingerprint)
        if cancelled:
            raise asyncio.CancelledError
        logger.info(f"HeyGen session {self.session_id} created")
        await self._client.start_session(self.session_id)
        connects: list[Awaitable[None]] = []
        if opts.livekit:
            connects.append(self._connect_livekit())
        if opts.voice_chat:
            connects.append(self._connect_voice_chat())
        async with asyncio.timeout(opts.connect_timeout_s):
            await _all_or_nothing(connects)
            if opts.voice_over_livekit:
                await self._publish_microphone()
        if opts.voice_chat:
            self._spawn(self._read_voice_chat(), "heygen-voice-chat")
        if opts.keep_alive_interval_s:
            self._spawn(self._keep_alive_loop(opts.keep_alive_interval_s), "heygen-keep-alive")

    async def stop(self, reason: str = "stopped by client") -> None:
        """Close the socket and the room, then ``streaming.stop``; never raises.

        Runs to the end even if the caller is cancelled meanwhile (a pipeline tearing
        down, Ctrl-C): the cancellation is honoured once the session is stopped."""
        if self.state in (SessionState.STOPPING, SessionState.STOPPED):
            await self._stopped.wait()
            return
        caller = asyncio.current_task()
        starting = self._starting
        if starting is not None and starting is not caller and not starting.done():
            # start() is in flight elsewhere: cancel it; its own way out stops what it
            # created (it alone knows whether ``new`` has answered).
            self._abort_reason = reason
            starting.cancel()
            _, cancelled = await _despite_cancel(asyncio.wait({starting}))
            if self.state not in (SessionState.STOPPING, SessionState.STOPPED):
                # it had just finished starting when the cancel came: stop it here
                _, late = await _despite_cancel(self.stop(reason=reason))
                cancelled = cancelled or late
            await self._stopped.wait()
            if cancelled:
                raise asyncio.CancelledError
            return
        self.state = SessionState.STOPPING
        _, cancelled = await _despite_cancel(self._shut_down(reason, caller))
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
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await self._ws.close()
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
        """``streaming.stop`` until HeyGen confirms it (or says the session had ended),
        retried with backoff while the error may pass, up to the stop deadline."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.options.stop_deadline_s
        attempt = 0
        while True:
            try:
                await self._client.stop_session(session_id)
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

    # ------------------------------------------------------------------ operations

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
        answer = await self._client.speak(session_id, text, task_type=task_type,
                                          task_mode=task_mode)
        return answer.task_id

    async def interrupt(self) -> None:
        self._chunker.reset()
        await self._client.interrupt(self._require_running())

    async def start_listening(self) -> None:
        await self._client.start_listening(self._require_running())

    async def stop_listening(self) -> None:
        await self._client.stop_listening(self._require_running())

    async def keep_alive(self) -> None:
        await self._client.keep_alive(self._require_running())

    @property
    def muted(self) -> bool:
        return self._chunker.muted

    def mute(self) -> None:
        """Keep sending, but zeros: HeyGen hears silence, not a stalled stream."""
        self._chunker.muted = True

    def unmute(self) -> None:
        self._chunker.muted = False

    async def push_to_talk(self, talking: bool) -> None:
        """Start or stop a push-to-talk turn (sessions created with push-to-talk only)."""
        if not self.options.push_to_talk:
            raise RuntimeError("this session was not created with push-to-talk")
        if self.room is None:
            raise RuntimeError("push-to-talk needs the LiveKit room")
        message = rev.PUSH_TO_TALK_START if talking else rev.PUSH_TO_TALK_STOP
        await self.room.local_participant.publish_data(message.encode(), reliable=True)

    async def send_audio(self, pcm: bytes, sample_rate: int, num_channels: int = 1) -> int:
        """Send user audio at any rate, as 16 kHz mono in 512-sample pieces: protobuf
        messages on the voice-chat socket, or frames of the room's microphone track with
        the LiveKit voice transport. Returns how many pieces went out."""
        if self.state is not SessionState.RUNNING:
            return 0
        chunks = self._chunker.push(pcm, sample_rate, num_channels)
        microphone = self._microphone
        sent = 0
        for chunk in chunks:
            if microphone is not None:
                if microphone.full():  # the track fell behind: the oldest audio goes
                    microphone.get_nowait()
                microphone.put_nowait(chunk)
                sent += 1
            elif await self.send_raw(vc.encode_audio(chunk)):
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

    # ------------------------------------------------------------------ connections

    async def _connect_livekit(self) -> None:
        assert self.info is not None
        room = rtc.Room()
        self.room = room

        @room.on("track_subscribed")
        def _track(track: rtc.Track, _pub: Any, participant: rtc.RemoteParticipant) -> None:
            self._avatars.add(participant.identity)
            if self._media_watch is not None:  # it came back in time
                self._media_watch.cancel()
                self._media_watch = None
            self._spawn(self._notify(self.listener.on_track(track, participant)), "heygen-track")

        # One queue and one consumer: HeyGen's events mean something only in order.
        events: asyncio.Queue[rev.RoomEvent] = asyncio.Queue()
        self._spawn(self._deliver_room_events(events), "heygen-events")

        @room.on("data_received")
        def _data(packet: rtc.DataPacket) -> None:
            try:
                events.put_nowait(rev.parse_room_event(packet.data))
            except ProtocolError as exc:
                logger.warning(f"HeyGen data event ignored: {exc}")

        @room.on("participant_disconnected")
        def _left(participant: rtc.RemoteParticipant) -> None:
            self._spawn(
                self._notify(self.listener.on_avatar_left(participant.identity)), "heygen-left"
            )
            self._avatars.discard(participant.identity)
            if not self._avatars and self.state is SessionState.RUNNING:
                self._watch_media(f"the avatar left the room and did not come back within "
                                  f"{self.options.media_grace_s:g} s")

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
        _, cancelled = await _despite_cancel(
            room.connect(self.info.url, self.info.access_token.get_secret_value()))
        if cancelled:
            raise asyncio.CancelledError
        logger.debug(f"HeyGen session {self.session_id}: LiveKit room joined")

    def _watch_media(self, reason: str) -> None:
        """Stop the session unless the avatar's media is back within the grace time."""
        if self._media_watch is None:
            self._media_watch = asyncio.get_running_loop().call_later(
                self.options.media_grace_s,
                lambda: self._spawn(self.stop(reason=reason), "heygen-stop"),
            )

    async def _publish_microphone(self) -> None:
        assert self.room is not None
        source = rtc.AudioSource(vc.SAMPLE_RATE, vc.NUM_CHANNELS, queue_size_ms=200)
        await self.room.local_participant.publish_track(
            rtc.LocalAudioTrack.create_audio_track("microphone", source),
            rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE),
        )
        self._microphone = asyncio.Queue(maxsize=MICROPHONE_QUEUE_CHUNKS)
        self._spawn(self._feed_microphone(source, self._microphone), "heygen-microphone")
        logger.debug(f"HeyGen session {self.session_id}: microphone published to the room")

    async def _feed_microphone(self, source: rtc.AudioSource, chunks: asyncio.Queue[bytes]) -> None:
        try:
            while True:
                chunk = await chunks.get()
                await source.capture_frame(
                    rtc.AudioFrame(chunk, vc.SAMPLE_RATE, vc.NUM_CHANNELS, vc.CHUNK_SAMPLES))
        finally:
            await source.aclose()

    async def _deliver_room_events(self, events: asyncio.Queue[rev.RoomEvent]) -> None:
        while True:
            await self._notify(self.listener.on_room_event(await events.get()))

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
        url = self._chat_url()
        try:
            self._ws = await ws_connect(url, compression=None, max_size=2**22,
                                        open_timeout=self.options.connect_timeout_s)
        except (OSError, websockets.WebSocketException) as exc:
            reason = self._client.redact(str(exc))
            raise HeyGenError(f"voice chat {redact_url(url)}: {reason}") from None
        logger.debug(f"HeyGen session {self.session_id}: voice chat connected")

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
                    await self._notify(self.listener.on_chat_event(event))
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


async def _all_or_nothing(calls: list[Awaitable[None]]) -> None:
    """Run ``calls`` concurrently; if one fails, cancel the others and raise its error."""
    tasks = [asyncio.ensure_future(c) for c in calls]
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


async def _despite_cancel(call: Awaitable[T]) -> tuple[T, bool]:
    """Run ``call`` to the end even if the caller is cancelled meanwhile; return its
    result and whether a cancellation arrived, for the caller to honour afterwards."""
    task = asyncio.ensure_future(call)
    cancelled = False
    while not task.done():
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            cancelled = True
    return task.result(), cancelled
