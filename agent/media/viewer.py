"""A local viewer page: the live avatar and the running transcript, in any browser.

Watching a session (a demo, a test call, debugging lip sync) should need nothing but a
browser. Served by the agent on 127.0.0.1 with no build step: one HTML page, an MJPEG
stream (``multipart/x-mixed-replace``, which browsers show in a plain ``<img>``) and
Server-Sent Events for the transcript. Only the newest frame is kept; a JPEG is made at
most ``max_fps`` times a second, in a worker thread, once for all viewers, and only while
a page shows the video (or once for a snapshot asked for): a JPEG costs milliseconds of a
core, and an agent mostly runs with no one watching. Frames that arrive faster are
replaced before they are encoded and counted as dropped: memory stays flat however slow
the page or the machine.

A page opened (or reloaded, or reconnected) mid-session is told what it missed: the last
``HISTORY_LINES`` lines of the conversation, the line the user is still saying, who is
speaking, and the video's size, which the page keeps the avatar's shape by.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import time
from collections import deque
from typing import Any

import numpy as np
from aiohttp import web
from loguru import logger
from PIL import Image
from pipecat.frames.frames import (
    BotStartedSpeakingFrame,
    BotStoppedSpeakingFrame,
    CancelFrame,
    EndFrame,
    Frame,
    InterimTranscriptionFrame,
    OutputImageRawFrame,
    StartFrame,
    TranscriptionFrame,
    UserStartedSpeakingFrame,
    UserStoppedSpeakingFrame,
)
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor

from agent.heygen.frames import I420, HeyGenAvatarTranscriptFrame

BOUNDARY = "heygenframe"
DROP_REPORT_INTERVAL_S = 5.0
#: Finished transcript lines kept for a page that opens late.
HISTORY_LINES = 200

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>HeyGen avatar</title>
<style>
 body{margin:0;font:15px system-ui,sans-serif;background:#111;color:#eee;display:flex;gap:16px;
      padding:16px;box-sizing:border-box;height:100vh}
 #video{flex:0 1 auto;align-self:flex-start;min-width:0;width:auto;height:auto;
        max-width:66vw;max-height:calc(100vh - 32px);object-fit:contain;background:#000}
 #side{flex:1;display:flex;flex-direction:column;min-width:200px}
 #status span{display:inline-block;padding:2px 8px;margin-right:6px;border-radius:9px;
              background:#333}
 #status span.on{background:#2a7}
 #transcript{flex:1;overflow-y:auto;margin-top:12px}
 #transcript p{margin:6px 0} .user b{color:#8cf} .avatar b{color:#fc8} .interim{opacity:.6}
</style></head><body>
<img id="video" src="/video.mjpg" alt="avatar video">
<div id="side">
 <div id="status"><span id="user">user speaking</span><span id="avatar">avatar speaking</span></div>
 <div id="transcript"></div>
</div>
<script>
const t = document.getElementById('transcript'), video = document.getElementById('video');
let interim = {};  // who -> the line still being said, which the next one replaces
function speaking(who, on) { document.getElementById(who).className = on ? 'on' : ''; }
function line(e) {
  let p = interim[e.who];
  if (!p) { p = document.createElement('p'); t.appendChild(p); }
  p.className = e.who + (e.interim ? ' interim' : '');
  p.innerHTML = '<b>' + e.who + ':</b> ';
  p.appendChild(document.createTextNode(e.text));
  if (e.interim) interim[e.who] = p; else delete interim[e.who];
}
const es = new EventSource('/events');
es.onmessage = (m) => {
  const e = JSON.parse(m.data);
  if (e.type === 'video') {  // the frame's size: the box keeps its shape, never stretched
    video.style.aspectRatio = e.width + ' / ' + e.height;
    video.dataset.size = e.width + 'x' + e.height;
  } else if (e.type === 'speaking') {
    speaking(e.who, e.on);
  } else if (e.type === 'history') {  // on (re)connect: everything so far, once
    t.replaceChildren(); interim = {};
    e.lines.forEach(line);
    for (const [who, on] of Object.entries(e.speaking)) speaking(who, on);
  } else if (e.type === 'transcript') {
    line(e);
  }
  t.scrollTop = t.scrollHeight;
};
</script></body></html>
"""


#: Video's I420 is BT.601 limited range (luma 16-235, chroma 16-240); JPEG's YCbCr is
#: full range. One table lookup per plane stretches it; without it black is grey.
_LUMA = np.clip((np.arange(256) - 16) * 255 / 219, 0, 255).round().astype(np.uint8)
_CHROMA = np.clip((np.arange(256) - 128) * 255 / 224 + 128, 0, 255).round().astype(np.uint8)


def to_jpeg(frame: OutputImageRawFrame, quality: int = 80) -> bytes:
    """JPEG from I420 without an RGB round trip: JPEG is YCbCr inside anyway."""
    width, height = frame.size
    data = np.frombuffer(frame.image, np.uint8)
    if frame.format == I420:
        y = _LUMA[data[: width * height].reshape(height, width)]
        chroma = (width // 2) * (height // 2)
        u = _CHROMA[data[width * height : width * height + chroma].reshape(height // 2, width // 2)]
        v = _CHROMA[data[width * height + chroma :].reshape(height // 2, width // 2)]
        planes = [Image.fromarray(p) for p in (y, u, v)]
        planes[1:] = [p.resize((width, height)) for p in planes[1:]]
        image = Image.merge("YCbCr", planes)
    else:
        image = Image.frombytes(frame.format or "RGB", (width, height), frame.image)
        image = image.convert("RGB")
    out = io.BytesIO()
    image.save(out, "JPEG", quality=quality)
    return out.getvalue()


class ViewerOutput(FrameProcessor):
    """Serves the page on ``host:port`` (0 = a free port) from StartFrame to the end."""

    def __init__(
        self, *, host: str = "127.0.0.1", port: int = 0, max_fps: float = 15.0,
        name: str | None = None,
    ) -> None:
        super().__init__(name=name)
        self.host, self.port, self.max_fps = host, port, max_fps
        self.frames_dropped = 0
        self.jpegs_made = 0
        self._latest: OutputImageRawFrame | None = None
        self._new_frame = asyncio.Event()
        self._jpeg: bytes | None = None
        self._jpeg_of: OutputImageRawFrame | None = None  # the frame it shows
        self._jpeg_ready = asyncio.Condition()
        self._watchers = 0  # open video streams
        self._watched = asyncio.Event()
        self._subscribers: set[asyncio.Queue[str]] = set()
        self._history: deque[dict[str, Any]] = deque(maxlen=HISTORY_LINES)
        self._interim: dict[str, Any] | None = None
        self._speaking = {"user": False, "avatar": False}
        self._size: tuple[int, int] | None = None
        self._runner: web.AppRunner | None = None
        self._encoder: asyncio.Task[None] | None = None
        self._stopping = False

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, StartFrame):
            await self.start_server()
        elif isinstance(frame, OutputImageRawFrame):
            if self._watchers and self._latest is not None and self._new_frame.is_set():
                self.frames_dropped += 1  # replaced before it was encoded
            self._latest = frame
            self._new_frame.set()
            if frame.size != self._size:
                self._size = (frame.size[0], frame.size[1])
                self._publish(self._size_event())
        elif isinstance(frame, EndFrame | CancelFrame):
            await self.stop_server()
        else:
            self._publish_event(frame)
        await self.push_frame(frame, direction)

    # ------------------------------------------------------------------ server

    async def start_server(self) -> None:
        if self._runner is not None:
            return
        app = web.Application()
        app.router.add_get("/", self._page)
        app.router.add_get("/video.mjpg", self._mjpeg)
        app.router.add_get("/snapshot.jpg", self._snapshot)
        app.router.add_get("/events", self._events)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        self._encoder = asyncio.get_running_loop().create_task(self._encode_loop())
        logger.info(f"Viewer: open {self.url}")

    async def stop_server(self) -> None:
        # Wake every open stream so its handler returns; otherwise the server's shutdown
        # waits for them (a browser tab keeps the MJPEG stream open forever).
        self._stopping = True
        async with self._jpeg_ready:
            self._jpeg_ready.notify_all()
        for queue in self._subscribers:
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait("")
        if self._encoder is not None:
            self._encoder.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._encoder
            self._encoder = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _encode_loop(self) -> None:
        period = 1 / self.max_fps
        next_report = time.monotonic() + DROP_REPORT_INTERVAL_S
        reported = 0
        while True:
            await self._watched.wait()
            await self._new_frame.wait()
            self._new_frame.clear()
            frame = self._latest
            if frame is None:
                continue
            started = time.monotonic()
            await self._encode(frame)
            if time.monotonic() >= next_report and self.frames_dropped > reported:
                logger.debug(f"Viewer: {self.frames_dropped - reported} frames skipped "
                             f"(showing at most {self.max_fps:g} fps)")
                reported, next_report = self.frames_dropped, time.monotonic() + 5
            await asyncio.sleep(max(0.0, period - (time.monotonic() - started)))

    async def _encode(self, frame: OutputImageRawFrame) -> bytes:
        jpeg = await asyncio.to_thread(to_jpeg, frame)
        async with self._jpeg_ready:
            self._jpeg, self._jpeg_of = jpeg, frame
            self.jpegs_made += 1
            self._jpeg_ready.notify_all()
        return jpeg

    async def _page(self, request: web.Request) -> web.Response:
        return web.Response(text=PAGE, content_type="text/html")

    async def _snapshot(self, request: web.Request) -> web.Response:
        frame = self._latest
        if frame is None:
            return web.Response(status=503, text="no video yet")
        jpeg = self._jpeg if self._jpeg_of is frame else None
        if jpeg is None:  # no page is watching: made for this request
            jpeg = await self._encode(frame)
        return web.Response(body=jpeg, content_type="image/jpeg")

    async def _mjpeg(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={"Content-Type": f"multipart/x-mixed-replace; boundary={BOUNDARY}",
                     "Cache-Control": "no-store"})
        await response.prepare(request)
        sent: list[bytes | None] = [None]

        def fresh() -> bool:
            return self._stopping or self._jpeg is not sent[0]

        self._watchers += 1
        self._watched.set()
        try:
            with contextlib.suppress(ConnectionResetError, asyncio.CancelledError):
                while True:
                    async with self._jpeg_ready:
                        await self._jpeg_ready.wait_for(fresh)
                        jpeg = sent[0] = self._jpeg
                    if self._stopping or jpeg is None:
                        break
                    await response.write(
                        f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\n"
                        f"Content-Length: {len(jpeg)}\r\n\r\n".encode() + jpeg + b"\r\n")
        finally:
            self._watchers -= 1
            if not self._watchers:
                self._watched.clear()
        return response

    async def _events(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                               "Cache-Control": "no-store"})
        await response.prepare(request)
        queue: asyncio.Queue[str] = asyncio.Queue(maxsize=200)
        # what happened before this page connected, then from the same instant (no await
        # in between) what happens next: no line missed or told twice
        self._subscribers.add(queue)
        catch_up = [json.dumps(self._history_event())]
        if self._size is not None:
            catch_up.insert(0, json.dumps(self._size_event()))
        try:
            await response.write(b": connected\n\n")
            for message in catch_up:
                await response.write(f"data: {message}\n\n".encode())
            while not self._stopping:
                message = await queue.get()
                if message:
                    await response.write(f"data: {message}\n\n".encode())
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self._subscribers.discard(queue)
        return response

    def _history_event(self) -> dict[str, Any]:
        lines = [*self._history, *([self._interim] if self._interim else [])]
        return {"type": "history", "lines": lines, "speaking": dict(self._speaking)}

    def _size_event(self) -> dict[str, Any]:
        assert self._size is not None
        return {"type": "video", "width": self._size[0], "height": self._size[1]}

    def _publish_event(self, frame: Frame) -> None:
        event = _event_for(frame)
        if event is None:
            return
        if event["type"] == "speaking":
            self._speaking[event["who"]] = event["on"]
        elif event["interim"]:
            self._interim = event
        else:
            self._history.append(event)
            if event["who"] == "user":
                self._interim = None  # the line it was is now said
        self._publish(event)

    def _publish(self, event: dict[str, Any]) -> None:
        message = json.dumps(event)
        for queue in self._subscribers:
            if queue.full():
                queue.get_nowait()  # a stalled page loses old lines, never memory
            queue.put_nowait(message)


def _event_for(frame: Frame) -> dict[str, Any] | None:
    if isinstance(frame, TranscriptionFrame):
        return {"type": "transcript", "who": "user", "text": frame.text, "interim": False}
    if isinstance(frame, InterimTranscriptionFrame):
        return {"type": "transcript", "who": "user", "text": frame.text, "interim": True}
    if isinstance(frame, HeyGenAvatarTranscriptFrame):
        return {"type": "transcript", "who": "avatar", "text": frame.text, "interim": False}
    speaking: dict[type[Frame], tuple[str, bool]] = {
        UserStartedSpeakingFrame: ("user", True),
        UserStoppedSpeakingFrame: ("user", False),
        BotStartedSpeakingFrame: ("avatar", True),
        BotStoppedSpeakingFrame: ("avatar", False),
    }
    who_on = speaking.get(type(frame))
    if who_on is not None:
        return {"type": "speaking", "who": who_on[0], "on": who_on[1]}
    return None
