"""A WAV file played into the pipeline in real time, as a microphone would deliver it.

For tests and headless runs: the pipeline downstream (VAD, HeyGen's socket) sees the
same 20 ms cadence it gets from a sound card, so timing results mean something.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Literal

from loguru import logger
from pipecat.frames.frames import (
    CancelFrame,
    EndFrame,
    EndWorkerFrame,
    Frame,
    InputAudioRawFrame,
    StartFrame,
)
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor

from agent.media.wav_file import read_wav

FRAME_S = 0.02
AfterEnd = Literal["silence", "end", "loop"]


class WavFileInput(FrameProcessor):
    """Plays ``path`` at real-time pace from the pipeline's start, or from when
    ``start_when`` is set.

    ``after_end``: keep sending silence (a microphone in a quiet room), end the pipeline,
    or play the file again. ``lead_in_s`` of silence comes first. ``start_when``: an event
    the far end sets once it can hear (the transport's session started, see
    :attr:`agent.heygen.transport.HeyGenTransport.session_running`): a recording stands in
    for a person, who would not speak before the avatar is there, and audio sent before
    then may be lost (a LiveKit track carries nothing to no one)."""

    def __init__(
        self,
        path: str | Path,
        *,
        after_end: AfterEnd = "silence",
        lead_in_s: float = 0.0,
        start_when: asyncio.Event | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__(name=name)
        self.path = Path(path)
        self.audio, self.sample_rate, self.num_channels = read_wav(self.path)
        self.after_end = after_end
        self.lead_in_s = lead_in_s
        self.start_when = start_when
        self.frames_sent = 0
        self.seconds_sent = 0.0
        self.finished = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def duration_s(self) -> float:
        return len(self.audio) / (2 * self.num_channels * self.sample_rate)

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        # Stop playing before passing an end on: audio pushed after it would be lost.
        if isinstance(frame, EndFrame | CancelFrame) and self._task is not None:
            await self.cancel_task(self._task)
            self._task = None
        await self.push_frame(frame, direction)
        if isinstance(frame, StartFrame) and self._task is None:
            self._task = self.create_task(self._play(), "wav-playback")

    async def _play(self) -> None:
        if self.start_when is not None:
            await self.start_when.wait()
        step = int(self.sample_rate * FRAME_S) * 2 * self.num_channels
        silence = bytes(step)
        loop = asyncio.get_running_loop()
        deadline = loop.time()
        lead_in = [silence] * round(self.lead_in_s / FRAME_S)
        while True:
            pieces = lead_in + [self.audio[i : i + step] for i in range(0, len(self.audio), step)]
            lead_in = []
            for piece in pieces:
                deadline += FRAME_S  # absolute deadlines: no drift over a long file
                await self._send(piece)
                await asyncio.sleep(max(0.0, deadline - loop.time()))
            self.finished.set()
            if self.after_end == "end":
                logger.info(f"{self}: {self.path.name} finished; ending the pipeline")
                await self.push_frame(EndWorkerFrame(reason="input file finished"))
                return
            if self.after_end == "silence":
                while True:
                    deadline += FRAME_S
                    await self._send(silence)
                    await asyncio.sleep(max(0.0, deadline - loop.time()))

    async def _send(self, pcm: bytes) -> None:
        self.frames_sent += 1
        self.seconds_sent += len(pcm) / (2 * self.num_channels * self.sample_rate)
        await self.push_frame(
            InputAudioRawFrame(audio=pcm, sample_rate=self.sample_rate,
                               num_channels=self.num_channels)
        )
