"""The recorder in a real pipeline: synthetic avatar frames in, an MP4 decoded back out."""

from __future__ import annotations

import asyncio
from pathlib import Path

import av
import numpy as np
import pytest
from pipecat.frames.frames import (
    EndFrame,
    Frame,
    OutputAudioRawFrame,
    OutputImageRawFrame,
    StartFrame,
)
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineWorker
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.workers.runner import WorkerRunner

from agent.heygen.frames import I420
from agent.media.recorder import RecorderOutput
from tests.pipeline_helpers import Collector
from tests.waiting import within

W, H = 320, 180


def i420(shade: int) -> bytes:
    y = np.full((H, W), shade, np.uint8)
    return y.tobytes() + bytes([128]) * (W * H // 2)


def tone(seconds: float, rate: int = 24000) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    return (np.sin(2 * np.pi * 300 * t) * 8000).astype("<i2").tobytes()


class Feed(FrameProcessor):
    """Plays ``seconds`` of 25 fps video and 40 ms audio at real-time pace, then ends."""

    def __init__(self, seconds: float, video: bool = True, audio: bool = True) -> None:
        super().__init__()
        self.seconds, self.video, self.audio = seconds, video, audio
        #: how long playing took by the clock (more than ``seconds`` on a loaded machine)
        self.played_s = 0.0

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        await self.push_frame(frame, direction)

    async def play(self) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        for i in range(round(self.seconds * 25)):
            if self.video:
                await self.push_frame(OutputImageRawFrame(image=i420(16 + i % 200), size=(W, H),
                                                          format=I420))
            if self.audio:
                await self.push_frame(OutputAudioRawFrame(audio=tone(0.04), sample_rate=24000,
                                                          num_channels=1))
            await asyncio.sleep(0.04)
        self.played_s = loop.time() - started


async def record(path: Path, feed: Feed, after: Collector) -> RecorderOutput:
    recorder = RecorderOutput(path)
    worker = PipelineWorker(Pipeline([feed, recorder, after]), idle_timeout_secs=None)
    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(worker)
    running = asyncio.create_task(runner.run())
    await within(after.until(lambda: after.count(StartFrame) == 1), "the pipeline started")
    await feed.play()
    await worker.queue_frame(EndFrame())
    await within(running, "the recorder finished")
    return recorder


def probe(path: Path) -> tuple[int, float | None, tuple[int, int] | None, float | None]:
    with av.open(str(path)) as container:
        video = next(iter(container.streams.video), None)
        audio = next(iter(container.streams.audio), None)
        frames = sum(1 for _ in container.decode(video=0)) if video is not None else 0
        vdur = float(video.duration * video.time_base) if video is not None else None
        adur = float(audio.duration * audio.time_base) if audio is not None else None
        size = (video.codec_context.width, video.codec_context.height) if video else None
    return frames, vdur, size, adur


async def test_video_and_audio_decode_back(tmp_path: Path) -> None:
    after, feed = Collector(), Feed(2.0)
    recorder = await record(tmp_path / "out.mp4", feed, after)
    frames, video_s, size, audio_s = probe(tmp_path / "out.mp4")
    assert size == (W, H)
    assert frames == recorder.video_frames_written == 50
    # timestamps follow arrival: as long as playing took (2 s, more on a loaded machine)
    assert video_s == pytest.approx(feed.played_s, abs=0.2)
    assert audio_s == pytest.approx(2.0, abs=0.1)
    assert recorder.audio_seconds_written == pytest.approx(2.0, abs=0.01)
    assert len(after.of(OutputImageRawFrame)) == 50, "every frame passed on"
    assert len(after.of(OutputAudioRawFrame)) == 50


async def test_audio_only_still_makes_a_file(tmp_path: Path) -> None:
    await record(tmp_path / "a.mp4", Feed(1.0, video=False), Collector())
    frames, _, size, audio_s = probe(tmp_path / "a.mp4")
    assert (frames, size) == (0, None)
    assert audio_s == pytest.approx(1.0, abs=0.1)


async def test_close_is_idempotent_and_nothing_written_without_frames(tmp_path: Path) -> None:
    recorder = RecorderOutput(tmp_path / "never.mp4")
    await recorder.close()
    await recorder.close()
    assert not (tmp_path / "never.mp4").exists()


async def test_slow_encoder_drops_oldest_and_stays_bounded(tmp_path: Path) -> None:
    recorder = RecorderOutput(tmp_path / "burst.mp4")
    big = np.random.default_rng(0).integers(0, 255, 1280 * 720 * 3 // 2, np.uint8).tobytes()
    for _ in range(300):  # a burst far faster than x264 encodes noisy 720p
        recorder._offer_video(OutputImageRawFrame(image=big, size=(1280, 720), format=I420))
        assert len(recorder._video) <= 8
    await recorder.close()
    assert recorder.frames_dropped > 0
    assert recorder.video_frames_written + recorder.frames_dropped == 300
