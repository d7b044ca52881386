"""The recorder in a real pipeline: synthetic avatar frames in, an MP4 decoded back out."""

from __future__ import annotations

import asyncio
import itertools
import random
from fractions import Fraction
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
from agent.media.recorder import VIDEO_BUFFER, AudioTimeline, RecorderOutput, VideoTimeline
from tests.machine import require
from tests.pipeline_helpers import Collector
from tests.waiting import eventually, within

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
    assert frames == recorder.video_frames_written
    # the timeline follows the clock: as long as playing took (2 s, more on a loaded
    # machine, where late frames repeat the one before and late audio gets silence)
    assert frames == pytest.approx(feed.played_s * 25, abs=5)
    assert video_s == pytest.approx(feed.played_s, abs=0.2)
    assert audio_s == pytest.approx(feed.played_s, abs=0.2)
    assert recorder.audio_seconds_written == pytest.approx(audio_s, abs=0.05)
    assert len(after.of(OutputImageRawFrame)) == 50, "every frame passed on"
    assert len(after.of(OutputAudioRawFrame)) == 50


class FakeClock:
    """The recorder's clock, set by the test to each frame's made-up arrival time."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


SLOT = 0.04  # a video frame at 25 fps, and one audio chunk
MARK = 75  # the frame that is white, and the chunk that beeps: the same moment


def jittery_arrivals(seed: int = 7) -> list[tuple[float, str, int]]:
    """4 s of avatar as a network and a busy event loop deliver it: (arrival s, kind, i).

    Video frame i and audio chunk i are both of the moment i x 40 ms, and arrive up to
    15 ms early or 35 ms late. Besides: video frames 40-47 never come (a stall), 60-63
    come at once (a burst); audio starts at 0.32 s (chunk 8), chunks 30-37 never come
    (a gap), and 80-85 come at once, 40 ms late (a backlog)."""
    rng = random.Random(seed)
    events = []
    video_at = audio_at = 0.0  # each kind comes in order
    for i in range(100):
        if not 40 <= i < 48:
            at = (63 if 60 <= i < 64 else i) * SLOT + rng.uniform(-0.015, 0.035)
            video_at = max(video_at + 0.001, at)
            events.append((video_at, "video", i))
        if i >= 8 and not 30 <= i < 38:
            end = (86 if 80 <= i < 86 else i + 1) * SLOT  # a chunk comes once it is over
            audio_at = max(audio_at + 0.001, end + rng.uniform(0.0, 0.03))
            events.append((audio_at, "audio", i))
    return sorted(events)


async def play_at(clock: FakeClock, events: list[tuple[float, str, int]],
                  recorder: RecorderOutput, worker: PipelineWorker, after: Collector) -> None:
    """Each frame arrives at its time by ``clock``: the next is sent once it is through,
    and a video frame once the encoder has room (faster than real time, it would drop)."""
    for n, (at, kind, i) in enumerate(events, start=1):
        clock.now = 1000.0 + max(0.0, at)
        if kind == "video":
            await eventually(lambda: len(recorder._video) < VIDEO_BUFFER, "encoder has room")
            shade = 235 if i == MARK else 16 + i
            frame: Frame = OutputImageRawFrame(image=i420(shade), size=(W, H), format=I420)
        else:
            pcm = tone(SLOT) if i == MARK else bytes(2 * 960)
            frame = OutputAudioRawFrame(audio=pcm, sample_rate=24000, num_channels=1)
        await worker.queue_frame(frame)
        await within(after.until(
            lambda n=n: after.count(OutputImageRawFrame) + after.count(OutputAudioRawFrame)
            == n), f"frame {n} through the recorder")


async def test_jittery_arrivals_make_steady_monotonic_timestamps(tmp_path: Path) -> None:
    """Frames timed by their uneven arrival made non-monotonic DTS; the file must have a
    constant-rate video timeline, continuous audio, both as long, and in sync."""
    ffmpeg = require("ffmpeg", "apt-get install ffmpeg")
    clock, after, path = FakeClock(), Collector(), tmp_path / "jitter.mp4"
    recorder = RecorderOutput(path, clock=clock)
    worker = PipelineWorker(Pipeline([recorder, after]), idle_timeout_secs=None)
    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(worker)
    running = asyncio.create_task(runner.run())
    await within(after.until(lambda: after.count(StartFrame) == 1), "the pipeline started")
    await play_at(clock, jittery_arrivals(), recorder, worker, after)
    await worker.queue_frame(EndFrame())
    await within(running, "the recorder finished")

    with av.open(str(path)) as container:
        vtb = container.streams.video[0].time_base
        video = [(f.pts, float(f.to_ndarray()[:H].mean())) for f in container.decode(video=0)]
    with av.open(str(path)) as container:
        atb = container.streams.audio[0].time_base
        audio = [(f.pts, f.samples, f.sample_rate, f.to_ndarray()[0])
                 for f in container.decode(audio=0)]
    pts = [p for p, _ in video]
    steps = {b - a for a, b in itertools.pairwise(pts)}
    assert pts[0] == 0 and len(steps) == 1, f"constant-rate video, got steps {steps}"
    step = steps.pop()
    assert step * vtb == Fraction(1, 25)
    assert len(video) == recorder.video_frames_written
    assert recorder.frames_dropped == 0
    assert recorder.video_frames_repeated >= 8, "the stall is the frame before, repeated"
    assert recorder.video_frames_skipped >= 1, "a burst beyond the rate is skipped"
    for (p0, n0, rate, _), (p1, *_rest) in itertools.pairwise(audio):
        assert p1 == p0 + n0 * Fraction(1, rate) / atb, "audio without holes or overlaps"
    video_end = (pts[-1] + step) * vtb
    audio_end = audio[-1][0] * atb + Fraction(audio[-1][1], audio[-1][2])
    assert float(video_end) == pytest.approx(4.0, abs=0.1)
    assert float(audio_end) == pytest.approx(float(video_end), abs=0.1)

    white = next(p for p, luma in video if luma > 200) * vtb
    samples = np.concatenate([a for *_, a in audio])
    beep = audio[0][0] * atb + Fraction(int(np.argmax(np.abs(samples) > 0.1)), audio[0][2])
    assert float(white) == pytest.approx(MARK * SLOT, abs=0.065), "video on the clock"
    assert float(beep) == pytest.approx(MARK * SLOT, abs=0.065), "audio on the clock"
    assert abs(float(white - beep)) < 0.1, "the avatar's lips on its voice"

    ffmpeg_run = await asyncio.create_subprocess_exec(
        ffmpeg, "-v", "warning", "-i", str(path), "-f", "null", "-",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    _, stderr = await within(ffmpeg_run.communicate(), "ffmpeg read the file back")
    warnings = stderr.decode()
    assert ffmpeg_run.returncode == 0, warnings
    assert "monoton" not in warnings.lower() and "dts" not in warnings.lower(), warnings


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
    placed = recorder.video_frames_written - recorder.video_frames_repeated
    assert placed + recorder.video_frames_skipped + recorder.frames_dropped == 300


async def test_audio_at_another_rate_than_the_file_is_resampled(tmp_path: Path) -> None:
    """Video first opens the file at the default 24 kHz; 16 kHz audio must still fit."""
    clock, after, path = FakeClock(), Collector(), tmp_path / "rate.mp4"
    recorder = RecorderOutput(path, clock=clock)
    worker = PipelineWorker(Pipeline([recorder, after]), idle_timeout_secs=None)
    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(worker)
    running = asyncio.create_task(runner.run())
    await within(after.until(lambda: after.count(StartFrame) == 1), "the pipeline started")
    for i in range(50):
        clock.now = 1000.0 + i * SLOT
        await eventually(lambda: len(recorder._video) < VIDEO_BUFFER, "encoder has room")
        await worker.queue_frame(OutputImageRawFrame(image=i420(40), size=(W, H), format=I420))
        if i == 0:
            await eventually(path.exists, "the first video frame opened the file")
        await worker.queue_frame(OutputAudioRawFrame(audio=tone(SLOT, 16000), sample_rate=16000,
                                                     num_channels=1))
        await within(after.until(lambda i=i: after.count(OutputAudioRawFrame) == i + 1),
                     f"chunk {i} through the recorder")
    await worker.queue_frame(EndFrame())
    await within(running, "the recorder finished")
    _, video_s, _, audio_s = probe(path)
    with av.open(str(path)) as container:
        assert container.streams.audio[0].rate == 24000
    assert audio_s == pytest.approx(2.0, abs=0.1)
    assert video_s == pytest.approx(audio_s, abs=0.1)


def test_video_timeline_absorbs_jitter_repeats_for_stalls_skips_bursts() -> None:
    line = VideoTimeline()
    # up to a slot early or late: the next slot, no repeat, no skip
    assert [line.place(at) for at in (0.0, 0.06, 0.075, 0.13, 0.16)] == [0, 1, 2, 3, 4]
    assert line.place(0.40) == 10, "a stall: slots 5-9 are for the frame before"
    assert [line.place(0.41) for _ in range(3)] == [11, None, None], "a burst: skipped"
    assert line.extend_to(0.6) == range(12, 15)


def test_audio_timeline_fills_a_gap_but_not_a_late_burst() -> None:
    line, chunk = AudioTimeline(1000), bytes(2 * 40)  # 40 ms chunks at 1 kHz
    assert line.place(0.04, chunk) == [(0, chunk)]
    # a backlog: nothing for 0.3 s, then 0.3 s of chunks at once: all the samples are
    # there, so they go back to back, held only until they have caught up with the clock
    burst = [line.place(0.38, chunk) for _ in range(8)]
    assert burst[:3] == [[]] * 3
    assert [[pts for pts, _ in out] for out in burst[3:]] == [[40, 80, 120, 160], [200],
                                                              [240], [280], [320]]
    # a gap: nothing for 0.5 s, then chunks at pace — silence first, then the chunks
    held = [line.place(0.90 + 0.04 * i, chunk) for i in range(14)]
    assert held[:-1] == [[]] * 13
    (silence_pts, silence), *rest = held[-1]
    assert silence_pts == 360 and len(silence) // 2 == 500
    assert [pts for pts, _ in rest] == [860 + 40 * i for i in range(14)]
