"""Waiting in tests: on the thing the test is about, never on a guess of how long it takes.

A fixed sleep or a tight timeout encodes this machine's speed on a quiet day; CI runs on
two cores, often loaded, and goes red. So a test waits for the event itself (a future, an
emulator count, a frame), and the deadline here only stops a test that would otherwise
hang: it is generous, and reaching it is a failure that names what never happened.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

#: How long a test waits for something that should happen in well under a second.
DEADLINE_S = 30.0


async def within(awaitable: Awaitable[T], what: str, deadline_s: float = DEADLINE_S) -> T:
    """``awaitable``'s result, or a failure naming ``what`` did not happen in time."""
    try:
        async with asyncio.timeout(deadline_s):
            return await awaitable
    except TimeoutError:
        raise AssertionError(f"not within {deadline_s:.0f} s: {what}") from None


async def eventually(
    predicate: Callable[[], bool], what: str, deadline_s: float = DEADLINE_S
) -> None:
    """Poll ``predicate`` until it holds. Only for state that signals nothing (a LiveKit
    callback's bookkeeping, another process's files): prefer :func:`within` on an event."""

    async def poll() -> None:
        while not predicate():  # noqa: ASYNC110 - this is the one sanctioned poll
            await asyncio.sleep(0.02)

    await within(poll(), what, deadline_s)
