"""``heygen-agent bench --sessions``: whole sessions timed against the emulator and a real
LiveKit server, each figure beside a baseline timed in the same run.

The hot-path benchmark (:mod:`agent.bench`) times functions; what a user waits for is a
session: how soon the avatar shows up, how soon HeyGen hears the end of a turn, how soon
the avatar's lips move to the bot's speech, and how many sessions one machine carries.
Those depend on round trips, so the emulator runs in its own process with a delay added
to every REST answer and WebSocket handshake (50 ms by default: HeyGen across an ocean).

1. **Start → first avatar frame**, video and audio: ours (LiveKit and the voice-chat
   socket connected concurrently, :mod:`agent.heygen.session`) against a baseline that
   does each step after the previous one, as HeyGen's official client and Pipecat do; and
   the opt-in ``livekit_during_start`` (off by default: unproven against the real service);
   and the same for LiveAvatar's LITE mode against its web SDK's order.
   The variants alternate round by round; the ratio is the median of per-round ratios.
   And the same for ``heygen-agent run``, from its spawn: the session started while the
   pipeline is built (the default) against started once it runs (``--start-after-build``).
2. **Turn latency**: end of speech in the input audio → ``user_stop`` from the emulator,
   with the emulator's detector stop delay (its hangover) shown apart.
3. **Lip-sync latency**: first TTS frame into the transport's ``output()`` → first
   non-silent avatar audio frame out of its ``input()`` (the path a bot embeds, whole), and
   first TTS frame into ``session.speak_audio`` → the avatar's audio track (the session's
   part of it), against the floor (the same audio sent straight to the realtime socket in
   one message, to that track); and drift over a long utterance, from the pacer's
   releases (:func:`agent.heygen.pacing.measure_drift`) and the avatar audio's arrival.
4. **Sessions per machine**: :func:`agent.soak.soak` for each N, video kept as I420 or
   converted to RGB: CPU and memory per process, frames missed, event-loop lag.

``python -m agent.session_bench --json FILE`` writes the figures;
:mod:`agent.performance_report` turns them into ``docs/PERFORMANCE.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import platform
import signal
import statistics
import sys
import tempfile
import time
import uuid
import wave
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
from livekit import rtc
from pipecat.frames.frames import (
    EndFrame,
    Frame,
    OutputAudioRawFrame,
    TTSAudioRawFrame,
    TTSStartedFrame,
    TTSStoppedFrame,
)
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineWorker
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.workers.runner import WorkerRunner

from agent.bench_options import BenchConfig, config_from
from agent.emulator.speech_detector import HANGOVER_S
from agent.heygen import events as ev
from agent.heygen.api import HeyGenClient, LiveAvatarClient
from agent.heygen.api.base import RestClient
from agent.heygen.backend import AvatarSession, LifeOptions
from agent.heygen.liveavatar import LiveAvatarOptions, LiveAvatarSession
from agent.heygen.pacing import Chunk, measure_drift
from agent.heygen.protocol import interactive as ia
from agent.heygen.session import HeyGenSession, SessionListener, SessionOptions
from agent.heygen.transport import HeyGenParams, HeyGenTransport
from agent.soak import Decode, emulator_process, speech_like

#: The TTS's rate in the lip-sync runs (what Pipecat's HeyGen services use).
TTS_RATE = 24_000
MIC_RATE = 16_000
FRAME_S = 0.02
#: An avatar audio frame louder than this (peak, s16) is speech, not silence.
SILENCE_PEAK = 200
FIRST_MEDIA_TIMEOUT_S = 30.0
#: the stand-in speech's amplitude here (s16): well above SILENCE_PEAK
LOUD = 3000


def frames(pcm: bytes, rate: int) -> list[bytes]:
    step = int(rate * FRAME_S) * 2
    return [pcm[i : i + step] for i in range(0, len(pcm), step)]


def silence(seconds: float, rate: int) -> list[bytes]:
    """Whole frames of silence, about ``seconds`` of them. Whole: a short last frame
    would leave the chunker holding its remainder, and every later piece would wait for
    it (16000 * 1.3 is 20,799.99...: cut with int(), it once cost each turn 20 ms)."""
    return [bytes(int(rate * FRAME_S) * 2)] * round(seconds / FRAME_S)


def ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


def summary(values: Sequence[float]) -> dict[str, float]:
    """Median, min, max and p90 of ``values`` (already in the unit wanted)."""
    if not values:
        return {"median": float("nan"), "min": float("nan"), "max": float("nan"),
                "p90": float("nan"), "n": 0}
    return {"median": round(statistics.median(values), 1), "min": round(min(values), 1),
            "max": round(max(values), 1),
            "p90": round(float(np.percentile(values, 90)), 1), "n": len(values)}


# ---------------------------------------------------------------------- the avatar's media


class AudioLog:
    """The avatar's audio as it arrives wherever it is watched (its LiveKit track, or out
    of the transport's ``input()``): each frame's arrival, length and loudness."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.first_audio: asyncio.Future[float] = self.loop.create_future()
        #: (arrival, seconds of audio, non-silent)
        self.audio: list[tuple[float, float, bool]] = []
        self.changed = asyncio.Event()

    def heard(self, pcm: bytes | memoryview, seconds: float) -> None:
        now = self.loop.time()
        if not self.first_audio.done():
            self.first_audio.set_result(now)
        samples = np.frombuffer(pcm, np.int16)
        loud = bool(samples.size) and int(np.abs(samples).max()) > SILENCE_PEAK
        self.audio.append((now, seconds, loud))
        self.changed.set()

    def first_loud_after(self, t0: float) -> float | None:
        return next((t for t, _, loud in self.audio if loud and t >= t0), None)


class AvatarMedia(AudioLog, SessionListener):
    """Watches the avatar's tracks: the first video and audio frame, and for audio every
    frame's arrival and whether it was silent."""

    def __init__(self) -> None:
        super().__init__()
        self.first_video: asyncio.Future[float] = self.loop.create_future()
        self.tasks: list[asyncio.Task[None]] = []
        self.user_stops: list[float] = []

    async def on_track(self, track: rtc.Track, participant: rtc.RemoteParticipant) -> None:
        if track.kind == rtc.TrackKind.KIND_VIDEO:
            self.tasks.append(asyncio.create_task(self._video(rtc.VideoStream(track))))
        elif track.kind == rtc.TrackKind.KIND_AUDIO:
            self.tasks.append(asyncio.create_task(self._audio(rtc.AudioStream(track))))

    async def on_event(self, event: ev.AvatarEvent) -> None:
        if isinstance(event, ev.UserStoppedSpeaking):
            self.user_stops.append(self.loop.time())
            self.changed.set()

    async def _video(self, stream: rtc.VideoStream) -> None:
        try:
            async for _ in stream:
                if not self.first_video.done():
                    self.first_video.set_result(self.loop.time())
        finally:
            await stream.aclose()

    async def _audio(self, stream: rtc.AudioStream) -> None:
        try:
            async for event in stream:
                frame = event.frame
                self.heard(frame.data, frame.samples_per_channel / frame.sample_rate)
        finally:
            await stream.aclose()

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


# ---------------------------------------------------------------------- 1. start


class OneAfterAnother(AvatarSession):
    """HeyGen's own clients' way: each of the session's connections after the previous
    one (the room, then the socket)."""

    async def _connect_all(self, connects: list[Coroutine[Any, Any, None]]) -> None:
        pending = list(connects)
        try:
            while pending:
                await pending.pop(0)
        finally:
            for connect in pending:  # one failed: the rest never run
                connect.close()


class SequentialSession(OneAfterAnother, HeyGenSession):
    """The baseline: HeyGen's official client and Pipecat's, each step after the previous
    one — token, ``new``, ``start``, then LiveKit, then the voice-chat socket."""


class SequentialLiveAvatar(OneAfterAnother, LiveAvatarSession):
    """LiveAvatar's baseline, its web SDK's order: token, ``sessions/start``, then
    LiveKit, then the socket."""


class TrackByTrackSession(HeyGenSession):
    """Ours as it was: each of the avatar's tracks asked for once the room is joined,
    where LiveKit now subscribes to both as it joins."""

    def _room_options(self) -> rtc.RoomOptions:
        return rtc.RoomOptions(auto_subscribe=False)


#: Each: what it is, and its session made from a client and a listener.
StartVariants = dict[str, tuple[str, Callable[[Any, SessionListener], AvatarSession]]]


def _interactive(cls: type[HeyGenSession], **extra: Any
                 ) -> Callable[[Any, SessionListener], AvatarSession]:
    return lambda client, media: cls(
        client, SessionOptions(keep_alive_interval_s=None, **extra), media)


def _liveavatar(cls: type[LiveAvatarSession]) -> Callable[[Any, SessionListener], AvatarSession]:
    # LITE, in the sandbox: the mode an own-brain bot uses, and the socket to connect
    return lambda client, media: cls(
        client, LiveAvatarOptions(keep_alive_interval_s=None), media)


START_VARIANTS: StartVariants = {
    "sequential": ("each step after the previous (official client, Pipecat)",
                   _interactive(SequentialSession)),
    "track_by_track": ("ours as it was: the avatar's tracks subscribed one by one after "
                       "the join", _interactive(TrackByTrackSession)),
    "concurrent": ("ours: LiveKit and the voice-chat socket at once, the avatar's tracks "
                   "subscribed as the room is joined (default)", _interactive(HeyGenSession)),
    "livekit_during_start": ("ours + LiveKit joined during streaming.start (opt-in)",
                             _interactive(HeyGenSession, livekit_during_start=True)),
}
LIVEAVATAR_START_VARIANTS: StartVariants = {
    "sequential": ("each step after the previous (LiveAvatar's web SDK)",
                   _liveavatar(SequentialLiveAvatar)),
    "concurrent": ("ours: LiveKit and the LITE socket at once (default)",
                   _liveavatar(LiveAvatarSession)),
}


async def _one_start(
    client: Any, make: Callable[[Any, SessionListener], AvatarSession]
) -> dict[str, float]:
    media = AvatarMedia()
    session = make(client, media)
    loop = asyncio.get_running_loop()
    began = loop.time()
    try:
        await session.start()
        started = loop.time()
        async with asyncio.timeout(FIRST_MEDIA_TIMEOUT_S):
            video, audio = await asyncio.gather(media.first_video, media.first_audio)
        return {"start_ms": ms(started - began), "video_ms": ms(video - began),
                "audio_ms": ms(audio - began)}
    finally:
        await session.stop(reason="bench")
        await media.close()


async def alternating(
    variants: Sequence[str], rounds: int, one: Callable[[str], Awaitable[dict[str, float]]]
) -> dict[str, list[dict[str, float]]]:
    """``rounds`` runs of each variant, the order reversed every other round so that
    neither always runs first (a noisy machine's drift falls on both alike)."""
    runs: dict[str, list[dict[str, float]]] = {v: [] for v in variants}
    for i in range(rounds):
        order = list(variants)
        if i % 2:
            order.reverse()
        for variant in order:
            runs[variant].append(await one(variant))
    return runs


def ratio(results: list[dict[str, float]], baseline: list[dict[str, float]], key: str) -> float:
    """The median of per-round ratios against the baseline's run of the same round."""
    return round(statistics.median(
        r[key] / b[key] for r, b in zip(results, baseline, strict=True)), 3)


async def bench_start(client: Any, rounds: int,
                      variants: StartVariants = START_VARIANTS) -> dict[str, Any]:
    # Not counted: the process's first start pays once for what every later one reuses
    # (the HTTP connection, LiveKit's native runtime, the emulator's first avatar), and
    # whichever variant ran first would carry it alone.
    await _one_start(client, variants["sequential"][1])
    runs = await alternating(list(variants), rounds,
                             lambda variant: _one_start(client, variants[variant][1]))
    keys = ("start_ms", "video_ms", "audio_ms")
    out: dict[str, Any] = {"rounds": rounds, "variants": {}}
    for variant, results in runs.items():
        out["variants"][variant] = {
            "description": variants[variant][0],
            **{key: summary([r[key] for r in results]) for key in keys},
            **({} if variant == "sequential" else {"ratio": {
                key: ratio(results, runs["sequential"], key) for key in keys}}),
        }
    return out


# ---------------------------------------------------------------------- 1b. the command


#: ``heygen-agent run``'s ways to start, each: what it is, its extra arguments.
COMMAND_VARIANTS: dict[str, tuple[str, list[str]]] = {
    "after_build": ("the session started once the pipeline is built and runs, as Pipecat's "
                    "transports start theirs (on the StartFrame): `--start-after-build`",
                    ["--start-after-build"]),
    "during_build": ("ours: the session started while the pipeline is built (default)", []),
}
FIRST_FRAME_LINE = "HeyGen avatar video: first frame"
#: A SIGINT ends a run within its stop deadline and grace; beyond this it is a fault.
COMMAND_END_TIMEOUT_S = 40.0


def _command_file(directory: Path, base_url: str) -> Path:
    """A run as a user's: a (silent) recording as the microphone, Silero VAD, the
    avatar's video received; nothing plays or records it (the outputs' own start-up
    is not the session's)."""
    wav = directory / "silence.wav"
    with wave.open(str(wav), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(MIC_RATE)
        w.writeframes(bytes(2 * MIC_RATE))
    path = directory / "bench.yaml"
    path.write_text(
        f"heygen: {{base_url: '{base_url}', api_key: bench-key}}\n"
        f"input: {{type: wav, path: '{wav}', after_end: silence}}\n"
        "outputs: [{type: none}]\n"
        "video: {video_enabled: true, audio_enabled: false, video_format: I420}\n",
        encoding="utf-8")
    return path


async def _one_command(path: Path, extra: list[str]) -> dict[str, float]:
    """Spawn ``heygen-agent run`` and time its first avatar video frame (its log line
    read as it comes); then SIGINT, as a user ends it."""
    loop = asyncio.get_running_loop()
    began = loop.time()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "agent.cli", "run", str(path), "--no-status", "--for", "60",
        *extra, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "HEYGEN_LOG_LEVEL": "INFO"})
    assert proc.stderr is not None
    created = video = None
    try:
        async with asyncio.timeout(FIRST_MEDIA_TIMEOUT_S):
            while video is None:
                line = (await proc.stderr.readline()).decode(errors="replace")
                if not line:
                    raise RuntimeError(f"heygen-agent run {' '.join(extra)} ended before "
                                       "the avatar's first frame")
                if created is None and "created" in line and "HeyGen session" in line:
                    created = loop.time()
                if FIRST_FRAME_LINE in line:
                    video = loop.time()
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGINT)
        try:
            async with asyncio.timeout(COMMAND_END_TIMEOUT_S):
                await proc.communicate()
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise RuntimeError(f"heygen-agent run {' '.join(extra)} did not end within "
                               f"{COMMAND_END_TIMEOUT_S:g} s of its SIGINT") from None
    return {"created_ms": ms((created or video) - began), "video_ms": ms(video - began)}


async def bench_command(base_url: str, rounds: int) -> dict[str, Any]:
    """``heygen-agent run`` from its spawn to the avatar's first video frame: what a
    user of the command waits for, the interpreter's and Pipecat's start-up included."""
    with tempfile.TemporaryDirectory() as tmp:
        path = _command_file(Path(tmp), base_url)
        await _one_command(path, [])  # not counted: the first run reads modules from disk
        runs = await alternating(list(COMMAND_VARIANTS), rounds,
                                 lambda variant: _one_command(path, COMMAND_VARIANTS[variant][1]))
    return {"rounds": rounds, "variants": {
        variant: {
            "description": COMMAND_VARIANTS[variant][0],
            "created_ms": summary([r["created_ms"] for r in results]),
            "video_ms": summary([r["video_ms"] for r in results]),
            "ratio": ratio(results, runs["after_build"], "video_ms"),
        } for variant, results in runs.items()}}


# ---------------------------------------------------------------------- 2. turn latency


TURN_VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "socket_512": ("voice-chat socket, 512-sample pieces as HeyGen's official client (default)",
                   {}),
    "socket_320": ("voice-chat socket, one 320-sample piece per 20 ms frame (opt-in)",
                   {"voice_chat_chunk_samples": 320}),
    "room_track": ("LiveKit voice transport: a microphone track in 10 ms frames",
                   {"request": ia.NewSessionRequest(ia_is_livekit_transport=True)}),
}


async def bench_turn(client: HeyGenClient, rounds: int) -> dict[str, Any]:
    variants = {}
    for name, (label, extra) in TURN_VARIANTS.items():
        variants[name] = {"label": label, **await _turns(client, rounds, extra)}
    return {"rounds": rounds, "vad_stop_delay_ms": ms(HANGOVER_S),
            "target_agent_side_ms": 20, "variants": variants}


async def _turns(client: HeyGenClient, rounds: int, extra: dict[str, Any]) -> dict[str, Any]:
    """Stream rounds of silence, speech, silence in real time; each ``user_stop`` is
    matched with the end of the speech before it."""
    media = AvatarMedia()
    session = HeyGenSession(client, SessionOptions(keep_alive_interval_s=None, **extra), media)
    loop = asyncio.get_running_loop()
    speech = frames(speech_like(1.0, MIC_RATE, LOUD), MIC_RATE)
    quiet = silence(0.5, MIC_RATE)
    tail = silence(HANGOVER_S + 0.6, MIC_RATE)
    ends: list[float] = []
    try:
        await session.start()
        deadline = loop.time()
        for _ in range(rounds):
            for part in (quiet, speech, tail):
                for frame in part:
                    deadline += FRAME_S
                    await asyncio.sleep(max(0.0, deadline - loop.time()))
                    await session.send_audio(frame, MIC_RATE)
                if part is speech:
                    ends.append(loop.time())  # the last speech frame just left the mic
        await asyncio.sleep(0.3)
    finally:
        await session.stop(reason="bench")
        await media.close()
    latencies = []
    for end in ends:
        stop = next((s for s in media.user_stops if s >= end), None)
        if stop is not None and stop - end < 2 * HANGOVER_S + 1:
            latencies.append(stop - end)
    return {
        "user_stops": len(media.user_stops),
        "end_to_user_stop_ms": summary([ms(x) for x in latencies]),
        "agent_side_ms": summary([ms(x - HANGOVER_S) for x in latencies]),
    }


# ---------------------------------------------------------------------- 3. lip-sync


async def _until_quiet(media: AudioLog, quiet_s: float, limit_s: float) -> None:
    """Wait until the avatar's audio has been silent for ``quiet_s``."""
    loop = asyncio.get_running_loop()
    end = loop.time() + limit_s
    while loop.time() < end:
        loud = [t for t, _, is_loud in media.audio if is_loud]
        if media.audio and (not loud or loop.time() - loud[-1] > quiet_s):
            return
        await asyncio.sleep(0.05)


async def _first_loud(media: AudioLog, t0: float) -> float:
    async with asyncio.timeout(FIRST_MEDIA_TIMEOUT_S):
        while (first := media.first_loud_after(t0)) is None:
            media.changed.clear()
            await media.changed.wait()
    return first


class _Face(FrameProcessor):
    """Placed after the transport's ``input()``: logs the avatar's audio as the bot's own
    outputs would get it."""

    def __init__(self, log: AudioLog) -> None:
        super().__init__()
        self.log = log

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, OutputAudioRawFrame) and direction is FrameDirection.DOWNSTREAM:
            self.log.heard(frame.audio, frame.num_frames / frame.sample_rate)
        await self.push_frame(frame, direction)


@dataclasses.dataclass
class _Transported:
    """A running lip-sync pipeline: where frames go in, where the avatar's audio comes out,
    and the transport's own session (its avatar)."""

    worker: PipelineWorker
    log: AudioLog
    session: AvatarSession


@contextlib.asynccontextmanager
async def _transport_face(client: RestClient, options: LifeOptions) -> AsyncIterator[_Transported]:
    """The own-brain path a bot embeds, whole: ``output()`` (lip-sync) then ``input()``,
    in a running pipeline whose frames the caller queues."""
    log = AudioLog()
    transport = HeyGenTransport(client=client, session_options=options,
                                params=HeyGenParams(video_enabled=False))
    worker = PipelineWorker(Pipeline([transport.output(), transport.input(), _Face(log)]),
                            idle_timeout_secs=None)
    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(worker)
    running = asyncio.create_task(runner.run())
    try:
        either: set[asyncio.Future[Any]] = {running, log.first_audio}
        async with asyncio.timeout(FIRST_MEDIA_TIMEOUT_S):
            await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
        if running.done():
            raise RuntimeError("the lip-sync pipeline ended before the avatar's audio came")
        yield _Transported(worker, log, transport.session)
    finally:
        if not running.done():
            await worker.queue_frame(EndFrame())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(running, 30)


async def _straight_to_the_socket(session: AvatarSession, pcm: bytes) -> None:
    """The floor: the whole utterance in one speak message, then its end."""
    event_id = uuid.uuid4().hex
    await session._send_speech(Chunk(event_id, pcm, 0.0, len(pcm) / 2 / TTS_RATE, final=True))
    await session._send_speech_end(event_id)


async def bench_lipsync(client: RestClient, options: LifeOptions, rounds: int,
                        utterance_s: float | None) -> dict[str, Any]:
    """Lip-sync latency with ``options`` (a backend's lip-sync mode), and the drift over
    an ``utterance_s`` utterance unless that is None.

    Each path is compared with a floor on the same avatar, measured where it is: an
    emulated avatar's delay differs from another's by a few tens of milliseconds (where
    its audio frames fall), more than what is measured here."""
    options = dataclasses.replace(options.for_own_brain("lipsync"), keep_alive_interval_s=None)
    media = AvatarMedia()
    session = options.new_session(client, media)
    loop = asyncio.get_running_loop()
    tts = frames(speech_like(1.0, TTS_RATE, LOUD), TTS_RATE)
    whole = b"".join(tts)

    async def run(face: _Transported) -> dict[str, Any]:
        async def one(variant: str) -> dict[str, float]:
            log = face.log if variant.startswith("transport") else media
            await _until_quiet(log, 0.3, 10)
            t0 = loop.time()
            if variant == "transport":  # into output(), as a TTS before it pushes them
                await face.worker.queue_frames([
                    TTSStartedFrame(), *(TTSAudioRawFrame(f, TTS_RATE, 1) for f in tts),
                    TTSStoppedFrame()])
            elif variant == "transport_floor":  # its avatar, out of input()
                await _straight_to_the_socket(face.session, whole)
            elif variant == "ours":
                for frame in tts:  # a TTS is faster than real time: all at once
                    await session.speak_audio(frame, TTS_RATE)
                await session.end_speech()
            else:  # the floor, to the avatar's track
                await _straight_to_the_socket(session, whole)
            return {"first_s": await _first_loud(log, t0) - t0}

        runs = await alternating(("transport", "transport_floor", "ours", "floor"), rounds, one)
        drift = None if utterance_s is None else await _drift(session, media, utterance_s)
        return {"runs": runs, "drift": drift}

    try:
        await session.start()
        await asyncio.wait_for(media.first_audio, FIRST_MEDIA_TIMEOUT_S)
        async with _transport_face(client, options) as face:
            measured = await run(face)
    finally:
        await session.stop(reason="bench")
        await media.close()
    runs = measured["runs"]
    first = {v: [r["first_s"] for r in runs[v]] for v in runs}

    def added(path: str, floor: str) -> dict[str, float]:
        return summary([ms(p - f) for p, f in zip(first[path], first[floor], strict=True)])

    return {
        "backend": session.backend,
        "rounds": rounds,
        "first_audio_ms": summary([ms(x) for x in first["ours"]]),
        "floor_first_audio_ms": summary([ms(x) for x in first["floor"]]),
        "ratio": ratio(runs["ours"], runs["floor"], "first_s"),
        "added_ms": added("ours", "floor"),
        "transport_first_audio_ms": summary([ms(x) for x in first["transport"]]),
        "transport_floor_first_audio_ms": summary([ms(x) for x in first["transport_floor"]]),
        "transport_ratio": ratio(runs["transport"], runs["transport_floor"], "first_s"),
        "transport_added_ms": added("transport", "transport_floor"),
        "target_added_ms": 50,
        "drift": measured["drift"],
    }


async def _drift(session: AvatarSession, media: AvatarMedia, utterance_s: float) -> dict[str, Any]:
    """One long utterance, pushed as fast as a TTS makes it: how its releases and the
    avatar's audio kept to real time."""
    loop = asyncio.get_running_loop()
    releases: list[tuple[float, float]] = []
    send = session._send_speech

    async def recorded(chunk: Chunk) -> None:
        releases.append((loop.time(), chunk.offset_s))
        await send(chunk)

    session._send_speech = recorded  # type: ignore[method-assign]
    await _until_quiet(media, 0.3, 10)
    heard_from = len(media.audio)
    t0 = loop.time()
    for frame in frames(speech_like(utterance_s, TTS_RATE, LOUD), TTS_RATE):
        await session.speak_audio(frame, TTS_RATE)
    await session.end_speech()
    await _first_loud(media, t0)
    await asyncio.sleep(utterance_s * 0.9)
    await _until_quiet(media, 1.0, utterance_s + 20)
    session._send_speech = send  # type: ignore[method-assign]
    pacer = measure_drift(releases)
    loud = [(t, d) for t, d, is_loud in media.audio[heard_from:] if is_loud]
    played, lags = 0.0, []
    for t, d in loud:
        lags.append(t - loud[0][0] - played)  # > 0: behind real time
        played += d
    window = max(1, min(50, len(lags) // 10))
    behind = (statistics.median(lags[-window:]) - statistics.median(lags[:window])) if lags else 0
    span = (loud[-1][0] - loud[0][0]) if loud else 0.0
    return {
        "utterance_s": utterance_s,
        "avatar_audio_s": round(played, 2),
        "pacer_max_lead_ms": ms(pacer.max_lead_s),
        "pacer_max_lag_ms": ms(pacer.max_lag_s),
        "pacer_final_lead_ms": ms(pacer.final_lead_s),
        "avatar_behind_ms": ms(behind),
        "avatar_behind_ms_per_min": ms(behind / span * 60) if span else 0.0,
        "target_ms_per_min": 40,
    }


# ---------------------------------------------------------------------- 4. sessions


async def _soak_apart(sessions: int, seconds: float, decode: Decode,
                      avatar_audio: bool = True) -> dict[str, Any]:
    """One soak in a process of its own: a run in a process the last one used would
    count that run's winding down (its threads, its memory) as its own."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "soak.json"
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "agent.soak", "--sessions", str(sessions),
            "--seconds", f"{seconds:g}", "--decode", decode, "--json", str(out),
            *([] if avatar_audio else ["--no-avatar-audio"]),
            stdout=asyncio.subprocess.DEVNULL)
        await proc.wait()
        if not out.exists():  # exit 1 with a report is a run with problems, still a figure
            raise RuntimeError(f"the soak of {sessions} sessions ({decode}) wrote no report "
                               f"(exit {proc.returncode})")
        report: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
        return report


async def bench_sessions(counts: Sequence[int], seconds: float,
                         decodes: Sequence[Decode]) -> dict[str, Any]:
    """Each video mode at each count with the avatar's audio received, as a session that
    plays it runs; then I420 video alone (audio left unsubscribed) at the two smallest
    counts, enough for its cost per added session."""
    plan = [(decode, n, True) for decode in decodes for n in counts]
    if "i420" in decodes:
        plan += [("i420", n, False) for n in sorted(counts)[:2]]
    runs = []
    for decode, n, avatar_audio in plan:
        report = await _soak_apart(n, seconds, decode, avatar_audio)
        sessions = report.pop("per_session")
        report["video_frames"] = sum(s["video_frames"] for s in sessions)
        report["video_frames_missed"] = sum(s["video_frames_missed"] for s in sessions)
        report["longest_video_gap_s"] = max(s["longest_video_gap_s"] for s in sessions)
        report["problems"] = [p for s in sessions for p in s["problems"]]
        runs.append(report)
    from agent.performance_report import per_added_session

    return {"seconds": seconds, "runs": runs, "per_added_session": per_added_session(runs)}


# ---------------------------------------------------------------------- the whole run


def machine() -> dict[str, Any]:
    cpu = platform.processor()
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as f:
        cpu = next((line.split(":", 1)[1].strip() for line in f
                    if line.startswith("model name")), cpu)
    mem_gb = 0.0
    with contextlib.suppress(OSError, StopIteration), open("/proc/meminfo",
                                                           encoding="ascii") as f:
        total_kb = int(next(line for line in f if line.startswith("MemTotal")).split()[1])
        mem_gb = round(total_kb / 2**20, 1)
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gb": mem_gb,
            "python": platform.python_version(), "system": platform.platform(),
            "load_average_at_start": list(os.getloadavg()),
            "livekit_rtc": getattr(rtc, "__version__", "?")}


async def run(config: BenchConfig, log: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    began = time.time()
    out: dict[str, Any] = {"generated": time.strftime("%Y-%m-%d %H:%M:%S %z"),
                           "machine": machine(), "config": asdict(config)}
    args = ["--latency-ms", f"{config.latency_ms:g}"]
    async with (
        emulator_process(max_sessions=4, extra_args=args) as (base_url, _),
        HeyGenClient("bench-key", base_url=base_url) as client,
    ):
        log("start → first avatar frame")
        out["start"] = await bench_start(client, config.start_rounds)
        log("start → first avatar frame, LiveAvatar LITE")
        async with LiveAvatarClient("bench-liveavatar-key", base_url=base_url) as la_client:
            out["start_liveavatar"] = await bench_start(
                la_client, config.start_rounds, LIVEAVATAR_START_VARIANTS)
        log("heygen-agent run → first avatar frame")
        out["command"] = await bench_command(base_url, config.start_rounds)
        log("turn latency")
        out["turn"] = await bench_turn(client, config.turn_rounds)
        log("lip-sync latency and drift")
        out["lipsync"] = await bench_lipsync(client, SessionOptions(), config.lipsync_rounds,
                                             config.utterance_s)
        log("lip-sync latency, LiveAvatar LITE")
        async with LiveAvatarClient("bench-liveavatar-key", base_url=base_url) as la_client:
            out["lipsync_liveavatar"] = await bench_lipsync(
                la_client, LiveAvatarOptions(), config.lipsync_rounds, None)
    log("sessions per machine")
    out["sessions"] = await bench_sessions(config.session_counts, config.soak_s,
                                           config.decodes)
    out["elapsed_s"] = round(time.time() - began, 1)
    return out


def quiet_logs() -> None:
    from loguru import logger

    logger.remove()
    logger.add(sys.stderr, level="ERROR")
    # LiveKit's native side reports each frame a slow reader misses: counted instead.
    logging.getLogger("livekit").setLevel(logging.ERROR)


def main_with(args: argparse.Namespace) -> int:
    quiet_logs()
    data = asyncio.run(run(config_from(args), lambda m: print(f"==> {m}", file=sys.stderr)))
    text = json.dumps(data, indent=2)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            f.write(text + "\n")
    from agent.performance_report import table

    print(table(data))
    return 0


def main(argv: list[str] | None = None) -> int:
    from agent.bench_options import add_arguments

    parser = argparse.ArgumentParser(prog="python -m agent.session_bench", description=__doc__)
    add_arguments(parser)
    return main_with(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
