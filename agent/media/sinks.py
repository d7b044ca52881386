"""A sink for ``outputs: none`` and tests: counts what passes, keeps nothing."""

from __future__ import annotations

from collections import Counter

from pipecat.frames.frames import Frame
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor


class NullSink(FrameProcessor):
    def __init__(self, *, name: str | None = None) -> None:
        super().__init__(name=name)
        self.counts: Counter[str] = Counter()

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if direction is FrameDirection.DOWNSTREAM:
            self.counts[type(frame).__name__] += 1
        await self.push_frame(frame, direction)
