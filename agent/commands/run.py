"""``heygen-agent run FILE`` and ``heygen-agent validate FILE``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import logging
import math
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from loguru import logger

from agent.commands import EXIT_CONFIG, EXIT_ERROR, EXIT_OK
from agent.pipeline.errors import ConfigError

if TYPE_CHECKING:  # Pipecat is imported only by the commands that run a pipeline
    from pipecat.processors.frame_processor import FrameProcessor

    from agent.commands.supervisor import Supervisor
    from agent.heygen.transport import HeyGenTransport
    from agent.pipeline.builder import Agent
    from agent.pipeline.registry import ProcessorSpec
    from agent.pipeline.schema import PipelineFile

STATUS_INTERVAL_S = 0.5


def _seconds(text: str) -> float:
    """``--for``: a positive, finite number of seconds (``-1`` once opened a billed
    session only to stop it at once)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"a positive number of seconds, not {text!r}")
    return value


def add_parsers(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    run = commands.add_parser(
        "run", help="run the agent a pipeline file describes",
        description="Open a HeyGen avatar session and run the pipeline the file describes "
        "until Ctrl-C, --for, or the session ends; the session is stopped on every way out. "
        "Exit codes: 0 ended as asked, 1 failed, 3 bad pipeline file, 130/143 stopped at once "
        "on a second SIGINT/SIGTERM.")
    run.add_argument("file", type=Path, help="a pipeline file, e.g. config/demo.yaml")
    run.add_argument("--for", dest="duration", type=_seconds, metavar="SECONDS",
                     help="stop cleanly after this long (default: until Ctrl-C)")
    run.add_argument("--no-status", action="store_true", help="no live status line")
    run.add_argument("--input-wav", type=Path, metavar="WAV",
                     help="play this WAV file as the microphone (headless runs, tests)")
    run.add_argument("--start-after-build", action="store_true",
                     help="start the HeyGen session only once the pipeline is built "
                     "(by default it starts while the pipeline is built: the avatar "
                     "appears about a second sooner; docs/PERFORMANCE.md measures both)")
    run.set_defaults(handler=run_command)
    check = commands.add_parser(
        "validate", help="check a pipeline file without connecting",
        description="Check a pipeline file as run would (schema, processors and their "
        "arguments, input files) without connecting to HeyGen: every problem is one line "
        "naming file:line:column and the field. Exit 0 when valid, 3 when not.")
    check.add_argument("file", type=Path, help="a pipeline file, e.g. config/demo.yaml")
    check.add_argument("--input-wav", type=Path, metavar="WAV",
                       help="as run's: this WAV file is the microphone (checked instead of "
                       "the file's input)")
    check.add_argument("--check-key", action="store_true",
                       help="also ask the API whether it takes the file's key (one listing, "
                       "nothing billed); a HeyGen key given to LiveAvatar, or the reverse, "
                       "is said as such")
    check.set_defaults(handler=validate_command)


def _load(
    path: Path, *, check_input: bool = True
) -> tuple[PipelineFile, list[ProcessorSpec]] | None:
    """The file and its processors, or ``None`` after printing its problems."""
    from agent.pipeline.loader import load_agent_file

    try:
        return load_agent_file(path, check_input=check_input)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return None


def _load_for(args: argparse.Namespace) -> tuple[PipelineFile, list[ProcessorSpec]] | None:
    """The file as ``run`` and ``validate`` take it: with ``--input-wav``, that WAV
    (checked) is the microphone instead of the file's input. ``None`` after saying why."""
    from agent.media.wav_file import WavFileError, probe_wav
    from agent.pipeline.schema import WavInput

    loaded = _load(args.file, check_input=args.input_wav is None)
    if loaded is None or args.input_wav is None:
        return loaded
    try:
        probe_wav(args.input_wav)
    except WavFileError as exc:
        print(f"heygen-agent: --input-wav: {exc}", file=sys.stderr)
        return None
    file, specs = loaded
    # a second of quiet first, as a person would leave before speaking
    file.input = WavInput(type="wav", path=str(args.input_wav.resolve()), lead_in_s=1.0)
    return file, specs


def validate_command(args: argparse.Namespace) -> int:
    loaded = _load_for(args)
    if loaded is None:
        return EXIT_CONFIG
    file, specs = loaded
    # Each processor is built once (nothing connects): a constructor that raises is found
    # here, not after a billed session has started.
    problems = []
    for processor in specs:
        try:
            processor.build()
        except ConfigError as exc:
            problems.append(str(exc))
    if problems:
        print("\n".join(problems), file=sys.stderr)
        return EXIT_CONFIG
    names = ", ".join(s.name for s in specs if not s.role) or "none"
    brain = ", ".join(f"{s.role} {s.name}" for s in specs if s.role)
    outputs = ", ".join(o.type for o in file.outputs) or "none"
    print(f"{args.file}: ok ({file.heygen.backend}; input {file.input.type}; "
          f"processors {names}; {f'brain {brain}; ' if brain else ''}outputs {outputs})")
    if args.check_key:
        return asyncio.run(_check_key(file))
    return EXIT_OK


async def _check_key(file: PipelineFile) -> int:
    """One listing with the file's key: a refused key is one line that says which API
    the key is for, before anything is billed."""
    from agent.heygen.api import HeyGenError

    heygen = file.heygen
    key = heygen.api_key.get_secret_value() if heygen.api_key else None
    try:
        async with heygen.session_options().open_client(key, heygen.base_url) as client:
            await client.check_key()
    except (HeyGenError, ValueError) as exc:
        print(f"heygen-agent: {heygen.backend} key: {exc}", file=sys.stderr)
        return EXIT_ERROR
    print(f"{heygen.backend} key: accepted by {client.base_url}")
    return EXIT_OK


def configure_logging(level: str) -> None:
    """The run's log: ours and Pipecat's through loguru at ``level``. LiveKit's native
    side logs through the standard library, unformatted: of its records, only errors
    (and everything at DEBUG), since its warnings are of what the transport counts
    and says itself (frames a slow reader missed) or of its own teardown."""
    logger.remove()
    logger.add(_LOG, level=level)
    logging.getLogger("livekit").setLevel(logging.DEBUG if level == "DEBUG" else logging.ERROR)


def run_command(args: argparse.Namespace) -> int:
    loaded = _load_for(args)
    if loaded is None:
        return EXIT_CONFIG
    file, specs = loaded
    configure_logging(os.environ.get("HEYGEN_LOG_LEVEL", file.logging.level))
    from agent.commands import native
    from agent.commands.supervisor import run_bounded

    native.mark()
    return run_bounded(lambda: _main(file, specs, args))


async def _main(file: PipelineFile, specs: list[ProcessorSpec], args: argparse.Namespace) -> int:
    from agent.commands.supervisor import Supervisor
    from agent.pipeline.face import avatar_transport

    async with contextlib.AsyncExitStack() as stack:
        base_url = api_key = None
        if file.heygen.emulator:
            # loaded only here: a run against HeyGen need not wait for the emulator's import
            from agent.emulator.config import EMULATOR_KEYS, EmulatorConfig
            from agent.emulator.livekit_server import LiveKitServer, LiveKitUnavailable
            from agent.emulator.server import EmulatorServer

            try:
                livekit = await stack.enter_async_context(LiveKitServer())
            except LiveKitUnavailable as exc:
                print(f"heygen-agent: {exc}", file=sys.stderr)
                return EXIT_ERROR
            emulator = EmulatorServer(EmulatorConfig(livekit=livekit.settings))
            await stack.enter_async_context(emulator)
            base_url, api_key = emulator.base_url, EMULATOR_KEYS[file.heygen.backend]
            logger.info(f"Using the local HeyGen emulator at {base_url}")
        try:
            # The user's code first: a constructor that raises ends the run before
            # anything is billed.
            processors = [spec.build() for spec in specs]
        except ConfigError as exc:
            print(exc, file=sys.stderr)
            return EXIT_CONFIG
        transport = avatar_transport(file, base_url=base_url, api_key=api_key)
        supervisor = Supervisor(transport, args.duration)
        if file.heygen.emulator:
            supervisor.service_in_process = True
            supervisor.watchdog.at_exit(livekit.kill_now)  # never outlives us
        with supervisor.signals():
            if not args.start_after_build:
                # The rest of the pipeline (its imports, the VAD's model) takes about as
                # long as a session's start: both at once.
                transport.start_early()
            try:
                agent = await supervisor.build(_build(file, specs, processors, transport,
                                                      args.file.resolve().parent))
            except BaseException as exc:
                await transport.close(f"the pipeline could not be built: {type(exc).__name__}")
                if isinstance(exc, ConfigError):
                    print(exc, file=sys.stderr)
                    return EXIT_CONFIG
                raise
            if agent is None:
                return supervisor.exit_code()
            return await _run(agent, supervisor, not args.no_status)


async def _build(file: PipelineFile, specs: list[ProcessorSpec], processors: list[FrameProcessor],
                 transport: HeyGenTransport, base_dir: Path) -> Agent:
    """The pipeline around ``transport``; the builder's imports (Pipecat's pipeline,
    the VAD's ONNX runtime, the outputs' codecs) run in a thread, so that the session's
    start goes on meanwhile."""
    builder = await asyncio.to_thread(importlib.import_module, "agent.pipeline.builder")
    agent: Agent = builder.build(file, specs, base_dir=base_dir, transport=transport,
                                 processors=processors)
    return agent


async def _run(agent: Agent, supervisor: Supervisor, status: bool) -> int:
    status_line = None
    if status and sys.stderr.isatty():
        status_line = asyncio.create_task(_status_line(agent, sys.stderr))
    try:
        code = await supervisor.run(agent.worker)
    finally:
        if status_line is not None:
            status_line.cancel()
        await agent.client.aclose()
    if agent.viewer is None and agent.recorder is not None:
        print(f"recording: {agent.recorder.path}", file=sys.stderr)
    return code


def status_text(agent: Agent, started: float) -> str:
    transport = agent.transport
    state = transport.session.state.value
    speaking = "avatar speaking" if transport.avatar_speaking else "listening"
    latency = agent.latency.last_latency_s
    last = f"{latency * 1000:.0f} ms" if latency is not None else "-"
    viewer = ""
    if agent.viewer is not None:  # its port is known once it listens (port 0: any free)
        viewer = f" | viewer {agent.viewer.url if agent.viewer.port else 'starting'}"
    return (f"session {state} | {speaking} | last answer latency {last} | "
            f"{time.monotonic() - started:.0f} s{viewer}")


class _StatusAwareStderr:
    """stderr for the log: while the status line is on the terminal, each record first
    clears it (the next tick redraws it), instead of being glued after it."""

    status_shown = False

    def write(self, text: str) -> None:
        if self.status_shown:
            sys.stderr.write("\r\x1b[2K")
        sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()

    def isatty(self) -> bool:  # loguru colours what goes to a terminal
        return sys.stderr.isatty()


_LOG = _StatusAwareStderr()


async def _status_line(agent: Agent, out: TextIO) -> None:
    started = time.monotonic()
    try:
        while True:
            out.write("\r\x1b[2K" + status_text(agent, started))
            out.flush()
            _LOG.status_shown = True
            await asyncio.sleep(STATUS_INTERVAL_S)
    finally:
        _LOG.status_shown = False
        out.write("\r\x1b[2K")
