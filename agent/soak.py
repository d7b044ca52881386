"""Many avatar sessions at once, for a while: what load does to the guarantees.

One session that starts, streams and stops proves little about ten: under load a start
can time out, audio can be dropped behind a slow socket, video can stall, and a stop can
be skipped. This runs ``sessions`` real :class:`~agent.heygen.session.HeyGenSession`\\ s in
one process against one emulator (its own process, with a real LiveKit server), each
streaming audio in real time and receiving the avatar's video, then checks from the
emulator's own counts that every session started, all the audio each one sent arrived,
video kept coming, and no session is left open. CPU is measured per process, so the
emulator's cost is told apart from the agent's. ``decode`` says what the agent does with
each video frame: keep LiveKit's I420, or have it converted to RGB (what a pipeline whose
video outputs want RGB pays); ``avatar_audio`` whether the avatar's audio is received too
(what a pipeline that plays or records it pays) or left unsubscribed (one that only shows
the video); a ticker task measures how late the event loop runs.

``python -m agent.soak --sessions 10 --seconds 60`` (``scripts/soak``) prints JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import math
import os
import re
import sys
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import IO, Any, Literal

import httpx
import numpy as np
from livekit import rtc
from loguru import logger

from agent.emulator.video import STAMP_HEIGHT, read_stamp
from agent.heygen.api import HeyGenClient
from agent.heygen.protocol import interactive as ia
from agent.heygen.session import HeyGenSession, SessionListener, SessionOptions

#: 20 ms of 16 kHz mono per send, as a microphone would deliver it.
FRAME_S = 0.02
SAMPLE_RATE = 16_000
#: How long a started session may wait for the avatar's first video frame.
FIRST_FRAME_TIMEOUT_S = 30.0
#: A stall in the avatar's video longer than this counts as video lost.
VIDEO_STALL_S = 1.0
#: How often the lag ticker wakes: its lateness is the event loop's lag.
TICK_S = 0.01

Decode = Literal["i420", "rgb"]


@dataclass
class SessionReport:
    session_id: str = ""
    started: bool = False
    start_s: float = 0.0
    error: str = ""
    audio_sent_s: float = 0.0
    audio_received_s: float = 0.0
    video_frames: int = 0
    #: frames the avatar sent that this session never saw (from the stamped counters)
    video_frames_missed: int = 0
    longest_video_gap_s: float = 0.0
    stop_error: str | None = None

    def problems(self) -> list[str]:
        """What went wrong for this session; empty when nothing did."""
        problems: list[str] = []
        if not self.started:
            problems.append(f"did not start: {self.error}")
            return problems
        # The last 20 ms frame may still be in flight when the emulator is asked.
        if self.audio_received_s + 2 * FRAME_S < self.audio_sent_s:
            problems.append(f"audio lost: sent {self.audio_sent_s:.2f} s, "
                            f"received {self.audio_received_s:.2f} s")
        if self.error:
            problems.append(self.error)
        elif self.video_frames == 0:
            problems.append("no video received")
        if self.longest_video_gap_s > VIDEO_STALL_S:
            problems.append(f"video stalled for {self.longest_video_gap_s:.1f} s")
        if self.stop_error is not None:
            problems.append(f"stop not confirmed: {self.stop_error}")
        return problems


@dataclass
class SoakReport:
    sessions: int
    seconds: float
    started: int = 0
    open_at_end: int = -1
    agent_cpu_percent: float = 0.0
    emulator_cpu_percent: float = 0.0
    agent_rss_mb: float = 0.0
    decode: Decode = "i420"
    #: the avatar's audio received as well as its video (else left unsubscribed)
    avatar_audio: bool = True
    #: the agent process's resident memory before any session started
    agent_rss_before_mb: float = 0.0
    emulator_rss_mb: float = 0.0
    #: how late the ticker woke, over the steady state: the agent's event-loop lag
    loop_lag_p99_ms: float = 0.0
    loop_lag_max_ms: float = 0.0
    #: the agent's CPU over most of the steady state by thread (names without their
    #: numbers), % of a core: Python's own thread against LiveKit's native ones
    agent_cpu_by_thread: dict[str, float] = field(default_factory=dict)
    per_session: list[SessionReport] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return (
            self.started == self.sessions
            and self.open_at_end == 0
            and not any(s.problems() for s in self.per_session)
        )

    def as_dict(self) -> dict[str, Any]:
        sessions = [{**asdict(s), "problems": s.problems()} for s in self.per_session]
        return {**asdict(self), "per_session": sessions, "ok": self.ok}


class _Watcher(SessionListener):
    """Receives the avatar's video: counts frames, missed frames and stalls."""

    def __init__(self, report: SessionReport, decode: Decode = "i420") -> None:
        self.report = report
        self.decode = decode
        self.tasks: list[asyncio.Task[None]] = []
        self.first_frame = asyncio.Event()

    async def on_track(self, track: rtc.Track, participant: rtc.RemoteParticipant) -> None:
        if track.kind == rtc.TrackKind.KIND_VIDEO:
            self.tasks.append(asyncio.create_task(self._watch(track)))

    async def _watch(self, track: rtc.Track) -> None:
        loop = asyncio.get_running_loop()
        report, last_counter, last_at = self.report, -1, 0.0
        fmt = rtc.VideoBufferType.RGB24 if self.decode == "rgb" else None
        try:
            stream = rtc.VideoStream(track, format=fmt)
        except Exception as exc:  # the track went with a session torn down
            # LiveKit refuses a stream on a track already gone (seen at N=20, starts timing
            # out): the session's report says it had no video, without a traceback.
            logger.debug(f"soak: no video stream: {exc!r}")
            return
        try:
            async for event in stream:
                now = loop.time()
                frame = event.frame
                stamp = _stamp(frame)
                if stamp is not None:
                    if last_counter >= 0 and stamp[0] > last_counter + 1:
                        report.video_frames_missed += stamp[0] - last_counter - 1
                    last_counter = max(last_counter, stamp[0])
                if report.video_frames:
                    report.longest_video_gap_s = max(report.longest_video_gap_s, now - last_at)
                last_at = now
                report.video_frames += 1
                self.first_frame.set()
        finally:
            await stream.aclose()


def _stamp(frame: rtc.VideoFrame) -> tuple[int, int] | None:
    """The emulator's stamp, from an I420 frame's luma or an RGB24 frame's red channel
    (the stamp's blocks are grey: red is their brightness, on the same side of the
    threshold)."""
    if frame.type != rtc.VideoBufferType.RGB24:
        return read_stamp(frame.data, frame.width, frame.height)
    w, h = frame.width, frame.height
    rows = min(STAMP_HEIGHT, h)
    red = np.zeros((h, w), np.uint8)
    red[:rows] = np.frombuffer(frame.data, np.uint8, count=rows * w * 3).reshape(rows, w, 3)[
        :, :, 0]
    return read_stamp(red, w, h)


def speech_like(seconds: float, rate: int = SAMPLE_RATE, amplitude: float = 2000) -> bytes:
    """A warble that is never silent: stands in for speech, cheap to make."""
    t = np.arange(int(seconds * rate)) / rate
    wave = amplitude * np.sin(2 * math.pi * 180 * t) * (0.6 + 0.4 * np.sin(2 * math.pi * 3 * t))
    return wave.astype("<i2").tobytes()


async def _stream_audio(session: HeyGenSession, seconds: float, report: SessionReport) -> None:
    loop = asyncio.get_running_loop()
    pcm = speech_like(2.0)
    step = int(FRAME_S * SAMPLE_RATE) * 2
    deadline, position, frames = loop.time(), 0, int(seconds / FRAME_S)
    for _ in range(frames):
        chunk = pcm[position : position + step]
        position = (position + step) % len(pcm)
        await session.send_audio(chunk, SAMPLE_RATE)
        report.audio_sent_s += FRAME_S
        deadline += FRAME_S
        await asyncio.sleep(max(0.0, deadline - loop.time()))


async def _one(client: HeyGenClient, seconds: float, report: SessionReport,
               started: asyncio.Barrier, decode: Decode = "i420",
               avatar_audio: bool = True) -> None:
    watcher = _Watcher(report, decode)
    # silence_response off and no speech detection of note: the avatar stays idle, so
    # what is measured is the media itself, the same for every session.
    options = SessionOptions(request=ia.NewSessionRequest(), keep_alive_interval_s=None,
                             audio=avatar_audio)
    session = HeyGenSession(client, options, watcher)
    began = time.perf_counter()
    try:
        try:
            await session.start()
            report.session_id = session.session_id or ""
            report.started = True
            report.start_s = time.perf_counter() - began
        except Exception as exc:
            report.error = f"{type(exc).__name__}: {exc}"
        with contextlib.suppress(asyncio.BrokenBarrierError):
            await started.wait()  # every session streams over the same stretch of time
        if report.started:
            try:
                await asyncio.wait_for(watcher.first_frame.wait(), FIRST_FRAME_TIMEOUT_S)
            except TimeoutError:
                report.error = f"no video within {FIRST_FRAME_TIMEOUT_S:g} s of the start"
                return
            await _stream_audio(session, seconds, report)
    finally:
        await session.stop(reason="soak over")
        report.stop_error = session.stop_error
        for task in watcher.tasks:
            task.cancel()
        await asyncio.gather(*watcher.tasks, return_exceptions=True)


def _emulator_log() -> int | IO[bytes]:
    """Where the emulator's log goes: ``SOAK_EMULATOR_LOG`` names a file, else nowhere."""
    path = os.environ.get("SOAK_EMULATOR_LOG")
    return open(path, "ab") if path else asyncio.subprocess.DEVNULL


@contextlib.asynccontextmanager
async def emulator_process(
    max_sessions: int, extra_args: Sequence[str] = ()
) -> AsyncIterator[tuple[str, int]]:
    """``heygen-agent emulate`` in its own process (so its CPU is its own): base URL, pid.
    ``extra_args`` go to ``emulate`` (``--latency-ms 50``, ...)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "agent.cli", "emulate", "--port", "0",
        "--max-sessions", str(max_sessions), *extra_args,
        stdout=asyncio.subprocess.PIPE, stderr=_emulator_log(),
    )
    assert proc.stdout is not None
    drain: asyncio.Task[bytes] | None = None
    try:
        async with asyncio.timeout(60):
            while not (found := re.search(rb"listening on (\S+)", await proc.stdout.readline()
                                          or b"exited")):
                if proc.stdout.at_eof():
                    raise RuntimeError("the emulator exited before it was ready")
        drain = asyncio.create_task(proc.stdout.read())  # it must never block on a full pipe
        yield found.group(1).decode(), proc.pid
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 20)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        if drain is not None:
            drain.cancel()


def _stat(path: str) -> tuple[str, float]:
    """A ``/proc`` stat file's name and its user + system CPU so far, in seconds."""
    with open(path, encoding="utf-8") as f:
        head, tail = f.read().rsplit(")", 1)
    fields = tail.split()
    return head.split("(", 1)[1], (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and all its threads so far (Linux)."""
    return _stat(f"/proc/{pid}/stat")[1]


def thread_cpu_seconds(pid: int) -> dict[str, float]:
    """CPU so far of each thread of a process (Linux), keyed ``tid name``; the main
    thread, where Python runs, is named ``python``."""
    out: dict[str, float] = {}
    for task in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(OSError):  # a thread that ended meanwhile
            name, seconds = _stat(f"/proc/{pid}/task/{task}/stat")
            out[f"{task} {'python' if task == str(pid) else name}"] = seconds
    return out


def cpu_by_thread_kind(before: dict[str, float], after: dict[str, float],
                       wall: float) -> dict[str, float]:
    """% of a core per kind of thread between two :func:`thread_cpu_seconds` readings;
    a kind is a thread's name without its numbers (``worker_thread_0`` → ``worker_thread``)."""
    kinds: dict[str, float] = {}
    for key, seconds in after.items():
        kind = re.sub(r"[\d_ -]+$", "", key.split(" ", 1)[1]) or "?"
        kinds[kind] = kinds.get(kind, 0.0) + seconds - before.get(key, 0.0)
    return {k: round(v / wall * 100, 1) for k, v in sorted(kinds.items(), key=lambda kv: -kv[1])
            if v > 0}


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


async def lag_ticker(lags: list[float], interval: float = TICK_S) -> None:
    """Sleep ``interval`` over and over; append how late each wake-up was (seconds)."""
    loop = asyncio.get_running_loop()
    while True:
        asleep = loop.time()
        await asyncio.sleep(interval)
        lags.append(max(0.0, loop.time() - asleep - interval))


async def soak(sessions: int = 10, seconds: float = 60.0, decode: Decode = "i420",
               avatar_audio: bool = True) -> SoakReport:
    report = SoakReport(sessions=sessions, seconds=seconds, decode=decode,
                        avatar_audio=avatar_audio,
                        agent_rss_before_mb=round(rss_mb(os.getpid()), 1),
                        per_session=[SessionReport() for _ in range(sessions)])
    async with (
        emulator_process(max_sessions=sessions) as (base_url, emulator_pid),
        HeyGenClient("soak-key", base_url=base_url) as client,
        httpx.AsyncClient(base_url=base_url, timeout=30) as admin,
    ):
        barrier = asyncio.Barrier(sessions + 1)
        runs = [asyncio.create_task(_one(client, seconds, r, barrier, decode, avatar_audio))
                for r in report.per_session]
        await barrier.wait()  # all started (or failed): measure the steady state
        cpu0, emu0, wall0 = time.process_time(), cpu_seconds(emulator_pid), time.perf_counter()
        lags: list[float] = []
        ticker = asyncio.create_task(lag_ticker(lags))
        threads0 = thread_cpu_seconds(os.getpid())
        # The threads' reading ends before the sessions do: a stopped session's threads
        # are gone, and their CPU with them.
        await asyncio.sleep(seconds * 0.8)
        report.agent_cpu_by_thread = cpu_by_thread_kind(
            threads0, thread_cpu_seconds(os.getpid()), time.perf_counter() - wall0)
        await asyncio.gather(*runs)
        wall = time.perf_counter() - wall0
        ticker.cancel()
        report.emulator_rss_mb = round(rss_mb(emulator_pid), 1)
        if lags:
            report.loop_lag_p99_ms = round(float(np.percentile(lags, 99)) * 1000, 1)
            report.loop_lag_max_ms = round(max(lags) * 1000, 1)
        report.agent_cpu_percent = round((time.process_time() - cpu0) / wall * 100, 1)
        report.emulator_cpu_percent = round((cpu_seconds(emulator_pid) - emu0) / wall * 100, 1)
        report.agent_rss_mb = round(rss_mb(os.getpid()), 1)
        state = (await admin.get("/_emulator/state")).json()["per_session"]
        report.open_at_end = sum(s["state"] in ("created", "started") for s in state.values())
        report.started = sum(r.started for r in report.per_session)
        for r in report.per_session:  # the audio each session sent, as the emulator counted it
            if r.session_id in state:
                r.audio_received_s = state[r.session_id]["audio"]["seconds"]
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m agent.soak", description=__doc__)
    parser.add_argument("--sessions", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--decode", choices=["i420", "rgb"], default="i420",
                        help="what the agent does with each video frame (default: keep I420)")
    parser.add_argument("--no-avatar-audio", action="store_true",
                        help="leave the avatar's audio track unsubscribed (video only)")
    parser.add_argument("--json", metavar="FILE", help="also write the report here")
    args = parser.parse_args(argv)
    from loguru import logger

    logger.remove()
    logger.add(sys.stderr, level="WARNING")
    # LiveKit's native side reports each frame a slow reader misses: counted here instead.
    logging.getLogger("livekit").setLevel(logging.ERROR)
    report = asyncio.run(soak(args.sessions, args.seconds, args.decode,
                              avatar_audio=not args.no_avatar_audio))
    text = json.dumps(report.as_dict(), indent=2)
    print(text)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            f.write(text + "\n")
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
