"""Records the avatar's video and voice to a playable MP4 (H.264 + AAC) through PyAV.

Encoding runs in a worker thread so the pipeline never waits on x264. Video reaches it
through a small drop-oldest buffer (a recorder that falls behind keeps the newest frames
and counts the rest); audio is never dropped. Video timestamps come from arrival time,
so a stall in the stream stays a stall in the file instead of speeding it up. Nothing is
written until the first video frame tells the size, because an MP4's streams must all
exist before its first packet; audio that comes first is held until then.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
from loguru import logger
from pipecat.frames.frames import (
    CancelFrame,
    EndFrame,
    Frame,
    OutputAudioRawFrame,
    OutputImageRawFrame,
)
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor

from agent.heygen.frames import I420

VIDEO_FPS = 25
VIDEO_BUFFER = 8
MS = Fraction(1, 1000)
_PIX = {I420: "yuv420p", "RGB": "rgb24", "RGBA": "rgba"}


class RecorderOutput(FrameProcessor):
    """Writes ``path``; finalised on End/CancelFrame or :meth:`close` (idempotent)."""

    def __init__(self, path: str | Path, *, name: str | None = None) -> None:
        super().__init__(name=name)
        self.path = Path(path)
        self.video_frames_written = 0
        self.audio_seconds_written = 0.0
        self.frames_dropped = 0
        self._video: deque[tuple[float, OutputImageRawFrame]] = deque()
        self._audio: deque[OutputAudioRawFrame] = deque()
        self._wake = threading.Event()
        self._closing = False
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._closed = False
        self._audio_rate: int | None = None

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, OutputImageRawFrame):
            self._offer_video(frame)
        elif isinstance(frame, OutputAudioRawFrame):
            self._ensure_thread()
            self._audio_rate = self._audio_rate or frame.sample_rate
            self._audio.append(frame)
            self._wake.set()
        elif isinstance(frame, EndFrame | CancelFrame):
            await self.close()
        await self.push_frame(frame, direction)

    def _offer_video(self, frame: OutputImageRawFrame) -> None:
        self._ensure_thread()
        if len(self._video) >= VIDEO_BUFFER:
            self._video.popleft()
            self.frames_dropped += 1
        self._video.append((time.monotonic(), frame))
        self._wake.set()

    def _ensure_thread(self) -> None:
        if self._thread is None and not self._closed:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._thread = threading.Thread(target=self._run, name="recorder", daemon=True)
            self._thread.start()

    async def close(self) -> None:
        """Flush, write the trailer, close the file. Safe to call more than once."""
        if self._closed:
            return
        self._closed = True
        self._closing = True
        self._wake.set()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join)
        if self.frames_dropped:
            logger.warning(f"{self}: {self.frames_dropped} video frames dropped (slow encoder)")
        if self._error is not None:
            logger.error(f"{self}: recording failed: {self._error}")
        elif self._thread is not None:
            logger.info(
                f"{self}: wrote {self.path} ({self.video_frames_written} frames, "
                f"{self.audio_seconds_written:.1f} s of audio)"
            )

    # ------------------------------------------------------------------ worker thread

    def _run(self) -> None:
        writer = _Writer(self.path)
        try:
            while True:
                self._wake.wait(0.5)
                self._wake.clear()
                while self._video or self._audio:
                    if self._video:
                        arrived, image = self._video.popleft()
                        writer.video(image, arrived, self._audio_rate or 24_000)
                        self.video_frames_written += 1
                    if self._audio and (writer.started or self._closing):
                        frame = self._audio.popleft()
                        writer.audio(frame)
                        self.audio_seconds_written += len(frame.audio) / 2 / frame.sample_rate
                    elif self._audio and not self._video:
                        break  # hold audio until the first video frame sizes the file
                if self._closing and not self._video and not self._audio:
                    break
        except Exception as exc:
            self._error = exc
        finally:
            writer.close()


class _Writer:
    """The PyAV side; used from the worker thread only."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._container: Any = None
        self._video: Any = None
        self._audio: Any = None
        self._start: float | None = None
        self._last_pts = -1
        self._audio_samples = 0

    @property
    def started(self) -> bool:
        return self._container is not None

    def _open(self, width: int | None, height: int | None, rate: int | None) -> None:
        self._container = av.open(str(self.path), "w")
        if width and height:
            self._video = self._container.add_stream("libx264", rate=VIDEO_FPS)
            self._video.width, self._video.height = width, height
            self._video.pix_fmt = "yuv420p"
            self._video.time_base = MS
            self._video.codec_context.time_base = MS
            self._video.options = {"preset": "veryfast", "tune": "zerolatency"}
        if rate:
            self._audio = self._container.add_stream("aac", rate=rate)
            self._audio.layout = "mono"

    def video(self, image: OutputImageRawFrame, arrived: float, audio_rate: int) -> None:
        width, height = image.size
        if not self.started:
            self._open(width, height, audio_rate)
        if self._video is None or (width, height) != (self._video.width, self._video.height):
            return  # a size change mid-stream is not supported by one MP4 stream
        if self._start is None:
            self._start = arrived
        pts = max(self._last_pts + 1, round((arrived - self._start) * 1000))
        self._last_pts = pts
        frame = _video_frame(image)
        frame.pts = pts
        frame.time_base = MS
        for packet in self._video.encode(frame):
            self._container.mux(packet)

    def audio(self, frame: OutputAudioRawFrame) -> None:
        if not self.started:
            self._open(None, None, frame.sample_rate)
        if self._audio is None:
            return
        samples = np.frombuffer(frame.audio, "<i2").reshape(1, -1)
        out = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
        out.sample_rate = frame.sample_rate
        out.pts = self._audio_samples
        out.time_base = Fraction(1, frame.sample_rate)
        self._audio_samples += samples.shape[1]
        for packet in self._audio.encode(out):
            self._container.mux(packet)

    def close(self) -> None:
        if self._container is None:
            return
        for stream in (self._video, self._audio):
            if stream is not None:
                for packet in stream.encode(None):
                    self._container.mux(packet)
        self._container.close()
        self._container = None


def _video_frame(image: OutputImageRawFrame) -> Any:
    width, height = image.size
    fmt = _PIX.get(image.format or "RGB", "rgb24")
    data = np.frombuffer(image.image, np.uint8)
    if fmt == "yuv420p":
        return av.VideoFrame.from_ndarray(data.reshape(height * 3 // 2, width), format=fmt)
    return av.VideoFrame.from_ndarray(data.reshape(height, width, -1), format=fmt)
