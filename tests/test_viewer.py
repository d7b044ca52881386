"""The viewer page in a real pipeline, read over HTTP and shown in headless Chromium."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, NamedTuple

import httpx
import numpy as np
import pytest
from PIL import Image
from pipecat.frames.frames import (
    EndFrame,
    Frame,
    InterimTranscriptionFrame,
    OutputImageRawFrame,
    TextFrame,
    TranscriptionFrame,
    UserStartedSpeakingFrame,
)
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineWorker
from pipecat.workers.runner import WorkerRunner

from agent.heygen.frames import I420, HeyGenAvatarTranscriptFrame
from agent.media.viewer import HISTORY_LINES, ViewerOutput, to_jpeg
from tests.browser import chromium_page
from tests.pipeline_helpers import Collector
from tests.waiting import DEADLINE_S, eventually, within

W, H = 640, 360
RED_YUV = (81, 90, 240)  # BT.601 limited-range red


def red_block_frame() -> OutputImageRawFrame:
    """Dark grey, with a red rectangle over the left half."""
    y = np.full((H, W), 40, np.uint8)
    u = np.full((H // 2, W // 2), 128, np.uint8)
    v = np.full((H // 2, W // 2), 128, np.uint8)
    y[:, : W // 2], u[:, : W // 4], v[:, : W // 4] = RED_YUV
    return OutputImageRawFrame(image=y.tobytes() + u.tobytes() + v.tobytes(), size=(W, H),
                               format=I420)


def is_red(pixel: tuple[int, ...]) -> bool:
    r, g, b = pixel[:3]
    return r > 180 and g < 70 and b < 70


class Viewing(NamedTuple):
    view: ViewerOutput
    worker: PipelineWorker
    after: Collector  # what passed the viewer


@pytest.fixture
async def viewer() -> AsyncIterator[Viewing]:
    viewer, after = ViewerOutput(), Collector()
    worker = PipelineWorker(Pipeline([viewer, after]), idle_timeout_secs=None)
    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(worker)
    running = asyncio.create_task(runner.run())
    await eventually(lambda: viewer._runner is not None, "the viewer's server started")
    feeding = asyncio.create_task(feed(worker))
    yield Viewing(viewer, worker, after)
    feeding.cancel()
    await worker.queue_frame(EndFrame())
    await within(running, "the pipeline ended")


async def through(viewing: Viewing, *frames: Frame) -> None:
    """Push transcript ``frames`` and return once the viewer has handled them all."""
    texts = viewing.after.count(TextFrame)
    for frame in frames:
        await viewing.worker.queue_frame(frame)
    wanted = texts + sum(isinstance(f, TextFrame) for f in frames)
    await within(viewing.after.until(lambda: viewing.after.count(TextFrame) == wanted),
                 f"{len(frames)} frames through the viewer")


async def feed(worker: PipelineWorker) -> None:
    """Frames far faster than the viewer's 15 fps, so that it must skip some."""
    while True:
        await worker.queue_frame(red_block_frame())
        await asyncio.sleep(0.01)


async def test_snapshot_events_and_mjpeg(viewer: Viewing) -> None:
    view, worker, _ = viewer
    async with httpx.AsyncClient(base_url=view.url, timeout=DEADLINE_S) as http:
        page = await http.get("/")
        assert page.status_code == 200 and 'id="transcript"' in page.text
        assert '<img id="video" src="/video.mjpg"' in page.text
        async with asyncio.timeout(DEADLINE_S):
            while (snap := await http.get("/snapshot.jpg")).status_code != 200:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        image = Image.open(io.BytesIO(snap.content)).convert("RGB")
        assert image.size == (W, H)
        assert is_red(image.getpixel((W // 4, H // 2)))  # type: ignore[arg-type]
        assert not is_red(image.getpixel((3 * W // 4, H // 2)))  # type: ignore[arg-type]

        async with http.stream("GET", "/events") as events:
            lines = events.aiter_lines()
            assert await anext(lines) == ": connected"
            await worker.queue_frame(TranscriptionFrame("hello there", "user", "now"))
            await worker.queue_frame(HeyGenAvatarTranscriptFrame("hi, human"))
            got = []
            async with asyncio.timeout(DEADLINE_S):
                async for line in lines:
                    if line.startswith("data: "):
                        got.append(json.loads(line[6:]))
                    if sum(e["type"] == "transcript" for e in got) == 2:
                        break
        got = [e for e in got if e["type"] == "transcript"]
        assert got == [
            {"type": "transcript", "who": "user", "text": "hello there", "interim": False},
            {"type": "transcript", "who": "avatar", "text": "hi, human", "interim": False},
        ]

        loop = asyncio.get_running_loop()
        made, since = 0, 0.0
        async with http.stream("GET", "/video.mjpg") as stream:
            assert stream.headers["content-type"].startswith("multipart/x-mixed-replace")
            data = b""
            async with asyncio.timeout(DEADLINE_S):
                async for chunk in stream.aiter_bytes():
                    data += chunk
                    if not since and data.count(b"\xff\xd9") >= 2:
                        made, since = view.jpegs_made, loop.time()
                    if since and loop.time() - since >= 1.0:  # a window to count in
                        break
            made, elapsed = view.jpegs_made - made, loop.time() - since
        assert data.startswith(b"--heygenframe\r\nContent-Type: image/jpeg")
    assert 0 < made <= 15 * elapsed + 1, "at most max_fps encodes a second, while watched"
    assert view.frames_dropped > 0, "frames beyond 15 fps were skipped, not queued"


async def frames_through(viewing: Viewing, count: int) -> None:
    """Wait until ``count`` more video frames have passed the viewer."""
    seen = viewing.after.count(OutputImageRawFrame)
    await within(viewing.after.until(
        lambda: viewing.after.count(OutputImageRawFrame) >= seen + count),
        f"{count} more video frames through the viewer")


async def test_nothing_is_encoded_while_no_one_watches(viewer: Viewing) -> None:
    """A JPEG costs a few milliseconds of a core: made only while a page shows the video
    (or for a snapshot asked for), not 15 times a second for no one."""
    view = viewer.view
    await frames_through(viewer, 30)
    assert view.jpegs_made == 0 and view.frames_dropped == 0
    async with httpx.AsyncClient(base_url=view.url, timeout=DEADLINE_S) as http:
        snap = await http.get("/snapshot.jpg")  # made on demand
        assert snap.status_code == 200 and snap.content.startswith(b"\xff\xd8")
        assert view.jpegs_made == 1
        async with http.stream("GET", "/video.mjpg") as stream:
            data = b""
            async with asyncio.timeout(DEADLINE_S):
                async for chunk in stream.aiter_bytes():
                    data += chunk
                    if data.count(b"\xff\xd9") >= 3:
                        break
        assert view.jpegs_made >= 3
    await eventually(lambda: view._watchers == 0, "the server saw the page go")
    watched = view.jpegs_made
    await frames_through(viewer, 30)
    assert view.jpegs_made <= watched + 1, "encoding stopped with the page (one may be under way)"


async def test_headless_chromium_shows_the_avatar_unstretched(
    viewer: Viewing, tmp_path: Path
) -> None:
    """In a window taller than the video, the page once stretched the avatar to its
    height; it must keep the frame's shape, which it is told on connecting."""
    async with chromium_page(viewer.view.url, tmp_path / "profile", 1200, 900) as page:
        await page.until("document.getElementById('video')?.naturalWidth", bool,
                         "the page painted a frame")
        image = np.asarray(await page.screenshot()).astype(int)
        red = (image[..., 0] > 180) & (image[..., 1] < 70) & (image[..., 2] < 70)
        assert red.sum() > 50_000, "the avatar video is on the page"
        rows, cols = np.nonzero(red)
        shown = (cols.max() - cols.min() + 1) / (rows.max() - rows.min() + 1)
        assert shown == pytest.approx((W / 2) / H, rel=0.03), "the red half keeps its shape"
        size = await page.until("document.getElementById('video').dataset.size", bool,
                                "the page was told the video's size")
        assert size == f"{W}x{H}"


def transcript_frames(count: int) -> list[Frame]:
    """``count`` finished lines, the user's and the avatar's in turn."""
    return [TranscriptionFrame(f"user line {i}", "user", "now") if i % 2 == 0
            else HeyGenAvatarTranscriptFrame(f"avatar line {i}") for i in range(count)]


def as_events(frames: list[Frame]) -> list[dict[str, Any]]:
    return [{"type": "transcript", "who": "user" if isinstance(f, TranscriptionFrame)
             else "avatar", "text": f.text, "interim": False}
            for f in frames if isinstance(f, TextFrame)]


async def test_a_late_connection_gets_the_transcript_so_far_then_live(viewer: Viewing) -> None:
    """A page opened after some turns is sent the last HISTORY_LINES lines, the line the
    user is still saying, who is speaking and the video's size; then what comes next."""
    said = transcript_frames(HISTORY_LINES + 50)
    await through(viewer, *said, InterimTranscriptionFrame("and then I", "user", "now"))
    await viewer.worker.queue_frame(UserStartedSpeakingFrame())
    await within(viewer.after.until(lambda: viewer.after.count(UserStartedSpeakingFrame) == 1),
                 "the user started speaking")
    async with (httpx.AsyncClient(base_url=viewer.view.url, timeout=DEADLINE_S) as http,
                http.stream("GET", "/events") as events):
        lines = events.aiter_lines()

        async def next_event() -> dict[str, Any]:
            while not (line := await anext(lines)).startswith("data: "):
                pass
            event: dict[str, Any] = json.loads(line[6:])
            return event

        assert await within(next_event(), "the video's size") == \
            {"type": "video", "width": W, "height": H}
        history = await within(next_event(), "the transcript so far")
        assert history["type"] == "history"
        assert history["lines"] == [
            *as_events(said[-HISTORY_LINES:]),
            {"type": "transcript", "who": "user", "text": "and then I", "interim": True},
        ]
        assert history["speaking"] == {"user": True, "avatar": False}
        await viewer.worker.queue_frame(TranscriptionFrame("and then I left", "user", "now"))
        assert await within(next_event(), "a line said after connecting") == \
            {"type": "transcript", "who": "user", "text": "and then I left", "interim": False}


async def test_headless_chromium_opened_late_shows_the_conversation(
    viewer: Viewing, tmp_path: Path
) -> None:
    """The page opened after some turns shows them, the user's unfinished line last;
    that line, when finished, takes its own place (not a second line), then new turns
    come after."""
    said = transcript_frames(4)
    await through(viewer, *said, InterimTranscriptionFrame("and then I", "user", "now"))
    script = "[...document.querySelectorAll('#transcript p')].map(p => p.textContent)"
    so_far = [f"{e['who']}: {e['text']}" for e in as_events(said)]
    async with chromium_page(viewer.view.url, tmp_path / "profile") as page:
        await page.until(script, lambda shown: shown == [*so_far, "user: and then I"],
                         "the turns so far shown")
        await through(viewer, TranscriptionFrame("and then I left", "user", "now"),
                      HeyGenAvatarTranscriptFrame("did you?"))
        await page.until(
            script, lambda shown: shown == [*so_far, "user: and then I left", "avatar: did you?"],
            "the finished line in place of the unfinished one, then the new turn")


def test_jpeg_from_rgb_too() -> None:
    rgb = np.zeros((H, W, 3), np.uint8)
    rgb[:, : W // 2] = (255, 0, 0)
    jpeg = to_jpeg(OutputImageRawFrame(image=rgb.tobytes(), size=(W, H), format="RGB"))
    assert is_red(Image.open(io.BytesIO(jpeg)).convert("RGB").getpixel((10, 10)))  # type: ignore[arg-type]



@pytest.mark.parametrize("luma,rgb", [(16, 0), (235, 255), (126, 128)])
def test_jpeg_maps_video_range_to_full_range(luma: int, rgb: int) -> None:
    """I420 from video is BT.601 limited range (16-235); JPEG is full range (0-255).
    Without the stretch, black shows as dark grey and white as light grey."""
    frame = OutputImageRawFrame(image=bytes([luma]) * (W * H) + bytes([128]) * (W * H // 2),
                                size=(W, H), format=I420)
    pixel = Image.open(io.BytesIO(to_jpeg(frame))).convert("RGB").getpixel((W // 2, H // 2))
    assert pixel == pytest.approx((rgb, rgb, rgb), abs=3)  # type: ignore[arg-type]
