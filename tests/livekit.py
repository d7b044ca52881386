"""A real livekit-server for tests: required in CI, skipped with a reason elsewhere."""

from __future__ import annotations

import os

import pytest

from agent.emulator.livekit_server import INSTALL_HINT, find_binary


def require_livekit_binary() -> str:
    binary = find_binary()
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the LiveKit tests: {INSTALL_HINT}")
        pytest.skip(INSTALL_HINT)
    return binary
