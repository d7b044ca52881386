"""The fault matrix: each step of a session's life by each fault, run as a user runs it.

Each case is ``heygen-agent run`` in a child process (at TRACE level, with recognisable
fake credentials) against the emulator and a real LiveKit server. It asserts the designed
outcome (exit code and the one line that says why), that no secret reached the output,
and, at the end, that the emulator has **no session open**. Each case's result is also
appended to ``$RELIABILITY_REPORT`` when set: ``scripts/reliability-report`` turns the last
run into docs/RELIABILITY.md.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from agent.emulator.config import EmulatorConfig
from agent.emulator.faults import FaultSettings
from agent.emulator.livekit_server import LiveKitServer
from agent.emulator.server import EmulatorServer
from agent.heygen.protocol import voice_chat as vc
from agent.heygen.protocol.liveavatar import rest as la
from agent.heygen.protocol.liveavatar import socket as lite
from tests.waiting import eventually, within

pytestmark = pytest.mark.livekit

ROOT = Path(__file__).resolve().parents[2]
KEY = "sk-FAKE-matrix-key-7f3a9c"
JWT = re.compile(r"eyJ[\w-]{8,}\.[\w-]{8,}\.[\w-]{8,}")
TOKEN = "/v1/streaming.create_token"
NEW = "/v1/streaming.new"
START = "/v1/streaming.start"
STOP = "/v1/streaming.stop"
LA_KEY = "la-FAKE-matrix-key-2b8e4d"
LA_TOKEN, LA_START, LA_STOP = la.TOKEN.path, la.START.path, la.STOP.path
LITE_SOCKET = lite.EMULATOR_WS_PATH

PROCESSORS = '''
import asyncio
import time
from pathlib import Path

from pipecat.frames.frames import Frame, InputAudioRawFrame, StartFrame, SystemFrame
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor


class FailsAlways(FrameProcessor):
    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        raise RuntimeError("broken processor")


class FailsOnce(FrameProcessor):
    failed = False

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, InputAudioRawFrame) and not FailsOnce.failed:
            FailsOnce.failed = True
            raise RuntimeError("one bad frame")
        await self.push_frame(frame, direction)


class Block(SystemFrame):
    pass


class BlocksTheLoop(FrameProcessor):
    """Once the file ``block`` appears (the test makes it once the session runs), its
    process_frame sleeps 120 s: the event loop stops."""

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, Block):
            print("blocking the loop", flush=True)
            time.sleep(120)
        await self.push_frame(frame, direction)
        if isinstance(frame, StartFrame):
            self._waiting = asyncio.create_task(self._wait_for_the_file())

    async def _wait_for_the_file(self) -> None:
        while not Path("block").exists():
            await asyncio.sleep(0.05)
        await self.queue_frame(Block())
'''


@dataclass
class Child:
    """A ``heygen-agent run`` child process and what it wrote."""

    process: asyncio.subprocess.Process
    output: str = ""

    async def wait(self) -> int:
        out, _ = await within(self.process.communicate(), "the run ended", 90)
        self.output += out.decode(errors="replace")
        assert self.process.returncode is not None
        return self.process.returncode

    def signal(self, sig: signal.Signals) -> None:
        self.process.send_signal(sig)

    async def read_until(self, text: str) -> None:
        """Read the child's output as it comes, up to a line containing ``text``."""
        assert self.process.stdout is not None
        stream = self.process.stdout

        async def read() -> None:
            while text not in self.output:
                line = await stream.readline()
                if not line:
                    raise AssertionError(f"the run ended before saying {text!r}:\n"
                                         + self.output[-3000:])
                self.output += line.decode(errors="replace")

        await within(read(), f"the run said {text!r}", 60)

    @property
    def last_line(self) -> str:
        lines = [line for line in self.output.splitlines() if line.startswith("heygen-agent:")]
        return lines[-1] if lines else ""


@dataclass
class Matrix:
    """Runs of one backend against one emulator (Interactive here; see
    :class:`LiveAvatarMatrix`)."""

    emulator: EmulatorServer
    directory: Path
    secrets: set[str] = field(default_factory=set)
    backend: Backend | None = None

    @property
    def spec(self) -> Backend:
        return self.backend or BACKENDS["interactive"]

    @property
    def name(self) -> str:
        return self.spec.name

    async def at_step(self, step: str) -> Child:
        """A run, once it is at ``step``: its request held at the service (the stop's at
        the end of ``--for``), or the session running."""
        path = self.spec.steps[step]
        if step == "stopping":
            self.faults(latency_ms=1000, latency_path=path)
            child = await self.run("--for", "1")
            await self.reached(path)
        elif path:
            self.faults(latency_ms=500)
            child = await self.run()
            await self.reached(path)
        else:
            child = await self.run()
            await child.read_until(self.spec.running)
        return child

    def write(self, *, session: str = "", processors: str = "", extra: str = "") -> Path:
        path = self.directory / "agent.yaml"
        path.write_text(
            f"heygen:\n  base_url: {self.emulator.base_url}\n  api_key: {KEY}\n"
            "  session: {avatar_name: Emulated_Anna, stop_deadline_s: 2, media_grace_s: 1"
            f"{', ' + session if session else ''}}}\n"
            "input: {type: none}\noutputs: [{type: none}]\nvad: null\n"
            f"{processors}{extra}logging: {{level: TRACE}}\n")
        return path

    async def run(self, *args: str, file: Path | None = None,
                  env: dict[str, str] | None = None) -> Child:
        path = file or self.write()
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "agent", "run", str(path), "--no-status", *args,
            cwd=self.directory, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env={**os.environ, "PYTHONPATH": f"{ROOT}:{self.directory}",
                 "HEYGEN_LOG_LEVEL": "TRACE", **(env or {})})
        return Child(process)

    def faults(self, **settings: object) -> None:
        self.emulator.emulator.faults.apply(FaultSettings.model_validate(settings))

    def counts(self) -> dict[str, int]:
        return self.emulator.emulator.registry.counts()

    async def reached(self, path: str, count: int = 1) -> None:
        await within(self.emulator.emulator.requests.reach(path, count), f"{path} arrived", 60)

    def check_no_secret(self, text: str) -> None:
        """No API key, session token or LiveKit JWT in anything the run wrote."""
        registry = self.emulator.emulator.registry
        tokens = set(getattr(registry, "_tokens", {}))
        for secret in {KEY, *tokens, *self.secrets}:
            assert secret not in text, f"a secret reached the output: {secret[:6]}..."
        assert not JWT.search(text), "a LiveKit JWT reached the output"


class LiveAvatarMatrix(Matrix):
    """The same runs with ``heygen.backend: liveavatar`` (sandbox), in its backend's
    mode."""

    def write(self, *, session: str = "", processors: str = "", extra: str = "") -> Path:
        mode = "lite" if self.name.endswith("lite") else "full"
        path = self.directory / "agent.yaml"
        path.write_text(
            f"heygen:\n  backend: liveavatar\n  base_url: {self.emulator.base_url}\n"
            f"  api_key: {LA_KEY}\n"
            f"  liveavatar: {{mode: {mode}, sandbox: true, stop_deadline_s: 2, media_grace_s: 1"
            f"{', ' + session if session else ''}}}\n"
            "input: {type: none}\noutputs: [{type: none}]\nvad: null\n"
            f"{processors}{extra}logging: {{level: TRACE}}\n")
        return path


@dataclass(frozen=True)
class Backend:
    """One backend as the table runs it: its steps (each the request in flight there;
    ``""`` once the session runs), what its log says once the session runs, and the error
    answers tried at its start calls."""

    name: str
    kind: type[Matrix]
    steps: dict[str, str]
    running: str
    http: tuple[tuple[str, int], ...]

    def matrix(self, emulator: EmulatorServer, directory: Path) -> Matrix:
        secrets = {LA_KEY} if self.kind is LiveAvatarMatrix else set()
        return self.kind(emulator, directory, secrets, self)


BACKENDS = {
    "interactive": Backend(
        "interactive", Matrix,
        {"create_token": TOKEN, "new": NEW, "start": START, "websocket": vc.CHAT_PATH,
         "streaming": "", "stopping": STOP},
        "voice chat connected",
        # each status at least once, each rule (retried or not) at each step (a child
        # process costs seconds: the whole cross product would double the suite for no
        # new path)
        ((TOKEN, 401), (TOKEN, 500), (NEW, 403), (NEW, 429), (NEW, 500), (START, 404),
         (START, 503))),
    "liveavatar-full": Backend(
        "liveavatar-full", LiveAvatarMatrix,
        {"token": LA_TOKEN, "start": LA_START, "streaming": "", "stopping": LA_STOP},
        "LiveKit room joined",
        ((LA_TOKEN, 500), (LA_START, 503))),
    "liveavatar-lite": Backend(
        "liveavatar-lite", LiveAvatarMatrix,
        {"token": LA_TOKEN, "start": LA_START, "websocket": LITE_SOCKET, "streaming": "",
         "stopping": LA_STOP},
        "socket connected",
        ((LA_START, 500),)),
}

STEP_NAMES = {TOKEN: "create_token", NEW: "new", START: "start", STOP: "stopping",
              LA_TOKEN: "token", LA_START: "start", LA_STOP: "stopping",
              vc.CHAT_PATH: "websocket", LITE_SOCKET: "websocket"}


def step_of(path: str) -> str:
    return STEP_NAMES.get(path, path)


@pytest.fixture
async def matrix(
    livekit_server: LiveKitServer, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[Matrix]:
    """The Interactive backend's matrix, or (parametrised indirectly) a backend of
    :data:`BACKENDS` by name."""
    (tmp_path / "matrix_processors.py").write_text(PROCESSORS)
    config = EmulatorConfig(livekit=livekit_server.settings, api_keys=frozenset({KEY}),
                            liveavatar_api_keys=frozenset({LA_KEY}),
                            expiry_check_interval_s=0.1)
    backend = BACKENDS[getattr(request, "param", "interactive")]
    async with EmulatorServer(config) as emulator:
        yield backend.matrix(emulator, tmp_path)


def report(case: str, step: str, fault: str, outcome: str, code: int, line: str,
           backend: str = "interactive") -> None:
    path = os.environ.get("RELIABILITY_REPORT")
    if path:
        with open(path, "a", encoding="utf-8") as out:
            out.write(json.dumps({"case": case, "backend": backend, "step": step,
                                  "fault": fault, "outcome": outcome, "exit": code,
                                  "line": line}) + "\n")


async def finish(matrix: Matrix, child: Child, code: int, expected_code: int,
                 line: str | None, case: str, step: str, fault: str, outcome: str) -> None:
    """The common end of every case: the exit code, the line, no secret, nothing open."""
    assert code == expected_code, child.output[-3000:]
    if line is not None:
        assert re.search(line, child.last_line), child.output[-3000:]
    at = child.output.find("Traceback")
    assert at < 0, child.output[max(0, at - 500):at + 2500]
    matrix.check_no_secret(child.output)
    await eventually(lambda: matrix.counts()["open"] == 0, "no session left open")
    report(case, step, fault, outcome, code, child.last_line, matrix.name)


# ---------------------------------------------------------------- HTTP answers at each step

def _retried(path: str, status: int) -> bool:
    """The client's rule: create_token on anything that may pass, new/start (and
    LiveAvatar's token, which creates the session) only when refused (nothing created)."""
    return status in (429, 503) or (path == TOKEN and status >= 500)


def _http_cases() -> list[tuple[str, str, int]]:
    return [(name, path, status) for name, backend in BACKENDS.items()
            for path, status in backend.http]


@pytest.mark.parametrize("matrix,path,status", _http_cases(), indirect=["matrix"],
                         ids=[f"{b}-{p.split('/')[-1].split('.')[-1]}-{s}"
                              for b, p, s in _http_cases()])
async def test_an_error_answer_at_a_start_step(matrix: Matrix, path: str, status: int) -> None:
    matrix.faults(fail_next={"status": status, "path": path, "message": "injected"})
    child = await matrix.run("--for", "1")
    code = await child.wait()
    if _retried(path, status):
        outcome, expected, line = "retried; the run goes on", 0, None
    else:
        outcome, expected = "one line with the service's status; exit 1", 1
        line = rf"start failed: {re.escape(path)}: HTTP {status}.*injected"
    await finish(matrix, child, code, expected, line, f"{matrix.name}-http-{status}",
                 step_of(path), f"HTTP {status}", outcome)


# ---------------------------------------------------------------- timeouts


TIMEOUT_CASES = [("interactive", NEW), ("interactive", START), ("liveavatar-full", LA_START)]


@pytest.mark.parametrize("matrix,path", TIMEOUT_CASES, indirect=["matrix"],
                         ids=[f"{b}-{step_of(p)}" for b, p in TIMEOUT_CASES])
async def test_an_http_timeout_at_a_start_step(matrix: Matrix, path: str) -> None:
    """The step's answer comes after the client's timeout (``HEYGEN_HTTP_TIMEOUT_S``).
    HeyGen creates the session even when the client has given up waiting for ``new``
    (so does the emulator): with no id, nothing proves it this run's to stop, so it is
    left, and the last line says where to look. Elsewhere the session is stopped."""
    matrix.faults(latency_ms=1500, latency_path=path)
    child = await matrix.run("--for", "1", env={"HEYGEN_HTTP_TIMEOUT_S": "0.5"})
    code = await child.wait()
    line = rf"start failed: {re.escape(path)}: no answer .*within the timeout"
    if path != NEW:
        line += "$"  # the session is known, and stopped: nothing to look for
        await finish(matrix, child, code, 1, line, f"{matrix.name}-timeout-{step_of(path)}",
                     step_of(path), "HTTP timeout", "one line; the session stopped; exit 1")
        return
    assert code == 1, child.output[-3000:]
    await eventually(lambda: matrix.counts()["open"] == 1, "the emulator created it anyway")
    assert re.search(line + r".*a session may have been created.*heygen-agent sessions",
                     child.last_line), child.output[-3000:]
    report(f"{matrix.name}-timeout-new", "new", "HTTP timeout",
           "a session may have been created: the line names heygen-agent sessions; exit 1",
           code, child.last_line, matrix.name)
    registry = matrix.emulator.emulator.registry
    for session in list(registry):
        registry.stop(session, reason="test cleanup")


# ---------------------------------------------------------------- signals at each step


TERM, INT = signal.SIGTERM, signal.SIGINT
#: backend → step → the signals sent there: every step of every backend gets one; both
#: take the same handler, so SIGINT is tried where SIGTERM's case would add nothing new
#: (its own exit code, 130, is the second-signal row's).
SIGNALS: dict[str, dict[str, tuple[signal.Signals, ...]]] = {
    "interactive": {"create_token": (TERM,), "new": (TERM, INT), "start": (TERM, INT),
                    "websocket": (TERM,), "streaming": (TERM, INT), "stopping": (INT,)},
    "liveavatar-full": {"token": (TERM,), "start": (TERM,), "streaming": (TERM,),
                        "stopping": (TERM,)},
    "liveavatar-lite": {"websocket": (TERM,), "streaming": (INT,)},
}


def _signal_cases() -> list[tuple[str, str, signal.Signals]]:
    return [(name, step, sig) for name, steps in SIGNALS.items()
            for step, sigs in steps.items() for sig in sigs]


@pytest.mark.parametrize("matrix,step,sig", _signal_cases(), indirect=["matrix"],
                         ids=[f"{b}-{step}-{sig.name}" for b, step, sig in _signal_cases()])
async def test_a_signal_at_a_step(matrix: Matrix, step: str, sig: signal.Signals) -> None:
    """The signal comes while the step's request is held at the service (0.5 s; the stop
    1 s, the run being at its ``--for`` end), or once the session runs. The session ends,
    the run exits 0, with no ERROR line."""
    child = await matrix.at_step(step)
    child.signal(sig)
    code = await child.wait()
    errors = [line for line in child.output.splitlines() if "| ERROR" in line]
    assert not errors, "an asked-for stop is no error:\n" + "\n".join(errors)
    await finish(matrix, child, code, 0, None, f"{matrix.name}-{sig.name}-{step}", step,
                 sig.name, "session stopped; the pipeline ends; exit 0")


async def test_a_second_signal_stops_at_once(matrix: Matrix) -> None:
    matrix.faults(latency_ms=1500)
    child = await matrix.run()
    await matrix.reached(NEW)
    child.signal(signal.SIGINT)
    await child.read_until("SIGINT: stopping")
    started = time.monotonic()
    child.signal(signal.SIGINT)
    code = await child.wait()
    assert time.monotonic() - started < 10
    await finish(matrix, child, code, 130, r"stopped at once \(a second SIGINT\)",
                 "second-SIGINT", "new", "SIGINT twice",
                 "the pipeline is abandoned, the session still stopped; exit 130")


# ---------------------------------------------------------------- processors


@pytest.mark.parametrize("sig", [signal.SIGTERM], ids=["SIGTERM"])  # SIGINT: the same path
async def test_a_processor_that_blocks_the_loop(matrix: Matrix, sig: signal.Signals) -> None:
    """A signal handler of the event loop cannot run while a processor blocks the loop:
    the process still ends within seconds, having stopped its session itself."""
    file = matrix.write(processors="processors: [matrix_processors:BlocksTheLoop]\n")
    child = await matrix.run(file=file)
    await child.read_until("voice chat connected")
    (matrix.directory / "block").touch()
    await child.read_until("blocking the loop")
    started = time.monotonic()
    child.signal(sig)
    code = await child.wait()
    assert time.monotonic() - started < 10, "the signal was ignored while the loop was blocked"
    expected = {signal.SIGTERM: 143, signal.SIGINT: 130}[sig]
    await finish(matrix, child, code, expected,
                 rf"stopped at once: the event loop did not answer {sig.name}",
                 f"blocked-loop-{sig.name}", "streaming", f"processor blocks the loop, {sig.name}",
                 f"the session stopped from a watchdog thread; exit {expected}")


@pytest.mark.parametrize("which", ["FailsAlways", "FailsOnce"])
async def test_a_processor_that_raises(matrix: Matrix, which: str) -> None:
    file = matrix.write(processors=f"processors: [matrix_processors:{which}]\n")
    child = await matrix.run("--for", "3", file=file)
    code = await child.wait()
    if which == "FailsAlways":
        await finish(matrix, child, code, 1, r"failed 10 times within 5 s", "processor-always",
                     "streaming", "processor raises on every frame",
                     "run stopped after 10 errors in 5 s; exit 1")
    else:
        await finish(matrix, child, code, 0, None, "processor-once", "streaming",
                     "processor raises once", "logged; the run goes on; exit 0")


# ---------------------------------------------------------------- the service ends things


async def test_stop_that_keeps_failing_is_reported_with_the_command_to_end_it(
    matrix: Matrix,
) -> None:
    matrix.faults(fail_next={"status": 503, "count": 1000, "path": STOP})
    child = await matrix.run("--for", "1")
    code = await child.wait()
    assert code == 1, child.output[-3000:]
    match = re.search(r"HeyGen session (\w+) may still be open \(billed\): .*HTTP 503.*"
                      r"end it with: heygen-agent sessions stop (\w+)", child.last_line)
    assert match and match.group(1) == match.group(2), child.output[-3000:]
    assert matrix.counts()["open"] == 1
    matrix.faults(reset=True)
    done = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "agent", "sessions", "stop", match.group(1),
        "--base-url", matrix.emulator.base_url, "--api-key", KEY, cwd=ROOT,
        stdout=asyncio.subprocess.PIPE)
    await within(done.communicate(), "sessions stop ended")
    await finish(matrix, child, code, 1, None, "stop-fails", "stopping", "HTTP 503 on every stop",
                 "exit 1 with the session id and the command that ends it")


async def test_a_socket_that_keeps_dropping(matrix: Matrix) -> None:
    matrix.faults(ws_drop_after_seconds=0.3)
    child = await matrix.run()
    code = await child.wait()
    await finish(matrix, child, code, 1, r"session ended: voice-chat socket dropped",
                 "ws-drops", "websocket", "socket dropped on every connection",
                 "3 reconnects, then the session is stopped; exit 1")


@pytest.mark.parametrize("fault", ["duration-limit", "idle-timeout"])
async def test_heygen_ends_the_session(
    livekit_server: LiveKitServer, tmp_path: Path, fault: str
) -> None:
    limit = {"duration-limit": {"session_duration_limit_s": 2.0}, "idle-timeout": {}}[fault]
    config = EmulatorConfig(livekit=livekit_server.settings, api_keys=frozenset({KEY}),
                            expiry_check_interval_s=0.1, **limit)  # type: ignore[arg-type]
    async with EmulatorServer(config) as emulator:
        matrix = Matrix(emulator, tmp_path)
        # idle: keep-alive off, so that nothing counts as activity; HeyGen's shortest idle
        # timeout is 30 s, so the emulator's session is given 0.5 s once it runs
        session = "keep_alive_interval_s: null" if fault == "idle-timeout" else ""
        child = await matrix.run(file=matrix.write(session=session))
        if fault == "idle-timeout":
            await matrix.reached(vc.CHAT_PATH)
            for s in emulator.emulator.registry:
                s.idle_timeout_s = 0.5
        code = await child.wait()
        await finish(matrix, child, code, 1, r"session ended: HeyGen closed the session",
                     fault, "streaming", fault.replace("-", " "),
                     "the session is stopped here too; exit 1")


async def test_the_concurrency_limit(matrix: Matrix) -> None:
    registry = matrix.emulator.emulator.registry
    registry.max_concurrent = 0
    child = await matrix.run()
    code = await child.wait()
    await finish(matrix, child, code, 1, r"Concurrent limit reached", "concurrency", "new",
                 "account at its concurrency limit", "one line with HeyGen's message; exit 1")


# ---------------------------------------------------------------- media


@pytest.mark.parametrize("fault", ["avatar-leaves", "livekit-dies"])
async def test_lost_media(matrix: Matrix, livekit_server: LiveKitServer, fault: str) -> None:
    child = await matrix.run()
    await child.read_until("LiveKit room joined")
    runtimes = matrix.emulator.emulator.runtimes
    if fault == "avatar-leaves":
        await next(iter(runtimes.values())).avatar.leave()
    else:
        await livekit_server.stop()
    code = await child.wait()
    said = {"avatar-leaves": r"the avatar left the room|the avatar.s media did not arrive",
            # the avatar's leaving is seen first then: not the cause
            "livekit-dies": r"LiveKit connection lost"}[fault]
    await finish(matrix, child, code, 1, rf"session ended: ({said})",
                 fault, "streaming", fault.replace("-", " "),
                 "the session is stopped after the 1 s grace; exit 1")


# ---------------------------------------------------------------- a killed process


def records(state_dir: Path) -> list[str]:
    return [p.read_text() for p in sorted((state_dir / "sessions").glob("*.json"))]


#: (backend, the step it is killed at, the command after it)
SIGKILL_CASES = [("interactive", "streaming", "run"), ("interactive", "streaming", "sessions"),
                 ("interactive", "start", "run"), ("interactive", "stopping", "run"),
                 ("liveavatar-full", "streaming", "run")]


@pytest.mark.parametrize("matrix,step,next_", SIGKILL_CASES, indirect=["matrix"],
                         ids=["-".join(case) for case in SIGKILL_CASES])
async def test_sigkill_is_cleaned_up_by_the_next_command(
    matrix: Matrix, step: str, next_: str, state_dir: Path
) -> None:
    """Nothing can stop a session from a process killed outright; the local record lets
    the next ``run`` or ``heygen-agent sessions`` of the same key stop it (at ``new``,
    before its answer, there is no id to record: see the timeout row)."""
    child = await matrix.at_step(step)
    child.signal(signal.SIGKILL)
    await child.wait()
    matrix.faults(reset=True)
    if step != "stopping":  # (the stop held at the service may still end it)
        assert matrix.counts()["open"] == 1, "killed: its session is still open (and billed)"
    (record,) = records(state_dir)
    key = LA_KEY if matrix.secrets else KEY
    assert key not in record and '"key": "' in record, "a fingerprint, never the key"
    if next_ == "run":
        nxt = await matrix.run("--for", "1")
        code = await nxt.wait()
    else:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "agent", "sessions", "--base-url", matrix.emulator.base_url,
            "--api-key", KEY, cwd=ROOT, stdout=asyncio.subprocess.PIPE)
        out, _ = await within(process.communicate(), "sessions ended")
        nxt = Child(process, out.decode())
        code = process.returncode or 0
    if step != "stopping":
        assert "left open by process" in nxt.output, nxt.output[-3000:]
    assert records(state_dir) == [], "the record is gone"
    await finish(matrix, nxt, code, 0, None, f"{matrix.name}-sigkill-{step}-then-{next_}",
                 step, "SIGKILL", f"left open; the next {next_} of the same key stops it")


# ---------------------------------------------------------------- the LiveAvatar backend

@pytest.mark.parametrize("matrix", ["liveavatar-full"], indirect=True)
async def test_liveavatar_given_a_heygen_key(matrix: Matrix) -> None:
    file = matrix.write().read_text().replace(LA_KEY, KEY)  # a HeyGen key, not LiveAvatar's
    (matrix.directory / "heygen_key.yaml").write_text(file)
    child = await matrix.run("--for", "1", file=matrix.directory / "heygen_key.yaml")
    code = await child.wait()
    await finish(matrix, child, code, 1, r"HTTP 401.*LIVEAVATAR_API_KEY",
                 "liveavatar-heygen-key", "token", "a HeyGen key (LiveAvatar)",
                 "one line: LiveAvatar takes its own key; exit 1")


@pytest.mark.parametrize("matrix", ["liveavatar-full"], indirect=True)
async def test_liveavatar_stop_that_keeps_failing_then_sessions_ends_it(
    matrix: Matrix,
) -> None:
    matrix.faults(fail_next={"status": 503, "count": 1000, "path": LA_STOP})
    child = await matrix.run("--for", "1")
    code = await child.wait()
    assert code == 1 and re.search(
        r"may still be open \(billed\).*end it with: heygen-agent sessions --backend "
        r"liveavatar", child.last_line), child.output[-3000:]
    assert matrix.counts()["open"] == 1
    matrix.faults(reset=True)
    done = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "agent", "sessions", "--backend", "liveavatar",
        "--base-url", matrix.emulator.base_url, "--api-key", LA_KEY, cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(ROOT)})
    out, _ = await within(done.communicate(), "sessions ended")
    assert "stopped" in out.decode(), out.decode()
    await finish(matrix, child, code, 1, None, "liveavatar-stop-fails", "stopping",
                 "HTTP 503 on every stop (LiveAvatar)",
                 "exit 1 with the session id and the command that ends it")


async def test_liveavatar_sandbox_ends_the_session(
    livekit_server: LiveKitServer, tmp_path: Path
) -> None:
    config = EmulatorConfig(livekit=livekit_server.settings,
                            liveavatar_api_keys=frozenset({LA_KEY}),
                            liveavatar_sandbox_duration_s=3.0, expiry_check_interval_s=0.1)
    async with EmulatorServer(config) as emulator:
        matrix = BACKENDS["liveavatar-full"].matrix(emulator, tmp_path)
        child = await matrix.run()
        code = await child.wait()
        await finish(matrix, child, code, 1, r"session ended: LiveAvatar ended the session",
                     "liveavatar-sandbox", "streaming", "sandbox time limit (LiveAvatar)",
                     "the session is stopped here too; exit 1")
