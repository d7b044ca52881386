"""The emulator's WebSockets (voice chat §2, realtime §4) over real sockets on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import numpy as np
import pytest
import websockets
from websockets.asyncio.client import ClientConnection, connect

from agent.emulator.config import EmulatorConfig
from agent.emulator.runtime import TimedAvatar
from agent.emulator.server import EmulatorServer
from agent.heygen import api
from agent.heygen.protocol import interactive as ia
from agent.heygen.protocol import realtime as rt
from agent.heygen.protocol import room_events as rev
from agent.heygen.protocol import voice_chat as vc
from tests.waiting import eventually, within

KEY = "emu-socket-key-123456"


@pytest.fixture
async def server() -> AsyncIterator[EmulatorServer]:
    config = EmulatorConfig(silence_prompt_s=0.6)
    async with EmulatorServer(config) as server:
        yield server


@pytest.fixture
async def client(server: EmulatorServer) -> AsyncIterator[api.HeyGenClient]:
    async with api.HeyGenClient(KEY, base_url=server.base_url) as client:
        yield client


async def open_session(client: api.HeyGenClient) -> tuple[str, str, ia.NewSessionAnswer]:
    token = (await client.create_token()).get_secret_value()
    session = client.with_session_token(token)
    answer = await session.new_session(ia.NewSessionRequest())
    await session.start_session(answer.session_id)
    return answer.session_id, token, answer


def tone(seconds: float, rate: int = 16000) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    return (np.sin(2 * np.pi * 200 * t) * 9000).astype("<i2").tobytes()


def chunks(pcm: bytes, size: int = vc.CHUNK_BYTES) -> list[bytes]:
    return [pcm[i:i + size] for i in range(0, len(pcm), size)]


async def events(ws: ClientConnection, count: int) -> list[str]:
    return [vc.parse_event(await within(ws.recv(), f"event {i + 1} of {count}")).type
            for i in range(count)]


async def test_voice_chat_counts_audio_detects_speech_and_answers(
    server: EmulatorServer, client: api.HeyGenClient
) -> None:
    sid, token, _ = await open_session(client)
    url = vc.chat_url(server.base_url, session_id=sid, session_token=token)
    speech = bytes(16000) + tone(1.0) + bytes(32000)  # 0.5 s quiet, 1 s voice, 1 s quiet
    speech = speech[: len(speech) // vc.CHUNK_BYTES * vc.CHUNK_BYTES]  # whole 512-sample frames
    async with connect(url, compression=None) as ws:
        for chunk in chunks(speech):
            await ws.send(vc.encode_audio(chunk))
        assert await events(ws, 2) == ["user_start", "user_stop"]
        await ws.send(vc.encode_text("hello avatar"))
        await ws.send(b"\xff\xff\xff")  # garbage: counted, not fatal
        await ws.send(vc.encode_audio(bytes(1024)))
        session = server.emulator.registry.get(sid)
        audio = session.audio
        await eventually(lambda: audio.bad_frames == 1 and audio.frames == len(chunks(speech)) + 1,
                         "the emulator read every message")
    assert audio.seconds == pytest.approx(audio.frames * 0.032, abs=0.001)
    assert audio.seconds == pytest.approx(2.5, abs=0.04)
    assert audio.sample_rates == {16000}
    assert audio.frame_samples == {512: audio.frames}
    assert (audio.text_frames, audio.bad_frames) == (1, 1)
    assert (audio.user_starts, audio.user_stops) == (1, 1)
    assert [t["text"] for t in session.tasks] == [
        "I heard 1.0 seconds of speech.", "You said: hello avatar"]
    avatar = server.emulator.runtimes[sid].avatar
    assert isinstance(avatar, TimedAvatar)
    assert avatar.events == [
        rev.UserTalkingMessage(task_id="user-1", message="(1.0 seconds of speech)"),
        rev.UserEndMessage(task_id="user-1"),
    ]


async def test_voice_chat_push_to_talk_sends_no_detection(
    server: EmulatorServer, client: api.HeyGenClient
) -> None:
    sid, token, _ = await open_session(client)
    url = vc.chat_url(server.base_url, session_id=sid, session_token=token, push_to_talk=True)
    audio = server.emulator.registry.get(sid).audio
    sent = chunks(tone(1.0) + bytes(32000))
    async with connect(url) as ws:
        for chunk in sent:
            await ws.send(vc.encode_audio(chunk))
        # Detection runs as each message is read: once all are read, none was detected.
        await eventually(lambda: audio.frames == len(sent), "the emulator read every message")
    assert audio.user_starts == 0


async def test_voice_chat_silence_prompt(server: EmulatorServer, client: api.HeyGenClient) -> None:
    sid, token, _ = await open_session(client)
    url = vc.chat_url(server.base_url, session_id=sid, session_token=token,
                      silence_response=True)
    async with connect(url) as ws:
        first = vc.parse_event(await within(ws.recv(), "a silence prompt"))
        second = vc.parse_event(await within(ws.recv(), "a second silence prompt"))
    assert isinstance(first, vc.UserSilence) and isinstance(second, vc.UserSilence)
    assert (first.silence_times, second.silence_times) == (1, 2)


@pytest.mark.parametrize("case", ["bad-token", "unknown-session", "not-started"])
async def test_voice_chat_refuses_bad_handshakes(
    server: EmulatorServer, client: api.HeyGenClient, case: str
) -> None:
    sid, token, _ = await open_session(client)
    if case == "bad-token":
        token = "forged-token-000000"
    elif case == "unknown-session":
        sid = "nope"
    else:  # created with the key, which the socket also takes, but never started
        sid, token = (await client.new_session(ia.NewSessionRequest())).session_id, KEY
    url = vc.chat_url(server.base_url, session_id=sid, session_token=token)
    with pytest.raises(websockets.InvalidStatus) as caught:
        async with connect(url):
            pass
    assert caught.value.response.status_code == (401 if case == "bad-token" else 400)


async def test_voice_chat_dropped_after_n_messages(
    server: EmulatorServer, client: api.HeyGenClient
) -> None:
    sid, token, _ = await open_session(client)
    server.emulator.faults.ws_drop_after_messages = 3
    url = vc.chat_url(server.base_url, session_id=sid, session_token=token)
    async with connect(url) as ws:
        with pytest.raises(websockets.ConnectionClosedError) as caught:
            for _ in range(50):
                await ws.send(vc.encode_audio(bytes(1024)))
                await asyncio.sleep(0.01)
            await ws.recv()
    assert caught.value.rcvd is None, "dropped without a close frame, like a network failure"
    assert server.emulator.registry.get(sid).audio.frames == 3


async def test_voice_chat_dropped_after_seconds(
    server: EmulatorServer, client: api.HeyGenClient
) -> None:
    sid, token, _ = await open_session(client)
    server.emulator.faults.ws_drop_after_seconds = 0.3
    url = vc.chat_url(server.base_url, session_id=sid, session_token=token)
    loop = asyncio.get_running_loop()
    started = loop.time()  # before the handshake, so before the emulator's clock starts
    async with connect(url) as ws:
        with pytest.raises(websockets.ConnectionClosedError):
            await within(ws.recv(), "the socket dropped")
    assert loop.time() - started >= 0.3, "not before its time"


async def test_stopping_the_session_closes_its_sockets(
    server: EmulatorServer, client: api.HeyGenClient
) -> None:
    sid, token, _ = await open_session(client)
    async with connect(vc.chat_url(server.base_url, session_id=sid, session_token=token)) as ws:
        await client.stop_session(sid)
        with pytest.raises(websockets.ConnectionClosedOK):
            await within(ws.recv(), "the socket closed")


async def test_realtime_socket_speaks_client_audio(
    server: EmulatorServer, client: api.HeyGenClient
) -> None:
    sid, _, answer = await open_session(client)
    assert answer.realtime_endpoint is not None
    async with connect(answer.realtime_endpoint) as ws:
        first = rt.parse_server_event(await ws.recv())
        assert (first.type, first.state) == (rt.SESSION_STATE_UPDATED, "connected")
        audio = bytes(rt.SAMPLE_RATE * 2 // 2)  # 0.5 s at 24 kHz
        loop = asyncio.get_running_loop()
        started = loop.time()
        for piece in chunks(audio, 4800):
            await ws.send(rt.speak(piece).to_json())
        await ws.send(rt.Command(rt.AGENT_SPEAK_END).to_json())
        speaking = rt.parse_server_event(await within(ws.recv(), "speaking"))
        idle = rt.parse_server_event(await within(ws.recv(), "idle again"))
        assert (speaking.previous_state, speaking.state) == ("idle", "speaking")
        assert (idle.previous_state, idle.state) == ("speaking", "idle")
        assert loop.time() - started >= 0.5, "the avatar takes as long as the audio lasts"

        await ws.send(rt.Command(rt.AGENT_START_LISTENING).to_json())
        listening = rt.parse_server_event(await within(ws.recv(), "listening"))
        assert listening.state == "listening"
        assert server.emulator.registry.get(sid).listening

        await ws.send(json.dumps({"type": "agent.dance"}))
        error = json.loads(await within(ws.recv(), "an error for an unknown command"))
        assert error["type"] == "error" and "agent.dance" in error["message"]
    tasks = server.emulator.registry.get(sid).tasks
    assert [t["audio_bytes"] for t in tasks] == [len(audio)]


async def test_realtime_interrupt_cuts_speech_short(
    server: EmulatorServer, client: api.HeyGenClient
) -> None:
    _, _, answer = await open_session(client)
    assert answer.realtime_endpoint is not None
    async with connect(answer.realtime_endpoint) as ws:
        await ws.recv()
        for _ in range(6):  # 30 s, in 5 s messages
            await ws.send(rt.speak(bytes(rt.SAMPLE_RATE * 2 * 5)).to_json())
        await ws.send(rt.Command(rt.AGENT_SPEAK_END).to_json())
        assert rt.parse_server_event(await within(ws.recv(), "speaking")).state == "speaking"
        loop = asyncio.get_running_loop()
        interrupted = loop.time()
        await ws.send(rt.Command(rt.AGENT_INTERRUPT).to_json())
        idle = rt.parse_server_event(await within(ws.recv(), "idle after the interrupt"))
        assert idle.state == "idle"
        assert loop.time() - interrupted < 15, "cut short, long before the 30 s were said"
