"""Records the avatar's video and voice to a playable MP4 (H.264 + AAC) through PyAV.

A recording of the session, for review or a bug report, should play in any player with
the avatar's lips on its voice. Encoding runs in a worker thread so the pipeline never
waits on x264. Video reaches it through a small drop-oldest buffer (a recorder that falls
behind keeps the newest frames and counts the rest); audio is never dropped.

Timestamps. Frames reach a pipeline at uneven times (network and event-loop jitter,
stalls, bursts), so their arrival times can't be the file's timestamps: two frames closer
than 1/25 s land on the same tick of a 25 fps stream, which ffmpeg reports as
non-monotonic DTS, and players stutter. Instead, the file has two steady timelines on one
clock, both starting at the first frame of either kind (:class:`VideoTimeline`,
:class:`AudioTimeline`):

- video is constant-rate, ``VIDEO_FPS``: slot *n* is at *n*/25 s. A frame takes the next
  slot while that is within a slot of when it arrived; one that arrives later than that
  (a stall, a dropped frame) first repeats the previous image up to its own slot, and one
  that arrives earlier (a burst) is skipped. So a stall stays a stall in the file, and
  video is within ~60 ms of the clock;
- audio is its sample count, which is what an audio stream is; silence is put in only when
  audio has come later than its timeline for a while (a real gap in the stream, or the
  first audio well after the first video), never for jitter or a burst that catches up.

Both follow the clock, so they stay in sync; at the end the last image is held for as
long as the audio goes on.
Nothing is written until the first video frame tells the size, because an MP4's streams
must all exist before its first packet; audio that comes first is held until then.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Callable
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
#: How far (in slots) a frame may land from its arrival time before the timeline resyncs.
JITTER_SLOTS = 1
#: Audio later than its timeline by more than this, for ``AUDIO_GAP_WINDOW_S``, is a gap.
AUDIO_GAP_S = 0.2
AUDIO_GAP_WINDOW_S = 0.5
_PIX = {I420: "yuv420p", "RGB": "rgb24", "RGBA": "rgba"}


class VideoTimeline:
    """Where each arriving video frame goes on a constant-rate timeline (sans-I/O).

    :meth:`place` takes a frame's arrival time (seconds since the recording's start) and
    gives its slot, or ``None`` to skip it; slots it passes over (from :attr:`next_slot`
    before the call) are for the previous image again."""

    def __init__(self, fps: int = VIDEO_FPS, jitter_slots: int = JITTER_SLOTS) -> None:
        self.fps, self.jitter_slots = fps, jitter_slots
        #: the slot after the last one given: how many slots the video has
        self.next_slot = 0

    def place(self, at: float) -> int | None:
        due = round(at * self.fps)
        if due < self.next_slot - self.jitter_slots:
            return None  # the timeline is ahead of the clock: frames came faster than fps
        slot = due if due > self.next_slot + self.jitter_slots else self.next_slot
        self.next_slot = slot + 1
        return slot

    def extend_to(self, seconds: float) -> range:
        """The slots to add for the video to last ``seconds`` (none if it does)."""
        start, self.next_slot = self.next_slot, max(self.next_slot, round(seconds * self.fps))
        return range(start, self.next_slot)


class AudioTimeline:
    """Where each arriving audio chunk goes (sans-I/O): its timestamp is the count of the
    samples before it, plus silence for a gap.

    A gap is audio that stays more than ``AUDIO_GAP_S`` behind the clock for
    ``AUDIO_GAP_WINDOW_S``: chunks that come late are held (not written) while that is
    undecided. If audio catches up (a late burst: the samples were all there), they are
    written back to back; if not, the smallest lag seen is filled with silence first."""

    def __init__(self, rate: int) -> None:
        self.rate = rate
        #: the timestamp (in samples) of the next sample written
        self.samples = 0
        self.silence_samples = 0
        self._held: list[bytes] = []
        self._held_samples = 0
        self._held_since = 0.0
        self._least_behind = 0.0

    def place(self, at: float, pcm: bytes) -> list[tuple[int, bytes]]:
        """``(timestamp, s16 mono PCM)`` to write now, in order, for a chunk that arrived
        ``at`` seconds after the start (its last sample is about then)."""
        end = self.samples + self._held_samples + len(pcm) // 2
        behind = at - end / self.rate
        if not self._held and behind <= AUDIO_GAP_S:
            return self._write([pcm])
        if not self._held:
            self._held_since, self._least_behind = at, behind
        self._held.append(pcm)
        self._held_samples += len(pcm) // 2
        self._least_behind = min(self._least_behind, behind)
        if behind <= AUDIO_GAP_S:
            return self._release(0.0)  # it caught up: a burst, not a gap
        if at - self._held_since >= AUDIO_GAP_WINDOW_S:
            return self._release(self._least_behind)
        return []

    def finish(self) -> list[tuple[int, bytes]]:
        """Whatever is still held, after the gap it has been behind by."""
        return self._release(self._least_behind) if self._held else []

    def _release(self, gap_s: float) -> list[tuple[int, bytes]]:
        held, self._held, self._held_samples = self._held, [], 0
        silence = max(0, round(gap_s * self.rate))
        self.silence_samples += silence
        pieces = [bytes(2 * min(self.rate, left)) for left in range(silence, 0, -self.rate)]
        return self._write(pieces + held)

    def _write(self, pieces: list[bytes]) -> list[tuple[int, bytes]]:
        out = []
        for pcm in pieces:
            out.append((self.samples, pcm))
            self.samples += len(pcm) // 2
        return out


class RecorderOutput(FrameProcessor):
    """Writes ``path``; finalised on End/CancelFrame or :meth:`close` (idempotent).

    ``clock`` (seconds, monotonic) times the frames' arrival; tests pass a fake one."""

    def __init__(
        self, path: str | Path, *, clock: Callable[[], float] = time.monotonic,
        name: str | None = None,
    ) -> None:
        super().__init__(name=name)
        self.path = Path(path)
        #: video frames in the file, repeats included
        self.video_frames_written = 0
        #: of those, the previous image again (a stall, or a frame the buffer dropped)
        self.video_frames_repeated = 0
        #: frames left out because they came faster than ``VIDEO_FPS``
        self.video_frames_skipped = 0
        #: frames the drop-oldest buffer dropped (slow encoder)
        self.frames_dropped = 0
        #: seconds of audio in the file, silence put in for gaps included
        self.audio_seconds_written = 0.0
        self.audio_silence_seconds = 0.0
        self._clock = clock
        self._start: float | None = None
        self._video: deque[tuple[float, OutputImageRawFrame]] = deque()
        self._audio: deque[tuple[float, OutputAudioRawFrame]] = deque()
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
            self._audio.append((self._arrived(), frame))
            self._wake.set()
        elif isinstance(frame, EndFrame | CancelFrame):
            await self.close()
        await self.push_frame(frame, direction)

    def _arrived(self) -> float:
        """Seconds since the first frame (of either kind) arrived."""
        now = self._clock()
        if self._start is None:
            self._start = now
        return now - self._start

    def _offer_video(self, frame: OutputImageRawFrame) -> None:
        self._ensure_thread()
        if len(self._video) >= VIDEO_BUFFER:
            self._video.popleft()
            self.frames_dropped += 1
        self._video.append((self._arrived(), frame))
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
                f"{self.video_frames_repeated} repeated, {self.video_frames_skipped} skipped; "
                f"{self.audio_seconds_written:.1f} s of audio, "
                f"{self.audio_silence_seconds:.1f} s of it silence for gaps)"
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
                    if self._audio and (writer.started or self._closing):
                        arrived, frame = self._audio.popleft()
                        writer.audio(frame, arrived)
                    elif self._audio and not self._video:
                        break  # hold audio until the first video frame sizes the file
                    self._count(writer)
                if self._closing and not self._video and not self._audio:
                    break
        except Exception as exc:
            self._error = exc
        finally:
            try:
                writer.close()
            except Exception as exc:
                self._error = self._error or exc
            self._count(writer)

    def _count(self, writer: _Writer) -> None:
        self.video_frames_written = writer.video_frames
        self.video_frames_repeated = writer.repeated
        self.video_frames_skipped = writer.skipped
        self.audio_seconds_written = writer.audio_seconds
        self.audio_silence_seconds = writer.silence_seconds


class _Writer:
    """The PyAV side; used from the worker thread only."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.video_frames = self.repeated = self.skipped = 0
        self._container: Any = None
        self._video: Any = None
        self._audio: Any = None
        self._video_line = VideoTimeline()
        self._audio_line: AudioTimeline | None = None
        self._last_image: OutputImageRawFrame | None = None
        self._resampler: Any = None

    @property
    def started(self) -> bool:
        return self._container is not None

    @property
    def audio_seconds(self) -> float:
        line = self._audio_line
        return 0.0 if line is None else line.samples / line.rate

    @property
    def silence_seconds(self) -> float:
        line = self._audio_line
        return 0.0 if line is None else line.silence_samples / line.rate

    def _open(self, width: int | None, height: int | None, rate: int | None) -> None:
        self._container = av.open(str(self.path), "w")
        if width and height:
            self._video = self._container.add_stream("libx264", rate=VIDEO_FPS)
            self._video.width, self._video.height = width, height
            self._video.pix_fmt = "yuv420p"
            self._video.time_base = Fraction(1, VIDEO_FPS)
            self._video.codec_context.time_base = Fraction(1, VIDEO_FPS)
            self._video.options = {"preset": "veryfast", "tune": "zerolatency"}
        if rate:
            self._audio = self._container.add_stream("aac", rate=rate)
            self._audio.layout = "mono"
            self._audio_line = AudioTimeline(rate)

    def video(self, image: OutputImageRawFrame, arrived: float, audio_rate: int) -> None:
        width, height = image.size
        if not self.started:
            self._open(width, height, audio_rate)
        if self._video is None or (width, height) != (self._video.width, self._video.height):
            return  # a size change mid-stream is not supported by one MP4 stream
        before = self._video_line.next_slot
        slot = self._video_line.place(arrived)
        if slot is None:
            self.skipped += 1
            return
        # before the first image there is nothing to repeat: it stands in for the start
        self._encode_video(self._last_image or image, range(before, slot))
        self.repeated += slot - before
        self._last_image = image
        self._encode_video(image, range(slot, slot + 1))

    def _encode_video(self, image: OutputImageRawFrame, slots: range) -> None:
        for slot in slots:
            frame = _video_frame(image)
            frame.pts = slot
            frame.time_base = Fraction(1, VIDEO_FPS)
            for packet in self._video.encode(frame):
                self._container.mux(packet)
            self.video_frames += 1

    def audio(self, frame: OutputAudioRawFrame, arrived: float) -> None:
        if not self.started:
            self._open(None, None, frame.sample_rate)
        if self._audio is None or self._audio_line is None:
            return
        pcm = frame.audio
        if frame.sample_rate != self._audio_line.rate:
            pcm = self._resampled(frame)  # the file opened before audio told its rate
        self._encode_audio(self._audio_line.place(arrived, pcm))

    def _resampled(self, frame: OutputAudioRawFrame) -> bytes:
        assert self._audio_line is not None
        if self._resampler is None:
            self._resampler = av.AudioResampler("s16", "mono", self._audio_line.rate)
        samples = np.frombuffer(frame.audio, "<i2").reshape(1, -1)
        chunk = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
        chunk.sample_rate = frame.sample_rate
        return b"".join(out.to_ndarray().tobytes() for out in self._resampler.resample(chunk))

    def _encode_audio(self, pieces: list[tuple[int, bytes]]) -> None:
        assert self._audio_line is not None
        rate = self._audio_line.rate
        for pts, pcm in pieces:
            samples = np.frombuffer(pcm, "<i2").reshape(1, -1)
            out = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
            out.sample_rate = rate
            out.pts = pts
            out.time_base = Fraction(1, rate)
            for packet in self._audio.encode(out):
                self._container.mux(packet)

    def close(self) -> None:
        if self._container is None:
            return
        if self._audio_line is not None:
            self._encode_audio(self._audio_line.finish())
            if self._video is not None and self._last_image is not None:
                # the last image stays up while the avatar finishes speaking
                tail = self._video_line.extend_to(self.audio_seconds)
                self._encode_video(self._last_image, tail)
                self.repeated += len(tail)
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
