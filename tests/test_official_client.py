"""HeyGen's official JavaScript client, unchanged, against the emulator in headless Chromium.

The emulator exists so that software written for HeyGen runs against it with only the base
URL changed. The strongest evidence is HeyGen's own client (``@heygen/streaming-avatar``,
pinned in ``tests/official_client/package.json``) doing what a web app does: a token, a
session, a repeat over REST, an async talk, voice chat from a microphone (Chromium's fake
device playing espeak-ng speech), and stop; with either voice-chat transport (the WebSocket:
protobuf frames; LiveKit: a microphone track and data messages) and, on LiveKit, with
push-to-talk. The client builds its WebSocket URL as ``wss://<host>/v1/ws/...`` with no port, so the
emulator serves TLS on 443, which needs root (as CI has).
"""

from __future__ import annotations

import asyncio
import errno
import json
import mimetypes
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from agent.emulator.config import EmulatorConfig
from agent.emulator.livekit_server import LiveKitServer
from agent.emulator.server import EmulatorServer
from tests.machine import headless_chromium, missing, require
from tests.speech import speech_wav

pytestmark = pytest.mark.livekit

PAGE_DIR = Path(__file__).parent / "official_client"
CLIENT = PAGE_DIR / "node_modules" / "@heygen" / "streaming-avatar" / "lib" / "index.esm.js"
KEY = "official-client-key"
SPOKEN = "Please tell me about the weather in Paris today."


def skip_or_fail(why: str) -> None:
    missing(why, in_ci=f"CI must run the official-client test: {why}")


def require_port_443() -> None:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", 443))
        except OSError as exc:
            reason = "needs root" if exc.errno == errno.EACCES else exc.strerror
            skip_or_fail(f"cannot listen on 127.0.0.1:443 ({reason})")


class PageServer:
    """Serves the page and the client's npm files over plain HTTP, and takes the report
    the page POSTs back when it has finished."""

    def __init__(self) -> None:
        self.report: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def _take_report(self, request: web.Request) -> web.Response:
        if not self.report.done():
            self.report.set_result(json.loads(await request.text()))
        return web.Response(text="ok")

    async def __aenter__(self) -> PageServer:
        # Chromium runs a module script only when it is served as JavaScript.
        mimetypes.add_type("text/javascript", ".mjs")
        app = web.Application()
        app.router.add_post("/report", self._take_report)
        app.router.add_static("/", PAGE_DIR)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}/index.html"
        return self

    async def __aexit__(self, *_exc: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()


@pytest.fixture
async def emulator_on_443(livekit_server: LiveKitServer) -> AsyncIterator[EmulatorServer]:
    require_port_443()
    config = EmulatorConfig(api_keys=frozenset({KEY}), livekit=livekit_server.settings)
    async with EmulatorServer(config, port=443, tls=True) as server:
        yield server


async def run_page(chromium: str, page_url: str, microphone: Path, profile: Path,
                   pages: PageServer) -> tuple[dict[str, Any], str]:
    """Run the scenario page until it reports; return the report and Chromium's log."""
    args = headless_chromium(
        chromium, profile,
        # the emulator's certificate is self-signed
        "--ignore-certificate-errors",
        "--autoplay-policy=no-user-gesture-required",
        "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={microphone}",
        "--enable-logging=stderr", "--v=0",
        page_url,
    )
    process = await asyncio.create_subprocess_exec(
        *args, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    assert process.stderr is not None
    log = bytearray()

    async def drain() -> None:
        assert process.stderr is not None
        while chunk := await process.stderr.read(65536):
            log.extend(chunk)

    draining = asyncio.create_task(drain())
    try:
        report = await asyncio.wait_for(asyncio.shield(pages.report), 120)
    except TimeoutError:
        report = {"errors": ["the page sent no report within 120 s"]}
    finally:
        process.kill()
        await process.wait()
        await draining
    console = "\n".join(line for line in log.decode(errors="replace").splitlines()
                        if "CONSOLE" in line)
    return report, console


def between(report: dict[str, Any], first: str, last: str) -> list[str]:
    """Event names from step ``first`` to step ``last``."""
    order = {step["name"]: step["i"] for step in report["steps"]}
    return [e["name"] for e in report["events"] if order[first] < e["i"] < order[last]]


MODES = {
    "websocket": "transport=websocket",
    "livekit": "transport=livekit",
    "livekit-push-to-talk": "transport=livekit&push_to_talk=1",
}


@pytest.mark.parametrize("mode", MODES)
async def test_official_client_runs_unchanged_against_the_emulator(
    mode: str, emulator_on_443: EmulatorServer, tmp_path: Path
) -> None:
    chromium = require("chromium", "apt-get install chromium")
    if not CLIENT.exists():
        skip_or_fail(f"{CLIENT.relative_to(PAGE_DIR.parent)} missing: run scripts/setup (npm ci)")
    microphone = tmp_path / "microphone.wav"
    speech_wav(microphone, SPOKEN, pad_s=2.5)
    base = "https://127.0.0.1"
    assert emulator_on_443.base_url == "https://127.0.0.1:443"

    async with PageServer() as pages:
        report, console = await run_page(
            chromium, f"{pages.url}?base={base}&key={KEY}&{MODES[mode]}", microphone,
            tmp_path / "profile", pages)

    context = f"report: {json.dumps(report, indent=1)}\nchromium: {console}"
    assert report["errors"] == [], context
    assert [s["name"] for s in report["steps"]][-1] == "done", context

    # The stream the client hands to the page: the avatar's video, playing, and its audio.
    video = report["video"]
    assert video is not None, context
    assert (video["width"], video["height"]) == (640, 360), context
    assert video["frames"] >= 50, context  # well over 2 s of the 25 fps avatar
    assert video["audio_tracks"] == 1, context

    # Each utterance, in HeyGen's order, whichever way the text reached the avatar.
    for first, last in [("speak repeat sync", "speak talk async"),
                        ("speak talk async", "startVoiceChat")]:
        seen = [n for n in between(report, first, last) if n.startswith("avatar_")]
        assert seen[0] == "avatar_start_talking" and "avatar_stop_talking" in seen, context
        assert "avatar_talking_message" in seen and "avatar_end_message" in seen, context
    said = [e["detail"]["message"] for e in report["events"]
            if e["name"] == "avatar_talking_message"]
    assert "Hello" in " ".join(said), context

    # Voice chat: the emulator heard the fake microphone's speech and answered it.
    chat = between(report, "startVoiceChat", "stopAvatar")
    assert chat.index("user_start") < chat.index("user_stop"), context
    assert "user_end_message" in chat, context
    assert chat.index("user_stop") < max(i for i, n in enumerate(chat)
                                         if n == "avatar_stop_talking"), context

    session = emulator_on_443.emulator.describe()["per_session"][report["session_id"]]
    assert session["state"] == "stopped", session
    audio = session["audio"]
    assert audio["bad_frames"] == 0, audio
    if mode == "websocket":
        assert audio["text_frames"] == 1 and audio["room_texts"] == 0, audio  # the async talk
        # The client's ScriptProcessor hands over 512 samples at a time, at 16 kHz.
        assert audio["sample_rates"] == [16000] and list(audio["frame_samples"]) == ["512"]
        assert audio["seconds"] >= 2.0 and audio["room_seconds"] == 0, audio
    else:
        assert audio["room_texts"] == 1 and audio["text_frames"] == 0, audio  # the async talk
        assert audio["frames"] == 0 and audio["room_seconds"] >= 2.0, audio
    if mode == "livekit-push-to-talk":
        assert session["push_to_talk_events"] == ["start", "stop"], session
        # The turn is the button's: about the 3 s the page held it, of room audio.
        heard = [e["detail"]["message"] for e in report["events"]
                 if e["name"] == "user_talking_message"]
        seconds = float(heard[0].strip("(").split()[0])
        assert 2.5 <= seconds <= 4.5, heard
    else:
        assert session["push_to_talk_events"] == [] and audio["user_starts"] >= 1, audio
