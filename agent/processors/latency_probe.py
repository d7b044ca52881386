"""Measures how long the avatar takes to answer: from the end of the user's turn to the
avatar starting to speak, as the user experiences it."""

from __future__ import annotations

import time

from loguru import logger
from pipecat.frames.frames import (
    BotStartedSpeakingFrame,
    Frame,
    UserStoppedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor


class LatencyProbe(FrameProcessor):
    """Place it after the transport's input(). The turn ends at the local VAD's stop when
    there is one (what the user perceives), else at HeyGen's ``user_stop``."""

    def __init__(self, log: bool = True) -> None:
        super().__init__()
        self.log = log
        self.latencies_s: list[float] = []
        self._turn_ended: float | None = None

    @property
    def last_latency_s(self) -> float | None:
        return self.latencies_s[-1] if self.latencies_s else None

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, VADUserStoppedSpeakingFrame) or (
            isinstance(frame, UserStoppedSpeakingFrame) and self._turn_ended is None
        ):
            self._turn_ended = time.monotonic()
        elif isinstance(frame, BotStartedSpeakingFrame) and self._turn_ended is not None:
            latency = time.monotonic() - self._turn_ended
            self._turn_ended = None
            self.latencies_s.append(latency)
            if self.log:
                logger.info(f"avatar answered {latency * 1000:.0f} ms after the user stopped")
        await self.push_frame(frame, direction)
