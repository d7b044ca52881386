"""Running a real Pipecat pipeline in a test, and catching what comes out of it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

from pipecat.frames.frames import EndFrame, Frame
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineWorker
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.workers.runner import WorkerRunner

from tests.waiting import DEADLINE_S, within


class Collector(FrameProcessor):
    """The last processor: keeps every downstream frame, with its arrival time, and wakes
    :meth:`until` waiters as frames arrive."""

    def __init__(self) -> None:
        super().__init__(name="collector")
        self.frames: list[tuple[float, Frame]] = []
        self._waiters: list[tuple[Callable[[], bool], asyncio.Future[None]]] = []

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if direction is FrameDirection.DOWNSTREAM:
            self.frames.append((asyncio.get_running_loop().time(), frame))
            self._wake()
        await self.push_frame(frame, direction)

    def of(self, *kinds: type[Frame]) -> list[Frame]:
        return [f for _, f in self.frames if isinstance(f, kinds)]

    def count(self, kind: type[Frame]) -> int:
        return sum(isinstance(f, kind) for _, f in self.frames)

    async def until(self, predicate: Callable[[], bool]) -> None:
        """Return once ``predicate`` holds, checked as each frame arrives."""
        if predicate():
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((predicate, future))
        await future

    def _wake(self) -> None:
        waiting = []
        for predicate, future in self._waiters:
            if future.done():
                continue
            if predicate():
                future.set_result(None)
            else:
                waiting.append((predicate, future))
        self._waiters = waiting


async def run_until(
    processors: Sequence[FrameProcessor], done: Awaitable[object], what: str,
    deadline_s: float = DEADLINE_S,
) -> None:
    """Run the pipeline until ``done`` completes (the event the test is about), then end
    it gracefully and wait for the end. Fails naming ``what`` if the pipeline ended first
    or the deadline passed."""
    worker = PipelineWorker(Pipeline(list(processors)), idle_timeout_secs=None)
    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(worker)
    running = asyncio.create_task(runner.run())
    waiting = asyncio.ensure_future(done)
    try:
        finished, _ = await within(
            asyncio.wait({running, waiting}, return_when=asyncio.FIRST_COMPLETED), what,
            deadline_s)
        if waiting not in finished:
            raise AssertionError(f"the pipeline ended before: {what}")
        waiting.result()
    finally:
        waiting.cancel()
        if not running.done():
            await worker.queue_frame(EndFrame())
            await within(running, "the pipeline ended after its EndFrame")


async def run_to_end(processors: Sequence[FrameProcessor], what: str) -> None:
    """Run a pipeline that ends by itself (its transport gives up, say) to its end."""
    worker = PipelineWorker(Pipeline(list(processors)), idle_timeout_secs=None)
    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(worker)
    await within(runner.run(), what)
