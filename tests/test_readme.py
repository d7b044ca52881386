"""The README's Python example, run as written against the emulator (no sound card here:
the microphone and speaker fall back, as they say they will), then stopped with Ctrl-C."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from pathlib import Path

import pytest

from agent.emulator.config import EmulatorConfig
from agent.emulator.livekit_server import LiveKitServer
from agent.emulator.server import EmulatorServer
from agent.heygen.protocol import voice_chat as vc
from tests.waiting import eventually, within

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_example() -> str:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.DOTALL)
    assert blocks, "the README shows a Python example"
    return str(blocks[0])


def has_input_device() -> bool:
    try:
        import sounddevice

        sounddevice.query_devices(kind="input")
    except Exception:
        return False
    return True


def test_the_example_is_a_dozen_lines_or_so() -> None:
    code = [line for line in readme_example().splitlines()
            if line.strip() and not line.lstrip().startswith(("import", "from", "#"))]
    assert len(code) <= 14, code


@pytest.mark.livekit
async def test_readme_example_runs_against_the_emulator(
    livekit_server: LiveKitServer, tmp_path: Path
) -> None:
    script = tmp_path / "example.py"
    script.write_text(readme_example())
    async with EmulatorServer(EmulatorConfig(livekit=livekit_server.settings)) as server:
        env = {**os.environ, "HEYGEN_BASE_URL": server.base_url, "HEYGEN_API_KEY": "readme-key"}
        process = await asyncio.create_subprocess_exec(
            sys.executable, str(script), env=env, cwd=README.parent,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        registry = server.emulator.registry
        await within(server.emulator.requests.reach(vc.CHAT_PATH), "the example connected")
        session = next(iter(registry))
        await eventually(lambda: session.audio.frames > 50,
                         "the (silent fallback) microphone streams to HeyGen")
        process.send_signal(signal.SIGINT)
        output, _ = await within(process.communicate(), "the example ended after Ctrl-C")
        text = output.decode(errors="replace")
        assert registry.counts() == {"created": 1, "started": 1, "stopped": 1, "expired": 0,
                                     "open": 0}, text
        assert "Traceback" not in text, text
        if not has_input_device():
            assert "Microphone unavailable (no audio device found); sending silence" in text
