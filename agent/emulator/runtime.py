"""What runs for one emulated session while it is open: its avatar and its speech queue.

HeyGen queues ``talk``/``repeat`` tasks and speaks them one after another; an interrupt
drops the current one and everything queued. The avatar is a real LiveKit participant
when the emulator has a LiveKit server, and a timer that only keeps time otherwise
(REST-only tests need no media).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from aiohttp import web
from loguru import logger

from agent.emulator.sessions import Session
from agent.heygen.protocol.room_events import RoomEvent

#: Rough speaking rate of espeak-ng at its default speed; used where no audio exists.
SECONDS_PER_CHARACTER = 0.07


class Avatar(Protocol):
    async def join(self) -> None: ...
    async def speak(self, text: str, *, task_id: str) -> float: ...
    async def play(self, pcm: bytes, sample_rate: int, *, task_id: str) -> float: ...
    async def interrupt(self) -> None: ...
    async def send_event(self, event: RoomEvent) -> None: ...
    async def leave(self) -> None: ...


class RoomListener(Protocol):
    """What a voice-chat socket hears through the room rather than on itself (the
    LiveKit voice transport): push-to-talk commands and the user's microphone."""

    async def on_push_to_talk(self, talking: bool) -> None: ...
    async def on_user_audio(self, pcm: bytes) -> None: ...


class TimedAvatar:
    """An avatar with no media: it takes as long to "speak" as speech would."""

    def __init__(self) -> None:
        self._interrupted = asyncio.Event()
        self.events: list[RoomEvent] = []

    async def join(self) -> None:
        return None

    async def speak(self, text: str, *, task_id: str) -> float:
        return await self._take(estimate_duration_s(text))

    async def play(self, pcm: bytes, sample_rate: int, *, task_id: str) -> float:
        return await self._take(len(pcm) / 2 / sample_rate)

    async def _take(self, duration_s: float) -> float:
        self._interrupted.clear()
        started = asyncio.get_running_loop().time()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._interrupted.wait(), duration_s)
        return (asyncio.get_running_loop().time() - started) * 1000

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


@dataclass
class _Utterance:
    """Text to speak, or PCM to lip-sync (``audio`` at ``sample_rate``)."""

    text: str
    task_id: str
    done: asyncio.Future[float]
    audio: bytes | None = None
    sample_rate: int = 0


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

    def __post_init__(self) -> None:
        # Only an avatar in a LiveKit room hears anything there.
        for hook, handler in [("on_push_to_talk", self.push_to_talk),
                              ("on_talk_text", self.talk_text),
                              ("on_user_audio", self.user_audio)]:
            if hasattr(self.avatar, hook):
                setattr(self.avatar, hook, handler)
        self._worker = asyncio.get_running_loop().create_task(
            self._speak_queued(), name=f"emulator-speech-{self.session.session_id[:8]}"
        )

    @property
    def speaking(self) -> bool:
        return getattr(self.avatar, "speaking", False) is True

    def say(self, text: str) -> tuple[str, asyncio.Future[float]]:
        """Queue ``text``; the future resolves to the spoken duration in ms."""
        return self._enqueue(text)

    def play(self, pcm: bytes, sample_rate: int) -> tuple[str, asyncio.Future[float]]:
        """Queue audio from the client's own TTS (the realtime socket's ``agent.speak``)."""
        return self._enqueue("", audio=pcm, sample_rate=sample_rate)

    def _enqueue(
        self, text: str, audio: bytes | None = None, sample_rate: int = 0
    ) -> tuple[str, asyncio.Future[float]]:
        task_id = secrets.token_hex(8)
        done: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Utterance(text, task_id, done, audio, sample_rate))
        self.session.tasks.append(
            {"task_id": task_id, "text": text, "audio_bytes": len(audio or b"")}
        )
        return task_id, done

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
                    duration = await self.avatar.play(
                        utterance.audio, utterance.sample_rate, task_id=utterance.task_id
                    )
                else:
                    duration = await self.avatar.speak(utterance.text, task_id=utterance.task_id)
            except asyncio.CancelledError:
                if not utterance.done.done():
                    utterance.done.set_result(0.0)
                raise
            except Exception as exc:
                logger.warning(f"emulator: avatar failed to speak: {exc}")
                duration = 0.0
            if not utterance.done.done():
                utterance.done.set_result(duration)
