"""``heygen-agent run`` and the account commands as a person runs them: subprocesses."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import av
import pytest

from agent.emulator.config import EmulatorConfig
from agent.emulator.livekit_server import LiveKitServer
from agent.emulator.server import EmulatorServer
from agent.heygen import api
from agent.heygen.protocol import interactive as ia
from agent.heygen.protocol.liveavatar import rest as la
from tests.speech import speech_wav
from tests.waiting import eventually, within

ROOT = Path(__file__).resolve().parents[1]


async def heygen_agent(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "agent", *args, cwd=ROOT, env={**os.environ, **(env or {})},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await within(process.communicate(), f"heygen-agent {args[0]} ended", 90)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def read_until(stream: asyncio.StreamReader, text: str) -> str:
    """What a running process wrote to ``stream`` up to the line containing ``text``."""
    seen = ""

    async def read() -> None:
        nonlocal seen
        while text not in seen:
            line = await stream.readline()
            if not line:
                raise AssertionError(f"the process ended before saying {text!r}: {seen}")
            seen += line.decode(errors="replace")

    await within(read(), f"the process said {text!r}")
    return seen


@pytest.mark.livekit
async def test_demo_yaml_runs_end_to_end(livekit_server: LiveKitServer, tmp_path: Path) -> None:
    """config/demo.yaml as shipped (it starts its own emulator and LiveKit server), with a
    WAV file for the microphone, until the avatar has answered; then Ctrl-C, as a person
    ends the demo."""
    wav = tmp_path / "q.wav"
    speech_wav(wav, "Hello avatar, how are you today?")
    transcript = ROOT / "recordings" / "demo-transcript.jsonl"
    transcript.unlink(missing_ok=True)

    def answered() -> bool:
        lines = transcript.read_text().splitlines() if transcript.exists() else []
        return sum('"who": "avatar"' in line for line in lines) >= 2  # greeting, answer

    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "agent", "run", "config/demo.yaml", "--input-wav", str(wav),
        "--no-status", cwd=ROOT, env={**os.environ, "LIVEKIT_SERVER": livekit_server.binary},
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    await eventually(answered, "the demo's avatar answered the question", 60)
    process.send_signal(signal.SIGINT)
    _, raw = await within(process.communicate(), "the demo ended after Ctrl-C")
    err = raw.decode()
    assert process.returncode == 0, err
    assert "Traceback" not in err
    assert "Using the local HeyGen emulator" in err and "Viewer: open http://127.0.0.1:" in err
    lines = [json.loads(line) for line in transcript.read_text().splitlines()]
    user = [line["text"] for line in lines if line["who"] == "user"]
    avatar = [line["text"] for line in lines if line["who"] == "avatar"]
    assert len(user) == 1 and user[0].endswith(" seconds of speech)")
    heard_s = user[0][1:].split()[0]
    # The greeting, then the answer to the turn. The user starts a second after the run
    # does: over the greeting (the barge-in cuts it short) or after it, as fast as the
    # session started; test_barge_in_cuts_the_avatar_short pins the barge-in itself.
    greeting = "Hello! I am the emulated HeyGen avatar. Say something and I will answer."
    assert len(avatar) == 2 and avatar[1] == f"I heard {heard_s} seconds of speech."
    assert greeting.startswith(avatar[0])
    assert "stopped (interrupted by SIGINT)" in err


async def test_push_to_talk_yaml_gets_an_answer(livekit_server: LiveKitServer,
                                                tmp_path: Path) -> None:
    """config/push_to_talk.yaml as shipped: something must press the button. Run as a
    user runs it, nothing did, and the avatar never answered; its local VAD now presses
    it while the user speaks."""
    wav = tmp_path / "q.wav"
    speech_wav(wav, "Hello avatar, can you hear me?")
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "agent", "run", "config/push_to_talk.yaml", "--input-wav",
        str(wav), "--no-status", cwd=ROOT,
        env={**os.environ, "LIVEKIT_SERVER": livekit_server.binary, "HEYGEN_LOG_LEVEL": "INFO"},
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    assert process.stderr is not None
    try:
        seen = await read_until(process.stderr, "avatar answered")
    finally:
        process.send_signal(signal.SIGINT)
        _, rest = await within(process.communicate(), "the run ended after Ctrl-C")
    err = seen + rest.decode()
    assert process.returncode == 0, err
    assert "Traceback" not in err


@pytest.mark.livekit
async def test_sigterm_stops_the_session_and_finalises_the_recording(
    livekit_server: LiveKitServer, tmp_path: Path
) -> None:
    wav = tmp_path / "q.wav"
    speech_wav(wav, "Please say something long.")
    config = tmp_path / "agent.yaml"
    config.write_text(
        "heygen:\n  base_url: ${TEST_BASE_URL}\n  api_key: ${TEST_KEY}\n"
        "  session: {avatar_name: Emulated_Anna}\n"
        f"input: {{type: wav, path: {wav}}}\n"
        "processors:\n  - name: examples.keyword_alert:KeywordAlert\n"
        "    args: {keywords: [speech]}\n"
        "outputs:\n  - type: recorder\n    path: out.mp4\n")
    async with EmulatorServer(EmulatorConfig(livekit=livekit_server.settings)) as emulator:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "agent", "run", str(config), "--no-status", cwd=ROOT,
            env={**os.environ, "TEST_BASE_URL": emulator.base_url, "TEST_KEY": "sigterm-key"},
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
        registry = emulator.emulator.registry
        assert process.stderr is not None
        # the custom processor saw the user's transcript: the turn is done
        before = await read_until(process.stderr, "keyword heard: 'speech'")
        process.send_signal(signal.SIGTERM)
        _, rest = await within(process.communicate(), "the run ended after SIGTERM")
        assert process.returncode == 0, before + rest.decode()
        assert registry.counts()["stopped"] == 1 and registry.counts()["open"] == 0
    with av.open(str(tmp_path / "out.mp4")) as container:  # the trailer was written
        video = container.streams.video[0]
        assert video.duration is not None and video.duration > 0
        assert sum(1 for _ in container.decode(video=0)) >= 10, "the turn's video is in it"


def rows(out: str) -> list[list[str]]:
    """A listing's rows under its header line, split into columns."""
    return [line.split() for line in out.splitlines()[1:]]


async def test_account_commands_against_the_emulator() -> None:
    config = EmulatorConfig(api_keys=frozenset({"acct-key-123"}),
                            liveavatar_api_keys=frozenset({"la-acct-key-123"}))
    async with EmulatorServer(config) as server:
        env = {"HEYGEN_BASE_URL": server.base_url, "HEYGEN_API_KEY": "acct-key-123"}
        la_env = {"LIVEAVATAR_BASE_URL": server.base_url, "LIVEAVATAR_API_KEY": "la-acct-key-123"}
        # The listings change nothing: they run at once, while the sessions are looked at.
        listings = asyncio.gather(
            heygen_agent("avatars", env=env),
            heygen_agent("voices", "--realtime", "--json", env=env),
            heygen_agent("avatars", "--api-key", "wrong-key-000", env=env),
            heygen_agent("contexts", "--backend", "interactive", env=env),
            heygen_agent("avatars", "--backend", "liveavatar", env=la_env),
            *(heygen_agent(listing, "--backend", "liveavatar", "--json", env=la_env)
              for listing in ("voices", "contexts")),
            # a HeyGen key where LiveAvatar's is needed: one line that says so
            heygen_agent("avatars", "--backend", "liveavatar", "--api-key", "acct-key-123",
                         env={**env, **la_env}))

        async with api.HeyGenClient("acct-key-123", base_url=server.base_url) as client:
            leaked = [(await client.new_session(ia.NewSessionRequest())).session_id
                      for _ in range(2)]
        code, out, _ = await heygen_agent("sessions", env=env)
        assert code == 0 and out.splitlines()[0].split() == ["SESSION", "ID", "STATUS", "CREATED"]
        assert sorted(row[0] for row in rows(out)) == sorted(leaked)
        code, out, _ = await heygen_agent("sessions", "stop", leaked[0], env=env)
        assert code == 0 and out.strip() == f"stopped {leaked[0]}"
        code, out, _ = await heygen_agent("sessions", "stop", "--all", env=env)
        assert code == 0 and out.strip() == f"stopped {leaked[1]}"
        assert server.emulator.registry.counts()["open"] == 0
        code, out, _ = await heygen_agent("sessions", env=env)
        assert code == 0 and out.strip() == "no open sessions"

        avatars, voices, wrong_key, contexts, la_avatars, *la_listings, heygen_key = (
            await listings)
        code, out, _ = avatars
        assert code == 0 and out.splitlines()[0].split() == ["AVATAR", "ID", "POSE", "STATUS"]
        assert "Emulated_Anna" in [row[0] for row in rows(out)]
        code, out, _ = voices
        assert code == 0 and [json.loads(line) for line in out.splitlines()] == [
            {"voice_id": "emu-voice-en", "name": "espeak-ng English", "language": "English",
             "streaming": "yes"}]
        code, _, err = wrong_key
        assert code == 1 and err.startswith("heygen-agent: /v1/streaming/avatar.list: HTTP 401")
        assert "wrong-key-000" not in err and "Traceback" not in err
        code, _, err = contexts
        assert code == 2 and err.strip().startswith("heygen-agent: interactive has no contexts")
        code, out, _ = la_avatars
        assert code == 0 and out.splitlines()[0].split() == ["AVATAR", "ID", "NAME", "WHOSE"]
        assert "Wayne" in out and {row[-1] for row in rows(out)} == {"yours", "public"}
        for listing, (code, out, _) in zip(("voices", "contexts"), la_listings, strict=True):
            assert code == 0 and all(json.loads(line)[f"{listing[:-1]}_id"]
                                     for line in out.splitlines()), out
        code, _, err = heygen_key
        assert code == 1 and "LIVEAVATAR_API_KEY" in err and len(err.strip().splitlines()) == 1
        assert "acct-key-123" not in err


async def test_every_command_has_help() -> None:
    commands = ("run", "validate", "avatars", "voices", "contexts", "sessions", "emulate",
                "bench")
    answers = await asyncio.gather(*(heygen_agent(c, "--help") for c in commands))
    for command, (code, out, _) in zip(commands, answers, strict=True):
        assert code == 0 and out.startswith(f"usage: heygen-agent {command}")
        description = out.split("\n\n")[1]  # what it does, under the usage lines
        assert not description.startswith(("positional", "options")), (command, out)


async def test_the_command_line_is_parsed_without_loading_what_commands_use() -> None:
    """Every command, even ``--help`` or ``validate``, builds the whole parser first: the
    emulator, the API clients and LiveKit load only for the command that uses them (they
    had cost every command about half a second of imports)."""
    heavy = ("agent.emulator", "agent.heygen", "aiohttp", "httpx", "livekit", "pipecat")
    probe = "import sys; from agent.cli import build_parser; build_parser(); print(*sys.modules)"
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", probe, cwd=ROOT, stdout=asyncio.subprocess.PIPE)
    out, _ = await within(process.communicate(), "the parser was built")
    assert process.returncode == 0
    assert [m for m in out.decode().split() if m.startswith(heavy)] == []


def test_an_id_may_follow_the_options_of_sessions_stop() -> None:
    """``sessions stop --json ID``, a user's order: argparse gave both of the command's
    optional positionals to ``stop`` and refused the id as an unrecognized argument."""
    from agent.cli import parse

    args = parse(["sessions", "stop", "--json", "abc123"])
    assert (args.action, args.session_id, args.json) == ("stop", "abc123", True)
    args = parse(["sessions", "stop", "--backend", "liveavatar", "--base-url", "http://h",
                  "abc123"])
    assert (args.backend, args.base_url, args.session_id) == ("liveavatar", "http://h", "abc123")
    for extra in (["sessions", "stop", "a", "b"], ["avatars", "extra"], ["run", "f", "g"]):
        with pytest.raises(SystemExit) as refused:
            parse(extra)
        assert refused.value.code == 2


@pytest.mark.parametrize("value", ["-1", "0", "nan", "inf", "soon"])
def test_run_for_takes_a_positive_number_of_seconds(
    value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """``run --for -1`` created a session (billed) and stopped it at once, exit 0."""
    from agent.cli import parse

    with pytest.raises(SystemExit) as refused:
        parse(["run", "config/demo.yaml", "--for", value])
    assert refused.value.code == 2
    assert "--for: a positive number of seconds" in capsys.readouterr().err


@pytest.mark.parametrize(("argv", "said"), [
    (["sessions", "stop"], "give a session id or --all"),
    (["sessions", "stop", "abc123", "--all"], "give a session id or --all, not both"),
    (["sessions", "--all"], "--all goes with stop: sessions stop --all"),
    (["voices", "--realtime", "--backend", "liveavatar"], "--realtime is for interactive"),
], ids=["nothing", "both", "all-alone", "realtime"])
def test_account_commands_refuse_what_they_would_ignore(
    argv: list[str], said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each once did nothing it was asked (``sessions --all`` listed; ``--realtime`` with
    LiveAvatar listed every voice) or said the wrong thing (``not both`` for neither);
    refused before any call, with one line."""
    from agent.cli import main

    assert main([*argv, "--base-url", "http://127.0.0.1:9"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith(f"heygen-agent: {said}")


def test_contexts_asks_liveavatar_unless_told_otherwise() -> None:
    """Only LiveAvatar has contexts: ``contexts`` alone answered "interactive has none"."""
    from agent.cli import parse

    assert parse(["contexts"]).backend == "liveavatar"
    assert parse(["avatars"]).backend == "interactive"


def test_bench_help_reads_its_ratios_as_bench_prints_them(
    capsys: pytest.CaptureFixture[str]
) -> None:
    """The help said "baseline time / our time; above 1 is faster": the table prints ours
    over the baseline (27.6 µs against 13.3 µs is 2.07x), so a slow path read as fast."""
    from agent.bench import measure
    from agent.cli import parse

    with pytest.raises(SystemExit):
        parse(["bench", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(our time ÷ baseline time; below 1 is faster)" in text
    assert "above 1 is faster" not in text
    assert measure.__doc__ and "candidate" in measure.__doc__


def test_every_backend_the_account_commands_offer_has_a_catalogue() -> None:
    from agent.commands.account import BACKENDS
    from agent.commands.catalogue import CATALOGUES

    assert tuple(CATALOGUES) == BACKENDS


@pytest.mark.livekit
async def test_embed_example_runs_against_the_emulator(
    livekit_server: LiveKitServer, tmp_path: Path
) -> None:
    wav = tmp_path / "q.wav"
    speech_wav(wav, "How many seconds did I speak?")
    async with EmulatorServer(EmulatorConfig(livekit=livekit_server.settings)) as emulator:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "examples/embed_in_bot.py", str(wav), str(tmp_path / "e.mp4"), "60",
            cwd=ROOT, env={**without_pythonpath(), "HEYGEN_BASE_URL": emulator.base_url,
                           "HEYGEN_API_KEY": "embed-key"},  # as its docstring runs it
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await within(process.communicate(), "the example ended", 90)
        assert process.returncode == 0, err.decode()[-2000:]
        assert emulator.emulator.registry.counts()["stopped"] == 1
    lines = out.decode().splitlines()
    assert lines[0].startswith("user: (") and lines[1].startswith("avatar: I heard ")
    assert "keyword heard: 'seconds'" in err.decode()
    assert (tmp_path / "e.mp4").stat().st_size > 10_000


def without_pythonpath() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


async def test_status_line_says_state_speaker_latency_and_viewer(tmp_path: Path) -> None:
    from agent.commands.run import status_text
    from agent.pipeline.builder import build
    from agent.pipeline.loader import load_agent_file

    config = tmp_path / "s.yaml"
    config.write_text("heygen: {base_url: 'http://127.0.0.1:9', api_key: k-123456}\n"
                      "input: {type: none}\noutputs: [{type: viewer, port: 0}]\n")
    file, specs = load_agent_file(config)
    agent = build(file, specs, base_dir=tmp_path)
    assert agent.viewer is not None
    text = status_text(agent, started=0.0)
    assert text.startswith("session idle | listening | last answer latency - | ")
    # port 0 until the viewer listens: it showed http://127.0.0.1:0/ to open
    assert text.endswith("viewer starting")
    agent.viewer.port = 8123
    assert status_text(agent, started=0.0).endswith("viewer http://127.0.0.1:8123/")
    agent.transport.avatar_speaking = True
    agent.latency.latencies_s.append(0.42)
    assert "avatar speaking | last answer latency 420 ms" in status_text(agent, started=0.0)
    await agent.client.aclose()


def test_a_log_record_clears_the_status_line_before_it(
    capsys: pytest.CaptureFixture[str]
) -> None:
    """On a terminal, log records were glued to the end of the status line."""
    from agent.commands.run import _StatusAwareStderr

    log = _StatusAwareStderr()
    log.write("before any status\n")
    log.status_shown = True
    log.write("a record\n")
    assert capsys.readouterr().err == "before any status\n\r\x1b[2Ka record\n"


@pytest.mark.parametrize(("level", "livekit_level"), [("INFO", "ERROR"), ("DEBUG", "DEBUG")])
def test_livekit_native_warnings_stay_out_of_a_run_unless_debugging(
    level: str, livekit_level: str
) -> None:
    """The demo's log showed LiveKit's raw native lines (``native video stream queue
    overflow; dropped 1 queued frames``): frames the transport drops and counts itself."""
    import logging

    from agent.commands.run import configure_logging

    before = logging.getLogger("livekit").level
    try:
        configure_logging(level)
        assert logging.getLevelName(logging.getLogger("livekit").level) == livekit_level
    finally:
        logging.getLogger("livekit").setLevel(before)
        from loguru import logger

        logger.remove()
        logger.add(sys.stderr)  # loguru's own default, as other tests expect


async def test_run_exits_1_with_one_line_when_the_session_cannot_start(tmp_path: Path) -> None:
    async with EmulatorServer(EmulatorConfig(api_keys=frozenset({"right-key-123"}))) as server:
        config = tmp_path / "a.yaml"
        config.write_text(f"heygen: {{base_url: '{server.base_url}', api_key: wrong-key-123}}\n"
                          "input: {type: none}\noutputs: [{type: none}]\n")
        code, _, err = await heygen_agent("run", str(config), "--no-status")
    assert code == 1, err
    # one line, with HeyGen's status, code and message
    assert err.splitlines()[-1] == (
        "heygen-agent: the HeyGen session ended: start failed: /v1/streaming.create_token: "
        "HTTP 401, code 40009: Invalid credentials (if this is a LiveAvatar key, it works "
        "only with heygen.backend: liveavatar)")
    assert "wrong-key-123" not in err


@pytest.mark.parametrize("where", ["file", "option"])
async def test_run_refuses_a_missing_wav_before_connecting(where: str, tmp_path: Path) -> None:
    """One line naming the WAV (and, from a file, where it is set), exit 3, and nothing
    started: the emulator and LiveKit would otherwise be up before the WAV was opened."""
    missing = tmp_path / "question.wav"
    config = tmp_path / "a.yaml"
    if where == "file":
        config.write_text("heygen: {emulator: true}\ninput: {type: wav, path: question.wav}\n"
                          "outputs: [{type: none}]\n")
        args = ["run", str(config), "--no-status"]
        expected = f"{config}:2:26: input.path: {missing}: no such file"
    else:
        config.write_text("heygen: {emulator: true}\ninput: {type: microphone}\n"
                          "outputs: [{type: none}]\n")
        args = ["run", str(config), "--no-status", "--input-wav", str(missing)]
        expected = f"heygen-agent: --input-wav: {missing}: no such file"
    code, _, err = await heygen_agent(*args)
    assert code == 3, err
    assert err.splitlines() == [expected]


async def test_validate_takes_the_wav_that_run_would(tmp_path: Path) -> None:
    """The README's ``run config/record_headless.yaml --input-wav question.wav`` worked,
    but ``validate`` of the same file refused the file's own WAV and had no --input-wav."""
    wav, missing = tmp_path / "q.wav", tmp_path / "none.wav"
    speech_wav(wav, "Hello avatar")
    key = {"HEYGEN_API_KEY": "k-1234567"}  # the file takes it from the environment
    code, out, err = await heygen_agent("validate", "config/record_headless.yaml",
                                        "--input-wav", str(wav), env=key)
    assert code == 0 and "; input wav;" in out, err
    code, _, err = await heygen_agent("validate", "config/record_headless.yaml",
                                      "--input-wav", str(missing), env=key)
    assert code == 3 and err.splitlines() == [f"heygen-agent: --input-wav: {missing}: no such file"]


def test_ctrl_c_while_the_command_loads_is_an_exit_code_not_a_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The command modules (and Pipecat behind them) load inside main(): a Ctrl-C there
    is exit 130 and nothing printed."""
    from agent import cli

    def interrupted() -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "build_parser", interrupted)
    assert cli.main(["run", "x.yaml"]) == 130
    assert capsys.readouterr().err == ""
    loaded_at_top = {"account", "emulate", "run", "logger"} & set(vars(cli))
    assert not loaded_at_top, "nothing but the standard library at the CLI's top"


@pytest.mark.livekit
@pytest.mark.parametrize("backend", ["interactive", "liveavatar"])
async def test_own_brain_demo_yaml_runs_end_to_end(
    livekit_server: LiveKitServer, tmp_path: Path, backend: str
) -> None:
    """config/own_brain_demo.yaml as shipped (and with backend: liveavatar): offline STT,
    LLM and TTS, the avatar lip-syncing the TTS, the transcript showing both sides."""
    wav = tmp_path / "q.wav"
    speech_wav(wav, "Hello avatar, can you hear me?")
    text = (ROOT / "config" / "own_brain_demo.yaml").read_text()
    if backend == "liveavatar":
        start, end = text.index("  session:\n"), text.index("input:")
        text = text[:start].replace("heygen:\n", "heygen:\n  backend: liveavatar\n") + (
            "  liveavatar:\n    sandbox: true\n") + text[end:]
    (tmp_path / "config").mkdir()
    config = tmp_path / "config" / "own_brain_demo.yaml"
    config.write_text(text)
    transcript = tmp_path / "recordings" / "own-brain-transcript.jsonl"

    def lines() -> list[dict[str, str]]:
        raw = transcript.read_text().splitlines() if transcript.exists() else []
        return [json.loads(line) for line in raw]

    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "agent", "run", str(config), "--input-wav", str(wav),
        "--no-status", cwd=ROOT, env={**os.environ, "LIVEKIT_SERVER": livekit_server.binary},
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    await eventually(lambda: any(line["who"] == "avatar" for line in lines()),
                     "the own-brain avatar answered", 60)
    process.send_signal(signal.SIGINT)
    _, raw = await within(process.communicate(), "the run ended after Ctrl-C")
    err = raw.decode()
    assert process.returncode == 0 and "Traceback" not in err, err[-3000:]
    said = [(line["who"], line["text"]) for line in lines()]
    assert said[0][0] == "user" and said[0][1].endswith(" seconds of speech)"), said
    assert said[1] == ("avatar", "I heard you. I am a stand-in brain, so I know how long "
                                 "you spoke, not what you said."), said


@pytest.mark.livekit
@pytest.mark.parametrize("backend", ["interactive", "liveavatar"])
async def test_face_for_my_bot_example_runs_against_the_emulator(
    livekit_server: LiveKitServer, tmp_path: Path, backend: str
) -> None:
    """examples/face_for_my_bot.py exactly as its docstring runs it: the bot's own STT,
    LLM and TTS, HeyGen's avatar lip-syncing the TTS into the bot's own recorder."""
    wav = tmp_path / "q.wav"
    speech_wav(wav, "Hello, can you hear me?")
    env = {"HEYGEN_BASE_URL": "", "LIVEAVATAR_BASE_URL": "", "HEYGEN_API_KEY": "any",
           "LIVEAVATAR_API_KEY": "any-liveavatar-key"}
    async with EmulatorServer(EmulatorConfig(livekit=livekit_server.settings)) as emulator:
        env["HEYGEN_BASE_URL"] = env["LIVEAVATAR_BASE_URL"] = emulator.base_url
        flags = ["--liveavatar"] if backend == "liveavatar" else []
        process = await asyncio.create_subprocess_exec(
            sys.executable, "examples/face_for_my_bot.py", str(wav), str(tmp_path / "f.mp4"),
            *flags, cwd=ROOT, env={**without_pythonpath(), **env},
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await within(process.communicate(), "the example ended", 90)
        assert process.returncode == 0, err.decode()[-2000:]
        assert emulator.emulator.registry.counts()["open"] == 0
    lines = out.decode().splitlines()
    assert lines[0].startswith("user: (") and lines[0].endswith("seconds of speech)"), lines
    assert lines[1] == "avatar: I heard you, and I answer with my own brain.", lines
    with av.open(str(tmp_path / "f.mp4")) as container:
        assert container.streams.video and container.streams.audio, "the avatar's face and voice"


async def test_validate_check_key_says_which_api_a_refused_key_is_for(tmp_path: Path) -> None:
    async with EmulatorServer(EmulatorConfig()) as server:
        def write(backend: str, key: str) -> Path:
            section = ("  backend: liveavatar\n  liveavatar: {sandbox: true}\n"
                       if backend == "liveavatar" else "  session: {avatar_name: Anna}\n")
            path = tmp_path / f"{backend}.yaml"
            path.write_text(f"heygen:\n  base_url: {server.base_url}\n  api_key: {key}\n"
                            f"{section}input: {{type: none}}\noutputs: [{{type: none}}]\n")
            return path

        code, out, _ = await heygen_agent("validate", "--check-key",
                                          str(write("liveavatar", "la-key-0001")))
        assert code == 0 and "liveavatar key: accepted" in out
        # a HeyGen key where LiveAvatar's is needed
        code, _, err = await heygen_agent("validate", "--check-key",
                                          str(write("liveavatar", "emulator-key")))
        assert code == 1 and len(err.strip().splitlines()) == 1
        assert "HeyGen API key" in err and "LIVEAVATAR_API_KEY" in err
        # the reverse: the LiveAvatar key (from LIVEAVATAR_API_KEY) in an Interactive file
        la_key = "emulator-liveavatar-key"  # the emulator knows it for a LiveAvatar key
        code, _, err = await heygen_agent(
            "validate", "--check-key", str(write("interactive", la_key)),
            env={"LIVEAVATAR_API_KEY": la_key})
        assert code == 1 and "this is the key in LIVEAVATAR_API_KEY" in err
        assert "heygen.backend: liveavatar" in err and la_key not in err


async def test_validate_says_what_a_liveavatar_file_lacks(tmp_path: Path) -> None:
    """What would fail or fall silent only once billed is said by ``validate``: an avatar
    the sandbox does not allow is an error (on its line); a FULL session outside the
    sandbox with no context (its avatar does not answer), and LITE with nothing to say
    (no brain's TTS), are one warning line each. A complete file says nothing more."""

    def write(name: str, liveavatar: str, rest: str = "") -> str:
        path = tmp_path / f"{name}.yaml"
        path.write_text(f"heygen:\n  backend: liveavatar\n  liveavatar:\n{liveavatar}"
                        f"input: {{type: none}}\noutputs: [{{type: none}}]\n{rest}")
        return str(path)

    def warnings(err: str) -> list[str]:
        return [line for line in err.splitlines() if "WARNING" in line]

    code, _, err = await heygen_agent("validate", write(
        "sandbox", "    sandbox: true\n    avatar_id: some-other-avatar\n"))
    assert code == 3 and len(err.strip().splitlines()) == 1, err
    assert "sandbox.yaml:5:" in err and "heygen.liveavatar.avatar_id" in err
    assert la.SANDBOX_AVATAR_ID in err, "it says which avatar the sandbox takes"

    code, _, err = await heygen_agent("validate", write(
        "full", "    mode: full\n    avatar_id: my-avatar\n"))
    assert code == 0 and len(warnings(err)) == 1, err
    assert "heygen.liveavatar.context_id" in err and "does not answer" in err

    code, _, err = await heygen_agent("validate",
                                      write("lite", "    mode: lite\n    sandbox: true\n"))
    assert code == 0 and len(warnings(err)) == 1, err
    assert "nothing will make the avatar speak" in err

    complete = write("complete", "    mode: full\n    avatar_id: my-avatar\n"
                                 "    context_id: my-context\n")
    for path in (complete, "config/liveavatar_full.yaml", "config/liveavatar_lite.yaml"):
        code, _, err = await heygen_agent("validate", path)
        assert code == 0 and not warnings(err), (path, err)


def test_every_option_and_argument_says_what_it_is() -> None:
    """``--help`` explains every option and positional argument of every command (``bench
    --decode`` and ``sessions``' ``stop ID`` said nothing)."""
    import argparse

    from agent.cli import build_parser

    [commands] = [a for a in build_parser()._actions
                  if isinstance(a, argparse._SubParsersAction)]
    silent = [(name, action.dest) for name, parser in commands.choices.items()
              for action in parser._actions if not action.help]
    assert silent == []


def test_json_of_an_empty_listing_is_an_empty_list() -> None:
    """``--json`` of nothing is ``[]`` (it printed nothing, which no JSON reader takes)."""
    from agent.commands.catalogue import Table, render

    assert render(Table("avatars", ["AVATAR ID", "NAME"]), as_json=True) == "[]"
    assert render(Table("avatars", ["AVATAR ID"], [["a"]]), as_json=True) == '{"avatar_id": "a"}'


async def test_a_refused_heygen_key_hints_at_liveavatar_only_as_a_possibility() -> None:
    """A key the Interactive API refuses may be a LiveAvatar key, or just a wrong one: the
    hint says 'if', not that it is one."""
    config = EmulatorConfig(api_keys=frozenset({"acct-key-123"}))
    async with EmulatorServer(config) as server:
        code, _, err = await heygen_agent("avatars", "--api-key", "wrong-key-000",
                                          "--base-url", server.base_url)
    assert code == 1 and len(err.strip().splitlines()) == 1, err
    assert "if this is a LiveAvatar key" in err, err


async def test_sessions_stop_id_with_liveavatar_uses_the_recorded_token() -> None:
    """LiveAvatar stops a session only with its own token: ``sessions stop ID --backend
    liveavatar`` stops one this machine's record holds the token of; an id it does not
    hold is one line that says so (and where it would end)."""
    from agent.heygen.ledger import SessionLedger

    async with EmulatorServer(EmulatorConfig()) as server, api.LiveAvatarClient(
            "la-stop-key-1", base_url=server.base_url) as client:
        token = await client.create_session_token(
            la.TokenRequest(mode=la.Mode.LITE, avatar_id=la.SANDBOX_AVATAR_ID, is_sandbox=True))
        SessionLedger().add(token.session_id, client.base_url, client.key_fingerprint,
                            token.session_token.get_secret_value())
        cli = ("--backend", "liveavatar", "--base-url", server.base_url,
               "--api-key", "la-stop-key-1")
        code, out, err = await heygen_agent("sessions", "stop", token.session_id, *cli)
        assert code == 0 and out.strip() == f"stopped {token.session_id}", (out, err)
        assert server.emulator.registry.counts()["open"] == 0
        assert SessionLedger().records() == []
        code, out, err = await heygen_agent("sessions", "stop", "not-recorded-here", *cli)
    assert code == 1 and len(err.strip().splitlines()) == 1, err
    assert "not-recorded-here" in err and "token" in err


async def test_a_key_pasted_as_the_base_url_host_is_never_echoed(
    tmp_path: Path, state_dir: Path
) -> None:
    """``https://<key>`` passes the file's check (it is a well-formed URL); every call
    then fails to connect, and the retry warnings and the last line named the host: the
    key, lowercased. A host is echoed only when it looks like one."""
    pasted = "sk-REALLOOKINGKEY123456abcdef"
    config = tmp_path / "pasted.yaml"
    config.write_text(f"heygen: {{base_url: 'https://{pasted}', api_key: k-123456}}\n"
                      "input: {type: none}\noutputs: [{type: none}]\nvad: null\n"
                      "logging: {level: TRACE}\n")
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "agent", "run", str(config), "--no-status", cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    raw, _ = await within(process.communicate(), "the run ended", 60)
    out = raw.decode()
    assert process.returncode == 1, out[-3000:]
    assert "retry 1" in out and "the base_url's host" in out, out[-3000:]
    assert pasted.lower() not in out.lower(), out[-3000:]
    assert "cannot connect to the base_url's host" in out.splitlines()[-1], out[-3000:]


BLOCKS_THE_LOOP = '''
import asyncio
import time

from pipecat.frames.frames import Frame, StartFrame, SystemFrame
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor


class Block(SystemFrame):
    pass


class BlocksTheLoop(FrameProcessor):
    """Once the pipeline has started, its process_frame sleeps 120 s: the loop stops."""

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, Block):
            print("blocking the loop", flush=True)
            time.sleep(120)
        await self.push_frame(frame, direction)
        if isinstance(frame, StartFrame):
            self._later = asyncio.create_task(self.queue_frame(Block()))
'''


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _command(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return ""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


async def test_a_blocked_loop_with_emulator_true_leaves_no_livekit_server(
    tmp_path: Path, livekit_server: LiveKitServer, state_dir: Path
) -> None:
    """The watchdog that ends a run whose loop a processor blocks also kills the LiveKit
    server the run started (``emulator: true``): it outlived the run (SIGKILL orphaned it)."""
    (tmp_path / "blocking.py").write_text(BLOCKS_THE_LOOP)
    config = tmp_path / "blocked.yaml"
    config.write_text("heygen: {emulator: true}\ninput: {type: none}\noutputs: [{type: none}]\n"
                      "vad: null\nprocessors: [blocking:BlocksTheLoop]\n")
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "agent", "run", str(config), "--no-status", cwd=tmp_path,
        env={**os.environ, "LIVEKIT_SERVER": livekit_server.binary,
             "PYTHONPATH": f"{ROOT}:{tmp_path}"},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    assert process.stdout is not None
    seen = await read_until(process.stdout, "blocking the loop")
    servers = [pid for pid in _children(process.pid) if "livekit" in _command(pid)]
    assert servers, "the run started its LiveKit server"
    process.send_signal(signal.SIGTERM)
    rest, _ = await within(process.communicate(), "the run ended after SIGTERM", 30)
    out = seen + rest.decode(errors="replace")
    assert process.returncode == 143, out[-3000:]
    assert "stopped at once: the event loop did not answer SIGTERM" in out, out[-3000:]
    await eventually(lambda: not any(_alive(pid) for pid in servers),
                     "the run's LiveKit server ended with it", 10)
