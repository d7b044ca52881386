"""The client's own TTS, lip-synced by the avatar: what the realtime socket (§4) and
LiveAvatar's LITE socket (§5) both do, under different message names.

``agent.speak`` chunks stream into one utterance, which joins the session's speech queue
at its first chunk and which the avatar says as the audio arrives (HeyGen's avatar starts
speaking before the last chunk, which is why clients send a short first chunk);
``agent.speak_end`` closes it; ``agent.interrupt`` cuts it short and drops everything
queued. What a socket tells its client about an utterance (the realtime socket's
``agent.state_updated``, LITE's ``agent.speak_started|ended|interrupted``) is the socket's
own, through :class:`UtteranceListener`: each utterance is told as started and then as
ended or interrupted, or, if it was dropped before it began, only as interrupted.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Protocol

from loguru import logger

from agent.emulator.runtime import SessionRuntime, StreamedAudio


@dataclass(eq=False)
class Utterance:
    """One utterance of the client's audio. ``event_id`` is the client's id for it."""

    event_id: str
    audio: StreamedAudio
    started: bool = False
    over: bool = False


class UtteranceListener(Protocol):
    async def utterance_started(self, utterance: Utterance) -> None: ...
    async def utterance_ended(self, utterance: Utterance, *, interrupted: bool) -> None: ...


class LipSync:
    """One socket's utterances, from its ``agent.speak`` chunks to the avatar's mouth.

    ``by_event_id``: whether a chunk with another ``event_id`` begins a new utterance
    (LITE, where every chunk of one utterance shares its id) or joins the open one (the
    realtime socket, where Pipecat gives every message a new id and only
    ``agent.speak_end`` ends an utterance)."""

    def __init__(
        self, runtime: SessionRuntime, listener: UtteranceListener, *, sample_rate: int,
        by_event_id: bool,
    ) -> None:
        self.runtime = runtime
        self.listener = listener
        self.sample_rate = sample_rate
        self.by_event_id = by_event_id
        self._open: Utterance | None = None
        self._live: set[Utterance] = set()  # queued or being said
        self._reports: set[asyncio.Task[None]] = set()

    @property
    def speaking(self) -> bool:
        """Whether any utterance of this socket is being said."""
        return any(u.started and not u.over for u in self._live)

    def speak(self, pcm: bytes, event_id: str) -> bool:
        """Add a chunk; ``True`` if it began a new utterance."""
        current = self._open
        if current is not None and self.by_event_id and event_id != current.event_id:
            current.audio.finish()  # a new id: the last utterance has all it will get
            current = self._open = None
        new = current is None
        if current is None:
            current = self._begin(event_id)
        current.audio.append(pcm)
        return new

    def end(self, event_id: str = "") -> Utterance | None:
        """Close the open utterance (with LITE, only the one ``event_id`` names, or any
        if it names none); the avatar says the rest of it and stops."""
        current = self._open
        if current is None:
            return None
        if self.by_event_id and event_id and event_id != current.event_id:
            logger.debug(f"emulator: speak_end for {event_id!r}, open is {current.event_id!r}")
            return None
        current.audio.finish()
        self._open = None
        return current

    def discard(self) -> None:
        """Drop the open utterance where it is (the realtime socket's buffer clear)."""
        if self._open is not None:
            self._open.audio.cut()
            self._open = None

    async def interrupt(self) -> None:
        """Stop what the avatar says and drop what is queued, this socket's or not."""
        if self._open is not None:
            self._open.audio.finish()
            self._open = None
        await self.runtime.interrupt()

    def close(self) -> None:
        """The socket is gone: the open utterance gets no more audio (what came is said),
        and nothing more is told."""
        self.end()
        for report in self._reports:
            report.cancel()

    def _begin(self, event_id: str) -> Utterance:
        utterance = Utterance(event_id, StreamedAudio(self.sample_rate))
        self._open = utterance
        self._live.add(utterance)
        _, done = self.runtime.stream(utterance.audio, narrator=_Narrator(self, utterance))
        done.add_done_callback(lambda _: self._finished(utterance))
        return utterance

    def _finished(self, utterance: Utterance) -> None:
        """The queue is done with it: if the avatar never told its end (dropped from the
        queue, or the avatar could not say it), it was interrupted."""
        self._live.discard(utterance)
        if self._open is utterance:
            self._open = None
        if not utterance.over:
            utterance.over = True
            report = asyncio.get_running_loop().create_task(
                self.tell(self.listener.utterance_ended(utterance, interrupted=True)))
            self._reports.add(report)
            report.add_done_callback(self._reports.discard)

    @staticmethod
    async def tell(report: Awaitable[None]) -> None:
        """A report to the client; a socket that went away meanwhile is not an error."""
        try:
            await report
        except Exception as exc:
            logger.debug(f"emulator: could not tell the client about its audio: {exc}")


class _Narrator:
    """What the avatar tells about one utterance, passed on to the socket's listener."""

    def __init__(self, lipsync: LipSync, utterance: Utterance) -> None:
        self.lipsync = lipsync
        self.utterance = utterance

    async def started(self, task_id: str) -> None:
        self.utterance.started = True
        await self.lipsync.tell(self.lipsync.listener.utterance_started(self.utterance))

    async def word(self, task_id: str, word: str) -> None:
        return None  # audio has no words

    async def ended(self, task_id: str, duration_ms: float, *, interrupted: bool) -> None:
        if self.utterance.over:
            return
        self.utterance.over = True
        await self.lipsync.tell(
            self.lipsync.listener.utterance_ended(self.utterance, interrupted=interrupted))
