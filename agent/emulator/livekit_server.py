"""A real ``livekit-server --dev`` on loopback, for the emulator, the demo and the tests.

The emulator's avatars are real LiveKit participants, so something must run a LiveKit
server. This finds the binary the project's scripts installed, gives it free ports on
127.0.0.1 only, waits until it answers, and stops it afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import secrets
import shutil
import signal
import socket
import tempfile
from pathlib import Path
from types import TracebackType

import httpx
from loguru import logger

from agent.emulator.config import LiveKitSettings

#: The version the project's scripts install (scripts/setup pins the same).
PINNED_VERSION = "v1.13.5"
INSTALL_HINT = (
    "livekit-server not found: run scripts/setup "
    f"(go install github.com/livekit/livekit-server/cmd/server@{PINNED_VERSION})"
)
API_KEY = "heygen-agent"
REPO_TOOLS = Path(__file__).resolve().parents[2] / ".tools" / "bin" / "livekit-server"


class LiveKitUnavailable(RuntimeError):
    """No livekit-server binary, or it did not come up."""


def find_binary() -> str | None:
    """``$LIVEKIT_SERVER``, then ``livekit-server`` on PATH, then the repo's .tools/bin."""
    explicit = os.environ.get("LIVEKIT_SERVER")
    if explicit:
        return explicit if Path(explicit).is_file() else None
    on_path = shutil.which("livekit-server")
    if on_path:
        return on_path
    return str(REPO_TOOLS) if REPO_TOOLS.is_file() else None


#: Below Linux's ephemeral range (32768-60999): a port picked here and released before
#: livekit-server binds it is never handed to someone else's bind(("", 0)) meanwhile.
_PORT_RANGE = (20_000, 32_000)
_START_ATTEMPTS = 3
STOP_WAIT_S = 3.0


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A port that is free on 127.0.0.1 now, outside the ephemeral range."""
    for _ in range(200):
        port = random.randint(*_PORT_RANGE)
        with socket.socket(socket.AF_INET, kind) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise LiveKitUnavailable("no free port found for livekit-server")


class LiveKitServer:
    """``async with LiveKitServer() as lk:`` then ``lk.settings`` for the emulator."""

    def __init__(self, binary: str | None = None, *, host: str = "127.0.0.1") -> None:
        found = binary or find_binary()
        if found is None:
            raise LiveKitUnavailable(INSTALL_HINT)
        self.binary = found
        self.host = host
        self.port = free_port()
        self.rtc_tcp_port = free_port()
        self.rtc_udp_port = free_port(socket.SOCK_DGRAM)
        self._process: asyncio.subprocess.Process | None = None
        self._dir = tempfile.TemporaryDirectory(prefix="heygen-livekit-")
        self.log_path = Path(self._dir.name) / "livekit.log"
        # Fresh per server and long enough for HS256: "--dev"'s well-known devkey/secret
        # would let anyone on the machine mint tokens for its rooms.
        self.api_secret = secrets.token_urlsafe(32)

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    @property
    def settings(self) -> LiveKitSettings:
        return LiveKitSettings(url=self.url, api_key=API_KEY, api_secret=self.api_secret)

    def _config(self) -> str:
        return "\n".join(
            [
                f"port: {self.port}",
                f"bind_addresses: [{self.host}]",
                "rtc:",
                f"  tcp_port: {self.rtc_tcp_port}",
                f"  udp_port: {self.rtc_udp_port}",
                "  use_external_ip: false",
                f"  node_ip: {self.host}",
                "keys:",
                f"  {API_KEY}: {self.api_secret}",
                "logging:",
                "  level: info",
                "",
            ]
        )

    async def start(self, timeout_s: float = 20.0) -> None:
        """Start and wait until it answers; on a port taken meanwhile, try fresh ports."""
        for attempt in range(1, _START_ATTEMPTS + 1):
            try:
                await self._start_once(timeout_s)
                return
            except LiveKitUnavailable as exc:
                if "address already in use" not in str(exc) or attempt == _START_ATTEMPTS:
                    raise
                logger.warning(f"livekit-server: a port was taken; retrying ({attempt})")
                self._dir = tempfile.TemporaryDirectory(prefix="heygen-livekit-")
                self.log_path = Path(self._dir.name) / "livekit.log"
                self.port, self.rtc_tcp_port = free_port(), free_port()
                self.rtc_udp_port = free_port(socket.SOCK_DGRAM)

    async def _start_once(self, timeout_s: float) -> None:
        config = Path(self._dir.name) / "livekit.yaml"
        config.write_text(self._config())
        log = self.log_path.open("wb")
        self._process = await asyncio.create_subprocess_exec(
            self.binary, "--dev", "--config", str(config), "--node-ip", self.host,
            stdout=log, stderr=asyncio.subprocess.STDOUT, stdin=asyncio.subprocess.DEVNULL,
        )
        log.close()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        async with httpx.AsyncClient(timeout=1.0) as http:
            while loop.time() < deadline:
                if self._process.returncode is not None:
                    break
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get(f"http://{self.host}:{self.port}/")).status_code < 500:
                        logger.info(f"livekit-server ready at {self.url}")
                        return
                await asyncio.sleep(0.1)
        tail = self.log_tail()
        await self.stop()
        raise LiveKitUnavailable(f"livekit-server did not come up on {self.url}: {tail}")

    def log_tail(self, lines: int = 15) -> str:
        try:
            return " | ".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def kill_now(self) -> None:
        """Kill the server at once, from any thread (a process ending without its event
        loop: the server would otherwise outlive it)."""
        process = self._process
        if process is not None and process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGKILL)

    async def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.returncode is None:
            process.terminate()
            try:
                # It drains rooms that still exist before exiting; these rooms are ours
                # and throwaway, so a short wait, then kill.
                await asyncio.wait_for(process.wait(), STOP_WAIT_S)
            except TimeoutError:
                process.kill()
                await process.wait()
        self._dir.cleanup()

    async def __aenter__(self) -> LiveKitServer:
        await self.start()
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()
