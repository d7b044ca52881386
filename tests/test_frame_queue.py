from __future__ import annotations

import asyncio

import pytest

from agent.heygen.frame_queue import DropOldestQueue


async def test_keeps_the_newest_and_counts_the_rest() -> None:
    queue: DropOldestQueue[int] = DropOldestQueue(3)
    for i in range(10):
        queue.put(i)
    assert len(queue) == 3 and queue.dropped == 7
    assert [await queue.get() for _ in range(3)] == [7, 8, 9]
    assert queue.take_dropped() == 7 and queue.take_dropped() == 0


async def test_get_waits_for_a_put() -> None:
    queue: DropOldestQueue[str] = DropOldestQueue(1)
    waiter = asyncio.create_task(queue.get())
    await asyncio.sleep(0.01)
    assert not waiter.done()
    queue.put("frame")
    assert await asyncio.wait_for(waiter, 1) == "frame"


def test_size_must_be_positive() -> None:
    with pytest.raises(ValueError):
        DropOldestQueue(0)
