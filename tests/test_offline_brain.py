"""The offline brain in real Pipecat pipelines: a transcription in, a scripted answer
through the universal context aggregators, espeak-ng speech out, no key and no network."""

from __future__ import annotations

import asyncio
import stat
from collections.abc import Sequence
from pathlib import Path
from typing import TypeVar

import numpy as np
import pytest
from pipecat.frames.frames import (
    ErrorFrame,
    Frame,
    InterruptionFrame,
    LLMContextAssistantTurnFrame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    LLMTextFrame,
    StartFrame,
    TranscriptionFrame,
    TTSAudioRawFrame,
    TTSSpeakFrame,
    TTSStartedFrame,
    TTSStoppedFrame,
    TTSTextFrame,
    TTSUpdateSettingsFrame,
)
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.processors.aggregators.llm_response_universal import (
    LLMContextAggregatorPair,
    LLMUserAggregatorParams,
)
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.turns.user_start import TranscriptionUserTurnStartStrategy
from pipecat.turns.user_stop import SpeechTimeoutUserTurnStopStrategy
from pipecat.turns.user_turn_strategies import UserTurnStrategies

from agent.brains import (
    EspeakTTSService,
    EspeakTTSSettings,
    ScriptedLLMService,
    SpeechLengthSTTService,
)
from agent.brains.espeak_tts import CHUNK_S
from agent.brains.scripted_llm import tokens
from agent.media import espeak
from tests.machine import require
from tests.pipeline_helpers import Collector, run_until
from tests.waiting import eventually

#: espeak-ng at its default rate says a sentence in about 0.06-0.08 s a character.
PER_CHARACTER_S = (0.045, 0.12)

F = TypeVar("F", bound=Frame)

ANSWERS = {"weather": "It is sunny today. Anything else?", "your name": "I am Anna."}


@pytest.fixture(autouse=True)
def espeak_installed() -> None:
    require("espeak-ng", espeak.INSTALL_HINT)


class Script(FrameProcessor):
    """First in the pipeline, as an input or an STT would be: once the pipeline starts it
    pushes ``frames`` downstream; it keeps the errors that come back upstream."""

    def __init__(self, frames: Sequence[Frame]) -> None:
        super().__init__(name="script")
        self.frames = list(frames)
        self.errors: list[ErrorFrame] = []
        self.errored = asyncio.Event()

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, ErrorFrame) and direction is FrameDirection.UPSTREAM:
            self.errors.append(frame)
            self.errored.set()
            return
        await self.push_frame(frame, direction)
        if isinstance(frame, StartFrame):
            for scripted in self.frames:
                await self.push_frame(scripted)


def heard(text: str) -> TranscriptionFrame:
    return TranscriptionFrame(text, user_id="user", timestamp="2026-01-01T00:00:00Z",
                              finalized=True)


def aggregators(context: LLMContext) -> LLMContextAggregatorPair:
    """The pair as a bot without local VAD has it: a transcript starts the user's turn,
    and a short quiet after it ends the turn."""
    strategies = UserTurnStrategies(start=[TranscriptionUserTurnStartStrategy()],
                                    stop=[SpeechTimeoutUserTurnStopStrategy(
                                        user_speech_timeout=0.1)])
    return LLMContextAggregatorPair(
        context, user_params=LLMUserAggregatorParams(user_turn_strategies=strategies))


def caught(collector: Collector, kind: type[F]) -> list[F]:
    return [f for _, f in collector.frames if isinstance(f, kind)]


def audio(collector: Collector) -> tuple[np.ndarray, int]:
    chunks = caught(collector, TTSAudioRawFrame)
    assert chunks, "some audio"
    rates = {f.sample_rate for f in chunks}
    assert len(rates) == 1 and {f.num_channels for f in chunks} == {1}
    return np.frombuffer(b"".join(f.audio for f in chunks), "<i2"), rates.pop()


def assert_speech(samples: np.ndarray, rate: int, text: str) -> None:
    seconds = len(samples) / rate
    low, high = PER_CHARACTER_S
    assert low * len(text) < seconds < high * len(text), f"{seconds:.2f} s for {text!r}"
    assert np.abs(samples).max() > 3000, "a voice, not silence"
    assert np.sqrt(np.mean(samples.astype(np.float64) ** 2)) > 300


@pytest.mark.parametrize(("asked", "rate"), [(16000, 16000), (None, 24000)],
                         ids=["16kHz-asked", "24kHz-pipeline"])
async def test_speak_frame_becomes_speech_at_the_output_rate(asked: int | None,
                                                             rate: int) -> None:
    text = "The weather is fine today, thank you for asking."
    tts, out = EspeakTTSService(sample_rate=asked), Collector()
    await run_until([Script([TTSSpeakFrame(text)]), tts, out],
                    out.until(lambda: out.count(TTSStoppedFrame) >= 1), "the text was said")

    samples, got = audio(out)
    assert got == rate == tts.sample_rate
    assert_speech(samples, rate, text)
    chunk = int(rate * CHUNK_S) * 2
    sizes = [len(f.audio) for f in caught(out, TTSAudioRawFrame)]
    assert all(size == chunk for size in sizes[:-1]) and 0 < sizes[-1] <= chunk
    kinds = [type(f) for f in out.of(TTSStartedFrame, TTSAudioRawFrame, TTSStoppedFrame)]
    assert kinds[0] is TTSStartedFrame and kinds[-1] is TTSStoppedFrame
    assert [f.text for f in caught(out, TTSTextFrame)] == [text]


async def test_a_settings_update_changes_the_next_utterance() -> None:
    text = "One two three four five six seven eight nine ten."
    faster = TTSUpdateSettingsFrame(delta=EspeakTTSSettings(speed=2.0, voice="en-us"))
    out = Collector()
    await run_until([Script([TTSSpeakFrame(text), faster, TTSSpeakFrame(text)]),
                     EspeakTTSService(), out],
                    out.until(lambda: out.count(TTSStoppedFrame) >= 2), "both were said")

    contexts = [f.context_id for f in caught(out, TTSStartedFrame)]
    first, second = (sum(len(f.audio) for f in caught(out, TTSAudioRawFrame)
                         if f.context_id == context) for context in contexts)
    assert second < 0.7 * first, "twice the rate, well under the time"


@pytest.mark.parametrize(("service", "reason"), [
    (lambda: EspeakTTSService(espeak_path="/nonexistent/espeak-ng"),
     "cannot run /nonexistent/espeak-ng: No such file or directory"),
    (lambda: EspeakTTSService(voice="nonexistent"),
     "failed: Error: The specified espeak-ng voice does not exist."),
], ids=["missing", "unknown-voice"])
async def test_an_espeak_failure_is_one_error_line(service: object, reason: str) -> None:
    assert callable(service)
    script = Script([TTSSpeakFrame("Hello there.")])
    await run_until([script, service(), Collector()], script.errored.wait(),
                    "the failure came back as an ErrorFrame")
    error = script.errors[0]
    assert error.error.endswith(reason) and "\n" not in error.error
    assert error.exception is None, "a line, not a traceback"


async def test_espeak_missing_from_the_path_says_how_to_install_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("shutil.which", lambda name: None)
    with pytest.raises(espeak.EspeakError, match=r"not installed \(apt-get install espeak-ng\)"):
        await espeak.speak_async("Hello.")


async def test_an_interruption_kills_espeak_mid_sentence(tmp_path: Path) -> None:
    """The base class cancels synthesis on an interruption; the espeak-ng process (here a
    stand-in that never finishes) goes with it, and no audio follows."""
    pid_file = tmp_path / "pid"
    stuck = tmp_path / "espeak-ng"
    stuck.write_text(f"#!/bin/sh\necho $$ > {pid_file}\nexec sleep 60\n")
    stuck.chmod(stuck.stat().st_mode | stat.S_IXUSR)
    script, out = Script([TTSSpeakFrame("This sentence is never finished.")]), Collector()

    async def interrupt() -> int:
        await eventually(lambda: pid_file.exists() and pid_file.read_text().strip() != "",
                         "espeak-ng started")
        pid = int(pid_file.read_text())
        await script.push_frame(InterruptionFrame())
        await eventually(lambda: not alive(pid), "espeak-ng was killed")
        return pid

    await run_until([script, EspeakTTSService(espeak_path=str(stuck)), out], interrupt(),
                    "the interruption killed espeak-ng")
    assert out.count(TTSAudioRawFrame) == 0


def alive(pid: int) -> bool:
    """Running: neither gone nor a zombie (dead, waiting to be reaped)."""
    try:
        with open(f"/proc/{pid}/stat") as status:
            return status.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.parametrize(("said", "answer"), [
    ("How is the WEATHER today?", ANSWERS["weather"]),
    ("Tell me about whethers", "You said: Tell me about whethers"),
    ("What is your name?", ANSWERS["your name"]),
], ids=["keyword", "no-match", "phrase"])
async def test_the_scripted_llm_answers_a_transcription_into_the_context(
        said: str, answer: str) -> None:
    context = LLMContext([{"role": "system", "content": "You are a helpful avatar."}])
    pair = aggregators(context)
    llm = ScriptedLLMService(answers=ANSWERS, system_prompt="ignored")
    streamed, out = Collector(), Collector()
    await run_until([Script([heard(said)]), pair.user(), llm, streamed, pair.assistant(), out],
                    out.until(lambda: out.count(LLMContextAssistantTurnFrame) >= 1),
                    "the answer reached the context")

    response = streamed.of(LLMFullResponseStartFrame, LLMTextFrame, LLMFullResponseEndFrame)
    assert isinstance(response[0], LLMFullResponseStartFrame)
    assert isinstance(response[-1], LLMFullResponseEndFrame)
    words = [f.text for f in caught(streamed, LLMTextFrame)]
    assert len(words) == len(answer.split()) > 1, "streamed word by word"
    assert "".join(words) == answer
    assert context.get_messages()[1:] == [{"role": "user", "content": said},
                                          {"role": "assistant", "content": answer}]


async def test_the_table_matches_whole_words_in_order_and_greets_without_a_user() -> None:
    llm = ScriptedLLMService(answers={"hi": "Hello!", "time": "Noon.", "TIME zone": "UTC."})
    assert llm.answer("this is it") == "You said: this is it"
    assert llm.answer("Hi, what TIME zone?") == "Hello!"
    assert llm.answer("which time zone") == "Noon."
    assert llm.answer(None) == llm.greeting
    assert tokens("Sure. The sky  is blue!") == ["Sure.", " The", " sky", "  is", " blue!"]
    assert await llm.run_inference(LLMContext([{"role": "user", "content": "hi"}])) == "Hello!"


async def test_llm_to_tts_a_transcription_in_speech_out() -> None:
    context = LLMContext()
    pair = aggregators(context)
    llm, tts = ScriptedLLMService(answers=ANSWERS), EspeakTTSService(sample_rate=16000)
    spoken, out = Collector(), Collector()
    await run_until([Script([heard("And the weather?")]), pair.user(), llm, tts, spoken,
                     pair.assistant(), out],
                    out.until(lambda: out.count(LLMContextAssistantTurnFrame) >= 1),
                    "the answer was spoken and written to the context")

    answer = ANSWERS["weather"]
    samples, rate = audio(spoken)
    assert rate == 16000
    assert_speech(samples, rate, answer)
    # sentence by sentence: the TTS aggregated the streamed words, then said each
    sentences = ["It is sunny today.", "Anything else?"]
    assert [f.text for f in caught(spoken, TTSTextFrame)] == sentences
    assert spoken.count(TTSStartedFrame) == spoken.count(TTSStoppedFrame) == 1, "one turn"
    assert context.get_messages()[-1] == {"role": "assistant", "content": answer}


def test_a_pipeline_file_can_name_them_with_their_arguments_checked() -> None:
    from agent.pipeline.registry import RegistryError, spec

    tts = spec("agent.brains:EspeakTTSService", {"voice": "en-us", "speed": 1.25}).build()
    llm = spec("agent.brains:ScriptedLLMService",
               {"answers": ANSWERS, "system_prompt": "Be brief."}).build()
    assert isinstance(tts, EspeakTTSService) and isinstance(llm, ScriptedLLMService)
    assert tts.settings.given_fields()["voice"] == "en-us" and llm.answers == ANSWERS
    assert EspeakTTSService.placement == ScriptedLLMService.placement == "before_heygen"
    with pytest.raises(RegistryError, match="did you mean 'speed'"):
        spec("agent.brains:EspeakTTSService", {"sped": 2})


@pytest.mark.parametrize("make", [
    lambda: SpeechLengthSTTService(),
    lambda: ScriptedLLMService(),
    lambda: EspeakTTSService(),
], ids=["stt", "llm", "tts"])
def test_the_stand_ins_settings_pass_pipecats_check(make: object) -> None:
    """Pipecat checks a service's settings when it starts and logs an ERROR for each
    field left unset: the own-brain demo printed one for the STT stand-in on every run."""
    from loguru import logger

    errors: list[str] = []
    sink = logger.add(lambda m: errors.append(str(m)), level="ERROR")
    try:
        service = make()  # type: ignore[operator]
        service._settings.validate_complete()
    finally:
        logger.remove(sink)
    assert errors == []
