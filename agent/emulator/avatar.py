"""The emulated avatar: a real participant in the session's LiveKit room.

It publishes a 25 fps video track (a face whose mouth moves with its voice, stamped with
a frame counter and send time) and a continuous audio track (silence, or its voice), and
by default sends HeyGen's session events on the data channel in the real order:
``avatar_start_talking`` → ``avatar_talking_message``… → ``avatar_end_message`` →
``avatar_stop_talking`` (with ``duration_ms``). An utterance may come with a narrator of
its own (LiveAvatar's events), told at the same moments instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from livekit import rtc
from loguru import logger

from agent.emulator.runtime import Narrator, StreamedAudio
from agent.emulator.speech import resample, synthesize, word_timings
from agent.emulator.video import MOUTH_STATES, FaceCanvas, FaceFrames
from agent.heygen.protocol import room_events as rev
from agent.heygen.protocol import voice_chat as vc
from agent.heygen.room_calls import publish_track

#: 40 ms audio frames: half the wake-ups of 20 ms; measured 9-11% of a core in all, from 12-15%
#: (one machine; 11-14% on another, see the README).
AUDIO_FRAME_S = 0.04
#: Loudness (RMS of s16) at which the mouth is drawn fully open.
OPEN_MOUTH_RMS = 6000.0


@dataclass
class _Playback:
    """One utterance being said: its audio (which may still be arriving) at the avatar's
    rate, read out in frames by the audio loop."""

    audio: StreamedAudio
    sample_rate: int
    pcm: bytearray = field(default_factory=bytearray)  # ``audio`` at ``sample_rate``
    converted: int = 0  # bytes of ``audio.pcm`` already in ``pcm``
    position: int = 0  # bytes played
    interrupted: bool = False
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def take(self, size: int) -> bytes:
        """The next ``size`` bytes, fewer (or none) if the audio has not arrived yet."""
        arrived = len(self.audio.pcm)
        if arrived > self.converted:
            fresh = bytes(self.audio.pcm[self.converted:arrived])
            self.pcm += resample(fresh, self.audio.sample_rate, self.sample_rate)
            self.converted = arrived
        chunk = bytes(self.pcm[self.position:self.position + size])
        self.position += len(chunk)
        return chunk

    @property
    def finished(self) -> bool:
        """All of it said, or cut short."""
        if self.audio.cut_short:
            return True
        return (self.audio.complete and self.converted == len(self.audio.pcm)
                and self.position >= len(self.pcm))


class RoomEventNarrator:
    """The Interactive API's session events on the data channel (heygen-protocol.md §3)."""

    def __init__(self, send: Callable[[rev.RoomEvent], Coroutine[Any, Any, None]]) -> None:
        self._send = send

    async def started(self, task_id: str) -> None:
        await self._send(rev.AvatarStartTalking(task_id=task_id))

    async def word(self, task_id: str, word: str) -> None:
        await self._send(rev.AvatarTalkingMessage(task_id=task_id, message=word))

    async def ended(self, task_id: str, duration_ms: float, *, interrupted: bool) -> None:
        await self._send(rev.AvatarEndMessage(task_id=task_id))
        await self._send(rev.AvatarStopTalking(task_id=task_id, duration_ms=duration_ms))


class AvatarParticipant:
    """Joins ``livekit_url`` with ``token`` and behaves like HeyGen's avatar."""

    def __init__(
        self,
        *,
        livekit_url: str,
        token: str,
        width: int = 640,
        height: int = 360,
        fps: int = 25,
        sample_rate: int = 24_000,
        publish_delay_s: float = 0.0,
        listen_delay_s: float = 0.0,
    ) -> None:
        self.livekit_url = livekit_url
        self._token = token
        self.fps = fps
        self.sample_rate = sample_rate
        self.publish_delay_s = publish_delay_s
        self.listen_delay_s = listen_delay_s
        #: (the listen-delay fault) when the avatar asked for the client's tracks
        self.listened_late_at: float | None = None
        self.faces = FaceFrames(width, height)
        self.room = rtc.Room()
        self.joined = False
        self.frames_sent = 0
        self.audio_seconds_sent = 0.0
        self._mouth = 0
        self._playback: _Playback | None = None
        self._speak_lock = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []
        self._left = False
        self._leaving: asyncio.Task[None] | None = None
        #: set once the tracks are published, or the avatar has left without them
        self._settled = asyncio.Event()
        self._published = False
        #: an utterance is being prepared (synthesised) and has no playback yet
        self._preparing = False
        self._interrupt_pending = False
        self.narrator = RoomEventNarrator(self.send_event)
        #: Called with True/False when the user's client sends push_to_talk:start/stop.
        self.on_push_to_talk: Callable[[bool], Coroutine[Any, Any, None]] | None = None
        #: Called with text the client sends on the data channel for the avatar to answer.
        self.on_talk_text: Callable[[str], Coroutine[Any, Any, None]] | None = None
        #: Called with each frame of a microphone a client publishes to the room (the
        #: LiveKit voice transport), as mono s16le at the voice-chat rate (16 kHz).
        self.on_user_audio: Callable[[bytes], Coroutine[Any, Any, None]] | None = None

    @property
    def speaking(self) -> bool:
        return self._playback is not None

    async def join(self) -> None:
        loop = asyncio.get_running_loop()

        @self.room.on("data_received")
        def _data(packet: rtc.DataPacket) -> None:
            message = rev.parse_client_message(packet.data)
            call: Coroutine[Any, Any, None] | None = None
            if isinstance(message, rev.PushToTalk) and self.on_push_to_talk is not None:
                call = self.on_push_to_talk(message.talking)
            elif isinstance(message, rev.TalkText) and self.on_talk_text is not None:
                call = self.on_talk_text(message.text)
            if call is not None:
                self._tasks.append(loop.create_task(call))

        @self.room.on("track_subscribed")
        def _track(track: rtc.Track, _pub: object, _who: rtc.RemoteParticipant) -> None:
            if track.kind == rtc.TrackKind.KIND_AUDIO:
                self._tasks.append(loop.create_task(self._hear(track), name="avatar-hears"))

        # The listen-delay fault: the client's tracks are subscribed only this much later.
        listen_late = self.listen_delay_s > 0

        def _listen(publication: rtc.RemoteTrackPublication) -> None:
            self._tasks.append(loop.create_task(self._subscribe_late(publication),
                                                name="avatar-listens-late"))

        @self.room.on("track_published")
        def _published(publication: rtc.RemoteTrackPublication, _who: object) -> None:
            if listen_late:
                _listen(publication)

        began = loop.time()
        await self.room.connect(self.livekit_url, self._token,
                                rtc.RoomOptions(auto_subscribe=not listen_late))
        if listen_late:
            for participant in self.room.remote_participants.values():
                for publication in participant.track_publications.values():
                    _listen(publication)
        self.joined = True
        logger.debug(f"emulated avatar joined {self.room.name} in {loop.time() - began:.2f} s")
        # ``streaming.start`` answers now; the tracks follow, as HeyGen's do (clients wait
        # for them). Publishing can take seconds on a loaded machine, and a REST answer
        # held up by it times out the client's start.
        self._tasks.append(loop.create_task(self._publish(), name="avatar-publish"))

    async def _subscribe_late(self, publication: rtc.RemoteTrackPublication) -> None:
        await asyncio.sleep(self.listen_delay_s)
        publication.set_subscribed(True)
        self.listened_late_at = asyncio.get_running_loop().time()

    async def _publish(self) -> None:
        loop = asyncio.get_running_loop()
        began = loop.time()
        await asyncio.sleep(self.publish_delay_s)  # the media-delay fault
        video = rtc.VideoSource(self.faces.width, self.faces.height)
        audio = rtc.AudioSource(self.sample_rate, 1, queue_size_ms=200)
        try:
            await publish_track(
                self.room, rtc.LocalVideoTrack.create_video_track("avatar-video", video),
                rtc.TrackPublishOptions(
                    source=rtc.TrackSource.SOURCE_CAMERA,
                    simulcast=False,
                    video_encoding=rtc.VideoEncoding(max_framerate=self.fps,
                                                     max_bitrate=500_000),
                ),
            )
            await publish_track(
                self.room, rtc.LocalAudioTrack.create_audio_track("avatar-audio", audio),
                rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE),
            )
        except Exception as exc:
            # No media will come: leave, as HeyGen's avatar would drop out; the client
            # sees the avatar go and ends the session.
            logger.error(f"emulated avatar could not publish its media: {exc}")
            self._leaving = loop.create_task(self.leave(), name="avatar-leave")
            return
        self._published = True
        self._settled.set()
        logger.debug(f"emulated avatar in {self.room.name} published its media in "
                     f"{loop.time() - began:.2f} s")
        self._tasks += [
            loop.create_task(self._publish_video(video), name="avatar-video"),
            loop.create_task(self._publish_audio(audio), name="avatar-audio"),
        ]

    async def in_room(self) -> bool:
        await self._settled.wait()
        return self._published and not self._left

    async def speak(
        self, text: str, *, task_id: str, narrator: Narrator | None = None
    ) -> float:
        self._require_in_room()  # before synthesising: nothing would ever say it
        self._preparing = True
        try:
            pcm = await asyncio.to_thread(synthesize, text, self.sample_rate)
            words = word_timings(text, len(pcm) / 2 / self.sample_rate)
            audio = StreamedAudio(self.sample_rate, pcm, complete=True)
            return await self._perform(audio, task_id, words, narrator or self.narrator)
        finally:
            self._preparing = self._interrupt_pending = False

    async def play(
        self, pcm: bytes, sample_rate: int, *, task_id: str, narrator: Narrator | None = None
    ) -> float:
        audio = StreamedAudio(sample_rate, pcm, complete=True)
        return await self.stream(audio, task_id=task_id, narrator=narrator)

    async def stream(
        self, audio: StreamedAudio, *, task_id: str, narrator: Narrator | None = None
    ) -> float:
        """Say ``audio`` as it arrives; a pause in its arrival is a pause in the voice."""
        self._preparing = True
        try:
            return await self._perform(audio, task_id, [], narrator or self.narrator)
        finally:
            self._preparing = self._interrupt_pending = False

    async def interrupt(self) -> None:
        if self._playback is not None:
            self._playback.interrupted = True
        elif self._preparing:  # not saying it yet: it must not start
            self._interrupt_pending = True

    async def send_event(self, event: rev.RoomEvent) -> None:
        if self.joined and not self._left:
            await self.room.local_participant.publish_data(event.to_json(), reliable=True)

    async def leave(self) -> None:
        if self._left:
            return
        self._left = True
        self._settled.set()
        if self._playback is not None:  # its audio loop is about to stop: release it here
            self._playback.interrupted = True
            self._playback.done.set()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self.joined:
            with contextlib.suppress(Exception):
                await self.room.disconnect()
        self.joined = False

    # ------------------------------------------------------------------ internals

    def _require_in_room(self) -> None:
        """Without the room there is no audio loop to finish an utterance (after the
        avatar-leave fault, say): fail at once rather than wait forever."""
        if self._left or not self.joined:
            raise RuntimeError("the avatar is not in the room")

    async def _perform(
        self, audio: StreamedAudio, task_id: str, words: list[tuple[float, str]],
        narrator: Narrator,
    ) -> float:
        """Say ``audio`` with the narrator told around it; returns the milliseconds said
        (none, and nothing told, if it was interrupted before it began)."""
        self._require_in_room()
        async with self._speak_lock:
            if self._interrupt_pending:
                return 0.0
            # No await between the check above and this: an interrupt from now on
            # finds the playback.
            playback = _Playback(audio, self.sample_rate)
            self._playback = playback
            await narrator.started(task_id)
            pending = list(words)
            started = asyncio.get_running_loop().time()
            try:
                # Sleep until the next word is due (or the voice ends): no polling.
                while pending and not playback.done.is_set():
                    delay = started + pending[0][0] - asyncio.get_running_loop().time()
                    if delay > 0:
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(playback.done.wait(), delay)
                        continue
                    _, word = pending.pop(0)
                    await narrator.word(task_id, word)
                await playback.done.wait()
            finally:
                self._playback = None
            duration_ms = playback.position / 2 / self.sample_rate * 1000
            interrupted = playback.interrupted or audio.cut_short
            if not interrupted:
                for _, word in pending:
                    await narrator.word(task_id, word)
            await narrator.ended(task_id, duration_ms, interrupted=interrupted)
            return duration_ms

    async def _publish_audio(self, source: rtc.AudioSource) -> None:
        loop = asyncio.get_running_loop()
        size = int(self.sample_rate * AUDIO_FRAME_S) * 2
        silence = bytes(size)
        deadline = loop.time()
        while True:
            chunk = silence
            playback = self._playback
            if playback is not None and not playback.done.is_set():
                if playback.interrupted:
                    playback.done.set()
                else:
                    said = playback.take(size)
                    if playback.finished:
                        playback.done.set()
                    if said:  # else the audio has not arrived yet: silence meanwhile
                        chunk = said.ljust(size, b"\0")
            self._mouth = _mouth_for(chunk) if chunk is not silence else 0
            frame = rtc.AudioFrame(chunk, self.sample_rate, 1, size // 2)
            await source.capture_frame(frame)
            self.audio_seconds_sent += AUDIO_FRAME_S
            deadline += AUDIO_FRAME_S  # absolute deadlines: no drift
            await asyncio.sleep(max(0.0, deadline - loop.time()))

    async def _hear(self, track: rtc.Track) -> None:
        stream = rtc.AudioStream(track, sample_rate=vc.SAMPLE_RATE, num_channels=1)
        try:
            async for event in stream:
                if self.on_user_audio is not None:
                    await self.on_user_audio(bytes(event.frame.data))
        finally:
            await stream.aclose()

    async def _publish_video(self, source: rtc.VideoSource) -> None:
        loop = asyncio.get_running_loop()
        period = 1 / self.fps
        deadline = loop.time()
        canvas = FaceCanvas(self.faces)
        frame = rtc.VideoFrame(self.faces.width, self.faces.height, rtc.VideoBufferType.I420,
                               canvas.buffer)
        while True:
            now_ms = int(time.time() * 1000)
            canvas.draw(self._mouth, self.frames_sent, now_ms)
            source.capture_frame(frame, timestamp_us=now_ms * 1000)
            self.frames_sent += 1
            deadline += period
            delay = deadline - loop.time()
            if delay < -1.0:  # starved for a second: start the clock again, don't burst
                logger.warning("emulated avatar video fell behind; frames skipped")
                deadline = loop.time()
            await asyncio.sleep(max(0.0, delay))


def _mouth_for(chunk: bytes) -> int:
    samples = np.frombuffer(chunk, "<i2").astype(np.float32)
    rms = float(np.sqrt(np.mean(samples * samples))) if len(samples) else 0.0
    return min(MOUTH_STATES - 1, int(rms / OPEN_MOUTH_RMS * MOUTH_STATES))
