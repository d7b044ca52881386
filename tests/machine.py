"""What tests need of the machine: programs, the livekit-server binary, headless Chromium.

On a developer machine a missing piece skips the test with how to install it; in CI, which
must run every test, it fails."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import NoReturn

import pytest

from agent.emulator.livekit_server import INSTALL_HINT, find_binary


def missing(reason: str, *, in_ci: str | None = None) -> NoReturn:
    """Skip with ``reason``, or in CI fail with ``in_ci`` (``reason`` when not given)."""
    if os.environ.get("CI"):
        pytest.fail(in_ci or reason)
    pytest.skip(reason)


def require(program: str, install: str) -> str:
    """The program's path, or :func:`missing`."""
    path = shutil.which(program)
    if path is None:
        missing(f"{program} not installed: run scripts/setup ({install})")
    return path


def require_livekit_binary() -> str:
    binary = find_binary()
    if binary is None:
        missing(INSTALL_HINT, in_ci=f"CI must run the LiveKit tests: {INSTALL_HINT}")
    return binary


def headless_chromium(chromium: str, profile: Path, *args: str) -> list[str]:
    """A Chromium command line for tests: headless, sandbox-less (root, containers), no
    background traffic, its own throwaway profile; ``args`` follow."""
    return [
        chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
        "--no-first-run", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", f"--user-data-dir={profile}", *args,
    ]
