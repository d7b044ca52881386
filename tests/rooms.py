"""What tests read off a LiveKit room as the agent sees it."""

from __future__ import annotations

from livekit import rtc

_KINDS = {rtc.TrackKind.KIND_VIDEO: "video", rtc.TrackKind.KIND_AUDIO: "audio"}


def subscriptions(room: rtc.Room | None) -> dict[str, list[bool]]:
    """Each remote track, by kind: whether this side subscribed to it."""
    assert room is not None
    out: dict[str, list[bool]] = {"video": [], "audio": []}
    for who in room.remote_participants.values():
        for publication in who.track_publications.values():
            out[_KINDS[publication.kind]].append(publication.subscribed)
    return out
