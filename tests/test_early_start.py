"""A session started before its pipeline runs (``HeyGenTransport.start_early``, what
``heygen-agent run`` does while the rest of the pipeline is built): the pipeline runs that
same session, what HeyGen said before the pipeline ran still reaches it, and a session
whose pipeline never runs is stopped by ``close()``, mid-start or running."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
from pathlib import Path

import pytest
from pipecat.frames.frames import (
    BotStartedSpeakingFrame,
    BotStoppedSpeakingFrame,
    OutputImageRawFrame,
)

from agent.emulator.server import EmulatorServer
from agent.heygen.backend import SessionState
from agent.heygen.frames import HeyGenAvatarTranscriptFrame
from agent.heygen.protocol import interactive as ia
from agent.heygen.session import SessionOptions
from agent.heygen.transport import HeyGenParams, HeyGenTransport
from tests.emulator_admin import set_faults
from tests.pipeline_helpers import Collector, run_until
from tests.waiting import eventually, within

pytestmark = pytest.mark.livekit

KEY = "early-key-123456"


def early_transport(emulator: EmulatorServer) -> HeyGenTransport:
    return HeyGenTransport(api_key=KEY, base_url=emulator.base_url,
                           session_options=SessionOptions(keep_alive_interval_s=None),
                           params=HeyGenParams(video_format="I420", audio_enabled=False))


async def test_the_pipeline_runs_the_session_started_early_and_hears_what_came_before(
    emulator: EmulatorServer,
) -> None:
    transport = early_transport(emulator)
    transport.start_early()
    await within(transport.session_running.wait(), "the session ran before its pipeline")
    # The avatar says something, to its end, before any pipeline exists.
    text = "Said before the pipeline ran."
    await transport.session.speak(text, task_mode=ia.TaskMode.SYNC)

    collector = Collector()
    await run_until([transport.output(), transport.input(), collector],
                    collector.until(lambda: collector.count(BotStoppedSpeakingFrame) >= 1
                                    and collector.count(OutputImageRawFrame) > 10),
                    "what the avatar said before, then its face")
    kinds = [type(f) for f in collector.of(BotStartedSpeakingFrame, BotStoppedSpeakingFrame)]
    assert kinds == [BotStartedSpeakingFrame, BotStoppedSpeakingFrame]
    assert [f.text for f in collector.of(HeyGenAvatarTranscriptFrame)] == [text]  # type: ignore[attr-defined]
    counts = emulator.emulator.registry.counts()
    assert (counts["created"], counts["open"]) == (1, 0), "one session, the early one, stopped"


@pytest.mark.parametrize("when", ["starting", "running"])
async def test_a_session_whose_pipeline_never_runs_is_stopped_by_close(
    emulator: EmulatorServer, when: str
) -> None:
    registry = emulator.emulator.registry
    transport = early_transport(emulator)
    if when == "starting":
        await set_faults(emulator, latency_ms=300)  # streaming.start is still in flight
        transport.start_early()
        await eventually(lambda: registry.counts()["created"] == 1, "the session created")
        assert transport.session.state is SessionState.STARTING
    else:
        transport.start_early()
        await within(transport.session_running.wait(), "the session running")
    await within(transport.close(), "close")
    assert transport.session.state is SessionState.STOPPED
    counts = registry.counts()
    assert (counts["created"], counts["stopped"], counts["open"]) == (1, 1, 0)
    await asyncio.sleep(0)  # the start's task has ended: nothing left to print a traceback
    assert transport._early is not None and transport._early.done()


@pytest.mark.parametrize("failure", ["config", "crash"])
async def test_run_stops_the_session_when_the_pipeline_fails_to_build_meanwhile(
    emulator: EmulatorServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str], failure: str,
) -> None:
    """``heygen-agent run`` starts the session while it builds the pipeline: a build that
    fails once the session runs leaves it stopped, and says why in one line."""
    from agent.commands import EXIT_CONFIG, run
    from agent.pipeline.errors import ConfigError, Problem
    from agent.pipeline.loader import load_agent_file

    config = tmp_path / "agent.yaml"
    config.write_text(f"heygen: {{base_url: '{emulator.base_url}', api_key: {KEY}}}\n"
                      "input: {type: none}\noutputs: [{type: none}]\nvad: null\n")
    file, specs = load_agent_file(config)
    registry = emulator.emulator.registry
    broken = Problem(str(config), 3, 10, "outputs", "a build that fails")

    async def fails_once_the_session_runs(*args: object) -> None:
        await eventually(lambda: registry.counts()["started"] == 1,
                         "the session started while the pipeline was built")
        if failure == "config":
            raise ConfigError([broken])
        raise RuntimeError("the builder crashed")

    monkeypatch.setattr(run, "_build", fails_once_the_session_runs)
    args = argparse.Namespace(file=config, duration=None, no_status=True,
                              start_after_build=False, input_wav=None)
    if failure == "config":
        assert await run._main(file, specs, args) == EXIT_CONFIG
        assert capsys.readouterr().err.strip() == str(ConfigError([broken]))
    else:
        with pytest.raises(RuntimeError, match="the builder crashed"):
            await run._main(file, specs, args)
    counts = registry.counts()
    assert (counts["created"], counts["stopped"], counts["open"]) == (1, 1, 0)


@pytest.mark.parametrize("signals", [1, 2])
async def test_a_signal_while_the_pipeline_is_built_stops_the_session_started_meanwhile(
    emulator: EmulatorServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str], signals: int,
) -> None:
    """Ctrl-C while ``run`` still builds the pipeline (the session already up): the
    session is stopped and the run ends as after a Ctrl-C at any other time: 0, or 130
    with one line at a second one."""
    from agent.commands import EXIT_INTERRUPTED, EXIT_OK, run
    from agent.pipeline.loader import load_agent_file

    config = tmp_path / "agent.yaml"
    config.write_text(f"heygen: {{base_url: '{emulator.base_url}', api_key: {KEY}}}\n"
                      "input: {type: none}\noutputs: [{type: none}]\nvad: null\n")
    file, specs = load_agent_file(config)
    registry = emulator.emulator.registry

    async def interrupted_while_building(*args: object) -> None:
        await eventually(lambda: registry.counts()["started"] == 1,
                         "the session started while the pipeline was built")
        for _ in range(signals):
            os.kill(os.getpid(), signal.SIGINT)
        await asyncio.Event().wait()  # a build that would never end by itself

    monkeypatch.setattr(run, "_build", interrupted_while_building)
    args = argparse.Namespace(file=config, duration=None, no_status=True,
                              start_after_build=False, input_wav=None)
    code = await within(run._main(file, specs, args), "run ended")
    counts = registry.counts()
    assert (counts["created"], counts["stopped"], counts["open"]) == (1, 1, 0)
    said = [line for line in capsys.readouterr().err.splitlines()
            if line.startswith("heygen-agent:")]
    if signals == 1:
        assert (code, said) == (EXIT_OK, [])
    else:
        assert code == EXIT_INTERRUPTED
        assert said == ["heygen-agent: stopped at once (a second SIGINT): the pipeline was "
                        "still being built"]
