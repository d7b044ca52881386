"""A page in headless Chromium that a test can ask things, over the DevTools protocol.

A screenshot after a fixed ``--timeout`` guesses how long a page takes to get where the
test looks; asking the live page (``Runtime.evaluate``) lets a test wait for the thing
itself: the transcript shown, the first video frame painted. Then a screenshot
(``Page.captureScreenshot``) is of a page known to be ready.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import json
import re
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import websockets
from PIL import Image

from tests.machine import headless_chromium, require
from tests.waiting import within

_LISTENING = re.compile(rb"DevTools listening on (ws://\S+)")


class Page:
    """One open tab; :meth:`evaluate` runs JavaScript in it and gives the value back."""

    def __init__(self, socket: Any) -> None:
        self._socket = socket
        self._ids = 0

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        self._ids += 1
        await self._socket.send(json.dumps({"id": self._ids, "method": method,
                                            "params": params}))
        while True:  # events may come first; the answer has our id
            reply = json.loads(await self._socket.recv())
            if reply.get("id") == self._ids:
                if "error" in reply:
                    raise AssertionError(f"{method}: {reply['error']}")
                result: dict[str, Any] = reply["result"]
                return result

    async def evaluate(self, expression: str) -> Any:
        result = await self.call("Runtime.evaluate", expression=expression,
                                 returnByValue=True)
        if "exceptionDetails" in result:
            raise AssertionError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def until(self, expression: str, holds: Callable[[Any], bool], what: str) -> Any:
        """The value of ``expression`` once ``holds`` it; asked every 50 ms, within the
        deadline (the page signals nothing a test can await)."""

        seen: list[Any] = [None]

        async def ask() -> Any:
            while not holds(value := await self.evaluate(expression)):
                seen[0] = value
                await asyncio.sleep(0.05)
            return value

        try:
            return await within(ask(), what)
        except AssertionError as failed:
            raise AssertionError(f"{failed}; the page last had {seen[0]!r}") from None

    async def screenshot(self) -> Image.Image:
        shot = await self.call("Page.captureScreenshot", format="png")
        return Image.open(io.BytesIO(base64.b64decode(shot["data"]))).convert("RGB")


@contextlib.asynccontextmanager
async def chromium_page(url: str, profile: Path, width: int = 1200,
                        height: int = 900) -> AsyncIterator[Page]:
    """``url`` open in headless Chromium with a ``width`` x ``height`` window."""
    chromium = require("chromium", "apt-get install chromium")
    process = await asyncio.create_subprocess_exec(
        *headless_chromium(chromium, profile, f"--window-size={width},{height}",
                           "--remote-debugging-port=0", url),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    assert process.stderr is not None
    stderr = process.stderr
    drain: asyncio.Task[bytes] | None = None
    try:

        async def listening() -> str:
            while line := await stderr.readline():
                if found := _LISTENING.search(line):
                    return found.group(1).decode()
            raise AssertionError("Chromium exited without its DevTools address")

        browser = await within(listening(), "Chromium's DevTools listening")
        drain = asyncio.create_task(stderr.read())  # a full pipe would stall Chromium
        port = browser.split(":")[2].split("/")[0]
        async with httpx.AsyncClient() as http:
            targets = (await http.get(f"http://127.0.0.1:{port}/json/list")).json()
        tab = next(t for t in targets if t["type"] == "page")
        async with websockets.connect(tab["webSocketDebuggerUrl"], max_size=None) as socket:
            yield Page(socket)
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()
        if drain is not None:
            await drain
