"""LiveAvatar's FULL and LITE session protocols against the emulator, over real sockets.

Each test runs a real LiveKit server on 127.0.0.1 (the ``livekit_server`` fixture); the
client is a plain ``livekit.rtc.Room`` (FULL: commands and events as data on their
topics, the avatar's tracks) and a ``websockets`` client (LITE). The avatar's voice is
checked on its LiveKit audio track, as a viewer hears it. Waits are on events, with
deadlines (``tests/waiting.py``), never on a guess of how long something takes.
"""

from __future__ import annotations

import asyncio
import base64
import json
import wave
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import websockets
from livekit import rtc
from websockets.asyncio.client import ClientConnection, connect

from agent.emulator.config import EmulatorConfig
from agent.emulator.livekit_server import LiveKitServer
from agent.emulator.runtime import answer_text, answer_to_speech, transcript_of_speech
from agent.emulator.server import EmulatorServer
from agent.emulator.speech import synthesize
from agent.heygen import api
from agent.heygen.protocol.liveavatar import rest as la
from agent.heygen.protocol.liveavatar import room
from agent.heygen.protocol.liveavatar import socket as lite
from tests.emulator_admin import set_faults
from tests.speech import speech_wav
from tests.waiting import DEADLINE_S, eventually, within

pytestmark = pytest.mark.livekit

KEY = "la-media-key-0123456789"
#: Sandbox sessions end this soon here (about a minute on the real service): time to
#: start two sessions and join their room and socket on a loaded machine.
SANDBOX_S = 5.0
#: RMS (of s16) above which a frame of the avatar's audio track is its voice.
LOUD_RMS = 300.0


@pytest.fixture
async def emulator(livekit_server: LiveKitServer) -> AsyncIterator[EmulatorServer]:
    config = EmulatorConfig(livekit=livekit_server.settings, expiry_check_interval_s=0.05,
                            liveavatar_sandbox_duration_s=SANDBOX_S)
    async with EmulatorServer(config) as server:
        yield server


@pytest.fixture
async def client(emulator: EmulatorServer) -> AsyncIterator[api.LiveAvatarClient]:
    async with api.LiveAvatarClient(KEY, base_url=emulator.base_url) as client:
        yield client


async def start(
    client: api.LiveAvatarClient, mode: la.Mode, *, sandbox: bool = False,
    push_to_talk: bool = False,
) -> tuple[api.LiveAvatarClient, la.StartAnswer]:
    request = la.TokenRequest(
        mode=mode, avatar_id=la.SANDBOX_AVATAR_ID if sandbox else "any-avatar",
        is_sandbox=sandbox, interactivity_type=la.PUSH_TO_TALK if push_to_talk else None)
    token = await client.create_session_token(request)
    session = client.with_session_token(token.session_token)
    return session, await session.start_session()


# ------------------------------------------------------------------ a FULL-mode client


@dataclass
class FullClient:
    """The user's side of a FULL session: a room member that sends ``agent-control``
    and keeps every ``agent-response`` event."""

    lk: rtc.Room = field(default_factory=rtc.Room)
    events: list[room.Event] = field(default_factory=list)
    tracks: dict[str, rtc.Track] = field(default_factory=dict)
    present: set[str] = field(default_factory=set)
    left: list[str] = field(default_factory=list)
    _arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def join(self, started: la.StartAnswer) -> None:
        @self.lk.on("data_received")
        def _data(packet: rtc.DataPacket) -> None:
            if packet.topic == room.TOPIC_AGENT_RESPONSE:
                self.events.append(room.parse_event(packet.data))
                self._arrived.set()

        @self.lk.on("track_subscribed")
        def _track(track: rtc.Track, _pub: object, who: rtc.RemoteParticipant) -> None:
            if who.identity == room.AVATAR_IDENTITY:
                kind = "video" if track.kind == rtc.TrackKind.KIND_VIDEO else "audio"
                self.tracks[kind] = track

        self.lk.on("participant_connected", lambda p: self.present.add(p.identity))
        self.lk.on("participant_disconnected", lambda p: self.left.append(p.identity))
        assert started.livekit_url and started.livekit_client_token
        await self.lk.connect(started.livekit_url,
                                started.livekit_client_token.get_secret_value())
        self.present |= {p.identity for p in self.lk.remote_participants.values()}

    async def send(self, payload: room.Command | bytes, topic: str = room.TOPIC_AGENT_CONTROL,
                   ) -> None:
        data = payload if isinstance(payload, bytes) else payload.to_bytes()
        await self.lk.local_participant.publish_data(data, reliable=True, topic=topic)

    async def event(self, kind: str, what: str = "", *, after: int = 0,
                    deadline_s: float = DEADLINE_S) -> int:
        """The index of the first ``kind`` event at or after ``after``, once it came."""

        async def arrival() -> int:
            while True:
                for index in range(after, len(self.events)):
                    if self.events[index].event_type == kind:
                        return index
                self._arrived.clear()
                await self._arrived.wait()

        return await within(arrival(), what or kind, deadline_s)

    def kinds(self, start: int = 0, stop: int | None = None) -> list[str]:
        return [e.event_type for e in self.events[start:stop]]


async def full_session(
    client: api.LiveAvatarClient, **options: bool
) -> tuple[api.LiveAvatarClient, la.StartAnswer, FullClient]:
    """A started FULL session with its user in the room, told ``connected``."""
    session, started = await start(client, la.Mode.FULL, **options)
    user = FullClient()
    await user.join(started)
    index = await user.event(room.SESSION_STATE_UPDATED, "session.state_updated")
    assert user.events[index].state == room.CONNECTED
    return session, started, user


class LoudMeter:
    """Seconds of voice on the avatar's audio track, as a viewer receives it."""

    def __init__(self, track: rtc.Track) -> None:
        self.loud_s = 0.0
        self._stream = rtc.AudioStream(track, sample_rate=24000, num_channels=1)
        self._task = asyncio.create_task(self._listen())

    async def _listen(self) -> None:
        async for event in self._stream:
            samples = np.frombuffer(bytes(event.frame.data), "<i2").astype(np.float64)
            if len(samples) and np.sqrt(np.mean(samples**2)) > LOUD_RMS:
                self.loud_s += len(samples) / 24000

    async def aclose(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        await self._stream.aclose()


async def meter(user: FullClient) -> LoudMeter:
    await eventually(lambda: {"video", "audio"} <= user.tracks.keys(), "the avatar's tracks")
    return LoudMeter(user.tracks["audio"])


def stats(emulator: EmulatorServer, session_id: str, mode: str) -> dict[str, Any]:
    """The session's LiveAvatar counts (``lite`` or ``full``) from the admin state."""
    described = emulator.emulator.describe()["per_session"][session_id]
    counts: dict[str, Any] = described["liveavatar"][mode]
    return counts


# ------------------------------------------------------------------ FULL


async def test_full_speaks_text_verbatim_answers_and_stops(
    emulator: EmulatorServer, client: api.LiveAvatarClient
) -> None:
    session, started, user = await full_session(client)
    sid = started.session_id
    try:
        assert {room.AVATAR_IDENTITY, room.agent_identity(sid)} <= user.present
        loud = await meter(user)
        # Garbage on the command topic is ignored (and counted); other topics are not ours.
        await user.send(b"\xffnot json")
        await user.send(b'{"event_type": "avatar.dance", "event_id": "x"}')
        await user.send(b'{"event_type": "avatar.speak_text"}', topic="chat")
        await user.send(room.command(room.START_PUSH_TO_TALK, "ptt-1"))
        index = await user.event(room.USER_PUSH_TO_TALK_START_FAILED, "no PTT: conversational")
        assert user.events[index].source_event_id == "ptt-1"

        text = "Hello from the emulated avatar."
        mark = len(user.events)
        await user.send(room.speak_text(text, "say-1"))
        end = await user.event(room.AVATAR_SPEAK_ENDED, "speak_ended", after=mark)
        said = user.events[mark:end + 1]
        assert [e.event_type for e in said] == [
            room.AVATAR_TRANSCRIPTION, room.AVATAR_SPEAK_STARTED,
            *[room.AVATAR_TRANSCRIPTION_CHUNK] * len(text.split()), room.AVATAR_SPEAK_ENDED]
        assert said[0].text == text
        assert " ".join(e.text for e in said[2:-1]) == text
        assert {e.source_event_id for e in said} == {"say-1"}
        assert {e.session_id for e in said} == {sid}
        assert len({e.event_id for e in said}) == len(said), "every event has its own id"
        await eventually(lambda: loud.loud_s > 0.8, "the avatar's voice on its audio track")

        mark = len(user.events)
        await user.send(room.speak_response("what time is it?", "ask-1"))
        end = await user.event(room.AVATAR_SPEAK_ENDED, "the answer's speak_ended", after=mark)
        answer = answer_text("what time is it?")
        assert user.events[mark].text == answer
        words = [e.text for e in user.events[mark:end]
                 if e.event_type == room.AVATAR_TRANSCRIPTION_CHUNK]
        assert " ".join(words) == answer
        await loud.aclose()

        commands = {room.SPEAK_RESPONSE: 1, room.SPEAK_TEXT: 1, room.START_PUSH_TO_TALK: 1}
        assert stats(emulator, sid, "full") == {"commands": commands, "bad_messages": 2}

        await user.send(room.command(room.SESSION_STOP, "stop-1"))
        index = await user.event(room.SESSION_STOPPED, "session.stopped")
        assert user.events[index].stop_reason == "stopped by client"
        await eventually(lambda: {room.AVATAR_IDENTITY, room.agent_identity(sid)}
                         <= set(user.left), "the avatar and the agent left")
        assert emulator.emulator.registry.counts()["stopped"] == 1
        with pytest.raises(api.SessionStateError, match="already ended"):
            await session.keep_alive()
    finally:
        await user.lk.disconnect()


async def test_full_interrupt_cuts_the_avatar_short(
    emulator: EmulatorServer, client: api.LiveAvatarClient
) -> None:
    session, started, user = await full_session(client)
    try:
        long_text = "This is a long answer that the user will not let the avatar finish. " * 3
        mark = len(user.events)
        await user.send(room.speak_text(long_text, "long-1"))
        await user.send(room.speak_text("And this one is queued.", "queued-1"))
        first = await user.event(room.AVATAR_TRANSCRIPTION_CHUNK, "a first word", after=mark)
        await user.event(room.AVATAR_TRANSCRIPTION_CHUNK, "a second word", after=first + 1)
        await user.send(room.interrupt())
        end = await user.event(room.AVATAR_SPEAK_ENDED, "speak_ended after the interrupt",
                               after=mark)
        chunks = [e for e in user.events[mark:end]
                  if e.event_type == room.AVATAR_TRANSCRIPTION_CHUNK]
        assert 2 <= len(chunks) < len(long_text.split()) // 2, "cut short"
        # Nothing follows: no more words, and the queued text is dropped unsaid. The
        # avatar says something else next, and that is the next thing told.
        await user.send(room.speak_text("Next.", "next-1"))
        nxt = await user.event(room.AVATAR_SPEAK_STARTED, "the next utterance", after=end + 1)
        assert user.kinds(end + 1, nxt) == [room.AVATAR_TRANSCRIPTION]
        assert user.events[nxt].source_event_id == "next-1"
        assert room.INTERRUPT in stats(emulator, started.session_id, "full")["commands"]

        # The avatar-leave fault: the avatar goes, the session stays open.
        async with httpx.AsyncClient() as http:
            answer = await http.post(f"{emulator.base_url}/_emulator/sessions/"
                                     f"{started.session_id}/avatar/leave")
        assert answer.json() == {"left": True}
        await eventually(lambda: room.AVATAR_IDENTITY in user.left, "the avatar left")
        await session.keep_alive()
    finally:
        await user.lk.disconnect()
        await session.stop_session()


class Microphone:
    """A microphone track the user publishes, fed in real time from PCM."""

    RATE = 16000

    def __init__(self) -> None:
        # A short queue: capture_frame returns about when the audio leaves, not 1 s early.
        self.source = rtc.AudioSource(self.RATE, 1, queue_size_ms=100)

    async def publish(self, user: FullClient) -> None:
        track = rtc.LocalAudioTrack.create_audio_track("mic", self.source)
        await user.lk.local_participant.publish_track(
            track, rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE))

    async def say(self, pcm: bytes) -> None:
        step = self.RATE // 100 * 2  # 10 ms frames
        for i in range(0, len(pcm) - step + 1, step):
            await self.source.capture_frame(rtc.AudioFrame(pcm[i:i + step], self.RATE, 1,
                                                           step // 2))


def wav_pcm(path: Path, rate: int) -> bytes:
    with wave.open(str(path), "rb") as wav:
        pcm = wav.readframes(wav.getnframes())
        source_rate = wav.getframerate()
    samples = np.frombuffer(pcm, "<i2").astype(np.float64)
    positions = np.arange(round(len(samples) * rate / source_rate)) * (source_rate / rate)
    return np.interp(positions, np.arange(len(samples)), samples).astype("<i2").tobytes()


async def test_full_hears_the_microphone_and_answers(
    emulator: EmulatorServer, client: api.LiveAvatarClient, tmp_path: Path
) -> None:
    wav = tmp_path / "hello.wav"
    speech_s = speech_wav(wav, "Hello avatar, how are you today?", pad_s=1.2)
    session, started, user = await full_session(client)
    try:
        microphone = Microphone()
        await microphone.publish(user)
        mark = len(user.events)
        await microphone.say(bytes(Microphone.RATE // 2) + wav_pcm(wav, Microphone.RATE))
        end = await user.event(room.AVATAR_SPEAK_ENDED, "the avatar's answer", after=mark)
        kinds = user.kinds(mark, end + 1)
        assert kinds[:5] == [room.USER_SPEAK_STARTED, room.USER_SPEAK_ENDED,
                             room.USER_TRANSCRIPTION_CHUNK, room.USER_TRANSCRIPTION,
                             room.AVATAR_TRANSCRIPTION]
        assert kinds[5] == room.AVATAR_SPEAK_STARTED and kinds[-1] == room.AVATAR_SPEAK_ENDED
        heard = user.events[mark + 3]
        # The emulated speech-to-text "hears" how long the user spoke (as its detector
        # measures it, after Opus: espeak's pauses and quiet ends may not count).
        seconds = float(heard.text.strip("(").split()[0])
        assert 0.6 * speech_s <= seconds <= speech_s + 0.3
        assert heard.text == transcript_of_speech(seconds)
        assert user.events[mark + 2].text == heard.text
        answer = user.events[mark + 4]
        assert answer.text == answer_to_speech(seconds)
        assert answer.source_event_id == heard.event_id, "the answer names what it answers"
        audio = emulator.emulator.registry.get(started.session_id).audio
        assert (audio.user_starts, audio.user_stops) == (1, 1)
        assert audio.room_seconds >= speech_s
    finally:
        await user.lk.disconnect()
        await session.stop_session()


async def test_full_push_to_talk(emulator: EmulatorServer, client: api.LiveAvatarClient) -> None:
    session, started, user = await full_session(client, push_to_talk=True)
    try:
        audio = emulator.emulator.registry.get(started.session_id).audio
        microphone = Microphone()
        await microphone.publish(user)
        await microphone.say(bytes(Microphone.RATE * 2 // 5))  # before the turn: ignored
        await eventually(lambda: audio.room_seconds >= 0.4, "the avatar heard the microphone")
        await user.send(room.command(room.STOP_PUSH_TO_TALK, "stop-0"))
        await user.event(room.USER_PUSH_TO_TALK_STOP_FAILED, "stop before start fails")
        mark = len(user.events)
        await user.send(room.command(room.START_PUSH_TO_TALK, "start-1"))
        await user.event(room.USER_SPEAK_STARTED, "the user's turn", after=mark)
        await user.send(room.command(room.START_PUSH_TO_TALK, "start-2"))
        failed = await user.event(room.USER_PUSH_TO_TALK_START_FAILED, "a second start fails")
        assert user.events[failed].source_event_id == "start-2"
        # A quiet turn: push-to-talk, not a detector, says where the turn ends.
        heard = audio.room_seconds
        await microphone.say(bytes(Microphone.RATE * 2))
        await eventually(lambda: audio.room_seconds >= heard + 1.0, "the turn's second heard")
        await user.send(room.command(room.STOP_PUSH_TO_TALK, "stop-1"))
        end = await user.event(room.AVATAR_SPEAK_ENDED, "the answer to the turn", after=mark)
        assert user.kinds(mark, end + 1)[:7] == [
            room.USER_PUSH_TO_TALK_STARTED, room.USER_SPEAK_STARTED,
            room.USER_PUSH_TO_TALK_START_FAILED, room.USER_PUSH_TO_TALK_STOPPED,
            room.USER_SPEAK_ENDED, room.USER_TRANSCRIPTION_CHUNK, room.USER_TRANSCRIPTION]
        assert user.events[mark].source_event_id == "start-1"
        turn = next(e for e in user.events[mark:] if e.event_type == room.USER_TRANSCRIPTION)
        seconds = float(turn.text.strip("(").split()[0])
        assert 0.9 <= seconds <= 3.0, "the turn: the audio heard between start and stop"
        described = emulator.emulator.describe()["per_session"][started.session_id]
        assert described["push_to_talk_events"] == ["start", "stop"]
    finally:
        await user.lk.disconnect()
        await session.stop_session()


# ------------------------------------------------------------------ LITE


async def lite_socket(started: la.StartAnswer) -> ClientConnection:
    assert started.ws_url is not None
    return await connect(started.ws_url.get_secret_value(), max_size=None)


async def receive(ws: ClientConnection, what: str) -> lite.ServerEvent:
    return lite.parse_server_event(await within(ws.recv(), what))


def speech_chunks(pcm: bytes) -> list[bytes]:
    """As the official SDK cuts it: 400 ms first, then 1 s chunks."""
    first = lite.SAMPLE_RATE * 2 * 2 // 5
    second = lite.SAMPLE_RATE * 2
    return [pcm[:first], *[pcm[i:i + second] for i in range(first, len(pcm), second)]]


async def test_lite_lip_syncs_streamed_audio(
    emulator: EmulatorServer, client: api.LiveAvatarClient
) -> None:
    session, started = await start(client, la.Mode.LITE)
    sid = started.session_id
    viewer = FullClient()
    await viewer.join(started)
    ws = await lite_socket(started)
    try:
        assert (await receive(ws, "connecting")).state == lite.CONNECTING
        assert (await receive(ws, "connected")).state == lite.CONNECTED
        loud = await meter(viewer)
        assert room.agent_identity(sid) not in viewer.present, "LITE has no agent"

        voice = synthesize("This is my own voice, lip-synced by the avatar.", lite.SAMPLE_RATE)
        for chunk in speech_chunks(voice):
            await ws.send(lite.encode(lite.speak(chunk, "utt-1")))
        started_event = await receive(ws, "speak_started")
        assert (started_event.type, started_event.event_id) == (lite.SPEAK_STARTED, "utt-1")
        await ws.send(lite.encode(lite.command(lite.SPEAK_END, "utt-1")))
        ended = await receive(ws, "speak_ended")
        assert (ended.type, ended.event_id) == (lite.SPEAK_ENDED, "utt-1")
        voice_s = len(voice) / 2 / lite.SAMPLE_RATE
        await eventually(lambda: loud.loud_s > voice_s / 2, "the voice on the avatar's track")
        await loud.aclose()

        # Audio in the wrong shape, and an unknown message: counted, ignored.
        await ws.send(json.dumps({"type": lite.SPEAK, "event_id": "bad", "audio": "%%%"}))
        odd = base64.b64encode(b"\x00\x01\x02").decode()
        await ws.send(json.dumps({"type": lite.SPEAK, "event_id": "bad", "audio": odd}))
        await ws.send(json.dumps({"type": "agent.dance"}))
        await ws.send(lite.encode(lite.command(lite.KEEP_ALIVE)))

        # A long utterance, interrupted while the avatar says it.
        for _ in range(5):
            await ws.send(lite.encode(lite.speak(voice, "utt-2")))
        speaking = await receive(ws, "the long utterance starts")
        assert (speaking.type, speaking.event_id) == (lite.SPEAK_STARTED, "utt-2")
        await ws.send(lite.encode(lite.command(lite.INTERRUPT)))
        interrupted = await receive(ws, "speak_interrupted")
        assert (interrupted.type, interrupted.event_id) == (lite.SPEAK_INTERRUPTED, "utt-2")

        counts = stats(emulator, sid, "lite")
        assert counts["audio_seconds"] == pytest.approx(6 * voice_s, abs=0.01)
        assert (counts["utterances"], counts["interrupts"], counts["bad_messages"],
                counts["before_connected"]) == (2, 1, 3, 0)

        # Over 1 MB: the socket is closed with 1009.
        await ws.send(json.dumps({"type": lite.KEEP_ALIVE, "pad": "x" * lite.MAX_MESSAGE_BYTES}))
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await within(ws.recv(), "the socket closed")
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
        await eventually(lambda: stats(emulator, sid, "lite")["bad_messages"] == 4,
                         "the big message counted")
    finally:
        await ws.close()
        await viewer.lk.disconnect()
        await session.stop_session()


async def test_lite_handshake_faults_and_commands_before_connected(
    emulator: EmulatorServer, client: api.LiveAvatarClient
) -> None:
    # The avatar's media comes late (a loaded media server): "connected" waits for it.
    await set_faults(emulator, media_delay_ms=2500)
    session, started = await start(client, la.Mode.LITE)
    sid = started.session_id
    assert started.ws_url is not None
    url = started.ws_url.get_secret_value()
    for bad in (url.replace("token=", "token=x"), url.split("?")[0]):
        with pytest.raises(websockets.InvalidStatus) as refused:
            async with connect(bad):
                pass
        assert refused.value.response.status_code == 401

    async with connect(url) as ws:
        assert (await receive(ws, "connecting")).state == lite.CONNECTING
        await ws.send(lite.encode(lite.command(lite.START_LISTENING)))
        assert (await receive(ws, "connected, late")).state == lite.CONNECTED
        assert stats(emulator, sid, "lite")["before_connected"] == 1
        assert not emulator.emulator.registry.get(sid).listening, "ignored"
        await ws.send(lite.encode(lite.command(lite.START_LISTENING)))
        await eventually(lambda: emulator.emulator.registry.get(sid).listening, "listening")
    await set_faults(emulator, reset=True)

    # The socket-drop fault applies to LITE too: cut with no close frame.
    await set_faults(emulator, ws_drop_after_messages=1)
    async with connect(url) as ws:
        await receive(ws, "connecting")
        with pytest.raises(websockets.ConnectionClosedError) as dropped:
            for _ in range(50):
                await ws.send(lite.encode(lite.command(lite.KEEP_ALIVE)))
                await asyncio.sleep(0.01)
            await within(ws.recv(), "dropped")
        assert dropped.value.rcvd is None
    await set_faults(emulator, reset=True)

    await session.stop_session()
    with pytest.raises(websockets.InvalidStatus) as ended:
        async with connect(url):
            pass
    assert ended.value.response.status_code == 400
    assert "already ended" in ended.value.response.body.decode()


# ------------------------------------------------------------------ limits


async def test_sandbox_sessions_end_on_time(
    emulator: EmulatorServer, client: api.LiveAvatarClient
) -> None:
    """FULL says ``session.stopped`` and its participants leave; LITE says ``closing``,
    ``closed`` and closes the socket."""
    _, full_started = await start(client, la.Mode.FULL, sandbox=True)
    user = FullClient()  # in the room: it hears what the agent says from now on
    await user.join(full_started)
    _, lite_started = await start(client, la.Mode.LITE, sandbox=True)
    ws = await lite_socket(lite_started)
    try:
        states = [(await receive(ws, f"state {n}")).state for n in range(2)]
        assert states == [lite.CONNECTING, lite.CONNECTED]
        index = await user.event(room.SESSION_STOPPED, "the FULL sandbox session stopped",
                                 deadline_s=SANDBOX_S + DEADLINE_S)
        assert user.events[index].stop_reason == "sandbox session duration limit"
        sid = full_started.session_id
        await eventually(lambda: {room.AVATAR_IDENTITY, room.agent_identity(sid)}
                         <= set(user.left), "the avatar and the agent left")
        ending = [(await receive(ws, f"ending {n}")).state for n in range(2)]
        assert ending == [lite.CLOSING, lite.CLOSED]
        with pytest.raises(websockets.ConnectionClosedOK):
            await within(ws.recv(), "the LITE socket closed")
        assert emulator.emulator.registry.counts()["expired"] == 2
    finally:
        await ws.close()
        await user.lk.disconnect()
