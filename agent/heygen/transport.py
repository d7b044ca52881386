"""HeyGenTransport: a HeyGen avatar session as a Pipecat transport.

``output()`` takes the user's side to HeyGen: microphone audio (as 512-sample protobuf
messages on the voice-chat socket, or with ``ia_is_livekit_transport`` as a microphone
track in the LiveKit room), text to answer, :class:`HeyGenSpeakFrame` to say,
interruptions. ``input()`` brings the avatar back: its video (``OutputImageRawFrame``),
its voice (``OutputAudioRawFrame``), and HeyGen's events and transcripts as the frames
listed in :mod:`agent.heygen.frames`. A voice-chat pipeline reads::

    Pipeline([microphone, vad, heygen.output(), heygen.input(), viewer, speaker])

The session starts on the first ``StartFrame`` either processor sees (or earlier, with
:meth:`HeyGenTransport.start_early`, while the rest of the pipeline is still being built),
and is stopped (``streaming.stop``) on ``EndFrame``, ``CancelFrame``, or when HeyGen ends
it — in which case the pipeline is asked to end too.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections import deque
from typing import Any, Literal

from livekit import rtc
from loguru import logger
from pipecat.frames.frames import (
    BotSpeakingFrame,
    BotStartedSpeakingFrame,
    BotStoppedSpeakingFrame,
    CancelFrame,
    EndFrame,
    EndWorkerFrame,
    Frame,
    InputAudioRawFrame,
    InterruptionFrame,
    LLMFullResponseEndFrame,
    LLMTextFrame,
    OutputAudioRawFrame,
    OutputImageRawFrame,
    StartFrame,
    TextFrame,
    TranscriptionFrame,
    TTSAudioRawFrame,
    TTSStoppedFrame,
    TTSTextFrame,
    VADUserStartedSpeakingFrame,
)
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.transports.base_transport import BaseTransport
from pipecat.utils.time import time_now_iso8601
from pydantic import BaseModel, ConfigDict, Field

from agent.heygen import events as ev
from agent.heygen.api.base import RestClient
from agent.heygen.backend import (
    AvatarSession,
    LifeOptions,
    SessionAborted,
    SessionListener,
    SessionState,
)
from agent.heygen.events import join_words
from agent.heygen.frame_queue import DropOldestQueue
from agent.heygen.frames import (
    I420,
    USER_ID,
    HeyGenAvatarTranscriptFrame,
    HeyGenPushToTalkFrame,
    HeyGenSpeakFrame,
    frames_for_event,
    said,
)
from agent.heygen.protocol import interactive as ia
from agent.heygen.sentences import SentenceSplitter
from agent.heygen.session import SessionOptions

VideoFormat = Literal["auto", "I420", "RGB", "RGBA"]
_LIVEKIT_FORMAT = {
    "I420": rtc.VideoBufferType.I420,
    "RGB": rtc.VideoBufferType.RGB24,
    "RGBA": rtc.VideoBufferType.RGBA,
}
DROP_REPORT_INTERVAL_S = 5.0
#: How much user audio to hold while the session is still starting.
BACKLOG_S = 2.0
#: The bot's speech (TTS frames, ~20-40 ms each) held while the session starts: a minute.
SPEECH_BACKLOG_FRAMES = 3000
#: How often BotSpeakingFrame is told while the avatar speaks: Pipecat's own output
#: transports' period (``BaseOutputTransport``'s ``_bot_speaking_frame_period``).
BOT_SPEAKING_PERIOD_S = 0.2

EVENTS = (
    "on_session_started",
    "on_session_ended",
    "on_avatar_started_speaking",
    "on_avatar_stopped_speaking",
    "on_avatar_transcript",
    "on_user_started_speaking",
    "on_user_stopped_speaking",
    "on_user_transcript",
    "on_avatar_video_started",
    "on_avatar_left",
    "on_connection_lost",
    "on_connection_restored",
    "on_video_frames_dropped",
)


class HeyGenParams(BaseModel):
    """What the transport does with the avatar's media and the user's speech."""

    model_config = ConfigDict(extra="forbid")

    video_enabled: bool = True
    #: ``auto``: RGB, what Pipecat's own output transports (LiveKit, Daily, local) take.
    #: I420 is LiveKit's decoded format, handed on with no conversion, for outputs that
    #: read it (this project's viewer and recorder: YAML pipelines use it). RGB/RGBA are
    #: converted in LiveKit's native code.
    video_format: VideoFormat = "auto"
    video_queue_size: int = Field(3, ge=1)
    audio_enabled: bool = True
    audio_sample_rate: int = 24_000
    #: Interrupt the avatar as soon as the local VAD hears the user (barge-in), instead
    #: of waiting for HeyGen's own detection.
    interrupt_on_user_speech: bool = True


class HeyGenTransport(BaseTransport):
    """One HeyGen avatar session in a Pipecat pipeline.

    Event handlers, Pipecat style (``@transport.event_handler("on_user_transcript")``):
    ``on_session_started(transport, session_id)``, ``on_session_ended(transport, reason)``,
    ``on_avatar_started_speaking(transport)``, ``on_avatar_stopped_speaking(transport)``,
    ``on_avatar_transcript(transport, text)``, ``on_user_started_speaking(transport)``,
    ``on_user_stopped_speaking(transport)``, ``on_user_transcript(transport, text)``,
    ``on_avatar_video_started(transport, width, height)``, ``on_avatar_left(transport,
    identity)``, ``on_connection_lost(transport, part, reason)``,
    ``on_connection_restored(transport, part)``, ``on_video_frames_dropped(transport, count)``.
    """

    def __init__(
        self,
        *,
        client: RestClient | None = None,
        api_key: str | None = None,
        base_url: str | None = None,
        session_options: LifeOptions | None = None,
        params: HeyGenParams | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__(name=name)
        self._owns_client = client is None
        # The options choose the backend: SessionOptions for Interactive Avatar,
        # LiveAvatarOptions for LiveAvatar; nothing below asks which.
        self.params = params or HeyGenParams()
        options = session_options or SessionOptions()
        # What no one takes is not received: no subscription, no decoding.
        options = dataclasses.replace(options, video=options.video and self.params.video_enabled,
                                      audio=options.audio and self.params.audio_enabled)
        self.client = client or options.open_client(api_key, base_url)
        self.session: AvatarSession = options.new_session(self.client, _Listener(self))
        #: Set once the session runs: the avatar is there and hears the user (a WAV input
        #: that stands in for a person waits for it: ``WavFileInput(start_when=...)``).
        self.session_running = asyncio.Event()
        self._input = HeyGenInput(self)
        self._output = HeyGenOutput(self)
        self._start_lock = asyncio.Lock()
        self._started = False
        self._early: asyncio.Task[None] | None = None
        #: input() has its StartFrame (or is not in the pipeline): HeyGen's events may flow
        self._pipeline_started = asyncio.Event()
        self._ended = False
        self._media_tasks: set[asyncio.Task[None]] = set()
        self.avatar_speaking = False
        self._ticker: asyncio.Task[None] | None = None
        self.video_frames = 0
        #: lip-sync: the texts of the bot's utterances sent to the avatar, not yet said
        self._utterances: deque[str] = deque()
        for event in EVENTS:
            self._register_event_handler(event)

    def input(self) -> HeyGenInput:
        return self._input

    def output(self) -> HeyGenOutput:
        return self._output

    # ------------------------------------------------------------------ control

    async def speak(self, text: str, task_type: ia.TaskType = ia.TaskType.REPEAT) -> None:
        """Make the avatar say ``text`` verbatim (``repeat``) or answer it (``talk``)."""
        if task_type == ia.TaskType.TALK:
            await self.session.respond(text)
        else:
            await self.session.say(text)

    async def interrupt(self) -> None:
        await self.session.interrupt()

    async def user_said(self, text: str) -> None:
        """With your own STT: what the user said, told downstream of ``input()`` as HeyGen's
        own transcripts are (a TranscriptionFrame and ``on_user_transcript``), so that
        transcripts and viewers after the avatar show both sides whichever brain runs."""
        if text.strip():
            await self._input.push_frame(TranscriptionFrame(text, USER_ID, time_now_iso8601(),
                                                            finalized=True))
            await self._call_event_handler("on_user_transcript", text)

    async def push_to_talk(self, talking: bool) -> None:
        """Start or end the user's turn (sessions created with push-to-talk)."""
        await self.session.push_to_talk(talking)

    def mute(self) -> None:
        """The microphone keeps its cadence but sends zeros, as the official client does."""
        self.session.mute()

    def unmute(self) -> None:
        self.session.unmute()

    @property
    def muted(self) -> bool:
        return self.session.muted

    # ------------------------------------------------------------------ life

    def start_early(self) -> None:
        """Start the session now, before the pipeline runs, so that the avatar comes up
        while the rest is still being built (``heygen-agent run`` does this once the file
        is found good: the avatar appears about a second sooner). The pipeline's
        ``StartFrame`` then waits for this start instead of beginning one. The avatar's
        media waits for the pipeline too: frames that come before it runs are dropped,
        as live media is; HeyGen's events are held until then.

        Until the pipeline runs, the caller owns the stop: if it never runs, ``await
        transport.close()`` (HeyGen bills the session from its start)."""
        if self._early is None and not self._started:
            self._early = asyncio.get_running_loop().create_task(
                self.session.start(), name="heygen-early-start")
            # its failure is told by the session (on_session_ended) and by _start
            self._early.add_done_callback(lambda t: t.cancelled() or t.exception())

    async def close(self, reason: str = "closed before the pipeline ran") -> None:
        """Stop the session (a start in flight included) when no pipeline will end it."""
        await self._stop(reason)

    async def _start(self, processor: FrameProcessor) -> None:
        async with self._start_lock:
            if self._started:
                return
            self._started = True
            if self._input.previous is None:
                self._pipeline_started.set()  # input() is not in the pipeline: no one to wait for
            try:
                if self._early is not None:
                    # waited for, not awaited: a start closed meanwhile is a failure to
                    # say, not a cancellation of this processor
                    await asyncio.wait({self._early})
                    if self._early.cancelled():
                        raise RuntimeError("the session was closed while it started")
                    self._early.result()
                else:
                    await self.session.start()
            except SessionAborted as exc:
                # stopped on request while it started (a signal, the run's end): no error
                logger.info(f"HeyGen session not started: {exc}")
                await processor.push_frame(EndWorkerFrame(reason=str(exc)))
                return
            except Exception as exc:
                message = f"HeyGen session could not start: {exc}"
                # push_error logs it (Pipecat's way): once is enough
                await processor.push_error(message, exc, force_treat_as_permanent=True)
                await processor.push_frame(EndWorkerFrame(reason=message))
                return
            if self.session.state is SessionState.STOPPED and not self._ended:
                # started early, then ended by HeyGen before the pipeline ran
                reason = await self.session.wait_stopped()
                await processor.push_frame(EndWorkerFrame(reason=f"HeyGen session ended: {reason}"))

    async def _stop(self, reason: str) -> None:
        if self._ended:
            return
        self._ended = True
        self._speaking_ticks(False)
        for task in list(self._media_tasks):
            task.cancel()
        for task in list(self._media_tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.session.stop(reason=reason)
        await self.cleanup()  # type: ignore[no-untyped-call]  # lets event handlers finish
        if self._owns_client:
            await self.client.aclose()

    # ------------------------------------------------------------------ media

    def _speaking_ticks(self, on: bool) -> None:
        """BotSpeakingFrame, both ways, every :data:`BOT_SPEAKING_PERIOD_S` while the
        avatar speaks (Pipecat's output transports tell it so; idle timers and turn-taking
        listen for it)."""
        if self._ticker is not None:
            self._ticker.cancel()
            self._ticker = None
        if on and not self._ended:
            self._ticker = asyncio.get_running_loop().create_task(
                self._tick_speaking(), name="heygen-bot-speaking")
            self._ticker.add_done_callback(_ticks_ended)

    async def _tick_speaking(self) -> None:
        while True:
            await self._input.broadcast_frame(BotSpeakingFrame)
            await asyncio.sleep(BOT_SPEAKING_PERIOD_S)

    def _watch_track(self, track: rtc.Track) -> None:
        if track.kind == rtc.TrackKind.KIND_VIDEO and self.params.video_enabled:
            self._spawn(self._pump_video(track))
        elif track.kind == rtc.TrackKind.KIND_AUDIO and self.params.audio_enabled:
            self._spawn(self._pump_audio(track))

    def _spawn(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)
        self._media_tasks.add(task)
        task.add_done_callback(self._media_task_done)

    def _media_task_done(self, task: asyncio.Task[None]) -> None:
        """A media stream that failed is said in one line, never left for asyncio to
        print as a traceback; while the session ends (LiveKit refuses a stream on a room
        being torn down) it is expected, and only logged for debugging."""
        self._media_tasks.discard(task)
        if task.cancelled() or task.exception() is None:
            return
        error = task.exception()
        if self._ended or self.session.state is not SessionState.RUNNING:
            logger.debug(f"HeyGen media stream ended with the session: {error!r}")
        else:
            logger.warning(f"HeyGen media stream failed: {error!r}")

    async def _pump_video(self, track: rtc.Track) -> None:
        """Read frames as fast as LiveKit gives them into a bounded queue, and push from
        the queue: if pushing falls behind, the oldest frames go, counted."""
        fmt = "RGB" if self.params.video_format == "auto" else self.params.video_format
        queue: DropOldestQueue[OutputImageRawFrame] = DropOldestQueue(self.params.video_queue_size)
        pusher = asyncio.get_running_loop().create_task(self._push_video(queue))
        stream = rtc.VideoStream(track, format=_LIVEKIT_FORMAT[fmt], capacity=2)
        try:
            async for event in stream:
                if not self._input.started:
                    continue  # live media: what comes before the pipeline runs is dropped
                frame = event.frame
                image = OutputImageRawFrame(
                    image=bytes(frame.data), size=(frame.width, frame.height),
                    format=I420 if fmt == "I420" else fmt,
                )
                queue.put(image)
        finally:
            pusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pusher
            await stream.aclose()

    async def _push_video(self, queue: DropOldestQueue[OutputImageRawFrame]) -> None:
        loop = asyncio.get_running_loop()
        next_report = loop.time() + DROP_REPORT_INTERVAL_S
        while True:
            image = await queue.get()
            if self.video_frames == 0:
                width, height = image.size
                logger.info(f"HeyGen avatar video: first frame ({width}x{height})")
                await self._call_event_handler("on_avatar_video_started", width, height)
            self.video_frames += 1
            await self._input.push_frame(image)
            if loop.time() >= next_report:
                next_report = loop.time() + DROP_REPORT_INTERVAL_S
                dropped = queue.take_dropped()
                if dropped:
                    logger.warning(f"HeyGen video: dropped {dropped} frames (slow pipeline)")
                    await self._call_event_handler("on_video_frames_dropped", dropped)

    async def _pump_audio(self, track: rtc.Track) -> None:
        rate = self.params.audio_sample_rate
        stream = rtc.AudioStream(track, sample_rate=rate, num_channels=1)
        try:
            async for event in stream:
                if not self._input.started:
                    continue
                data = bytes(event.frame.data)
                await self._input.push_frame(
                    OutputAudioRawFrame(audio=data, sample_rate=rate, num_channels=1)
                )
        finally:
            await stream.aclose()


class _Listener(SessionListener):
    """Turns the session's callbacks into frames and event-handler calls."""

    def __init__(self, transport: HeyGenTransport) -> None:
        self.t = transport

    async def on_started(self, session: AvatarSession) -> None:
        self.t.session_running.set()
        await self.t._call_event_handler("on_session_started", session.session_id)

    async def on_track(self, track: rtc.Track, participant: rtc.RemoteParticipant) -> None:
        self.t._watch_track(track)

    async def on_event(self, event: ev.AvatarEvent) -> None:
        t = self.t
        # A session started early may speak before the pipeline runs: held until it does
        # (stopping the session ends the wait with the reader that waits).
        await t._pipeline_started.wait()
        # The avatar's start and stop may be told twice (the room and a socket): once is true.
        if isinstance(event, ev.AvatarStartedSpeaking) and t.avatar_speaking:
            return
        if isinstance(event, ev.AvatarStoppedSpeaking) and not t.avatar_speaking:
            return
        if isinstance(event, ev.AvatarStoppedSpeaking):
            t._speaking_ticks(False)
        for frame in frames_for_event(event):
            if isinstance(frame, BotStartedSpeakingFrame | BotStoppedSpeakingFrame):
                # Both ways, as Pipecat's output transports tell it: what is before the
                # transport (aggregators, turn-taking, the bot's own LLM) must know too.
                await t._input.broadcast_frame(type(frame))
            else:
                await t._input.push_frame(frame)
        match event:
            case ev.AvatarStartedSpeaking():
                t.avatar_speaking = True
                t._speaking_ticks(True)
                await t._call_event_handler("on_avatar_started_speaking")
            case ev.AvatarStoppedSpeaking():
                t.avatar_speaking = False
                await t._call_event_handler("on_avatar_stopped_speaking")
                if t.session.takes_audio and t._utterances:
                    # Lip-sync: HeyGen knows only audio; the bot's TTS said the words.
                    text = t._utterances.popleft()
                    await t._input.push_frame(said(HeyGenAvatarTranscriptFrame(text)))
                    await t._call_event_handler("on_avatar_transcript", text)
            case ev.AvatarTranscript(text=text):
                await t._call_event_handler("on_avatar_transcript", text)
            case ev.UserTranscript(text=text):
                await t._call_event_handler("on_user_transcript", text)
            case ev.UserStartedSpeaking():
                await t._call_event_handler("on_user_started_speaking")
            case ev.UserStoppedSpeaking():
                await t._call_event_handler("on_user_stopped_speaking")

    async def on_avatar_left(self, identity: str) -> None:
        await self.t._call_event_handler("on_avatar_left", identity)

    async def on_connection_lost(self, part: str, reason: str) -> None:
        await self.t._call_event_handler("on_connection_lost", part, reason)

    async def on_connection_restored(self, part: str) -> None:
        await self.t._call_event_handler("on_connection_restored", part)

    async def on_stopped(self, reason: str) -> None:
        await self.t._call_event_handler("on_session_ended", reason)
        if not self.t._ended and self.t._input.started:
            # HeyGen ended the session (expiry, lost connection): end the pipeline too.
            await self.t._input.push_frame(EndWorkerFrame(reason=f"HeyGen session ended: {reason}"))


class HeyGenInput(FrameProcessor):
    """The avatar's media and HeyGen's events, pushed downstream."""

    def __init__(self, transport: HeyGenTransport) -> None:
        super().__init__(name=f"{transport.name}::input")
        self._transport = transport
        self.started = False

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, StartFrame):
            await self.push_frame(frame, direction)
            self.started = True
            self._transport._pipeline_started.set()
            await self._transport._start(self)
            return
        if isinstance(frame, EndFrame | CancelFrame):
            await self._transport._stop(f"pipeline {type(frame).__name__}")
        if isinstance(frame, HeyGenSpeakFrame) and direction is FrameDirection.UPSTREAM:
            # From a processor after the avatar (one that reacts to its transcripts).
            await self._transport._output._to_heygen(frame)
            return
        await self.push_frame(frame, direction)


class HeyGenOutput(FrameProcessor):
    """The user's side to HeyGen: audio, text to answer, speak requests, interruptions."""

    def __init__(self, transport: HeyGenTransport) -> None:
        super().__init__(name=f"{transport.name}::output")
        self._transport = transport
        #: Pieces of user audio sent (their size is the path's: see ``audio_seconds_sent``).
        self.audio_messages_sent = 0
        self.audio_seconds_sent = 0.0
        # User audio is a system frame: it arrives while StartFrame is still opening the
        # session. Hold the latest seconds of it instead of losing the first words.
        self._backlog: deque[InputAudioRawFrame] = deque()
        self._backlog_s = 0.0
        self._speech_backlog: deque[TTSAudioRawFrame | TTSStoppedFrame] = deque()
        self._sentences = SentenceSplitter()
        self._warned: set[str] = set()
        self._words: list[str] = []  # the bot's TTS words of the utterance being spoken

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        t = self._transport
        if isinstance(frame, StartFrame):
            await self.push_frame(frame, direction)
            await t._start(self)
            return
        if isinstance(frame, EndFrame | CancelFrame):
            # Stop first: once the end has passed, the pipeline may tear down around us.
            await t._stop(f"pipeline {type(frame).__name__}")
            await self.push_frame(frame, direction)
            return
        if direction is FrameDirection.DOWNSTREAM and await self._to_heygen(frame):
            return
        await self.push_frame(frame, direction)

    async def _to_heygen(self, frame: Frame) -> bool:
        """Send what is meant for HeyGen; ``True`` if the frame was consumed."""
        t = self._transport
        if isinstance(frame, InputAudioRawFrame):
            await self._send_audio(frame)
            return False  # user audio stays in the pipeline for whoever wants it
        if isinstance(frame, HeyGenSpeakFrame):
            await self._say([frame.text], frame.task_type)
            return True
        if isinstance(frame, HeyGenPushToTalkFrame):
            await self._guarded(t.session.push_to_talk(frame.talking))
            return True
        if type(frame) in (TextFrame, LLMTextFrame):
            # The bot's own words: said verbatim in HeyGen's voice, sentence by sentence
            # as they complete. (With lip-sync, the bot's TTS says them instead.)
            assert isinstance(frame, TextFrame)
            if not t.session.takes_audio:
                await self._say(self._sentences.push(frame.text), ia.TaskType.REPEAT)
            return False
        if isinstance(frame, LLMFullResponseEndFrame) and not t.session.takes_audio:
            await self._say(self._sentences.flush(), ia.TaskType.REPEAT)
            return False
        if isinstance(frame, InterruptionFrame):
            self._forget_queued()
        if t.session.takes_audio and isinstance(frame, TTSTextFrame):
            self._words.append(frame.text)  # what the avatar will say: its transcript
            return False
        if t.session.takes_audio and isinstance(frame, TTSAudioRawFrame | TTSStoppedFrame):
            if isinstance(frame, TTSStoppedFrame) and self._words:
                t._utterances.append(join_words(self._words))
                self._words.clear()
            # Own brain: the bot's TTS is what the avatar says, lip-synced; its voice comes
            # back from input() with the video, so the raw TTS audio goes no further.
            await self._speak(frame)
            return isinstance(frame, TTSAudioRawFrame)
        # The avatar speaking, or the bot's speech still on its way to it.
        speaking = t.avatar_speaking or t.session.speech_pending
        if (isinstance(frame, InterruptionFrame) and speaking) or (
            isinstance(frame, VADUserStartedSpeakingFrame)
            and t.params.interrupt_on_user_speech
            and speaking
        ):
            # (an interruption the local VAD alone heard: HeyGen drops the queued speech,
            # so its words must go too, or the next utterance would be told with them)
            self._forget_queued()
            await self._guarded(t.session.interrupt())
        return False

    def _forget_queued(self) -> None:
        """The user interrupts: the bot's speech not yet said is dropped, everywhere it
        waits: sentences being put together, speech held while the session starts, and
        the words of the utterances sent (their transcripts would pair with later ones)."""
        self._sentences.clear()
        self._speech_backlog.clear()
        self._words.clear()
        self._transport._utterances.clear()

    async def _speak(self, frame: TTSAudioRawFrame | TTSStoppedFrame) -> None:
        session = self._transport.session
        if session.state in (SessionState.IDLE, SessionState.STARTING):
            # Speech before the avatar is there (a greeting): said once it is.
            self._speech_backlog.append(frame)
            if len(self._speech_backlog) > SPEECH_BACKLOG_FRAMES:
                self._speech_backlog.popleft()
            return
        while self._speech_backlog:
            await self._speak_now(self._speech_backlog.popleft())
        await self._speak_now(frame)

    async def _speak_now(self, frame: TTSAudioRawFrame | TTSStoppedFrame) -> None:
        session = self._transport.session
        if isinstance(frame, TTSAudioRawFrame):
            await self._guarded(session.speak_audio(frame.audio, frame.sample_rate,
                                                    frame.num_channels))
        else:
            await self._guarded(session.end_speech())

    async def _send_audio(self, frame: InputAudioRawFrame) -> None:
        session = self._transport.session
        if session.state in (SessionState.IDLE, SessionState.STARTING):
            if session.microphone_is_track:
                # A track plays out in real time: a backlog would become lasting latency.
                return
            self._backlog.append(frame)
            self._backlog_s += _seconds(frame)
            while self._backlog_s > BACKLOG_S:
                self._backlog_s -= _seconds(self._backlog.popleft())
            return
        while self._backlog:
            await self._send_now(self._backlog.popleft())
        self._backlog_s = 0.0
        await self._send_now(frame)

    async def _send_now(self, frame: InputAudioRawFrame) -> None:
        session = self._transport.session
        pieces = await session.send_audio(frame.audio, frame.sample_rate, frame.num_channels)
        self.audio_messages_sent += pieces
        self.audio_seconds_sent += pieces * session.audio_piece_s

    async def _say(self, texts: list[str], task_type: ia.TaskType) -> None:
        for text in texts:
            if not text.strip():
                continue
            try:
                await self._transport.speak(text, task_type=task_type)
            except NotImplementedError as exc:  # this backend and mode cannot say text
                self._warn_once(str(exc))
            except Exception as exc:
                await self.push_error(f"HeyGen: {exc}", exc)

    def _warn_once(self, message: str) -> None:
        if message not in self._warned:
            self._warned.add(message)
            logger.warning(f"HeyGen: {message} (said once; such frames are ignored)")

    async def _guarded(self, call: Any) -> None:
        try:
            await call
        except Exception as exc:
            await self.push_error(f"HeyGen: {exc}", exc)


def _ticks_ended(task: asyncio.Task[None]) -> None:
    """BotSpeakingFrame ticks end by cancellation; a failure (the pipeline torn down
    under them) is logged, not left for asyncio to print."""
    if not task.cancelled() and task.exception() is not None:
        logger.debug(f"HeyGen BotSpeakingFrame ticks ended: {task.exception()!r}")


def _seconds(frame: InputAudioRawFrame) -> float:
    return len(frame.audio) / (2 * frame.num_channels * frame.sample_rate)
