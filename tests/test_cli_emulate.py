"""``heygen-agent emulate`` as a person runs it: a subprocess, stopped with SIGTERM."""

from __future__ import annotations

import asyncio
import re
import signal
import sys

import pytest

from agent.heygen import api
from agent.heygen.protocol import interactive as ia


async def start(*args: str) -> tuple[asyncio.subprocess.Process, list[str]]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "agent", "emulate", "--port", "0", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )
    assert process.stdout is not None
    lines: list[str] = []
    async with asyncio.timeout(30):
        while not lines or not lines[-1].startswith("Ctrl-C"):
            line = (await process.stdout.readline()).decode()
            if not line:
                break
            lines.append(line.rstrip())
    return process, lines


@pytest.mark.parametrize("livekit", [False, True], ids=["no-livekit", "with-livekit"])
async def test_emulate_prints_how_to_use_it_and_serves(livekit: bool) -> None:
    if livekit:
        from tests.machine import require_livekit_binary

        require_livekit_binary()
    process, lines = await start(*([] if livekit else ["--no-livekit"]), "--api-key", "k-1234567")
    try:
        text = "\n".join(lines)
        match = re.search(r"listening on (http://127\.0\.0\.1:\d+)", text)
        assert match, text
        base_url = match.group(1)
        assert f"base_url: {base_url}" in text and "api_key: k-1234567" in text
        assert ("LiveKit: ws://127.0.0.1:" in text) is livekit
        # LiveAvatar too, from its own variables, with a key it takes
        la_line = re.search(r"LIVEAVATAR_BASE_URL=(\S+) LIVEAVATAR_API_KEY=(\S+)", text)
        assert la_line and la_line.group(1) == base_url, text
        async with api.LiveAvatarClient(la_line.group(2), base_url=base_url) as la_client:
            assert await la_client.list_public_avatars()
        async with api.HeyGenClient("k-1234567", base_url=base_url) as client:
            answer = await client.new_session(ia.NewSessionRequest())
            assert answer.url.startswith("ws://127.0.0.1:") is livekit
            await client.start_session(answer.session_id)
            await client.stop_session(answer.session_id)
    finally:
        process.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(process.wait(), 20)
    assert code == 0


async def test_emulate_help() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "agent", "emulate", "--help", stdout=asyncio.subprocess.PIPE)
    out, _ = await process.communicate()
    assert process.returncode == 0 and b"--tls" in out and b"--fail-next" in out


@pytest.mark.parametrize("port", [443, 8443])
def test_tls_says_how_to_point_the_official_js_client(port: int) -> None:
    from agent.commands.emulate import describe
    from agent.emulator.config import EmulatorConfig
    from agent.emulator.server import EmulatorServer

    text = describe(EmulatorServer(EmulatorConfig(), port=port, tls=True), None)
    if port == 443:
        assert "(@heygen/streaming-avatar): basePath https://127.0.0.1\n" in text
    else:
        assert "use --port 443 for it" in text
    assert "JS client" not in describe(EmulatorServer(EmulatorConfig(), port=port), None)


async def test_a_port_in_use_is_one_line_that_says_what_to_do() -> None:
    """A second ``emulate`` on the same port (the examples start one with ``&``) printed
    thirty lines of traceback ending in errno 98."""
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "agent", "emulate", "--no-livekit", "--port", str(port),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(process.communicate(), 60)
    said = (out + err).decode().strip().splitlines()
    assert process.returncode == 1, said
    assert len(said) == 1 and f"127.0.0.1:{port} is in use" in said[0] and "--port" in said[0]
