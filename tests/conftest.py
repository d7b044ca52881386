from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from agent.emulator.livekit_server import LiveKitServer
from tests.machine import require_livekit_binary


@pytest.fixture
async def livekit_server() -> AsyncIterator[LiveKitServer]:
    """``livekit-server --dev`` on free 127.0.0.1 ports, for one test.

    Per test rather than per session: the server starts in about a second, and a test
    that leaves a room behind cannot disturb the next one."""
    async with LiveKitServer(require_livekit_binary()) as server:
        yield server
