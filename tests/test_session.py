"""HeyGenSession against the emulator over real sockets (media-less avatar here; the
LiveKit side is covered in tests/test_transport_e2e.py)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator

import numpy as np
import pytest

from agent.emulator.config import EmulatorConfig
from agent.emulator.faults import FaultSettings
from agent.emulator.livekit_server import LiveKitServer
from agent.emulator.server import EmulatorServer
from agent.heygen import api
from agent.heygen.events import AvatarEvent
from agent.heygen.protocol import interactive as ia
from agent.heygen.protocol import voice_chat as vc
from agent.heygen.session import (
    HeyGenSession,
    SessionAborted,
    SessionListener,
    SessionOptions,
    SessionState,
)
from tests.rooms import subscriptions
from tests.waiting import eventually, within

KEY = "session-test-key-1234"
NO_MEDIA = SessionOptions(livekit=False, keep_alive_interval_s=None)


class Recorder(SessionListener):
    def __init__(self) -> None:
        self.chat: list[str] = []
        self.lost: list[str] = []
        self.restored = asyncio.Event()
        self.stopped: list[str] = []

    async def on_event(self, event: AvatarEvent) -> None:
        if isinstance(event.raw, vc.VoiceChatEvent):  # what came on the socket
            self.chat.append(event.raw.type)

    async def on_connection_lost(self, part: str, reason: str) -> None:
        self.lost.append(part)

    async def on_connection_restored(self, part: str) -> None:
        self.restored.set()

    async def on_stopped(self, reason: str) -> None:
        self.stopped.append(reason)


@pytest.fixture
async def server() -> AsyncIterator[EmulatorServer]:
    async with EmulatorServer(EmulatorConfig(api_keys=frozenset({KEY}))) as server:
        yield server


@pytest.fixture
async def client(server: EmulatorServer) -> AsyncIterator[api.HeyGenClient]:
    async with api.HeyGenClient(KEY, base_url=server.base_url, max_retries=1) as client:
        yield client


def counts(server: EmulatorServer) -> dict[str, int]:
    return server.emulator.registry.counts()


def tone(seconds: float, rate: int = 48000) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    return (np.sin(2 * np.pi * 180 * t) * 8000).astype("<i2").tobytes()


async def test_session_life_and_operations(
    server: EmulatorServer, client: api.HeyGenClient
) -> None:
    listener = Recorder()
    async with HeyGenSession(client, NO_MEDIA, listener) as session:
        assert session.state is SessionState.RUNNING and session.session_id
        emulated = server.emulator.registry.get(session.session_id)
        await session.speak("Repeat me", task_mode=ia.TaskMode.SYNC)
        assert await session.speak("Answer me", task_type=ia.TaskType.TALK) is None  # socket
        await session.interrupt()
        await session.start_listening()
        assert emulated.listening
        await session.stop_listening()
        await session.keep_alive()

        rate = 48000  # a microphone's rate: the session resamples to 16 kHz
        audio = bytes(rate * 2) + tone(1.0) + bytes(rate * 2 * 2)  # 1 s quiet, 1 s tone, 2 s quiet
        sent = 0
        for i in range(0, len(audio), rate // 50 * 2):  # 20 ms frames
            sent += await session.send_audio(audio[i : i + rate // 50 * 2], rate)
        await eventually(lambda: emulated.audio.frames == sent, "every audio message arrived")
        assert emulated.audio.frame_samples == {512: sent}
        assert emulated.audio.seconds == pytest.approx(4.0, abs=0.05)
        await eventually(lambda: len(listener.chat) == 2, "user_start and user_stop came back")
        assert listener.chat == ["user_start", "user_stop"]

        session.mute()
        for i in range(0, len(audio), rate // 50 * 2):
            sent += await session.send_audio(audio[i : i + rate // 50 * 2], rate)
        await eventually(lambda: emulated.audio.frames == sent, "the muted audio arrived")
        # The emulator detects speech as the audio arrives: its count is the truth.
        assert emulated.audio.user_starts == 1, "muted: HeyGen heard only zeros"
        assert listener.chat == ["user_start", "user_stop"]
        assert emulated.audio.seconds == pytest.approx(8.0, abs=0.1), "the cadence went on"
        assert emulated.audio.text_frames == 1
        assert emulated.audio.extensions_offered == [""], "raw audio: no permessage-deflate"
        assert [t["text"] for t in emulated.tasks] == [
            "Repeat me", "You said: Answer me", "I heard 1.0 seconds of speech."]
    assert session.state is SessionState.STOPPED
    assert counts(server)["stopped"] == 1 and counts(server)["open"] == 0
    assert listener.stopped == ["stopped by client"]
    await session.stop()  # idempotent
    assert server.emulator.requests["/v1/streaming.stop"] == 1


async def test_operations_need_a_running_session(client: api.HeyGenClient) -> None:
    session = HeyGenSession(client, NO_MEDIA)
    with pytest.raises(RuntimeError, match="not running"):
        await session.speak("hi")
    await session.stop()  # before start: nothing to stop, no error
    assert session.state is SessionState.STOPPED


@pytest.mark.parametrize("mode,tokens", [("voice chat", 1), ("lip-sync", 0), ("text", 0)])
async def test_a_session_token_is_minted_only_where_the_voice_chat_needs_it(
    server: EmulatorServer, client: api.HeyGenClient, mode: str, tokens: int
) -> None:
    """The voice-chat socket's URL needs a session token; without that socket, every call
    takes the API key as Pipecat's HeyGen client sends it: one round trip less to start."""
    options = {"voice chat": NO_MEDIA,
               "lip-sync": dataclasses.replace(NO_MEDIA, voice_chat=False, realtime=True),
               "text": dataclasses.replace(NO_MEDIA, voice_chat=False)}[mode]
    async with HeyGenSession(client, options) as session:
        await session.keep_alive()
    assert server.emulator.requests["/v1/streaming.create_token"] == tokens
    assert counts(server)["stopped"] == 1 and counts(server)["open"] == 0


def test_voice_chat_requires_a_session_token() -> None:
    with pytest.raises(ValueError, match="use_session_token"):
        SessionOptions(use_session_token=False)


def test_the_livekit_voice_transport_requires_livekit() -> None:
    request = ia.NewSessionRequest(ia_is_livekit_transport=True)
    with pytest.raises(ValueError, match="needs livekit=True"):
        SessionOptions(request=request, livekit=False)
    assert SessionOptions(request=request).voice_over_livekit
    assert not SessionOptions().voice_over_livekit


@pytest.mark.parametrize(
    "failing_path,created",
    [
        ("/v1/streaming.create_token", 0),
        ("/v1/streaming.new", 0),
        ("/v1/streaming.start", 1),
        (vc.CHAT_PATH, 1),
    ],
)
async def test_a_failure_at_any_step_stops_what_was_created(
    server: EmulatorServer, client: api.HeyGenClient, failing_path: str, created: int
) -> None:
    server.emulator.faults.apply(
        FaultSettings.model_validate({"fail_next": {"status": 400, "path": failing_path}})
    )
    session = HeyGenSession(client, NO_MEDIA)
    with pytest.raises(api.HeyGenError):
        await session.start()
    assert session.state is SessionState.STOPPED
    assert counts(server)["created"] == created
    assert counts(server)["stopped"] == created and counts(server)["open"] == 0


async def test_a_livekit_failure_stops_the_session(
    server: EmulatorServer, client: api.HeyGenClient
) -> None:
    """The emulator has no LiveKit here, so its room URL is empty and joining fails."""
    session = HeyGenSession(client, SessionOptions(keep_alive_interval_s=None))
    with pytest.raises(Exception):  # noqa: B017 - LiveKit's own error type
        await session.start()
    assert counts(server) == {"created": 1, "started": 1, "stopped": 1, "expired": 0, "open": 0}


@pytest.mark.parametrize(
    "in_flight,created",
    [
        ("/v1/streaming.create_token", 0),
        # The hard case: the service creates a session whose id the client has not seen.
        ("/v1/streaming.new", 1),
        ("/v1/streaming.start", 1),
        (vc.CHAT_PATH, 1),
    ],
)
async def test_cancelling_at_any_step_stops_what_was_created(
    server: EmulatorServer, client: api.HeyGenClient, in_flight: str, created: int
) -> None:
    """Cancel while the step's request is at the service: every request is held there a
    while (injected latency), and the test cancels the moment that one arrives."""
    server.emulator.faults.apply(FaultSettings(latency_ms=500))
    session = HeyGenSession(client, NO_MEDIA)
    starting = asyncio.create_task(session.start())
    await within(server.emulator.requests.reach(in_flight), f"{in_flight} arrived")
    starting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await within(starting, "start() returned after the cancel")
    assert counts(server)["created"] == created
    assert counts(server)["open"] == 0 and counts(server)["stopped"] == created
    assert session.state is SessionState.STOPPED
    # nothing got further than the step in flight
    assert server.emulator.requests[vc.CHAT_PATH] == (in_flight == vc.CHAT_PATH)


async def test_keep_alive_runs_on_a_timer(server: EmulatorServer, client: api.HeyGenClient) -> None:
    options = SessionOptions(livekit=False, keep_alive_interval_s=0.1)
    async with HeyGenSession(client, options):
        await within(server.emulator.requests.reach("/v1/streaming.keep_alive", 3),
                     "three keep-alives without a call from us")


async def test_a_dropped_socket_is_reconnected(
    server: EmulatorServer, client: api.HeyGenClient
) -> None:
    listener = Recorder()
    async with HeyGenSession(client, NO_MEDIA, listener) as session:
        assert session.session_id is not None
        server.emulator.faults.ws_drop_after_messages = 5
        for _ in range(10):
            await session.send_audio(bytes(1024), 16000)
        await within(listener.restored.wait(), "the socket reconnected")
        server.emulator.faults.ws_drop_after_messages = None
        assert listener.lost == ["voice_chat"]
        assert server.emulator.requests[vc.CHAT_PATH] == 2
        emulated = server.emulator.registry.get(session.session_id)
        before = emulated.audio.frames
        assert await session.send_audio(bytes(1024 * 3), 16000) == 3
        await eventually(lambda: emulated.audio.frames == before + 3,
                         "the audio after the reconnect arrived")
        assert session.state is SessionState.RUNNING
    assert counts(server)["stopped"] == 1


async def test_voice_chat_pieces_of_another_size(
    server: EmulatorServer, client: api.HeyGenClient
) -> None:
    """The opt-in smaller pieces: each 20 ms frame goes out as it comes, 320 samples."""
    options = dataclasses.replace(NO_MEDIA, voice_chat_chunk_samples=320)
    async with HeyGenSession(client, options) as session:
        assert session.session_id is not None
        assert session.audio_piece_s == pytest.approx(0.02)
        sent = [await session.send_audio(bytes(640), 16000) for _ in range(5)]
        assert sent == [1] * 5
        emulated = server.emulator.registry.get(session.session_id)
        await eventually(lambda: emulated.audio.frames == 5, "the five pieces arrived")
        assert dict(emulated.audio.frame_samples) == {320: 5}
    with pytest.raises(ValueError, match="voice_chat_chunk_samples must be 160-8000, not 8"):
        SessionOptions(voice_chat_chunk_samples=8)


async def test_a_socket_that_keeps_dropping_ends_the_session(
    server: EmulatorServer, client: api.HeyGenClient
) -> None:
    listener = Recorder()
    session = HeyGenSession(client, NO_MEDIA, listener)
    server.emulator.faults.apply(FaultSettings(ws_drop_after_seconds=0.3))  # every connection
    await session.start()
    reason = await within(session.wait_stopped(), "the session gave up")
    assert "dropped" in reason and len(listener.lost) == 4
    assert counts(server)["stopped"] == 1 and counts(server)["open"] == 0


async def test_a_session_heygen_ends_is_stopped_here_too() -> None:
    config = EmulatorConfig(session_duration_limit_s=1.0, expiry_check_interval_s=0.05)
    async with EmulatorServer(config) as server, api.HeyGenClient(
        "any-key-12345", base_url=server.base_url
    ) as client:
        listener = Recorder()
        session = HeyGenSession(client, NO_MEDIA, listener)
        await session.start()
        reason = await within(session.wait_stopped(), "the expired session stopped here")
        assert reason == "HeyGen closed the session"
        assert session.state is SessionState.STOPPED
        assert listener.stopped == [reason]
        assert server.emulator.registry.counts()["expired"] == 1


async def test_stop_while_starting_cancels_the_start_and_stops_what_it_created(
    server: EmulatorServer, client: api.HeyGenClient
) -> None:
    """A stop from elsewhere (a signal handler, a pipeline ending) while ``new`` is at the
    service: the session HeyGen creates is stopped, and start() says why it ended."""
    server.emulator.faults.apply(FaultSettings(latency_ms=500))
    session = HeyGenSession(client, NO_MEDIA)
    starting = asyncio.create_task(session.start())
    await within(server.emulator.requests.reach("/v1/streaming.new"), "new arrived")
    await within(session.stop(reason="interrupted"), "stop() returned")
    with pytest.raises(SessionAborted, match="stopped while starting: interrupted"):
        await within(starting, "start() returned")
    assert counts(server)["created"] == counts(server)["stopped"] == 1
    assert counts(server)["open"] == 0
    assert await session.wait_stopped() == "interrupted"
    assert server.emulator.requests["/v1/streaming.start"] == 0


async def test_a_failing_stop_is_retried_until_heygen_confirms_it(
    server: EmulatorServer, client: api.HeyGenClient
) -> None:
    session = HeyGenSession(client, NO_MEDIA)
    await session.start()
    server.emulator.faults.apply(FaultSettings.model_validate(
        {"fail_next": {"status": 503, "count": 3, "path": "/v1/streaming.stop"}}))
    await within(session.stop(), "stop() returned")
    assert server.emulator.requests["/v1/streaming.stop"] == 4
    assert counts(server)["open"] == 0 and session.stop_error is None


async def test_a_stop_that_never_succeeds_is_reported_not_dropped(
    server: EmulatorServer, client: api.HeyGenClient
) -> None:
    session = HeyGenSession(client, SessionOptions(livekit=False, keep_alive_interval_s=None,
                                                   stop_deadline_s=1.0))
    await session.start()
    server.emulator.faults.apply(FaultSettings.model_validate(
        {"fail_next": {"status": 503, "count": 1000, "path": "/v1/streaming.stop"}}))
    await within(session.stop(), "stop() gave up at its deadline")
    assert session.stop_error is not None and "HTTP 503" in session.stop_error
    assert counts(server)["open"] == 1, "it is still open at HeyGen: the caller must know"
    assert session.state is SessionState.STOPPED


@pytest.mark.livekit
@pytest.mark.parametrize("fault", ["avatar-leaves", "livekit-dies"])
async def test_lost_media_ends_the_session_with_a_reason(
    livekit_server: LiveKitServer, fault: str
) -> None:
    """The avatar leaves and does not come back within the grace time, or the LiveKit
    server goes away for good: the billed session is stopped, and the reason says why."""
    class Tracks(Recorder):
        def __init__(self) -> None:
            super().__init__()
            self.video = asyncio.Event()

        async def on_track(self, track: object, participant: object) -> None:
            self.video.set()

    config = EmulatorConfig(livekit=livekit_server.settings)
    async with EmulatorServer(config) as emulator, api.HeyGenClient(
        "media-key-123456", base_url=emulator.base_url
    ) as client:
        listener = Tracks()
        # (a dying server also takes the avatar: a long grace shows the connection's end;
        # the short one is also the avatar's first arrival's, which a loaded machine has
        # taken over 0.5 s)
        grace = 2.0 if fault == "avatar-leaves" else 300
        options = SessionOptions(keep_alive_interval_s=None, media_grace_s=grace)
        session = HeyGenSession(client, options, listener)
        await session.start()
        await within(listener.video.wait(), "the avatar's media")
        if fault == "avatar-leaves":
            await emulator.emulator.runtimes[session.session_id or ""].avatar.leave()
            expected = "the avatar left the room and did not come back within 2 s"
        else:
            await livekit_server.stop()
            expected = "LiveKit connection lost"
        reason = await within(session.wait_stopped(), "the session ended by itself", 90)
        assert reason.startswith(expected), reason
        assert emulator.emulator.registry.counts()["stopped"] == 1
        assert emulator.emulator.registry.counts()["open"] == 0


@pytest.mark.livekit
async def test_a_session_that_takes_no_media_still_counts_its_avatar_present(
    livekit_server: LiveKitServer,
) -> None:
    """With neither the avatar's video nor its audio wanted, no track is subscribed: the
    avatar's published tracks say it is there, and the media watch does not end the
    session after its grace time."""
    config = EmulatorConfig(livekit=livekit_server.settings)
    async with EmulatorServer(config) as emulator, api.HeyGenClient(
        "nomedia-key-123456", base_url=emulator.base_url
    ) as client:
        grace = 0.3
        options = SessionOptions(keep_alive_interval_s=None, media_grace_s=grace,
                                 video=False, audio=False)
        session = HeyGenSession(client, options)
        await session.start()
        try:
            await eventually(lambda: subscriptions(session.room) == {
                "video": [False], "audio": [False]}, "the avatar's two tracks, unsubscribed")
            # The watch was armed when start() returned; a timer of the same loop that is
            # due later runs after it.
            await asyncio.sleep(3 * grace)
            assert session.state is SessionState.RUNNING
            assert subscriptions(session.room) == {"video": [False], "audio": [False]}
        finally:
            await session.stop()
        assert emulator.emulator.registry.counts()["open"] == 0


async def test_stop_while_the_listener_hears_started_stops(
    server: EmulatorServer, client: api.HeyGenClient
) -> None:
    """stop() while start() is telling its listener: the session is running by then, and
    stop() ends it without waiting for the listener."""
    class SlowToHear(SessionListener):
        def __init__(self) -> None:
            self.hearing = asyncio.Event()
            self.release = asyncio.Event()

        async def on_started(self, session: HeyGenSession) -> None:
            self.hearing.set()
            await self.release.wait()

    listener = SlowToHear()
    session = HeyGenSession(client, NO_MEDIA, listener)
    starting = asyncio.create_task(session.start())
    await within(listener.hearing.wait(), "start() told its listener")
    await within(session.stop(reason="late"), "stop() returned")
    assert counts(server)["stopped"] == 1 and counts(server)["open"] == 0
    assert session.state is SessionState.STOPPED
    listener.release.set()
    await within(starting, "start() ended")
