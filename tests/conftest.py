from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from loguru import logger

from agent.emulator.config import EmulatorConfig
from agent.emulator.livekit_server import LiveKitServer
from agent.emulator.server import EmulatorServer
from tests.machine import require_livekit_binary


@pytest.fixture(autouse=True)
def state_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test (and the processes it starts) records sessions in a directory of its own,
    never in the user's."""
    directory = tmp_path_factory.mktemp("state")
    monkeypatch.setenv("HEYGEN_AGENT_STATE_DIR", str(directory))
    return directory


@pytest.fixture
async def livekit_server() -> AsyncIterator[LiveKitServer]:
    """``livekit-server --dev`` on free 127.0.0.1 ports, for one test.

    Per test rather than per session: the server starts in about a second, and a test
    that leaves a room behind cannot disturb the next one."""
    async with LiveKitServer(require_livekit_binary()) as server:
        yield server


@pytest.fixture
async def emulator(livekit_server: LiveKitServer) -> AsyncIterator[EmulatorServer]:
    """The HeyGen emulator, its avatars in ``livekit_server``; a module that needs other
    settings has a fixture of its own by the same name."""
    async with EmulatorServer(EmulatorConfig(livekit=livekit_server.settings)) as server:
        yield server


@pytest.fixture
def captured_logs() -> Iterator[list[str]]:
    """Every loguru and stdlib log line, at every level."""
    lines: list[str] = []
    sink = logger.add(lambda m: lines.append(str(m)), level="TRACE")
    handler = logging.Handler(level=logging.DEBUG)
    handler.emit = lambda record: lines.append(record.getMessage())  # type: ignore[method-assign]
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield lines
    root.removeHandler(handler)
    root.setLevel(old_level)
    logger.remove(sink)
