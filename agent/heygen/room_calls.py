"""Calls that must run to their end even when the caller is cancelled.

A SIGTERM during start, or an avatar leaving while its tracks are published, cancels the
task that is waiting on LiveKit. Some calls cannot be cut short safely: the LiveKit SDK
records a publication only when its answer arrives, and its room event for that
publication, which comes anyway, then dies in a ``KeyError`` traceback; a room
half-connected cannot be disconnected cleanly. So such calls run to their end, and the
cancellation is honoured right after. Both the client and the emulator's avatar use them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from livekit import rtc

T = TypeVar("T")


async def despite_cancel(call: Awaitable[T]) -> tuple[T, bool]:
    """Run ``call`` to the end even if the caller is cancelled meanwhile; return its
    result and whether a cancellation arrived, for the caller to honour afterwards."""
    task = asyncio.ensure_future(call)
    cancelled = False
    while not task.done():
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            cancelled = True
    return task.result(), cancelled


async def publish_track(
    room: rtc.Room, track: rtc.LocalTrack, options: rtc.TrackPublishOptions
) -> rtc.LocalTrackPublication:
    """Publish ``track``; a cancellation meanwhile is raised once LiveKit has answered."""
    publication, cancelled = await despite_cancel(
        room.local_participant.publish_track(track, options))
    if cancelled:
        raise asyncio.CancelledError
    return publication
