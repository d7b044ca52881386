"""examples/avatar_to_livekit_room.py, run as its docstring says: the avatar's video and
voice reach a second LiveKit room (the app's) through Pipecat's own LiveKit transport, and
a participant of that room, as a browser would be, sees the emulated face and hears it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from livekit import api, rtc

from agent.emulator.config import EmulatorConfig
from agent.emulator.livekit_server import LiveKitServer
from agent.emulator.server import EmulatorServer
from agent.emulator.speech import synthesize
from agent.emulator.video import read_stamp
from tests.speech import speech_wav
from tests.waiting import within

pytestmark = pytest.mark.livekit

ROOT = Path(__file__).resolve().parents[1]
ROOM = "my-app-room"
BOT = "heygen-avatar"  # the example's participant
WIDTH, HEIGHT = 640, 360
SAMPLE_RATE = 24_000
#: RMS (s16) above which a 10 ms frame of the avatar's voice counts as speech, not silence.
LOUD_RMS = 500.0


@dataclass
class Viewer:
    """What a browser client of the app's room would see and hear of the bot."""

    room: rtc.Room = field(default_factory=rtc.Room)
    sources: dict[str, rtc.TrackSource.ValueType] = field(default_factory=dict)
    sizes: set[tuple[int, int]] = field(default_factory=set)
    #: frames at the avatar's size (a first decoded frame of 8x8 has been seen)
    frames: int = 0
    stamps: list[int] = field(default_factory=list)
    #: (arrival time, RMS) of each 10 ms of the bot's audio
    audio: list[tuple[float, float]] = field(default_factory=list)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def join(self, livekit: LiveKitServer) -> None:
        loop = asyncio.get_running_loop()

        @self.room.on("track_subscribed")
        def subscribed(track: rtc.Track, publication: rtc.RemoteTrackPublication,
                       participant: rtc.RemoteParticipant) -> None:
            self.sources[participant.identity + "/" + rtc.TrackKind.Name(track.kind)] = (
                publication.source)
            if participant.identity != BOT:
                return
            reader = self._watch(track) if track.kind == rtc.TrackKind.KIND_VIDEO \
                else self._listen(track)
            self.tasks.append(loop.create_task(reader))

        token = (api.AccessToken(livekit.settings.api_key, livekit.settings.api_secret)
                 .with_identity("browser")
                 .with_grants(api.VideoGrants(room_join=True, room=ROOM, can_publish=False))
                 .to_jwt())
        await self.room.connect(livekit.url, token)

    async def _watch(self, track: rtc.Track) -> None:
        stream = rtc.VideoStream(track, format=rtc.VideoBufferType.I420)
        try:
            async for event in stream:
                frame = event.frame
                self.sizes.add((frame.width, frame.height))
                if (frame.width, frame.height) == (WIDTH, HEIGHT):
                    self.frames += 1
                    stamp = read_stamp(frame.data, WIDTH, HEIGHT)
                    if stamp is not None:
                        self.stamps.append(stamp[0])
        finally:
            await stream.aclose()

    async def _listen(self, track: rtc.Track) -> None:
        loop = asyncio.get_running_loop()
        stream = rtc.AudioStream(track, sample_rate=SAMPLE_RATE, num_channels=1)
        try:
            async for event in stream:
                self.audio.append((loop.time(), _rms(bytes(event.frame.data))))
        finally:
            await stream.aclose()

    async def leave(self) -> None:
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.room.disconnect()


def _rms(pcm: bytes) -> float:
    samples = np.frombuffer(pcm, "<i2").astype(np.float32)
    return float(np.sqrt(np.mean(samples * samples))) if len(samples) else 0.0


def loud_frames(pcm: bytes) -> int:
    """How many 10 ms frames of ``pcm`` (24 kHz) are speech."""
    step = SAMPLE_RATE // 100 * 2
    return sum(_rms(pcm[i : i + step]) > LOUD_RMS for i in range(0, len(pcm), step))


@dataclass
class Run:
    """One run of the example: its printed lines (with arrival times), what the app's
    room showed of it, and the emulated HeyGen sessions it opened."""

    lines: list[tuple[float, str]]
    viewer: Viewer
    tasks: list[dict[str, object]]


async def run_example(livekit_server: LiveKitServer, wav: Path, *options: str) -> Run:
    """Run the example as its docstring says, a viewer in the app's room, to its end."""
    viewer = Viewer()
    await within(viewer.join(livekit_server), "the viewer joined the app's room")
    loop = asyncio.get_running_loop()
    lines: list[tuple[float, str]] = []

    async def read_lines(stdout: asyncio.StreamReader) -> None:
        async for line in stdout:
            lines.append((loop.time(), line.decode().rstrip()))

    try:
        # One LiveKit server for both rooms, as the docstring runs it: the emulator's
        # avatar rooms, and the app's room the example publishes into.
        config = EmulatorConfig(livekit=livekit_server.settings)
        async with EmulatorServer(config) as emulator:
            env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
            env.update({
                "HEYGEN_BASE_URL": emulator.base_url, "HEYGEN_API_KEY": "any",
                "LIVEKIT_URL": livekit_server.url,
                "LIVEKIT_API_KEY": livekit_server.settings.api_key,
                "LIVEKIT_API_SECRET": livekit_server.settings.api_secret,
            })
            process = await asyncio.create_subprocess_exec(
                sys.executable, "examples/avatar_to_livekit_room.py", ROOM, str(wav),
                *options, cwd=ROOT, env=env,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
            assert process.stdout is not None and process.stderr is not None
            reading = asyncio.gather(read_lines(process.stdout), process.stderr.read(),
                                     process.wait())
            _, err, code = await within(reading, "the example ended", 60)
            assert code == 0, err.decode()[-3000:]
            registry = emulator.emulator.registry
            assert registry.counts()["stopped"] == 1, "the HeyGen session was stopped"
            tasks = list(next(iter(registry)).tasks)
    finally:
        await viewer.leave()
    return Run(lines, viewer, tasks)


def assert_the_face_arrived(viewer: Viewer) -> None:
    """The bot's participant published a camera track carrying the emulated face."""
    assert viewer.sources[f"{BOT}/KIND_VIDEO"] == rtc.TrackSource.SOURCE_CAMERA
    assert viewer.sources[f"{BOT}/KIND_AUDIO"] == rtc.TrackSource.SOURCE_MICROPHONE

    # Its video is the emulated face at the avatar's size: the emulator's stamps read
    # back through two VP8 encodings and an RGB round trip, each frame newer than the last.
    assert (WIDTH, HEIGHT) in viewer.sizes, viewer.sizes
    assert len(viewer.stamps) >= 50, f"{len(viewer.stamps)} stamps in {viewer.frames} frames"
    # Most frames' stamps read (WebRTC lowers the quality on a loaded machine, and a
    # stamp can blur past reading: 63 of 80 read once, with a busy process beside the
    # suite); the order below holds for every one that does.
    assert len(viewer.stamps) >= 0.6 * viewer.frames
    assert viewer.stamps == sorted(viewer.stamps), "frames out of order"
    # No frame twice, but for WebRTC's own: an encoder asked for a key frame may send the
    # last frame again ("scheduling a short repeat due to key frame request", libwebrtc),
    # and two encoders are on this path; a fresh clone's run once saw stamp 18 twice.
    repeats = len(viewer.stamps) - len(set(viewer.stamps))
    assert repeats <= 2, f"{repeats} frames published twice: {viewer.stamps}"


async def assert_the_answer_was_heard(viewer: Viewer, answer: str, asked_at: float) -> None:
    """The bot's voice in the room: the avatar's answer, loud, and none of it before the
    question was heard (the user's microphone never reaches the room)."""
    loud = [t for t, rms in viewer.audio if rms > LOUD_RMS]
    expected = loud_frames(await asyncio.to_thread(synthesize, answer, SAMPLE_RATE))
    assert len(loud) >= 0.6 * expected, f"{len(loud)} loud frames of {expected} said"
    assert min(loud) > asked_at - 0.5


async def test_the_avatar_reaches_the_apps_room_through_pipecats_livekit_transport(
    livekit_server: LiveKitServer, tmp_path: Path
) -> None:
    wav = tmp_path / "q.wav"
    speech_wav(wav, "How many seconds did I speak?")
    run = await run_example(livekit_server, wav)
    answer = str(run.tasks[0]["text"])
    said = [text for _, text in run.lines]
    assert said[0].startswith("user: ") and said[1] == f"avatar: {answer}", said
    assert_the_face_arrived(run.viewer)
    await assert_the_answer_was_heard(run.viewer, answer, asked_at=run.lines[0][0])


async def test_an_own_brain_bot_lip_synced_reaches_the_apps_room(
    livekit_server: LiveKitServer, tmp_path: Path
) -> None:
    """``--own-brain``: the bot's STT, LLM and TTS answer, HeyGen lip-syncs the TTS, and
    the app's room gets the avatar's face with that lip-synced voice."""
    wav = tmp_path / "q.wav"
    speech_wav(wav, "How many seconds did I speak?")
    run = await run_example(livekit_server, wav, "--own-brain")
    answer = "I heard you, and I answer with my own brain."  # the example's scripted brain
    said = [text for _, text in run.lines]
    assert said[0].startswith("user: (") and said[1] == f"avatar: {answer}", said
    # HeyGen took the TTS's audio to lip-sync, once, and no text to say: its brain and
    # its voice stayed out of it
    assert [bool(task["audio_bytes"]) and not task["text"] for task in run.tasks] == [True]
    assert_the_face_arrived(run.viewer)
    await assert_the_answer_was_heard(run.viewer, answer, asked_at=run.lines[0][0])
