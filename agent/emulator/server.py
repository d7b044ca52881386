"""Running the emulator on a socket: for tests (an async context manager) and the CLI."""

from __future__ import annotations

import tempfile
from pathlib import Path
from types import TracebackType

from aiohttp import web

from agent.emulator.app import create_app
from agent.emulator.config import EmulatorConfig
from agent.emulator.state import EMULATOR_KEY, AvatarFactory, Emulator
from agent.emulator.tls import server_context, write_self_signed


class EmulatorServer:
    """The emulator listening on ``host:port`` (port 0 picks a free one).

    With ``tls`` it serves HTTPS and WSS with a certificate it makes itself; the
    certificate's path is :attr:`cert_path`, for clients that must trust it.
    """

    def __init__(
        self,
        config: EmulatorConfig | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        tls: bool = False,
        avatar_factory: AvatarFactory | None = None,
    ) -> None:
        self.config = config or EmulatorConfig()
        self.host = host
        self.port = port
        self.tls = tls
        self.cert_path: Path | None = None
        self._app = create_app(self.config, avatar_factory)
        self._runner = web.AppRunner(self._app, access_log=None)
        self._tmp: tempfile.TemporaryDirectory[str] | None = None

    @property
    def emulator(self) -> Emulator:
        return self._app[EMULATOR_KEY]

    @property
    def base_url(self) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://{self.host}:{self.port}"

    async def start(self) -> None:
        await self._runner.setup()
        ssl_context = None
        if self.tls:
            self._tmp = tempfile.TemporaryDirectory(prefix="heygen-emulator-tls-")
            cert, key = write_self_signed(Path(self._tmp.name), (self.host, "localhost"))
            self.cert_path = cert
            ssl_context = server_context(cert, key)
        site = web.TCPSite(self._runner, self.host, self.port, ssl_context=ssl_context)
        await site.start()
        if self.port == 0:
            self.port = int(self._runner.addresses[0][1])

    async def stop(self) -> None:
        await self._runner.cleanup()
        if self._tmp is not None:
            self._tmp.cleanup()

    async def __aenter__(self) -> EmulatorServer:
        await self.start()
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()
