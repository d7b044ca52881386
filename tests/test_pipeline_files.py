"""Pipeline files: broken ones give one actionable line per problem, never a traceback;
every file in config/ is valid."""

from __future__ import annotations

import os
import re
import struct
import subprocess
import sys
import time
import wave
from collections.abc import Callable
from pathlib import Path

import pytest

from agent.pipeline.errors import ConfigError
from agent.pipeline.loader import load_agent_file, load_pipeline_file
from agent.pipeline.schema import WavInput

ROOT = Path(__file__).resolve().parents[1]
OK_HEAD = "heygen:\n  session:\n    avatar_name: Anna\n"

BROKEN = [
    ("unclosed-bracket", "heygen: {session: [\n", ["2:1: not valid YAML: expected the node content, but found '<stream end>'"]),
    ("tab-indent", "heygen:\n\tsession: {}\n", ["2:1: not valid YAML: found character '\\t' that cannot start any token"]),
    ("empty", "", ["1:1: the file is empty; it needs at least a 'heygen' section"]),
    ("only-comment", "# nothing\n", ["1:1: the file is empty; it needs at least a 'heygen' section"]),
    ("top-level-list", "- heygen\n", ["1:1: the top level must be a mapping of sections (heygen, input, outputs...)"]),
    ("unknown-top-level", OK_HEAD + "ouputs: []\n", ["4:1: ouputs: unknown key; did you mean 'outputs'?"]),
    ("unknown-nested", "heygen:\n  sesion: {}\n", ["2:3: heygen.sesion: unknown key; did you mean 'session'?"]),
    ("unknown-deep", OK_HEAD + "    voice:\n      voice_idd: x\n", ["5:7: heygen.session.voice.voice_idd: unknown key; did you mean 'voice_id'?"]),
    ("unknown-no-close-match", OK_HEAD + "zzz: 1\n", ["4:1: zzz: unknown key; expected one of: version, heygen, input, vad, processors, brain, outputs, video, logging"]),
    ("bad-enum", "heygen:\n  session:\n    quality: ultra\n", ["3:14: heygen.session.quality: expected 'low', 'medium' or 'high'"]),
    ("bad-literal", OK_HEAD + "logging:\n  level: LOUD\n", ["5:10: logging.level: expected 'TRACE', 'DEBUG', 'INFO', 'WARNING' or 'ERROR'"]),
    ("wrong-type", OK_HEAD + "vad:\n  confidence: high\n", ["5:15: vad.confidence: Input should be a valid number, unable to parse string as a number"]),
    ("out-of-range-vad", OK_HEAD + "vad:\n  confidence: 1.5\n", ["5:15: vad.confidence: Input should be less than or equal to 1"]),
    ("out-of-range-idle", "heygen:\n  session:\n    activity_idle_timeout: 5\n", ["3:28: heygen.session.activity_idle_timeout: Input should be greater than or equal to 30"]),
    ("list-for-mapping", "heygen:\n  - session\n", ["2:3: heygen: Input should be a valid dictionary or instance of HeyGenSection"]),
    ("missing-required", OK_HEAD + "input:\n  type: wav\n", ["4:1: input.path: required key is missing"]),
    ("bad-discriminator", OK_HEAD + "input:\n  type: webcam\n", ["5:3: input: 'type' must be one of 'microphone', 'wav', 'none'"]),
    ("bad-output-type", OK_HEAD + "outputs:\n  - type: screen\n", ["5:5: outputs[0]: 'type' must be one of 'speaker', 'viewer', 'recorder', 'none'"]),
    ("chunk-size", "heygen:\n  session:\n    voice_chat_chunk_samples: 100\n", ["3:31: heygen.session.voice_chat_chunk_samples: Input should be greater than or equal to 160"]),
    ("output-port", OK_HEAD + "outputs:\n  - type: viewer\n    port: 70000\n", ["6:11: outputs[0].port: Input should be less than or equal to 65535"]),
    ("unknown-processor", OK_HEAD + "processors:\n  - latency_prob\n", ["5:5: processors[0].name: unknown processor 'latency_prob' (use a built-in name or module:Class); did you mean 'latency_probe'?"]),
    ("processor-not-importable", OK_HEAD + "processors:\n  - nowhere.at.all:Thing\n", ["5:5: processors[0].name: cannot import 'nowhere.at.all' for 'nowhere.at.all:Thing': No module named 'nowhere'"]),
    ("processor-bad-arg", OK_HEAD + "processors:\n  - name: transcript_logger\n    args:\n      pth: x.jsonl\n", ["7:7: processors[0].args.pth: unknown argument for transcript_logger; did you mean 'path'?"]),
    ("processor-arg-type", OK_HEAD + "processors:\n  - name: latency_probe\n    args: {log: maybe}\n", ["6:12: processors[0].args.log: Input should be a valid boolean, unable to interpret input"]),
    ("processor-entry-malformed", OK_HEAD + "processors:\n  - {args: {}}\n", ["5:5: processors[0].name: required key is missing"]),
    ("missing-env", "heygen:\n  api_key: ${HEYGEN_TEST_UNSET_VAR}\n", ["2:12: heygen.api_key: environment variable HEYGEN_TEST_UNSET_VAR is not set"]),
    ("missing-env-required", "heygen:\n  backend: liveavatar\n  liveavatar:\n    avatar_id: ${HEYGEN_TEST_UNSET_VAR}\n", ["4:16: heygen.liveavatar.avatar_id: environment variable HEYGEN_TEST_UNSET_VAR is not set"]),
    ("bad-version", "version: 2\n" + OK_HEAD, ["1:10: version: expected 1"]),
    ("duplicate-key", "heygen:\n  session:\n    quality: low\n    quality: high\n", ["4:5: heygen.session.quality: duplicate key; already set on line 3"]),
    ("liveavatar-needs-avatar", "heygen:\n  backend: liveavatar\n  liveavatar:\n    mode: full\n", ["4:5: heygen.liveavatar: avatar_id is required outside the sandbox (sandbox: true uses the sandbox avatar)"]),
    ("liveavatar-section-without-backend", "heygen:\n  liveavatar:\n    sandbox: true\n", ["2:3: heygen: a 'liveavatar:' section needs 'backend: liveavatar'"]),
    ("interactive-session-with-liveavatar", "heygen:\n  backend: liveavatar\n  session:\n    quality: low\n", ["2:3: heygen: 'session:' is the interactive backend's; with 'backend: liveavatar' write 'liveavatar:'"]),
    ("unknown-backend", "heygen:\n  backend: livavatar\n", ["2:12: heygen.backend: expected 'interactive' or 'liveavatar'"]),
    ("liveavatar-mode", "heygen:\n  backend: liveavatar\n  liveavatar:\n    mode: half\n    sandbox: true\n", ["4:11: heygen.liveavatar.mode: expected 'full' or 'lite'"]),
    ("brain-tts-as-llm", OK_HEAD + "brain:\n  stt: speech_length_stt\n  llm:\n    name: pipecat.services.cartesia.tts:CartesiaTTSService\n    args: {api_key: k}\n", ["7:11: brain.llm.name: CartesiaTTSService is a TTSService, not an LLMService: the brain's llm must be one"]),
    ("brain-stt-as-tts", OK_HEAD + "brain:\n  stt: speech_length_stt\n  llm: scripted_llm\n  tts: speech_length_stt\n", ["7:8: brain.tts.name: SpeechLengthSTTService is an STTService, not a TTSService: the brain's tts must be one"]),
    ("brain-processor-as-stt", OK_HEAD + "brain:\n  stt: latency_probe\n  llm: scripted_llm\n", ["5:8: brain.stt.name: LatencyProbe is no Pipecat service, not an STTService: the brain's stt must be one"]),
    ("two-problems", "heygen:\n  session:\n    quality: ultra\nvad:\n  stop_secs: -1\n", [
        "3:14: heygen.session.quality: expected 'low', 'medium' or 'high'",
        "5:14: vad.stop_secs: Input should be greater than or equal to 0"]),
]


@pytest.mark.parametrize("case,text,expected", BROKEN, ids=[c[0] for c in BROKEN])
def test_broken_files(case: str, text: str, expected: list[str], tmp_path: Path,
                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HEYGEN_TEST_UNSET_VAR", raising=False)
    path = tmp_path / f"{case}.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_agent_file(path)
    assert str(caught.value).splitlines() == [f"{path}:{line}" for line in expected]


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.yaml:1:1: no such file"):
        load_pipeline_file(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="is a directory"):
        load_pipeline_file(tmp_path)


def test_minimal_file_has_sensible_defaults(tmp_path: Path) -> None:
    path = tmp_path / "min.yaml"
    path.write_text(OK_HEAD)
    file = load_pipeline_file(path)
    assert file.heygen.session.avatar_name == "Anna"
    assert file.input.type == "microphone" and file.vad is not None
    assert [o.type for o in file.outputs] == ["speaker"]
    assert file.heygen.api_key is None and file.heygen.base_url is None


def test_the_backend_switch_chooses_the_session(tmp_path: Path) -> None:
    """The same file shape opens either API; the options carry the choice down."""
    from agent.heygen.liveavatar import LiveAvatarOptions
    from agent.heygen.protocol.liveavatar import rest as la
    from agent.heygen.session import SessionOptions

    path = tmp_path / "la.yaml"
    path.write_text("heygen:\n  backend: liveavatar\n  liveavatar:\n    mode: lite\n"
                    "    avatar_id: a1\n    context_id: c1\n    stop_deadline_s: 5\n")
    options = load_pipeline_file(path).heygen.session_options()
    assert isinstance(options, LiveAvatarOptions) and not options.full
    assert options.request.mode == la.Mode.LITE and options.request.avatar_id == "a1"
    assert options.request.avatar_persona is not None
    assert options.request.avatar_persona.context_id == "c1"
    assert options.stop_deadline_s == 5
    path.write_text(OK_HEAD)
    interactive = load_pipeline_file(path).heygen.session_options()
    assert isinstance(interactive, SessionOptions)
    assert interactive.request.avatar_name == "Anna"
    assert not interactive.livekit_during_start and interactive.voice_chat_chunk_samples == 512
    path.write_text("heygen:\n  session:\n    livekit_during_start: true\n"
                    "    voice_chat_chunk_samples: 320\n")
    opted = load_pipeline_file(path).heygen.session_options()
    assert isinstance(opted, SessionOptions)
    assert opted.livekit_during_start and opted.voice_chat_chunk_samples == 320


def test_interpolation_and_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_AVATAR", "Wayne")
    monkeypatch.delenv("TEST_WAV", raising=False)
    path = tmp_path / "env.yaml"
    path.write_text("heygen:\n  session:\n    avatar_name: ${TEST_AVATAR}-v2\n"
                    "input:\n  type: wav\n  path: ${TEST_WAV:-question.wav}\n")
    file = load_pipeline_file(path)
    assert file.heygen.session.avatar_name == "Wayne-v2"
    assert isinstance(file.input, WavInput) and file.input.path == "question.wav"


def test_no_secret_is_echoed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "sk-VERY-SECRET-0123456789"
    monkeypatch.setenv("TEST_SECRET_KEY", secret)
    path = tmp_path / "secret.yaml"
    path.write_text(f"heygen:\n  api_key: ${{TEST_SECRET_KEY}}\n  session:\n"
                    f"    avatar_name: {{nested: {secret}}}\n    voice: ${{TEST_SECRET_KEY}}\n"
                    f"logging:\n  level: {secret}\n")
    with pytest.raises(ConfigError) as caught:
        load_pipeline_file(path)
    assert len(caught.value.problems) == 3
    assert secret not in str(caught.value)
    loaded = tmp_path / "ok.yaml"
    loaded.write_text("heygen:\n  api_key: ${TEST_SECRET_KEY}\n")
    file = load_pipeline_file(loaded)
    assert secret not in repr(file) and secret not in str(file)
    assert file.heygen.api_key is not None and file.heygen.api_key.get_secret_value() == secret


@pytest.mark.parametrize("config", sorted((ROOT / "config").glob("*.yaml")),
                         ids=lambda p: p.name)
def test_every_shipped_config_is_valid(config: Path, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEYGEN_API_KEY", "test-key-0000000")
    for name in ("LIVEAVATAR_API_KEY", "LIVEAVATAR_AVATAR_ID", "OPENAI_API_KEY",
                 "CARTESIA_API_KEY", "CARTESIA_VOICE_ID"):  # own_brain.yaml's: checked, not used
        monkeypatch.setenv(name, f"test-{name.lower()}")
    question = tmp_path / "question.wav"
    write_wav(question, sample_width=2)
    monkeypatch.setenv("INPUT_WAV", str(question))  # record_headless.yaml plays it
    file, _ = load_agent_file(config)
    request = file.heygen.session_options().request  # whichever backend: it names an avatar
    assert getattr(request, "avatar_name", None) or getattr(request, "avatar_id", None)


def test_the_own_brain_example_gives_its_tts_a_voice(monkeypatch: pytest.MonkeyPatch) -> None:
    """Cartesia has no default voice: without one the shipped file validates, and the
    first sentence fails at Cartesia. The voice goes in Pipecat's current way (its
    ``voice_id`` argument is deprecated)."""
    for name in ("LIVEAVATAR_API_KEY", "LIVEAVATAR_AVATAR_ID", "OPENAI_API_KEY",
                 "CARTESIA_API_KEY"):
        monkeypatch.setenv(name, "test-value")
    monkeypatch.setenv("CARTESIA_VOICE_ID", "test-voice-id")
    _, specs = load_agent_file(ROOT / "config" / "own_brain.yaml")
    [tts] = [s for s in specs if s.role == "tts"]
    assert tts.build()._settings.voice == "test-voice-id"  # type: ignore[attr-defined]


def test_the_readmes_own_brain_snippet_is_a_valid_brain(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """The README's ``brain:`` example, pasted into a file as a reader would, validates."""
    [snippet] = re.findall(r"```yaml\n(brain:\n.*?)```", (ROOT / "README.md").read_text(),
                           re.DOTALL)
    for name in ("OPENAI_API_KEY", "CARTESIA_API_KEY", "CARTESIA_VOICE_ID"):
        monkeypatch.setenv(name, "test-value")
    path = tmp_path / "readme.yaml"
    path.write_text(OK_HEAD + snippet)
    _, specs = load_agent_file(path)
    assert {s.role for s in specs} == {"stt", "llm", "tts"}


def write_wav(path: Path, *, sample_width: int) -> None:
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(sample_width)
        wav.setframerate(16000)
        wav.writeframes(bytes(1600 * sample_width))


def write_float_wav(path: Path) -> None:
    """32-bit float samples (WAV format 3), as many recorders save them."""
    data = bytes(1600 * 4)
    fmt = struct.pack("<HHIIHH", 3, 1, 16000, 16000 * 4, 4, 32)
    path.write_bytes(b"RIFF" + struct.pack("<I", 4 + 8 + len(fmt) + 8 + len(data)) + b"WAVE"
                     + b"fmt " + struct.pack("<I", len(fmt)) + fmt
                     + b"data" + struct.pack("<I", len(data)) + data)


WAV_CASES = [
    ("missing", lambda p: None, "no such file"),
    ("text", lambda p: p.write_text("not audio"),
     "not a readable WAV file (file does not start with RIFF id)"),
    ("8-bit", lambda p: write_wav(p, sample_width=1), "16-bit PCM expected, got 8-bit"),
    # it said "not a readable WAV file (unknown format: 3)"
    ("float", write_float_wav, "16-bit PCM expected, got floating-point samples (WAV format "
     "3); sox q.wav -b 16 -e signed-integer q16.wav converts it"),
    ("directory", lambda p: p.mkdir(), "is a directory, not a WAV file"),
]


@pytest.mark.parametrize("case,make,message", WAV_CASES, ids=[c[0] for c in WAV_CASES])
def test_wav_input_must_be_playable(case: str, make: Callable[[Path], object], message: str,
                                   tmp_path: Path) -> None:
    """Found when the file is loaded, with where it is set, not as a traceback once the
    session is already up."""
    wav = tmp_path / "sub" / "q.wav"
    wav.parent.mkdir()
    make(wav)
    path = tmp_path / "a.yaml"
    path.write_text(OK_HEAD + "input:\n  type: wav\n  path: sub/q.wav\n")
    with pytest.raises(ConfigError) as caught:
        load_agent_file(path)
    assert str(caught.value) == f"{path}:6:9: input.path: {wav}: {message}"
    load_pipeline_file(path)  # the shape alone is fine
    load_agent_file(path, check_input=False)  # run --input-wav replaces the input


def test_wav_input_is_relative_to_the_file_not_the_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_wav(tmp_path / "q.wav", sample_width=2)
    path = tmp_path / "a.yaml"
    path.write_text(OK_HEAD + "input:\n  type: wav\n  path: q.wav\n")
    monkeypatch.chdir(ROOT)
    file, _ = load_agent_file(path)
    assert isinstance(file.input, WavInput) and file.input.path == "q.wav"


def test_validate_command_prints_one_line_per_problem_and_no_traceback(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(BROKEN[-1][1])
    result = subprocess.run([sys.executable, "-m", "agent", "validate", str(path)],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 3
    assert "Traceback" not in result.stderr
    assert [line for line in result.stderr.splitlines() if line.startswith(str(path))] == [
        f"{path}:{line}" for line in BROKEN[-1][2]]


# ---------------------------------------------------------------- input that is not a pipeline file


def test_a_file_with_control_characters_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "nul.yaml"
    path.write_bytes(b"heygen: {}\x00\n")
    with pytest.raises(ConfigError) as caught:
        load_agent_file(path)
    assert str(caught.value).splitlines() == [
        f"{path}:1:11: not valid YAML: unacceptable character #x0000: "
        "special characters are not allowed"]


def test_aliases_that_expand_without_bound_are_refused_at_once(tmp_path: Path) -> None:
    """A "billion laughs" file: nine aliases of nine, seven deep (4.8 million values)."""
    lines = ['a0: &a0 ["x","x","x","x","x","x","x","x","x"]']
    lines += [f"a{i}: &a{i} [{','.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 7)]
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(lines) + "\nheygen: {}\n")
    started = time.monotonic()
    with pytest.raises(ConfigError) as caught:
        load_agent_file(path)
    assert time.monotonic() - started < 1.0
    (line,) = str(caught.value).splitlines()
    assert line.startswith(f"{path}:") and "aliases" in line


@pytest.mark.parametrize("base_url", [
    "sk-live-0123456789abcdef", "api.heygen.com", "ftp://x.y",
    # these passed, then failed at run time (HTTP 405: the paths went after the query)
    "http://127.0.0.1:8700/?token=sk-live-0123", "https://sk-live-0123@api.heygen.com",
    "https://api.heygen.com/#sk-live-0123"])
def test_base_url_is_checked_and_never_echoed(tmp_path: Path, base_url: str) -> None:
    path = tmp_path / "u.yaml"
    path.write_text(f"heygen:\n  base_url: {base_url}\n")
    with pytest.raises(ConfigError) as caught:
        load_agent_file(path)
    assert str(caught.value).splitlines() == [
        f"{path}:2:13: heygen.base_url: expected an http:// or https:// URL with no user, "
        "query or fragment"]
    assert base_url not in str(caught.value) and "sk-live" not in str(caught.value)


def test_a_missing_wav_is_reported_with_the_other_problems(tmp_path: Path) -> None:
    path = tmp_path / "w.yaml"
    path.write_text("heygen:\n  session: {quality: ultra}\ninput: {type: wav, path: gone.wav}\n")
    with pytest.raises(ConfigError) as caught:
        load_agent_file(path)
    assert [line.split(": ")[1] for line in str(caught.value).splitlines()] == [
        "heygen.session.quality", "input.path"]


PROCESSORS = '''
from pipecat.frames.frames import Frame
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor


class Simple(FrameProcessor):
    """The simplest processor a user writes: no __init__ of its own."""

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        await self.push_frame(frame, direction)


class Broken(FrameProcessor):
    def __init__(self, level: int = 1) -> None:
        raise RuntimeError(f"cannot start at level {level}")
'''


@pytest.fixture
def user_modules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "my_processors.py").write_text(PROCESSORS)
    (tmp_path / "raises_on_import.py").write_text("import os\nvalue = 1 / 0\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_a_processor_without_its_own_init_loads_and_builds(user_modules: Path) -> None:
    path = user_modules / "simple.yaml"
    path.write_text(OK_HEAD + "processors:\n  - my_processors:Simple\n")
    _, (processor,) = load_agent_file(path)
    assert processor.build().__class__.__name__ == "Simple"


def test_a_processor_module_that_raises_on_import_is_one_line(user_modules: Path) -> None:
    path = user_modules / "p.yaml"
    path.write_text(OK_HEAD + "processors:\n  - raises_on_import:Thing\n")
    with pytest.raises(ConfigError) as caught:
        load_agent_file(path)
    assert str(caught.value).splitlines() == [
        f"{path}:5:5: processors[0].name: importing 'raises_on_import' for "
        "'raises_on_import:Thing' failed: ZeroDivisionError: division by zero "
        "(raises_on_import.py:2)"]


@pytest.mark.parametrize("command", ["validate", "run"])
def test_a_processor_whose_constructor_raises_is_one_line(user_modules: Path, command: str) -> None:
    """``validate`` builds each processor (connecting nothing); ``run`` stops before it
    connects. Both: one line naming the entry, exit 3."""
    path = user_modules / "p.yaml"
    path.write_text("heygen: {base_url: 'http://127.0.0.1:9', api_key: k-123456}\n"
                    "input: {type: none}\noutputs: [{type: none}]\n"
                    "processors:\n  - name: my_processors:Broken\n    args: {level: 3}\n")
    args = [command, str(path)] + (["--no-status"] if command == "run" else [])
    done = subprocess.run([sys.executable, "-m", "agent", *args], capture_output=True, text=True,
                          cwd=user_modules, env={**os.environ, "PYTHONPATH": f"{ROOT}:{user_modules}"},
                          timeout=60)
    assert done.returncode == 3, done.stderr
    assert done.stderr.splitlines() == [
        f"{path}:5:11: processors[0].name: my_processors:Broken() failed: "
        "RuntimeError: cannot start at level 3"]
