"""Running a real Pipecat pipeline in a test, and catching what comes out of it."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from pipecat.frames.frames import EndFrame, Frame
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineWorker
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.workers.runner import WorkerRunner


class Collector(FrameProcessor):
    """The last processor: keeps every downstream frame, with its arrival time."""

    def __init__(self) -> None:
        super().__init__(name="collector")
        self.frames: list[tuple[float, Frame]] = []

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if direction is FrameDirection.DOWNSTREAM:
            self.frames.append((asyncio.get_running_loop().time(), frame))
        await self.push_frame(frame, direction)

    def of(self, *kinds: type[Frame]) -> list[Frame]:
        return [f for _, f in self.frames if isinstance(f, kinds)]


async def run_for(processors: Sequence[FrameProcessor], seconds: float) -> None:
    """Run the pipeline for ``seconds``, then end it gracefully and wait for the end."""
    worker = PipelineWorker(Pipeline(list(processors)), idle_timeout_secs=None)
    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(worker)
    running = asyncio.create_task(runner.run())
    try:
        await asyncio.wait_for(asyncio.shield(running), seconds)
    except TimeoutError:
        await worker.queue_frame(EndFrame())
        await asyncio.wait_for(running, 20)
