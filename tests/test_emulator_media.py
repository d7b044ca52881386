"""The emulator's avatar in a real LiveKit room, seen by a plain ``livekit.rtc.Room`` that
joins with the ``access_token`` from ``streaming.new``, as HeyGen's official client does."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field

import numpy as np
import pytest
from livekit import rtc

from agent.emulator.server import EmulatorServer
from agent.emulator.speech import synthesize, word_timings
from agent.emulator.video import FaceCanvas, FaceFrames, read_stamp
from agent.heygen import api
from agent.heygen.protocol import interactive as ia
from agent.heygen.protocol import room_events as rev
from tests.waiting import DEADLINE_S, eventually

pytestmark = pytest.mark.livekit

#: The most frames a viewer may miss in a row (counter steps) with the machine loaded.
MAX_FRAME_GAP = 25


@dataclass
class Viewer:
    room: rtc.Room = field(default_factory=rtc.Room)
    tracks: dict[str, rtc.Track] = field(default_factory=dict)
    identities: set[str] = field(default_factory=set)
    events: list[rev.RoomEvent] = field(default_factory=list)


async def join_viewer(url: str, token: str) -> Viewer:
    viewer = Viewer()

    @viewer.room.on("track_subscribed")
    def _track(track: rtc.Track, _pub: object, participant: rtc.RemoteParticipant) -> None:
        viewer.tracks["video" if track.kind == rtc.TrackKind.KIND_VIDEO else "audio"] = track
        viewer.identities.add(participant.identity)

    @viewer.room.on("data_received")
    def _data(packet: rtc.DataPacket) -> None:
        viewer.events.append(rev.parse_room_event(packet.data))

    await viewer.room.connect(url, token)
    return viewer


async def test_viewer_gets_video_audio_and_events(emulator: EmulatorServer) -> None:
    async with api.HeyGenClient("k-123456", base_url=emulator.base_url) as client:
        answer = await client.new_session(ia.NewSessionRequest())
        await client.start_session(answer.session_id)
        viewer = await join_viewer(answer.url, answer.access_token.get_secret_value())
        try:
            await eventually(lambda: {"video", "audio"} <= viewer.tracks.keys(), "both tracks")
            assert viewer.identities == {"heygen"}

            stamps: list[tuple[int, int, float]] = []
            video = rtc.VideoStream(viewer.tracks["video"], format=rtc.VideoBufferType.I420)
            sizes = set()
            async with asyncio.timeout(DEADLINE_S):
                async for event in video:
                    frame = event.frame
                    sizes.add((frame.width, frame.height))
                    stamp = read_stamp(bytes(frame.data), frame.width, frame.height)
                    if stamp is not None:
                        stamps.append((*stamp, time.time() * 1000))
                    if len(stamps) >= 40:
                        break
            await video.aclose()
            assert sizes == {(640, 360)}
            counters = [c for c, _, _ in stamps]
            assert counters == sorted(counters) and len(set(counters)) == len(counters)
            assert max(np.diff(counters)) <= MAX_FRAME_GAP, "no long freeze"
            # The stamp carries the send time: sane, not a figure (the benchmark has those).
            latencies = [(now - sent) % 2**32 for _, sent, now in stamps]
            assert max(latencies) < 10_000, latencies

            audio = rtc.AudioStream(viewer.tracks["audio"], sample_rate=24000, num_channels=1)
            text = "Hello from the emulated avatar."
            speaking = asyncio.create_task(
                client.speak(answer.session_id, text, task_mode=ia.TaskMode.SYNC))
            loud = 0.0
            async with asyncio.timeout(DEADLINE_S):
                async for event in audio:
                    samples = np.frombuffer(bytes(event.frame.data), "<i2").astype(float)
                    if np.sqrt(np.mean(samples**2)) > 300:
                        loud += len(samples) / 24000
                    if speaking.done():
                        break
            await audio.aclose()
            task = await speaking
            assert loud > 0.5, "the viewer heard the avatar speak"

            await eventually(lambda: any(isinstance(e, rev.AvatarStopTalking)
                                         for e in viewer.events), "avatar_stop_talking")
            kinds = [type(e) for e in viewer.events]
            assert kinds[0] is rev.AvatarStartTalking
            assert kinds[-2:] == [rev.AvatarEndMessage, rev.AvatarStopTalking]
            assert set(kinds[1:-2]) == {rev.AvatarTalkingMessage}
            words = [e.message for e in viewer.events if isinstance(e, rev.AvatarTalkingMessage)]
            assert " ".join(words) == text
            assert {e.task_id for e in viewer.events} == {task.task_id}
            stop = viewer.events[-1]
            assert isinstance(stop, rev.AvatarStopTalking)
            assert task.duration_ms is not None
            assert stop.duration_ms == pytest.approx(task.duration_ms, abs=1)
            spoken_s = len(synthesize(text, 24000)) / 2 / 24000
            assert stop.duration_ms / 1000 == pytest.approx(spoken_s, abs=0.05)
        finally:
            await viewer.room.disconnect()
            await client.stop_session(answer.session_id)


async def test_interrupt_cuts_the_avatar_short(emulator: EmulatorServer) -> None:
    async with api.HeyGenClient("k-123456", base_url=emulator.base_url) as client:
        answer = await client.new_session(ia.NewSessionRequest())
        await client.start_session(answer.session_id)
        viewer = await join_viewer(answer.url, answer.access_token.get_secret_value())
        long_text = "This is a long answer that the user will not let the avatar finish. " * 3
        await client.speak(answer.session_id, long_text)  # async: returns at once
        # two words said: the avatar is well into its answer
        await eventually(lambda: sum(isinstance(e, rev.AvatarTalkingMessage)
                                     for e in viewer.events) >= 2, "two words said")
        await client.interrupt(answer.session_id)
        await eventually(lambda: any(isinstance(e, rev.AvatarStopTalking)
                                     for e in viewer.events), "avatar_stop_talking")
        stop = next(e for e in viewer.events if isinstance(e, rev.AvatarStopTalking))
        assert isinstance(stop, rev.AvatarStopTalking)
        full_ms = len(synthesize(long_text, 24000)) / 2 / 24
        assert 0 < stop.duration_ms < full_ms / 2, "cut short"
        await viewer.room.disconnect()
        await client.stop_session(answer.session_id)


async def test_avatar_leave_fault(emulator: EmulatorServer) -> None:
    async with api.HeyGenClient("k-123456", base_url=emulator.base_url) as client:
        answer = await client.new_session(ia.NewSessionRequest())
        await client.start_session(answer.session_id)
        viewer = await join_viewer(answer.url, answer.access_token.get_secret_value())
        left: list[str] = []
        viewer.room.on("participant_disconnected", lambda p: left.append(p.identity))
        await eventually(lambda: "video" in viewer.tracks, "the avatar's video")
        import httpx
        async with httpx.AsyncClient() as http:
            r = await http.post(
                f"{emulator.base_url}/_emulator/sessions/{answer.session_id}/avatar/leave")
        assert r.json() == {"left": True}
        await eventually(lambda: left == ["heygen"], "the avatar left the room")
        await viewer.room.disconnect()
        await client.stop_session(answer.session_id)


def test_stamps_round_trip_and_reject_garbage() -> None:
    faces = FaceFrames()
    frame = faces.frame(2, 123_456, 987_654_321)
    assert read_stamp(frame, 640, 360) == (123_456, 987_654_321)
    noise = np.random.default_rng(3).integers(0, 256, 640 * 360 * 3 // 2, dtype=np.uint8)
    assert read_stamp(noise.tobytes(), 640, 360) is None
    assert read_stamp(faces.faces[0].tobytes(), 640, 360) is None  # a face without a stamp


def test_espeak_speech_and_tone_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.machine import require

    require("espeak-ng", "apt-get install espeak-ng")
    speech = np.frombuffer(synthesize("Hello there, how are you?", 24000), "<i2")
    assert 1.0 < len(speech) / 24000 < 4.0 and np.abs(speech).max() > 3000
    monkeypatch.setattr("shutil.which", lambda name: None)
    tone = np.frombuffer(synthesize("Hello there", 16000), "<i2")
    assert len(tone) / 16000 == pytest.approx(11 * 0.07, abs=0.01)
    assert word_timings("one two three", 1.4)[0] == (0.0, "one")
    assert [w for _, w in word_timings("one two three", 1.4)] == ["one", "two", "three"]
    assert json.dumps(word_timings("", 1.0)) == "[]"


async def test_speaking_after_leaving_fails_at_once_instead_of_hanging() -> None:
    from agent.emulator.avatar import AvatarParticipant

    avatar = AvatarParticipant(livekit_url="ws://127.0.0.1:9", token="unused")
    await avatar.leave()
    with pytest.raises(RuntimeError, match="not in the room"):
        await asyncio.wait_for(avatar.speak("hello", task_id="t"), 2)
    with pytest.raises(RuntimeError, match="not in the room"):
        await asyncio.wait_for(avatar.play(bytes(480), 24000, task_id="t"), 2)


def test_text_starting_with_a_dash_is_spoken_not_taken_as_an_option() -> None:
    from agent.emulator.speech import tone
    from tests.machine import require

    require("espeak-ng", "apt-get install espeak-ng")
    text = "--not-an-option said aloud"
    assert len(synthesize(text, 16000)) != len(tone(len(text) * 0.07, 16000))


def test_the_canvas_draws_what_a_fresh_frame_shows() -> None:
    """Drawing in place (one buffer per avatar) gives the same pixels as a fresh frame,
    through mouth changes and back."""
    faces = FaceFrames()
    canvas = FaceCanvas(faces)
    for counter, mouth in enumerate([0, 0, 2, 2, 1, 0]):
        drawn = canvas.draw(mouth, counter, 1_000 + counter)
        assert bytes(drawn) == faces.frame(mouth, counter, 1_000 + counter)
    assert drawn is canvas.buffer
