"""LiveKit calls cut short by a cancellation (a SIGTERM during start, an avatar leaving)
must not leave the SDK's bookkeeping half done: against a real LiveKit server."""

from __future__ import annotations

import asyncio
import logging

import pytest
from livekit import api, rtc

from agent.emulator.livekit_server import LiveKitServer
from agent.heygen.room_calls import publish_track
from tests.waiting import within

pytestmark = pytest.mark.livekit


def _token(server: LiveKitServer, identity: str) -> str:
    settings = server.settings
    grants = api.VideoGrants(room_join=True, room="room-calls", can_publish=True)
    return str(api.AccessToken(settings.api_key, settings.api_secret)
               .with_identity(identity).with_grants(grants).to_jwt())


async def test_a_publish_cancelled_in_flight_completes_and_logs_no_error(
    livekit_server: LiveKitServer, caplog: pytest.LogCaptureFixture
) -> None:
    """The fault CI saw: SIGTERM while the microphone track was being published. The
    SDK's publish was cancelled before its answer, so the publication was never recorded,
    and the room's own `local_track_published` event then died in a KeyError traceback."""
    room = rtc.Room()
    await room.connect(livekit_server.url, _token(livekit_server, "publisher"))
    try:
        published = asyncio.get_running_loop().create_future()
        room.on("local_track_published",
                lambda publication, track: published.done() or published.set_result(publication))
        source = rtc.AudioSource(24_000, 1)
        track = rtc.LocalAudioTrack.create_audio_track("microphone", source)
        with caplog.at_level(logging.ERROR):
            publishing = asyncio.create_task(publish_track(room, track, rtc.TrackPublishOptions()))
            await asyncio.sleep(0)  # the request is on its way to LiveKit ...
            publishing.cancel()  # ... when the caller is cancelled
            with pytest.raises(asyncio.CancelledError):
                await publishing
            publication = await within(published, "the room reported the track published")
        assert publication.sid in room.local_participant.track_publications
        assert not [r for r in caplog.records if "user callback" in r.getMessage()]
        await source.aclose()
    finally:
        await room.disconnect()
