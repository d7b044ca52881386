"""The transport in a real Pipecat pipeline against the emulator (media-less avatar):
espeak-ng speech → Silero VAD → HeyGen's voice-chat socket, events back as frames."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pipecat.frames.frames import (
    InputAudioRawFrame,
    InterimTranscriptionFrame,
    StartFrame,
    TranscriptionFrame,
    UserStartedSpeakingFrame,
    UserStoppedSpeakingFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineWorker
from pipecat.workers.runner import WorkerRunner

from agent.emulator.config import EmulatorConfig
from agent.emulator.server import EmulatorServer
from agent.heygen import api
from agent.heygen.protocol import voice_chat as vc
from agent.heygen.session import SessionOptions
from agent.heygen.transport import HeyGenTransport
from agent.media.vad import silero_vad
from agent.media.wav_source import WavFileInput
from tests.pipeline_helpers import Collector, run_to_end, run_until
from tests.speech import speech_wav
from tests.waiting import within

KEY = "pipeline-key-123456"


@pytest.fixture
async def server() -> AsyncIterator[EmulatorServer]:
    async with EmulatorServer(EmulatorConfig(api_keys=frozenset({KEY}))) as server:
        yield server


async def test_speech_reaches_heygen_and_events_come_back(
    server: EmulatorServer, tmp_path: Path
) -> None:
    wav = tmp_path / "hello.wav"
    speech_s = speech_wav(wav, "Hello avatar, can you hear me today?")
    source = WavFileInput(wav, lead_in_s=0.5, after_end="silence")
    client = api.HeyGenClient(KEY, base_url=server.base_url)
    transport = HeyGenTransport(client=client, session_options=SessionOptions(livekit=False))
    seen: dict[str, list[object]] = {"started": [], "ended": [], "user_stop": []}

    @transport.event_handler("on_session_started")
    async def started(t: HeyGenTransport, session_id: str) -> None:
        seen["started"].append(session_id)

    heygen_heard_the_end = asyncio.Event()

    @transport.event_handler("on_user_stopped_speaking")
    async def stopped(t: HeyGenTransport) -> None:
        seen["user_stop"].append(True)
        heygen_heard_the_end.set()

    @transport.event_handler("on_session_ended")
    async def ended(t: HeyGenTransport, reason: str) -> None:
        seen["ended"].append(reason)

    collector = Collector()

    async def both_heard_the_end() -> None:
        await heygen_heard_the_end.wait()
        await collector.until(lambda: collector.count(VADUserStoppedSpeakingFrame) >= 1)

    await run_until([source, silero_vad(), transport.output(), transport.input(), collector],
                    both_heard_the_end(), "HeyGen and Silero heard the speech end")
    await client.aclose()

    (session_id,) = seen["started"]
    session = next(s for s in server.emulator.registry if s.session_id == session_id)
    audio = session.audio
    # the lead-in and the speech reached HeyGen, none of it twice, at 16 kHz in 512-sample
    # messages (the run ends mid-stream: what was still in the pipeline is not sent)
    assert 0.5 + speech_s - vc.CHUNK_SECONDS <= audio.seconds <= source.seconds_sent
    assert audio.sample_rates == {16000} and set(audio.frame_samples) == {512}
    assert (audio.user_starts, audio.user_stops) == (1, 1)
    assert transport.output().audio_messages_sent == audio.frames

    kinds = [type(f) for _, f in collector.frames]
    order = [k for k in kinds if k in (VADUserStartedSpeakingFrame, UserStartedSpeakingFrame,
                                       VADUserStoppedSpeakingFrame, UserStoppedSpeakingFrame)]
    # Silero heard the speech (it may split it at a pause), and so did HeyGen, once
    assert VADUserStartedSpeakingFrame in order and VADUserStoppedSpeakingFrame in order
    assert order.index(VADUserStartedSpeakingFrame) < order.index(UserStoppedSpeakingFrame)
    assert order.count(UserStartedSpeakingFrame) == 1
    assert order.count(UserStoppedSpeakingFrame) == 1
    assert seen["user_stop"] == [True]
    assert session.state.value == "stopped"
    assert server.emulator.requests["/v1/streaming.stop"] == 1
    assert seen["ended"] == ["pipeline EndFrame"]
    # without LiveKit there is no data channel: no transcripts arrive
    assert collector.of(TranscriptionFrame, InterimTranscriptionFrame) == []


async def test_a_wav_input_plays_only_once_the_far_end_can_hear(tmp_path: Path) -> None:
    """``start_when``: nothing of the file before the event is set, the file after."""
    wav = tmp_path / "hi.wav"
    speech_wav(wav, "hi")
    ready = asyncio.Event()
    source = WavFileInput(wav, start_when=ready)
    collector = Collector()

    async def scenario() -> None:
        await collector.until(lambda: collector.count(StartFrame) == 1)
        # the play task has had its chance to run: 5 frames' worth of time
        await asyncio.sleep(0.1)
        assert collector.count(InputAudioRawFrame) == 0, "played before the far end heard"
        released = asyncio.get_running_loop().time()
        ready.set()
        await within(source.finished.wait(), "the whole file played")
        first = next(t for t, f in collector.frames if isinstance(f, InputAudioRawFrame))
        assert first >= released

    await run_until([source, collector], scenario(), "the file played once released")


async def test_a_session_that_cannot_start_ends_the_pipeline(tmp_path: Path) -> None:
    async with EmulatorServer(EmulatorConfig(api_keys=frozenset({KEY}))) as server:
        client = api.HeyGenClient("wrong-key-123456", base_url=server.base_url)
        transport = HeyGenTransport(client=client,
                                    session_options=SessionOptions(livekit=False))
        wav = tmp_path / "x.wav"
        speech_wav(wav, "hi")
        await run_to_end([WavFileInput(wav), transport.output(), transport.input(), Collector()],
                         "the pipeline ended when the session could not start")
        await client.aclose()
        assert server.emulator.registry.counts()["created"] == 0


async def test_a_cancelled_pipeline_still_stops_the_session(
    server: EmulatorServer, tmp_path: Path
) -> None:
    wav = tmp_path / "x.wav"
    speech_wav(wav, "one two three")
    client = api.HeyGenClient(KEY, base_url=server.base_url)
    transport = HeyGenTransport(client=client, session_options=SessionOptions(livekit=False))
    worker = PipelineWorker(
        Pipeline([WavFileInput(wav), transport.output(), transport.input(), Collector()]),
        idle_timeout_secs=None,
    )
    started = asyncio.Event()

    @transport.event_handler("on_session_started")
    async def on_started(t: HeyGenTransport, session_id: str) -> None:
        started.set()

    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(worker)
    running = asyncio.create_task(runner.run())
    await within(started.wait(), "the session started")
    await worker.cancel()
    await within(running, "the cancelled pipeline ended")
    await client.aclose()
    assert server.emulator.registry.counts() == {
        "created": 1, "started": 1, "stopped": 1, "expired": 0, "open": 0}
