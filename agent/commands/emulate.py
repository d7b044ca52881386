"""``heygen-agent emulate``: the local HeyGen emulator, with its own LiveKit server.

The emulator (aiohttp, LiveKit) loads when this command runs, not when its parser is
built: every command line builds all parsers.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import signal
import sys
from typing import TYPE_CHECKING

from agent.commands import native

if TYPE_CHECKING:
    from agent.emulator.server import EmulatorServer

DEFAULT_PORT = 8700


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "emulate",
        help="run the local HeyGen emulator (and a LiveKit server) until Ctrl-C",
        description="Serve HeyGen's streaming API on this machine, with avatars that join a "
        "real LiveKit room. Point a YAML file's heygen.base_url (or HEYGEN_BASE_URL) at it.",
    )
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT,
                        help=f"0 picks a free port (default: {DEFAULT_PORT})")
    parser.add_argument("--tls", action="store_true",
                        help="serve https/wss with a self-signed certificate (browser clients)")
    parser.add_argument("--api-key", action="append", dest="api_keys", metavar="KEY",
                        help="accept only this key (repeatable); default: any non-empty key")
    parser.add_argument("--livekit-url", help="use this LiveKit server instead of starting one")
    parser.add_argument("--livekit-key", default="devkey",
                        help="with --livekit-url: that server's API key (default: devkey, "
                        "as livekit-server --dev)")
    parser.add_argument("--livekit-secret", default="secret",
                        help="with --livekit-url: its API secret (default: secret)")
    parser.add_argument("--no-livekit", action="store_true",
                        help="no media: sessions work, avatars publish nothing")
    parser.add_argument("--max-sessions", type=int, default=3, help="concurrent session limit")
    parser.add_argument("--duration-limit", type=float, default=600.0, metavar="SECONDS",
                        help="a session ends after this long, as HeyGen's plan limits "
                        "(default: 600)")
    parser.add_argument("--latency-ms", type=float, help="added to every REST answer")
    parser.add_argument("--fail-next", type=int, metavar="N",
                        help="the next N requests answer --fail-status")
    parser.add_argument("--fail-status", type=int, default=503,
                        help="the HTTP status of --fail-next's answers (default: 503)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    native.mark()
    return asyncio.run(_serve(args))


async def _serve(args: argparse.Namespace) -> int:
    from agent.emulator.config import EmulatorConfig, LiveKitSettings
    from agent.emulator.faults import FailNext, FaultSettings
    from agent.emulator.livekit_server import LiveKitServer, LiveKitUnavailable
    from agent.emulator.server import EmulatorServer

    faults = FaultSettings(
        latency_ms=args.latency_ms,
        fail_next=FailNext(count=args.fail_next, status=args.fail_status)
        if args.fail_next else None,
    )
    async with contextlib.AsyncExitStack() as stack:
        livekit: LiveKitSettings | None = None
        if args.livekit_url:
            livekit = LiveKitSettings(args.livekit_url, args.livekit_key, args.livekit_secret)
        elif not args.no_livekit:
            try:
                livekit = (await stack.enter_async_context(LiveKitServer())).settings
            except LiveKitUnavailable as exc:
                print(f"heygen-agent emulate: {exc}", file=sys.stderr)
                return 1
        config = EmulatorConfig(
            api_keys=frozenset(args.api_keys) if args.api_keys else None,
            livekit=livekit,
            max_concurrent_sessions=args.max_sessions,
            session_duration_limit_s=args.duration_limit,
            faults=faults,
        )
        server = EmulatorServer(config, host=args.host, port=args.port, tls=args.tls)
        try:
            await stack.enter_async_context(server)
        except OSError as exc:  # the address: one line, not aiohttp's traceback
            where = f"{args.host}:{args.port}"
            print("heygen-agent emulate: " + (
                f"{where} is in use (another emulator?); choose another with --port, or "
                "--port 0 for a free one" if exc.errno == errno.EADDRINUSE
                else f"cannot listen on {where}: {exc.strerror or exc}"), file=sys.stderr)
            return 1
        print(describe(server, args.api_keys), flush=True)
        await _until_signalled()
    return 0


def describe(server: EmulatorServer, api_keys: list[str] | None) -> str:
    from agent.emulator.config import EMULATOR_LIVEAVATAR_KEY

    key = api_keys[0] if api_keys else "any-key-you-like"
    livekit = server.config.livekit.url if server.config.livekit else "none (no media)"
    lines = [
        f"HeyGen emulator listening on {server.base_url}",
        f"  LiveKit: {livekit}",
        f"  admin:   {server.base_url}/_emulator/state",
    ]
    if server.cert_path is not None:
        lines.append(f"  TLS certificate (trust it in your client): {server.cert_path}")
    if server.tls:
        # The official client writes wss://<hostname>/v1/ws/... : the port is dropped.
        lines.append(
            f"  HeyGen's JS client (@heygen/streaming-avatar): basePath https://{server.host}"
            if server.port == 443 else
            "  HeyGen's JS client drops the port from its wss:// URL: use --port 443 for it"
        )
    lines += [
        "Use it from a pipeline file:",
        "  heygen:",
        f"    base_url: {server.base_url}",
        f"    api_key: {key}",
        f"or from the environment: HEYGEN_BASE_URL={server.base_url} HEYGEN_API_KEY={key}",
        # LiveAvatar keys are not HeyGen's: this one the emulator always takes as LiveAvatar's
        f"LiveAvatar (heygen.backend: liveavatar): LIVEAVATAR_BASE_URL={server.base_url} "
        f"LIVEAVATAR_API_KEY={EMULATOR_LIVEAVATAR_KEY}",
        "Ctrl-C stops it.",
    ]
    return "\n".join(lines)


async def _until_signalled() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
