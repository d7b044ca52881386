"""What the emulator has seen, as counts a test can wait on.

A test that asks "has the client's request reached the service yet?" must not answer with
a sleep: on a loaded machine every such guess is wrong some of the time. Each REST call
and socket handshake is counted here the moment it arrives (before any injected latency),
and :meth:`RequestCounts.reach` wakes as soon as a path's count gets there.
"""

from __future__ import annotations

import asyncio


class RequestCounts(dict[str, int]):
    """Requests seen per path; a path never seen counts 0."""

    def __init__(self) -> None:
        super().__init__()
        self._waiters: list[tuple[str, int, asyncio.Future[None]]] = []

    def __missing__(self, path: str) -> int:
        return 0

    def arrived(self, path: str) -> None:
        self[path] += 1
        waiting = []
        for wanted, count, future in self._waiters:
            if wanted == path and self[path] >= count:
                if not future.done():
                    future.set_result(None)
            else:
                waiting.append((wanted, count, future))
        self._waiters = waiting

    async def reach(self, path: str, count: int = 1) -> None:
        """Return once ``count`` requests to ``path`` have arrived (at once if they have)."""
        if self[path] >= count:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((path, count, future))
        await future
