"""What runs for one emulated session while it is open: its avatar and its speech queue.

HeyGen queues ``talk``/``repeat`` tasks and speaks them one after another; an interrupt
drops the current one and everything queued. The avatar is a real LiveKit participant
when the emulator has a LiveKit server, and a timer that only keeps time otherwise
(REST-only tests need no media).

Each protocol tells its client about the avatar's speech in its own words (the Interactive
API's room events, LiveAvatar's ``agent-response`` events, a socket's speak events), at
the same moments: a :class:`Narrator` given with an utterance hears when it starts, each
word as it is said and when it ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

from aiohttp import web
from loguru import logger

from agent.emulator.sessions import Session
from agent.heygen.protocol.room_events import RoomEvent

#: Rough speaking rate of espeak-ng at its default speed; used where no audio exists.
SECONDS_PER_CHARACTER = 0.07


class Narrator(Protocol):
    """What the avatar says, told as it says it: :meth:`started` when its voice begins,
    :meth:`word` for each word in time with the voice (text only), :meth:`ended` when it
    stops, ``interrupted`` when cut short (the words not said are then never told)."""

    async def started(self, task_id: str) -> None: ...
    async def word(self, task_id: str, word: str) -> None: ...
    async def ended(self, task_id: str, duration_ms: float, *, interrupted: bool) -> None: ...


class SilentNarrator:
    """Tells nobody: an avatar with no room has no channel to tell it on."""

    async def started(self, task_id: str) -> None:
        return None

    async def word(self, task_id: str, word: str) -> None:
        return None

    async def ended(self, task_id: str, duration_ms: float, *, interrupted: bool) -> None:
        return None


class StreamedAudio:
    """One utterance's PCM (s16le mono), which may still be arriving: a client's own TTS
    streams it in chunks (``agent.speak``) and the avatar says it as it comes, as HeyGen's
    does, rather than after the last chunk. :meth:`finish` says no more will come;
    :meth:`cut` ends it where it is (what has not been said is dropped)."""

    def __init__(self, sample_rate: int, pcm: bytes = b"", *, complete: bool = False) -> None:
        self.sample_rate = sample_rate
        self.pcm = bytearray(pcm)
        self.cut_short = False
        self._complete = asyncio.Event()
        self._on_finish: list[Callable[[], None]] = []
        if complete:
            self._complete.set()

    @property
    def complete(self) -> bool:
        return self._complete.is_set()

    @property
    def duration_s(self) -> float:
        return len(self.pcm) / 2 / self.sample_rate

    def append(self, pcm: bytes) -> None:
        if not self.complete:
            self.pcm += pcm

    def finish(self) -> None:
        if not self.complete:
            self._complete.set()
            for callback in self._on_finish:
                callback()

    def cut(self) -> None:
        self.cut_short = True
        self.finish()

    def on_finish(self, callback: Callable[[], None]) -> None:
        if self.complete:
            callback()
        else:
            self._on_finish.append(callback)

    async def wait_complete(self) -> None:
        await self._complete.wait()


class Avatar(Protocol):
    async def join(self) -> None: ...
    async def in_room(self) -> bool:
        """Wait until the avatar is in its room with its media (``True``), or has left it
        without (``False``)."""
        ...
    async def speak(
        self, text: str, *, task_id: str, narrator: Narrator | None = None
    ) -> float: ...
    async def play(
        self, pcm: bytes, sample_rate: int, *, task_id: str, narrator: Narrator | None = None
    ) -> float: ...
    async def stream(
        self, audio: StreamedAudio, *, task_id: str, narrator: Narrator | None = None
    ) -> float: ...
    async def interrupt(self) -> None: ...
    async def send_event(self, event: RoomEvent) -> None: ...
    async def leave(self) -> None: ...


class RoomListener(Protocol):
    """What a voice-chat socket hears through the room rather than on itself (the
    LiveKit voice transport): push-to-talk commands and the user's microphone."""

    async def on_push_to_talk(self, talking: bool) -> None: ...
    async def on_user_audio(self, pcm: bytes) -> None: ...


class TimedAvatar:
    """An avatar with no media: it takes as long to "speak" as speech would, and tells a
    narrator given with an utterance (the words all at its end)."""

    def __init__(self) -> None:
        self._interrupted = asyncio.Event()
        self.events: list[RoomEvent] = []

    async def join(self) -> None:
        return None

    async def in_room(self) -> bool:
        return True

    async def speak(
        self, text: str, *, task_id: str, narrator: Narrator | None = None
    ) -> float:
        # silence of the speech's length, at a rate whose samples are milliseconds
        audio = StreamedAudio(1000, bytes(round(estimate_duration_s(text) * 1000) * 2),
                              complete=True)
        return await self._take(audio, task_id, narrator or SilentNarrator(), text.split())

    async def play(
        self, pcm: bytes, sample_rate: int, *, task_id: str, narrator: Narrator | None = None
    ) -> float:
        audio = StreamedAudio(sample_rate, pcm, complete=True)
        return await self.stream(audio, task_id=task_id, narrator=narrator)

    async def stream(
        self, audio: StreamedAudio, *, task_id: str, narrator: Narrator | None = None
    ) -> float:
        return await self._take(audio, task_id, narrator or SilentNarrator(), [])

    async def _take(
        self, audio: StreamedAudio, task_id: str, narrator: Narrator, words: list[str]
    ) -> float:
        """As long as ``audio`` lasts from now, or until it is complete, or interrupted."""
        self._interrupted.clear()
        loop = asyncio.get_running_loop()
        started = loop.time()
        await narrator.started(task_id)
        interrupted = False
        while not interrupted and not audio.cut_short:
            remaining = started + audio.duration_s - loop.time()
            if audio.complete and remaining <= 0:
                break
            waits: list[asyncio.Future[object]] = [
                asyncio.ensure_future(self._interrupted.wait())]
            if not audio.complete:
                waits.append(asyncio.ensure_future(audio.wait_complete()))
            _, pending = await asyncio.wait(
                waits, timeout=max(remaining, 0) if audio.complete else None,
                return_when=asyncio.FIRST_COMPLETED)
            for waiter in pending:
                waiter.cancel()
            interrupted = self._interrupted.is_set()
        interrupted = interrupted or audio.cut_short
        duration_ms = min(loop.time() - started, audio.duration_s) * 1000
        if not interrupted:
            for word in words:
                await narrator.word(task_id, word)
        await narrator.ended(task_id, duration_ms, interrupted=interrupted)
        return duration_ms

    async def interrupt(self) -> None:
        self._interrupted.set()

    async def send_event(self, event: RoomEvent) -> None:
        self.events.append(event)

    async def leave(self) -> None:
        self._interrupted.set()


def estimate_duration_s(text: str) -> float:
    return max(0.3, len(text) * SECONDS_PER_CHARACTER)


def answer_text(user_text: str) -> str:
    """The emulated HeyGen brain: deterministic, so tests can expect its words."""
    return f"You said: {user_text.strip()}"


def answer_to_speech(seconds: float) -> str:
    return f"I heard {seconds:.1f} seconds of speech."


def transcript_of_speech(seconds: float) -> str:
    """The emulated speech-to-text: what it "heard" is how long the user spoke, which a
    test can know from the audio it sent."""
    return f"({seconds:.1f} seconds of speech)"


@dataclass
class _Utterance:
    """Text to speak, or PCM to lip-sync (``audio``, perhaps still arriving)."""

    text: str
    task_id: str
    done: asyncio.Future[float]
    audio: StreamedAudio | None = None
    narrator: Narrator | None = None


Closer = Callable[[], Awaitable[None]]


@dataclass
class SessionRuntime:
    session: Session
    avatar: Avatar
    sockets: set[web.WebSocketResponse] = field(default_factory=set)
    _queue: asyncio.Queue[_Utterance] = field(default_factory=asyncio.Queue)
    _worker: asyncio.Task[None] | None = None
    _closed: bool = False
    #: Marks the session active (its idle timer restarts).
    touch: Callable[[], None] = lambda: None
    #: The session's voice-chat sockets, for what the avatar hears in the room.
    listeners: list[RoomListener] = field(default_factory=list)
    #: Run first when the session ends, while the avatar is still in its room: what must
    #: tell the client (LiveAvatar's ``session.stopped``, a socket's ``closed``) first.
    closers: list[Closer] = field(default_factory=list)

    def __post_init__(self) -> None:
        # Only an avatar in a LiveKit room hears anything there. The data-channel
        # commands (push-to-talk, text to answer) are the Interactive API's: a LiveAvatar
        # session's avatar takes its commands on its own topic (agent.emulator.liveavatar).
        hooks: list[tuple[str, Callable[..., Awaitable[None]]]] = [
            ("on_user_audio", self.user_audio)]
        if self.session.liveavatar is None:
            hooks += [("on_push_to_talk", self.push_to_talk), ("on_talk_text", self.talk_text)]
        for hook, handler in hooks:
            if hasattr(self.avatar, hook):
                setattr(self.avatar, hook, handler)
        self._worker = asyncio.get_running_loop().create_task(
            self._speak_queued(), name=f"emulator-speech-{self.session.session_id[:8]}"
        )

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def speaking(self) -> bool:
        return getattr(self.avatar, "speaking", False) is True

    def say(
        self, text: str, narrator: Narrator | None = None
    ) -> tuple[str, asyncio.Future[float]]:
        """Queue ``text``; the future resolves to the spoken duration in ms (0 if it was
        dropped unsaid). ``narrator`` hears it said (by default, the avatar's own)."""
        return self._enqueue(_Utterance(text, secrets.token_hex(8), self._future(),
                                        narrator=narrator))

    def stream(
        self, audio: StreamedAudio, narrator: Narrator | None = None
    ) -> tuple[str, asyncio.Future[float]]:
        """Queue audio from the client's own TTS, which may still be arriving (the
        realtime and LITE sockets' ``agent.speak``)."""
        task_id = secrets.token_hex(8)
        utterance = _Utterance("", task_id, self._future(), audio, narrator)
        self._enqueue(utterance)
        record = self.session.tasks[-1]
        audio.on_finish(lambda: record.update(audio_bytes=len(audio.pcm)))
        return task_id, utterance.done

    def _future(self) -> asyncio.Future[float]:
        return asyncio.get_running_loop().create_future()

    def _enqueue(self, utterance: _Utterance) -> tuple[str, asyncio.Future[float]]:
        self._queue.put_nowait(utterance)
        audio = utterance.audio
        self.session.tasks.append({"task_id": utterance.task_id, "text": utterance.text,
                                   "audio_bytes": len(audio.pcm) if audio else 0})
        return utterance.task_id, utterance.done

    async def interrupt(self) -> None:
        while not self._queue.empty():
            self._queue.get_nowait().done.set_result(0.0)
        await self.avatar.interrupt()

    async def push_to_talk(self, talking: bool) -> None:
        self.touch()
        self.session.push_to_talk_events.append("start" if talking else "stop")
        for listener in list(self.listeners):
            await listener.on_push_to_talk(talking)

    async def talk_text(self, text: str) -> None:
        """An async talk sent on the data channel: answered like a text frame."""
        logger.debug(f"emulator: talk text on the data channel: {text!r}")
        self.touch()
        self.session.audio.room_texts += 1
        self.say(answer_text(text))

    async def user_audio(self, pcm: bytes) -> None:
        self.touch()
        for listener in list(self.listeners):
            await listener.on_user_audio(pcm)

    async def send_event(self, event: RoomEvent) -> None:
        try:
            await self.avatar.send_event(event)
        except Exception as exc:  # a room that went away must not fail the request
            logger.warning(f"emulator: could not send {event.type}: {exc}")

    async def close(self) -> None:
        """End everything this session runs; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        for closer in list(self.closers):
            try:
                await closer()
            except Exception as exc:
                logger.warning(f"emulator: a session's part did not end cleanly: {exc}")
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
        while not self._queue.empty():
            self._queue.get_nowait().done.set_result(0.0)
        for ws in list(self.sockets):
            with contextlib.suppress(Exception):
                await ws.close(code=1000, message=b"session ended")
        try:
            await self.avatar.leave()
        except Exception as exc:
            logger.warning(f"emulator: avatar did not leave cleanly: {exc}")

    async def _speak_queued(self) -> None:
        while True:
            utterance = await self._queue.get()
            try:
                if utterance.audio is not None:
                    duration = await self.avatar.stream(
                        utterance.audio, task_id=utterance.task_id, narrator=utterance.narrator
                    )
                else:
                    duration = await self.avatar.speak(
                        utterance.text, task_id=utterance.task_id, narrator=utterance.narrator
                    )
            except asyncio.CancelledError:
                if not utterance.done.done():
                    utterance.done.set_result(0.0)
                raise
            except Exception as exc:
                logger.warning(f"emulator: avatar failed to speak: {exc}")
                duration = 0.0
            if not utterance.done.done():
                utterance.done.set_result(duration)
