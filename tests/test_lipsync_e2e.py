"""Your own brain, HeyGen's face: a bot's TTS audio in, the avatar's lip-synced voice out.

A stand-in TTS (real espeak-ng speech, pushed as fast as a TTS service produces it) sits
before the transport; the transport paces it to the emulator's lip-sync socket, and the
avatar's voice and video come back from ``input()`` through a real LiveKit room.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
from pipecat.frames.frames import (
    BotSpeakingFrame,
    BotStartedSpeakingFrame,
    BotStoppedSpeakingFrame,
    Frame,
    InterruptionFrame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    LLMTextFrame,
    OutputAudioRawFrame,
    OutputImageRawFrame,
    StartFrame,
    TextFrame,
    TTSAudioRawFrame,
    TTSStartedFrame,
    TTSStoppedFrame,
    TTSTextFrame,
    VADUserStartedSpeakingFrame,
)
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor

from agent.emulator.server import EmulatorServer
from agent.heygen.frames import HeyGenAvatarTranscriptFrame, HeyGenSpeakFrame
from agent.heygen.transport import HeyGenTransport
from agent.media.wav_file import read_wav
from tests.backends import INTERACTIVE, Backend, both_backends
from tests.pipeline_helpers import Collector, run_until
from tests.speech import speech_wav
from tests.waiting import eventually, within

pytestmark = pytest.mark.livekit


class SpeakingTTS(FrameProcessor):
    """Says ``pcm`` once the pipeline starts, in 20 ms TTS frames, all at once (a TTS
    service is faster than real time), between TTSStarted and TTSStopped."""

    def __init__(self, pcm: bytes, sample_rate: int) -> None:
        super().__init__(name="speaking-tts")
        self.pcm, self.sample_rate = pcm, sample_rate

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        await self.push_frame(frame, direction)
        if isinstance(frame, StartFrame):
            await self.push_frame(TTSStartedFrame())
            step = self.sample_rate // 50 * 2
            for i in range(0, len(self.pcm), step):
                await self.push_frame(TTSAudioRawFrame(self.pcm[i : i + step],
                                                       self.sample_rate, 1))
            await self.push_frame(TTSStoppedFrame())


@both_backends
async def test_tts_audio_is_lip_synced_by_the_avatar(emulator: EmulatorServer,
                                                     tmp_path: Path, backend: Backend) -> None:
    wav = tmp_path / "answer.wav"
    speech_s = speech_wav(wav, "The weather is fine today, thank you for asking.")
    pcm, rate, _ = read_wav(wav)  # espeak-ng: 22.05 kHz, resampled on the way
    transport = HeyGenTransport(api_key=backend.key, base_url=emulator.base_url,
                                session_options=backend.lipsync())
    assert transport.session.takes_audio
    collector = Collector()
    await run_until([SpeakingTTS(pcm, rate), transport.output(), transport.input(), collector],
                    collector.until(lambda: collector.count(BotStoppedSpeakingFrame) >= 1),
                    "the avatar said the TTS audio")

    session = next(iter(emulator.emulator.registry))
    said = [t for t in session.tasks if t["audio_bytes"]]
    assert len(said) == 1, "one utterance, said once"
    said_s = said[0]["audio_bytes"] / 2 / 24_000
    assert said_s == pytest.approx(speech_s, abs=0.05), "all of it, at 24 kHz, none twice"

    # the raw TTS went to HeyGen, not on: what comes out is the avatar's own voice
    assert collector.count(TTSAudioRawFrame) == 0
    assert collector.count(BotStartedSpeakingFrame) == 1  # told by the room and the socket
    edges = (BotStartedSpeakingFrame, BotStoppedSpeakingFrame)
    start, stop = [t for t, f in collector.frames if isinstance(f, edges)]
    voice = [f for t, f in collector.frames
             if isinstance(f, OutputAudioRawFrame) and start <= t <= stop]
    loud_s = sum(len(f.audio) / 2 / f.sample_rate for f in voice
                 if np.abs(np.frombuffer(f.audio, "<i2")).max() > 1000)
    assert loud_s >= 0.5 * speech_s, "the avatar's voice carried the speech"
    assert collector.count(OutputImageRawFrame) > 0, "and its face came with it"
    assert emulator.emulator.registry.counts()["open"] == 0, "the session was stopped"


class UpstreamProbe(FrameProcessor):
    """Before the transport's output(): keeps what comes back upstream, as the bot's own
    aggregators, LLM and TTS (all before it) see it."""

    def __init__(self) -> None:
        super().__init__(name="upstream-probe")
        self.frames: list[tuple[float, Frame]] = []
        self.bot_stopped = asyncio.Event()

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if direction is FrameDirection.UPSTREAM:
            self.frames.append((asyncio.get_running_loop().time(), frame))
            if isinstance(frame, BotStoppedSpeakingFrame):
                self.bot_stopped.set()
        await self.push_frame(frame, direction)

    def of(self, kind: type[Frame]) -> list[float]:
        return [t for t, f in self.frames if isinstance(f, kind)]


@both_backends
async def test_the_bot_speaking_is_told_upstream_too_as_pipecats_output_transport_does(
    emulator: EmulatorServer, tmp_path: Path, backend: Backend
) -> None:
    """What is before the transport (the bot's aggregators, its turn-taking) learns when
    the avatar starts and stops speaking, and hears BotSpeakingFrame every 0.2 s while it
    does (Pipecat's period), as a Pipecat output transport tells it: both ways."""
    wav = tmp_path / "answer.wav"
    speech_s = speech_wav(wav, "I am telling everyone upstream that I am speaking now.")
    pcm, rate, _ = read_wav(wav)
    transport = HeyGenTransport(api_key=backend.key, base_url=emulator.base_url,
                                session_options=backend.lipsync())
    probe, collector = UpstreamProbe(), Collector()

    async def stopped_both_ways() -> None:
        await collector.until(lambda: collector.count(BotStoppedSpeakingFrame) >= 1)
        await probe.bot_stopped.wait()

    await run_until([SpeakingTTS(pcm, rate), probe, transport.output(), transport.input(),
                     collector], stopped_both_ways(), "the avatar's stop, told both ways")

    [start] = probe.of(BotStartedSpeakingFrame)
    [stop] = probe.of(BotStoppedSpeakingFrame)
    ticks = [t for t in probe.of(BotSpeakingFrame) if start <= t <= stop]
    expected = (stop - start) / 0.2
    assert stop - start > 0.5 * speech_s, "the avatar's real speech, start to stop"
    assert 0.5 * expected <= len(ticks) <= expected + 2, (len(ticks), expected)
    assert not probe.of(BotSpeakingFrame)[-1] > stop, "no tick after the stop"
    down = [t for t, f in collector.frames if isinstance(f, BotSpeakingFrame)]
    assert abs(len(down) - len(ticks)) <= 1, "and the same downstream"
    assert collector.count(BotStartedSpeakingFrame) == 1


class StreamingLLM(FrameProcessor):
    """Streams ``tokens`` as an LLM does once the pipeline starts, then ends the response."""

    def __init__(self, tokens: list[str]) -> None:
        super().__init__(name="streaming-llm")
        self.tokens = tokens

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        await self.push_frame(frame, direction)
        if isinstance(frame, StartFrame):
            await self.push_frame(LLMFullResponseStartFrame())
            for token in self.tokens:
                await self.push_frame(LLMTextFrame(token))
            await self.push_frame(LLMFullResponseEndFrame())


class ReplyAfterAvatar(FrameProcessor):
    """After the avatar (downstream of input()): once it has finished speaking, asks it,
    upstream, to say one more thing, as a user's processor reacting to it would."""

    def __init__(self, text: str) -> None:
        super().__init__(name="reply-after-avatar")
        self.text, self.sent = text, False

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        await self.push_frame(frame, direction)
        if isinstance(frame, BotStoppedSpeakingFrame) and not self.sent:
            self.sent = True
            await self.push_frame(HeyGenSpeakFrame(text=self.text), FrameDirection.UPSTREAM)


@both_backends
async def test_llm_text_is_said_verbatim_sentence_by_sentence(emulator: EmulatorServer,
                                                              backend: Backend) -> None:
    """Your own LLM, HeyGen's voice: streamed tokens become sentences, each said once, in
    order, with voice chat off; a processor after the avatar can make it speak too."""
    tokens = ["Sure", ". The", " sky is", " blue", " today", "! Anything", " else"]
    transport = HeyGenTransport(api_key=backend.key, base_url=emulator.base_url,
                                session_options=backend.text())
    collector = Collector()
    pipeline = [StreamingLLM(tokens), transport.output(), transport.input(),
                ReplyAfterAvatar("And that is all."), collector]
    await run_until(pipeline,
                    collector.until(lambda: collector.count(BotStoppedSpeakingFrame) >= 4),
                    "the avatar said the three sentences and the reply")
    session = next(iter(emulator.emulator.registry))
    said = [t["text"] for t in session.tasks]
    assert said == ["Sure.", "The sky is blue today!", "Anything else", "And that is all."]
    assert emulator.emulator.registry.counts()["open"] == 0


class InterruptAfter(FrameProcessor):
    """After the avatar: the first time ``when`` passes, the user interrupts; once the
    interruption has passed, asks for one last sentence, upstream, as a marker: HeyGen
    says its tasks in order, so anything still queued before it would be said first."""

    def __init__(self, transport: HeyGenTransport, when: type[Frame], marker: str) -> None:
        super().__init__(name="interrupt-after")
        self.transport, self.when, self.marker = transport, when, marker
        self.fired = False

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        await self.push_frame(frame, direction)
        if isinstance(frame, self.when) and not self.fired:
            self.fired = True
            await self.transport.output().queue_frame(InterruptionFrame())
        elif isinstance(frame, InterruptionFrame):
            await self.push_frame(HeyGenSpeakFrame(text=self.marker), FrameDirection.UPSTREAM)


@both_backends
@pytest.mark.parametrize("when", [LLMFullResponseEndFrame, BotStoppedSpeakingFrame],
                         ids=["before-the-first", "between-sentences"])
async def test_an_interruption_while_sentences_wait_drops_them(
    emulator: EmulatorServer, backend: Backend, when: type[Frame]
) -> None:
    """Text mode: the user interrupts right after the LLM's three sentences went to HeyGen,
    before the avatar began the first (or in the gap after the first, the avatar silent
    for a moment). The sentences waiting are speech on its way to the avatar: the
    interruption reaches HeyGen, and none of them is said after it."""
    tokens = ["The first sentence is here.", " The second one follows it.",
              " And the third one ends it."]
    transport = HeyGenTransport(api_key=backend.key, base_url=emulator.base_url,
                                session_options=backend.text())
    collector = Collector()
    pipeline = [StreamingLLM(tokens), transport.output(), transport.input(),
                InterruptAfter(transport, when, "That is all."), collector]

    def words() -> list[str]:
        # the avatar's words as it says them, in time with its voice (both backends)
        return [f.text for f in collector.of(TTSTextFrame) if isinstance(f, TTSTextFrame)]

    await run_until(pipeline, collector.until(lambda: "all." in words()),
                    "the avatar said the marker")
    assert backend.interrupts(emulator) == 1, "the interruption reached HeyGen"
    queued = {"second", "follows", "third", "ends"}
    assert not queued & set(words()), f"said after the interruption: {words()}"
    assert emulator.emulator.registry.counts()["open"] == 0


@both_backends
async def test_an_interruption_cuts_lip_synced_speech_and_drops_the_rest(
    emulator: EmulatorServer, tmp_path: Path, backend: Backend
) -> None:
    """The user starts speaking while the avatar says a long TTS answer (Pipecat's
    interruption): the avatar stops at once and what was still queued is never said."""
    wav = tmp_path / "long.wav"
    long_s = speech_wav(wav, "This is a long answer that the user will not let me finish. " * 3)
    pcm, rate, _ = read_wav(wav)
    transport = HeyGenTransport(api_key=backend.key, base_url=emulator.base_url,
                                session_options=backend.lipsync())

    @transport.event_handler("on_avatar_started_speaking")
    async def interrupt(t: HeyGenTransport) -> None:
        await transport.output().queue_frame(InterruptionFrame())

    collector = Collector()
    await run_until([SpeakingTTS(pcm, rate), transport.output(), transport.input(), collector],
                    collector.until(lambda: collector.count(BotStoppedSpeakingFrame) >= 1),
                    "the avatar stopped speaking")
    assert backend.interrupts(emulator) == 1, "the interruption reached HeyGen"
    edges = (BotStartedSpeakingFrame, BotStoppedSpeakingFrame)
    start, stop = [t for t, f in collector.frames if isinstance(f, edges)]
    assert stop - start < long_s / 2, "cut short"
    session = next(iter(emulator.emulator.registry))
    sent_s = sum(t["audio_bytes"] for t in session.tasks) / 2 / 24_000
    assert sent_s < long_s, "the queued rest of the speech was dropped, not sent"
    assert emulator.emulator.registry.counts()["open"] == 0


def tts_frames(pcm: bytes, sample_rate: int, text: str) -> list[Frame]:
    """One utterance as a TTS service pushes it: its words, its audio in 20 ms frames."""
    step = sample_rate // 50 * 2
    return [TTSStartedFrame(), *(TTSTextFrame(word, text_type="word") for word in text.split()),
            *(TTSAudioRawFrame(pcm[i : i + step], sample_rate, 1)
              for i in range(0, len(pcm), step)),
            TTSStoppedFrame()]


class BargeInByVAD(FrameProcessor):
    """After the avatar: when it starts its first utterance, the local VAD hears the user
    (no Pipecat interruption follows: a bot without an interruption strategy); once it
    has stopped, the bot's TTS says one more utterance."""

    def __init__(self, transport: HeyGenTransport, then: list[Frame]) -> None:
        super().__init__(name="barge-in-by-vad")
        self.transport, self.then = transport, then
        self.started = self.stopped = False

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        await self.push_frame(frame, direction)
        if isinstance(frame, BotStartedSpeakingFrame) and not self.started:
            self.started = True
            await self.transport.output().queue_frame(VADUserStartedSpeakingFrame())
        elif isinstance(frame, BotStoppedSpeakingFrame) and not self.stopped:
            self.stopped = True
            for then in self.then:
                await self.transport.output().queue_frame(then)


@both_backends
async def test_a_barge_in_heard_by_the_local_vad_alone_keeps_transcripts_paired(
    emulator: EmulatorServer, tmp_path: Path, backend: Backend
) -> None:
    """Lip-sync: two utterances sent, the user barges in (local VAD only) during the first;
    HeyGen drops the second. The next utterance's transcript is its own words, not the
    dropped one's."""
    texts = ["This first answer is rather long and will be cut short by the user.",
             "A second answer that is dropped.", "The third answer comes after."]
    speech = []
    for i, text in enumerate(texts):
        speech_wav(tmp_path / f"{i}.wav", text)
        pcm, rate, _ = read_wav(tmp_path / f"{i}.wav")
        speech.append(tts_frames(pcm, rate, text))
    transport = HeyGenTransport(api_key=backend.key, base_url=emulator.base_url,
                                session_options=backend.lipsync())
    collector = Collector()

    def transcripts() -> list[str]:
        return [f.text for f in collector.of(HeyGenAvatarTranscriptFrame)
                if isinstance(f, HeyGenAvatarTranscriptFrame)]

    await run_until([SaysFrames(speech[0] + speech[1]), transport.output(), transport.input(),
                     BargeInByVAD(transport, speech[2]), collector],
                    collector.until(lambda: collector.count(BotStoppedSpeakingFrame) >= 2),
                    "the avatar was cut short, then said the third answer")
    assert backend.interrupts(emulator) == 1, "the barge-in reached HeyGen"
    assert transcripts()[-1] == texts[2], transcripts()
    assert texts[1] not in transcripts(), "the dropped answer was never said"


async def test_an_interruption_drops_the_speech_held_while_the_session_starts(
    emulator: EmulatorServer, tmp_path: Path
) -> None:
    """TTS audio that comes before the avatar is there is held, to be said once it is;
    an interruption meanwhile drops it with the rest of the bot's queued speech. (In a
    Pipecat pipeline the output's StartFrame holds later frames until the session runs,
    so this drives the output's frame handling directly, as a processor in direct mode
    would reach it.)"""
    speech = []
    for i, text in enumerate(["Hello, I am the greeting.", "And this is the answer."]):
        speech_wav(tmp_path / f"{i}.wav", text)
        pcm, rate, _ = read_wav(tmp_path / f"{i}.wav")
        speech.append((pcm, rate, tts_frames(pcm, rate, text)))
    transport = HeyGenTransport(api_key=INTERACTIVE.key, base_url=emulator.base_url,
                                session_options=INTERACTIVE.lipsync())
    output = transport.output()
    transport.start_early()
    try:
        assert not transport.session_running.is_set()
        for frame in speech[0][2]:  # the greeting, before the avatar is there
            await output._to_heygen(frame)
        await output._to_heygen(InterruptionFrame())
        await within(transport.session_running.wait(), "the session runs")
        for frame in speech[1][2]:
            await output._to_heygen(frame)
        session = next(iter(emulator.emulator.registry))
        await eventually(lambda: any(t["audio_bytes"] for t in session.tasks),
                         "HeyGen took the answer")
    finally:
        await within(transport.close(), "the session stopped")
    pcm, rate, _ = speech[1]
    answer_s = len(pcm) / 2 / rate
    [said] = [t["audio_bytes"] / 2 / 24_000 for t in session.tasks]
    assert said == pytest.approx(answer_s, abs=0.05), "the answer alone, not the greeting"


class SaysFrames(FrameProcessor):
    """Pushes ``frames`` once the pipeline starts (a TTS service, faster than real time)."""

    def __init__(self, frames: list[Frame]) -> None:
        super().__init__(name="says-frames")
        self.frames = frames

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        await self.push_frame(frame, direction)
        if isinstance(frame, StartFrame):
            for then in self.frames:
                await self.push_frame(then)


@both_backends
async def test_the_user_speaking_to_a_silent_avatar_interrupts_nothing(
    emulator: EmulatorServer, backend: Backend
) -> None:
    """Lip-sync: a user turn while the avatar is silent and no speech is queued sends no
    interrupt (with HeyGen, each would be a request for nothing)."""
    transport = HeyGenTransport(api_key=backend.key, base_url=emulator.base_url,
                                session_options=backend.lipsync())
    interrupted = asyncio.Event()

    @transport.event_handler("on_session_started")
    async def started(t: HeyGenTransport, session_id: str) -> None:
        await transport.output().queue_frame(VADUserStartedSpeakingFrame())
        await transport.output().queue_frame(InterruptionFrame())
        interrupted.set()

    collector = Collector()
    await run_until([transport.output(), transport.input(), collector],
                    collector.until(lambda: interrupted.is_set()
                                    and collector.count(InterruptionFrame) >= 1),
                    "the user's turn passed the transport")
    assert backend.interrupts(emulator) == 0


class SaysOnce(FrameProcessor):
    """Pushes one plain TextFrame once the pipeline starts."""

    def __init__(self, text: str) -> None:
        super().__init__(name="says-once")
        self.text = text

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        await self.push_frame(frame, direction)
        if isinstance(frame, StartFrame):
            await self.push_frame(TextFrame(self.text))


async def test_a_plain_text_frame_is_said_not_answered_by_heygens_brain(
    emulator: EmulatorServer,
) -> None:
    """With HeyGen's brain on (voice chat), a plain TextFrame is the bot's words: said
    verbatim, not sent to the brain to be answered (HeyGenSpeakFrame(talk) asks it)."""
    transport = HeyGenTransport(api_key="plain-text-key-1", base_url=emulator.base_url)
    collector = Collector()
    await run_until([SaysOnce("Hello there."), transport.output(), transport.input(),
                     collector],
                    collector.until(lambda: collector.count(BotStoppedSpeakingFrame) >= 1),
                    "the avatar spoke")
    session = next(iter(emulator.emulator.registry))
    assert [t["text"] for t in session.tasks] == ["Hello there."]
    assert session.audio.text_frames == 0, "nothing went to HeyGen's brain"
