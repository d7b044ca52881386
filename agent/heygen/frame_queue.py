"""A bounded queue that drops the oldest item when full, and counts what it dropped.

Video arrives at the avatar's frame rate whatever the consumer can manage. A consumer
that falls behind should see the newest frames, late ones are worthless, and memory
must not grow; the count lets it say how much it missed.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Generic, TypeVar

T = TypeVar("T")


class DropOldestQueue(Generic[T]):
    def __init__(self, maxsize: int) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be at least 1")
        self.maxsize = maxsize
        self.dropped = 0
        self._items: deque[T] = deque()
        self._ready = asyncio.Event()

    def __len__(self) -> int:
        return len(self._items)

    def put(self, item: T) -> None:
        if len(self._items) >= self.maxsize:
            self._items.popleft()
            self.dropped += 1
        self._items.append(item)
        self._ready.set()

    async def get(self) -> T:
        while not self._items:
            self._ready.clear()
            await self._ready.wait()
        return self._items.popleft()

    def take_dropped(self) -> int:
        """How many were dropped since the last call (for periodic warnings)."""
        dropped, self.dropped = self.dropped, 0
        return dropped
