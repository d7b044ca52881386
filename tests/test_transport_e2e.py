"""The whole voice-chat loop over real sockets: a WAV of espeak-ng speech is the
microphone → Silero VAD → serializer → the emulator's voice-chat socket; the avatar
answers in a real LiveKit room and its video, voice and transcripts come back as frames."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
from pipecat.frames.frames import (
    BotStartedSpeakingFrame,
    BotStoppedSpeakingFrame,
    CancelFrame,
    EndFrame,
    Frame,
    InputAudioRawFrame,
    InterimTranscriptionFrame,
    OutputAudioRawFrame,
    OutputImageRawFrame,
    StartFrame,
    TranscriptionFrame,
    TTSTextFrame,
    UserStartedSpeakingFrame,
    UserStoppedSpeakingFrame,
)
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor

from agent.emulator.config import EmulatorConfig
from agent.emulator.livekit_server import LiveKitServer
from agent.emulator.server import EmulatorServer
from agent.emulator.video import read_stamp
from agent.heygen import api
from agent.heygen.frames import (
    I420,
    HeyGenAvatarTranscriptFrame,
    HeyGenPushToTalkFrame,
    HeyGenSpeakFrame,
)
from agent.heygen.protocol import interactive as ia
from agent.heygen.protocol import voice_chat as vc
from agent.heygen.session import SessionOptions
from agent.heygen.transport import HeyGenParams, HeyGenTransport
from agent.media.vad import silero_vad
from agent.media.wav_file import read_wav
from agent.media.wav_source import WavFileInput
from tests.backends import (
    INTERACTIVE,
    INTERACTIVE_LIVEKIT_VOICE,
    LIVEAVATAR,
    Backend,
    both_backends,
)
from tests.emulator_admin import set_faults
from tests.pipeline_helpers import Collector, run_until
from tests.rooms import subscriptions
from tests.speech import speech_wav
from tests.waiting import eventually, within

pytestmark = pytest.mark.livekit

#: The most frames the pipeline may miss in a row (counter steps), with the machine loaded.
MAX_FRAME_GAP = 25


def livekit_voice_options() -> SessionOptions:
    """Interactive's LiveKit voice transport: the microphone is a track in the room."""
    return SessionOptions(request=ia.NewSessionRequest(ia_is_livekit_transport=True),
                          keep_alive_interval_s=None)


async def test_voice_chat_end_to_end(emulator: EmulatorServer, tmp_path: Path) -> None:
    wav = tmp_path / "question.wav"
    speech_s = speech_wav(wav, "Hello avatar. What is the weather like today?")
    source = WavFileInput(wav, lead_in_s=1.0)
    client = api.HeyGenClient("e2e-key-123456", base_url=emulator.base_url)
    transport = HeyGenTransport(client=client, session_options=SessionOptions(),
                                params=HeyGenParams(video_format="I420"))
    transcripts: dict[str, list[str]] = {"user": [], "avatar": []}
    told: list[str] = []  # the avatar's events as the room's data messages told them

    @transport.event_handler("on_user_transcript")
    async def user(t: HeyGenTransport, text: str) -> None:
        transcripts["user"].append(text)

    @transport.event_handler("on_avatar_transcript")
    async def avatar(t: HeyGenTransport, text: str) -> None:
        transcripts["avatar"].append(text)
        told.append("avatar transcript")

    for name in ("on_avatar_started_speaking", "on_avatar_stopped_speaking"):
        transport.add_event_handler(name, lambda t, name=name: told.append(name))

    collector = Collector()
    # lead-in, the question, HeyGen's pause detection, then the answer to its end
    await run_until([source, silero_vad(), transport.output(), transport.input(), collector],
                    collector.until(lambda: collector.count(BotStoppedSpeakingFrame) >= 1),
                    "the avatar answered")
    await client.aclose()

    session = next(iter(emulator.emulator.registry))
    audio = session.audio
    # all of the lead-in and the question reached HeyGen, none of it twice (the run ends
    # mid-stream: what was still in the pipeline when it ended is not sent)
    assert 1.0 + speech_s - vc.CHUNK_SECONDS <= audio.seconds <= source.seconds_sent
    assert audio.sample_rates == {16000} and set(audio.frame_samples) == {512}
    assert (audio.user_starts, audio.user_stops) == (1, 1)
    heard = session.tasks[0]["text"]
    assert heard.startswith("I heard ")
    heard_s = float(heard.split()[2])
    assert heard_s == pytest.approx(speech_s, abs=0.5), "HeyGen heard the speech's length"

    # the avatar's video: the stamps say every frame is new, in order, with no long freeze
    # over the whole turn (how many a loaded machine drops is the benchmark's business)
    images = collector.of(OutputImageRawFrame)
    assert {(i.size, i.format) for i in images} == {((640, 360), I420)}  # type: ignore[attr-defined]
    stamps = [read_stamp(i.image, 640, 360) for i in images]  # type: ignore[attr-defined]
    counters = [s[0] for s in stamps if s is not None]
    assert len(counters) >= 0.9 * len(images)
    assert counters == sorted(counters) and len(set(counters)) == len(counters)
    assert np.diff(counters).max() <= MAX_FRAME_GAP
    video_s = (counters[-1] - counters[0]) / 25
    assert video_s >= speech_s + 1, "video throughout the question and the answer"
    assert transport.video_frames == len(images)

    # its voice: continuous audio, loud while it answered
    voice = collector.of(OutputAudioRawFrame)
    total_s = sum(len(f.audio) / 2 / f.sample_rate for f in voice)  # type: ignore[attr-defined]
    assert total_s == pytest.approx(video_s, rel=0.25)
    pcm = np.frombuffer(b"".join(f.audio for f in voice), "<i2")  # type: ignore[attr-defined]
    assert np.abs(pcm).max() > 3000

    # the events, in order: HeyGen heard the user, transcribed them, the avatar answered.
    # Pipecat's system frames (the speaking ones) overtake data frames (the texts) queued
    # downstream, so each kind keeps its own order; the handlers see the wire's order.
    kinds = [type(f) for _, f in collector.frames]
    def first(kind: type) -> int:
        return kinds.index(kind)
    assert (first(UserStartedSpeakingFrame) < first(UserStoppedSpeakingFrame)
            < first(BotStartedSpeakingFrame) < first(BotStoppedSpeakingFrame))
    assert (first(InterimTranscriptionFrame) < first(TranscriptionFrame)
            < first(TTSTextFrame) < first(HeyGenAvatarTranscriptFrame))
    assert told == ["on_avatar_started_speaking", "avatar transcript",
                    "on_avatar_stopped_speaking"]
    assert transcripts["user"] == [f"({heard_s:.1f} seconds of speech)"]
    assert transcripts["avatar"] == [heard]
    words = [f.text for f in collector.of(TTSTextFrame)]  # type: ignore[attr-defined]
    assert " ".join(words) == heard
    assert session.state.value == "stopped"


@both_backends
async def test_speech_in_transcripts_and_the_answer_out(
    emulator: EmulatorServer, tmp_path: Path, backend: Backend
) -> None:
    """HeyGen's brain, either backend: the user's speech reaches HeyGen (a socket, or a
    track in the room), and the same frames and event handlers come back."""
    wav = tmp_path / "question.wav"
    speech_wav(wav, "Hello avatar. What is the weather like today?")
    transport = HeyGenTransport(api_key=backend.key, base_url=emulator.base_url,
                                session_options=backend.brain(),
                                params=HeyGenParams(video_format="I420"))
    handled: list[str] = []
    for name in ("on_user_started_speaking", "on_user_stopped_speaking", "on_user_transcript",
                 "on_avatar_started_speaking", "on_avatar_stopped_speaking",
                 "on_avatar_transcript"):
        transport.add_event_handler(name, lambda t, *args, n=name: handled.append(n))
    collector = Collector()
    await run_until([WavFileInput(wav, lead_in_s=1.0), silero_vad(), transport.output(),
                     transport.input(), collector],
                    collector.until(lambda: collector.count(BotStoppedSpeakingFrame) >= 1),
                    "the avatar answered")
    kinds = [type(f) for _, f in collector.frames]
    for kind in (UserStartedSpeakingFrame, UserStoppedSpeakingFrame, BotStartedSpeakingFrame,
                 BotStoppedSpeakingFrame, HeyGenAvatarTranscriptFrame):
        assert kinds.count(kind) == 1, (kind.__name__, kinds.count(kind))
    assert [f.text for f in collector.of(TranscriptionFrame)
            if type(f) is TranscriptionFrame], "what HeyGen heard the user say"
    assert sorted(set(handled)) == sorted(handled) and len(handled) == 6, handled
    stamps = [read_stamp(i.image, 640, 360) for i in collector.of(OutputImageRawFrame)]  # type: ignore[attr-defined]
    counters = [s[0] for s in stamps if s is not None]
    assert len(counters) > 25 and counters == sorted(counters), "the avatar's face, in order"
    edges = [t for t, f in collector.frames
             if isinstance(f, BotStartedSpeakingFrame | BotStoppedSpeakingFrame)]
    voice = [f for t, f in collector.frames
             if isinstance(f, OutputAudioRawFrame) and edges[0] <= t <= edges[1]]
    assert any(np.abs(np.frombuffer(f.audio, "<i2")).max() > 1000 for f in voice), "its voice"
    assert emulator.emulator.registry.counts()["open"] == 0


async def test_rgb_video_by_default_converted_natively(emulator: EmulatorServer,
                                                       tmp_path: Path) -> None:
    wav = tmp_path / "s.wav"
    speech_wav(wav, "hi")
    client = api.HeyGenClient("e2e-key-123456", base_url=emulator.base_url)
    # No format asked for: RGB, what Pipecat's other output transports take.
    transport = HeyGenTransport(client=client, params=HeyGenParams(audio_enabled=False))
    collector = Collector()
    await run_until([WavFileInput(wav), transport.output(), transport.input(), collector],
                    collector.until(lambda: collector.count(OutputImageRawFrame) > 20),
                    "20 frames of video")
    await client.aclose()
    images = collector.of(OutputImageRawFrame)
    image = images[-1]
    assert image.format == "RGB" and len(image.image) == 640 * 360 * 3  # type: ignore[attr-defined]
    rgb = np.frombuffer(image.image, np.uint8).reshape(360, 640, 3)  # type: ignore[attr-defined]
    # ints: pytest.approx on numpy uint8 wraps around (78 - 79 == 255)
    assert tuple(int(v) for v in rgb[300, 20]) == pytest.approx((52, 78, 120), abs=12)
    assert collector.of(OutputAudioRawFrame) == []


async def test_the_real_avatar_recorded_and_on_the_viewer_page(
    emulator: EmulatorServer, tmp_path: Path
) -> None:
    """The avatar from LiveKit through the recorder (decoded back) and the viewer page
    (a headless Chromium screenshot shows its face)."""
    import asyncio

    import av
    from PIL import Image

    from agent.emulator.video import draw_face
    from agent.media.recorder import RecorderOutput
    from agent.media.viewer import ViewerOutput
    from tests.machine import headless_chromium, require

    chromium = require("chromium", "apt-get install chromium")
    wav = tmp_path / "hi.wav"
    speech_wav(wav, "Hi there.")
    client = api.HeyGenClient("e2e-key-123456", base_url=emulator.base_url)
    transport = HeyGenTransport(client=client)
    recorder = RecorderOutput(tmp_path / "avatar.mp4")
    viewer = ViewerOutput()
    collector = Collector()
    shot = tmp_path / "page.png"

    skin = np.array(draw_face(640, 360, 0)[200, 320], int)  # the face's colour

    def face_pixels() -> int:
        page = np.asarray(Image.open(shot).convert("RGB")).astype(int)
        return int((np.abs(page - skin).max(axis=2) < 25).sum())

    async def screenshot() -> None:
        # The avatar is on the way; the viewer encodes it once the page watches.
        await collector.until(lambda: collector.count(OutputImageRawFrame) >= 5)
        # Chromium shoots after a fixed wait, which a loaded machine can outlast before
        # the page shows its first frame: another shot then, up to five.
        for _ in range(5):
            process = await asyncio.create_subprocess_exec(
                *headless_chromium(chromium, tmp_path / "profile", "--window-size=1200,500",
                                   "--timeout=2000", f"--screenshot={shot}", viewer.url),
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
            await within(process.wait(), "Chromium took its screenshot")
            if face_pixels() > 20_000:
                return

    async def shot_and_two_seconds() -> None:
        await screenshot()
        await collector.until(lambda: collector.count(OutputImageRawFrame) >= 50)

    await run_until([WavFileInput(wav), silero_vad(), transport.output(), transport.input(),
                     viewer, recorder, collector], shot_and_two_seconds(),
                    "a screenshot and two seconds of video")
    await client.aclose()

    images = collector.of(OutputImageRawFrame)
    with av.open(str(tmp_path / "avatar.mp4")) as container:
        video, audio = container.streams.video[0], container.streams.audio[0]
        decoded = list(container.decode(video=0))
        video_s = float(video.duration * video.time_base)
        audio_s = float(audio.duration * audio.time_base)
    assert (decoded[0].width, decoded[0].height) == (640, 360)
    assert len(decoded) == recorder.video_frames_written
    placed = recorder.video_frames_written - recorder.video_frames_repeated
    assert placed + recorder.video_frames_skipped + recorder.frames_dropped == len(images)
    # A steady timeline on the clock: the file lasts as long as the media took to come,
    # or as long as the audio that came, if longer (audio is its samples: a track that a
    # stalled loop read late comes in a burst, all of it real time that went by), with
    # the silence the recorder put in where the audio stayed behind past its window.
    arrivals = [t for t, f in collector.frames
                if isinstance(f, OutputImageRawFrame | OutputAudioRawFrame)]
    heard_s = sum(len(f.audio) / 2 / f.sample_rate  # type: ignore[attr-defined]
                  for f in collector.of(OutputAudioRawFrame))
    in_file_s = heard_s + recorder.audio_silence_seconds
    assert video_s == pytest.approx(max(arrivals[-1] - arrivals[0], in_file_s), abs=0.3)
    assert audio_s == pytest.approx(recorder.audio_seconds_written, abs=0.1)
    # In step; at the very end, audio the track had not yet delivered when the run ended is
    # missing while the video's last slot is at the clock (seen on a loaded machine: 2.32 s
    # of audio to 2.48 s of video), so the bound is the video timeline's own.
    assert audio_s == pytest.approx(video_s, abs=0.3)
    assert read_stamp(decoded[-1].to_ndarray(format="yuv420p").tobytes(), 640, 360) is not None

    assert face_pixels() > 20_000, "the avatar's face is on the viewer page"


async def test_slow_pushing_drops_oldest_video_and_says_so(
    emulator: EmulatorServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import asyncio

    import agent.heygen.transport as transport_module

    monkeypatch.setattr(transport_module, "DROP_REPORT_INTERVAL_S", 0.5)
    wav = tmp_path / "s.wav"
    speech_wav(wav, "hi")
    client = api.HeyGenClient("e2e-key-123456", base_url=emulator.base_url)
    transport = HeyGenTransport(client=client, params=HeyGenParams(
        video_queue_size=2, audio_enabled=False, video_format="I420"))  # stamps: luma
    reported: list[int] = []
    enough = asyncio.Event()

    @transport.event_handler("on_video_frames_dropped")
    async def dropped(t: HeyGenTransport, count: int) -> None:
        reported.append(count)
        if sum(reported) >= 40:
            enough.set()

    push = transport.input().push_frame

    async def slow_push(frame: object, *args: object) -> None:
        if isinstance(frame, OutputImageRawFrame):
            await asyncio.sleep(0.2)  # a pipeline that takes 5x a frame's time
        await push(frame, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(transport.input(), "push_frame", slow_push)
    collector = Collector()
    await run_until([WavFileInput(wav), transport.output(), transport.input(), collector],
                    enough.wait(), "40 dropped frames reported")
    await client.aclose()
    received = len(collector.of(OutputImageRawFrame))
    assert 1 <= received < sum(reported), "some got through, most were dropped and reported"
    counters = [read_stamp(f.image, 640, 360) for f in collector.of(OutputImageRawFrame)]  # type: ignore[attr-defined]
    gaps = np.diff([c[0] for c in counters if c is not None])
    assert gaps.min() >= 1 and gaps.mean() > 3, "what got through was the newest, not a backlog"


class Talker(FrameProcessor):
    """A user at a push-to-talk button: audio only when the test says, in real time (on
    deadlines: a busy machine must not stretch a turn a track plays out in real time),
    and the button's presses in the same stream, so they keep their order with it."""

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        await self.push_frame(frame, direction)

    async def say(self, pcm: bytes, sample_rate: int = 16000) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time()
        step = sample_rate // 50 * 2  # 20 ms
        for i in range(0, len(pcm), step):
            await self.push_frame(InputAudioRawFrame(audio=pcm[i : i + step],
                                                     sample_rate=sample_rate, num_channels=1))
            deadline += 0.02
            await asyncio.sleep(max(0.0, deadline - loop.time()))

    async def press(self, talking: bool) -> None:
        await self.push_frame(HeyGenPushToTalkFrame(talking=talking))


@pytest.mark.parametrize("backend", [INTERACTIVE, INTERACTIVE_LIVEKIT_VOICE, LIVEAVATAR],
                         ids=str)
async def test_push_to_talk(emulator: EmulatorServer, backend: Backend) -> None:
    """The user's turn is what they said while they held the button (pressed and released
    as frames through the transport); HeyGen's brain hears that turn and answers it, and
    the user's and the avatar's events come back as for any turn."""
    transport = HeyGenTransport(api_key=backend.key, base_url=emulator.base_url,
                                session_options=backend.push_to_talk())
    told: list[str] = []
    answers: list[str] = []
    answered = asyncio.Event()
    for name in ("on_user_started_speaking", "on_user_stopped_speaking"):
        transport.add_event_handler(name, lambda t, name=name: told.append(name))

    @transport.event_handler("on_avatar_transcript")
    async def avatar(t: HeyGenTransport, text: str) -> None:
        answers.append(text)
        answered.set()

    talker = Talker()
    talk = (np.sin(np.arange(16000) / 16000 * 2 * np.pi * 200) * 8000).astype("<i2").tobytes()

    async def turn() -> None:
        await transport.session_running.wait()
        await talker.say(bytes(16000))  # 0.5 s of quiet before the button: not in the turn
        await talker.press(True)
        await talker.say(talk)  # 1 s
        await talker.press(False)
        await answered.wait()

    await run_until([talker, transport.output(), transport.input(), Collector()], turn(),
                    "the avatar answered the turn")
    [emulated] = list(emulator.emulator.registry)
    assert emulated.push_to_talk_events == ["start", "stop"]
    assert told == ["on_user_started_speaking", "on_user_stopped_speaking"]
    [said] = answers
    assert said.startswith("I heard "), said
    heard_s = float(said.split()[2])
    # On a socket the turn is exactly the audio sent while held; a track plays out in
    # real time, so the room heard it give or take the button's timing.
    if transport.session.microphone_is_track:
        assert emulated.audio.frames == 0 and emulated.audio.room_seconds > 1.4
        assert 0.8 <= heard_s <= 1.5, said
    else:
        assert emulated.audio.room_seconds == 0
        assert said == "I heard 1.0 seconds of speech."
    assert not emulated.state.open


async def test_push_to_talk_needs_a_session_made_for_it() -> None:
    """An Interactive session without push-to-talk refuses the button before any call."""
    from agent.heygen.session import HeyGenSession

    async with api.HeyGenClient("ptt-key-123456", base_url="http://127.0.0.1:9") as client:
        with pytest.raises(RuntimeError, match="push-to-talk"):
            await HeyGenSession(client, SessionOptions()).push_to_talk(True)


class Microphone(FrameProcessor):
    """A microphone the test speaks into when it chooses: silence until :meth:`say`."""

    def __init__(self, sample_rate: int) -> None:
        super().__init__()
        self.sample_rate = sample_rate
        self._speech = b""
        self._task: asyncio.Task[None] | None = None

    def say(self, pcm: bytes) -> None:
        self._speech = pcm

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, EndFrame | CancelFrame) and self._task is not None:
            await self.cancel_task(self._task)
        await self.push_frame(frame, direction)
        if isinstance(frame, StartFrame):
            self._task = self.create_task(self._stream(), "test-microphone")

    async def _stream(self) -> None:
        step = self.sample_rate // 50 * 2  # 20 ms
        while True:
            piece, self._speech = self._speech[:step], self._speech[step:]
            await self.push_frame(InputAudioRawFrame(audio=piece.ljust(step, b"\0"),
                                                     sample_rate=self.sample_rate,
                                                     num_channels=1))
            await asyncio.sleep(0.02)


@both_backends
async def test_barge_in_cuts_the_avatar_short(emulator: EmulatorServer, tmp_path: Path,
                                              backend: Backend) -> None:
    """The user speaks while the avatar does: the local VAD hears them and the transport
    interrupts the avatar at once, before HeyGen's own detection would."""
    wav = tmp_path / "interrupt.wav"
    speech_wav(wav, "Wait, stop, I have a question.")
    speech, rate, _ = read_wav(wav)
    long_text = "This is a long story that the user will not let the avatar finish. " * 4
    transport = HeyGenTransport(api_key=backend.key, base_url=emulator.base_url,
                                session_options=backend.brain())
    microphone = Microphone(rate)

    @transport.event_handler("on_session_started")
    async def started(t: HeyGenTransport, session_id: str) -> None:
        await transport.output().queue_frame(HeyGenSpeakFrame(text=long_text))

    @transport.event_handler("on_avatar_started_speaking")
    async def speaking(t: HeyGenTransport) -> None:
        microphone.say(speech)

    collector = Collector()
    await run_until([microphone, silero_vad(), transport.output(), transport.input(), collector],
                    collector.until(lambda: collector.count(BotStoppedSpeakingFrame) >= 1),
                    "the avatar stopped speaking")
    session = next(iter(emulator.emulator.registry))
    assert backend.interrupts(emulator) == 1, "the barge-in"
    said = " ".join(f.text for f in collector.of(TTSTextFrame))  # type: ignore[attr-defined]
    assert long_text.startswith(said) and len(said) < len(long_text) / 2, "cut short"
    assert session.state.value == "stopped"


class AskOnce(FrameProcessor):
    """Asks HeyGen's brain one question (a ``talk``) with the first audio frame."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text, self.sent = text, False

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        await self.push_frame(frame, direction)
        if not self.sent and isinstance(frame, InputAudioRawFrame):
            self.sent = True
            await self.push_frame(HeyGenSpeakFrame(text=self.text, task_type=ia.TaskType.TALK))


async def test_livekit_voice_transport_end_to_end(
    emulator: EmulatorServer, tmp_path: Path
) -> None:
    """``ia_is_livekit_transport``: the microphone is a track in the room and text goes as
    a data message, as HeyGen's official client does it; the socket only brings events."""
    wav = tmp_path / "question.wav"
    # One breath, no sentence pause: a track plays in real time, so a loaded machine's
    # stall while feeding it lengthens a pause, and a long one splits the turn in two.
    speech_s = speech_wav(wav, "Hello avatar what is the weather like today")
    client = api.HeyGenClient("lk-voice-key-123456", base_url=emulator.base_url)
    options = livekit_voice_options()
    transport = HeyGenTransport(client=client, session_options=options)
    # A track carries nothing to no one: the speech starts once the avatar listens.
    source = WavFileInput(wav, lead_in_s=1.0, start_when=transport.session_running)
    collector = Collector()
    await run_until([source, silero_vad(), AskOnce("What can you do?"), transport.output(),
                     transport.input(), collector],
                    collector.until(lambda: collector.count(BotStoppedSpeakingFrame) >= 2),
                    "the avatar answered the text and the speech")
    await client.aclose()

    session = next(iter(emulator.emulator.registry))
    audio = session.audio
    assert audio.frames == 0 and audio.text_frames == 0, "nothing on the socket but events"
    assert audio.room_texts == 1
    # The room heard all of the speech. (No upper bound here: a subscribed track delivers
    # audio in real time even after its publisher falls silent, so room_seconds grows with
    # the time the answers take. None of it came twice: one turn, heard at its length.)
    assert audio.room_seconds >= speech_s
    # A track takes 10 ms frames: no audio waits to fill the socket's 32 ms pieces.
    assert transport.session.audio_piece_s == pytest.approx(0.01)
    sent_s = transport.output().audio_seconds_sent
    assert 1.0 + speech_s - 0.01 <= sent_s <= source.seconds_sent
    assert (audio.user_starts, audio.user_stops) == (1, 1)
    said = [t["text"] for t in session.tasks]
    assert said[0] == "You said: What can you do?"
    heard_s = float(said[1].split()[2])
    # A stall on a loaded machine reaches the track as a burst, and the track drops pauses
    # (counted) to win the lag back: the quiet between words goes, so the avatar hears the
    # speech shorter by at most what was dropped (seen: 1.9 s of 2.5 s, after a stall).
    # And a stall the track did not win back plays as a pause inside the turn, which HeyGen
    # hears as part of it (seen: 3.0 s of 2.5 s): each such pause is shorter than the
    # detector's hangover (a longer one splits the turn: one turn is asserted above), so the
    # upper bound only has to catch speech heard twice.
    dropped_s = transport.session.microphone_dropped_s
    assert speech_s - dropped_s - 0.5 <= heard_s < 2 * speech_s - 0.5, (said, dropped_s)
    kinds = [type(f) for _, f in collector.frames]
    assert kinds.count(UserStartedSpeakingFrame) == kinds.count(UserStoppedSpeakingFrame) == 1
    assert kinds.count(BotStoppedSpeakingFrame) == 2
    assert session.state.value == "stopped"


async def test_a_burst_into_the_microphone_track_does_not_become_lasting_latency(
    emulator: EmulatorServer,
) -> None:
    """A track plays in real time: audio pushed faster than that (a stalled loop catching
    up, a start-up backlog) would make every later word as late. Beyond a small lag it is
    dropped, and counted."""
    from agent.heygen.backend import MICROPHONE_LAG_S
    from agent.heygen.session import HeyGenSession

    options = livekit_voice_options()
    async with (
        api.HeyGenClient("e2e-key-123456", base_url=emulator.base_url) as client,
        HeyGenSession(client, options) as session,
    ):
        assert session.microphone_is_track and session.microphone_dropped_s == 0
        assert await session.send_audio(bytes(16_000 * 2 * 2), 16_000) == 200  # 2 s at once
        microphone = session._microphone
        assert microphone is not None
        await eventually(microphone.empty, "the feed took every frame")
        kept = 2.0 - session.microphone_dropped_s
        # What the track took: the lag allowed, and what played out meanwhile.
        assert MICROPHONE_LAG_S <= kept <= MICROPHONE_LAG_S + 0.3, kept


@both_backends
async def test_a_microphone_track_session_runs_only_once_the_avatar_listens(
    emulator: EmulatorServer, backend: Backend
) -> None:
    """Both backends that put the microphone in the room (Interactive's LiveKit voice
    transport, LiveAvatar FULL): with the avatar subscribing 1 s late, start() returns
    only once it has subscribed, so nothing said from then on reaches no one."""
    import asyncio

    from agent.emulator.avatar import AvatarParticipant
    from agent.heygen.backend import SessionListener

    await set_faults(emulator, listen_delay_ms=1000)
    options = backend.brain()
    if isinstance(options, SessionOptions):
        options = livekit_voice_options()
    async with options.open_client(backend.key, emulator.base_url) as client:
        session = options.new_session(client, SessionListener())
        await session.start()
        started = asyncio.get_running_loop().time()
        try:
            assert session.microphone_is_track
            avatar = emulator.emulator.runtimes[session.session_id or ""].avatar
            assert isinstance(avatar, AvatarParticipant)
            # the avatar asked for the microphone before the start was over
            assert avatar.listened_late_at is not None and avatar.listened_late_at <= started
        finally:
            await session.stop()


async def test_a_burst_of_speech_into_the_microphone_track_is_kept_whole(
    emulator: EmulatorServer,
) -> None:
    """A stalled loop catching up pushes speech faster than real time. The words are kept
    (late for once), and the lag is won back in the pause after them, where quiet audio
    is what gets dropped: the avatar hears the whole utterance."""
    import asyncio

    from agent.heygen.session import HeyGenSession

    rate, frame_s = 16_000, 0.02
    t = np.arange(int(0.6 * rate)) / rate
    speech = (np.sin(2 * np.pi * 180 * t) * 8000).astype("<i2").tobytes()
    quiet = bytes(int(rate * frame_s) * 2)
    options = livekit_voice_options()
    async with (
        api.HeyGenClient("e2e-key-123456", base_url=emulator.base_url) as client,
        HeyGenSession(client, options) as session,
    ):
        await session.send_audio(speech, rate)  # 0.6 s at once
        loop = asyncio.get_running_loop()
        deadline = loop.time()
        for _ in range(round(1.5 / frame_s)):  # then a pause, in real time
            await session.send_audio(quiet, rate)
            deadline += frame_s
            await asyncio.sleep(max(0.0, deadline - loop.time()))
        emulated = next(iter(emulator.emulator.registry))
        await eventually(lambda: len(emulated.tasks) == 1, "the avatar answered the turn")
        heard_s = float(emulated.tasks[0]["text"].split()[2])
        assert heard_s == pytest.approx(0.6, abs=0.1), emulated.tasks[0]["text"]
        assert session.microphone_dropped_s > 0.2, "the lag was won back in the pause"


async def test_liveavatar_full_says_which_participant_never_came(
    livekit_server: LiveKitServer,
) -> None:
    """FULL mode waits for the avatar (participant ``heygen``) before it speaks; an avatar
    that never joins is one clear, typed error naming it, and the session is stopped."""
    from agent.emulator.runtime import TimedAvatar
    from agent.heygen.liveavatar import AvatarNotInRoom, LiveAvatarOptions, LiveAvatarSession
    from agent.heygen.protocol.liveavatar import rest as la

    config = EmulatorConfig(livekit=livekit_server.settings)
    # an avatar that keeps time but never joins the room
    async with EmulatorServer(config, avatar_factory=lambda s, e: TimedAvatar()) as emulator:
        request = la.TokenRequest(mode=la.Mode.FULL, avatar_id=la.SANDBOX_AVATAR_ID,
                                  is_sandbox=True)
        options = LiveAvatarOptions(request=request, avatar_timeout_s=1.0,
                                    keep_alive_interval_s=None)
        async with api.LiveAvatarClient("absent-key-1", base_url=emulator.base_url) as client:
            session = LiveAvatarSession(client, options)
            with pytest.raises(AvatarNotInRoom) as caught:
                await session.start()
        assert "participant 'heygen'" in str(caught.value) and caught.value.retryable
        assert emulator.emulator.registry.counts()["open"] == 0


async def test_the_first_words_are_heard_when_the_avatar_listens_late(
    emulator: EmulatorServer, tmp_path: Path
) -> None:
    """A microphone track: the avatar subscribes to it 1.5 s after it is published (the
    listen-delay fault, as on a loaded media server). The session is running only once
    the avatar listens, so speech that starts as soon as it runs is heard whole."""
    await set_faults(emulator, listen_delay_ms=1500)
    wav = tmp_path / "question.wav"
    speech_s = speech_wav(wav, "Hello avatar. What is the weather like today?")
    options = livekit_voice_options()
    transport = HeyGenTransport(api_key="late-ears-key-1", base_url=emulator.base_url,
                                session_options=options)
    collector = Collector()
    source = WavFileInput(wav, lead_in_s=0.2, start_when=transport.session_running)
    await run_until([source, transport.output(), transport.input(), collector],
                    collector.until(lambda: collector.count(BotStoppedSpeakingFrame) >= 1),
                    "the avatar answered the speech")
    session = next(iter(emulator.emulator.registry))
    said = [t["text"] for t in session.tasks]
    assert len(said) == 1 and said[0].startswith("I heard "), said
    assert float(said[0].split()[2]) == pytest.approx(speech_s, abs=0.5), said


async def test_video_that_no_one_uses_is_not_received(emulator: EmulatorServer,
                                                      tmp_path: Path) -> None:
    """With video off, the avatar's video track is never subscribed (LiveKit neither
    receives nor decodes it); its voice still comes, and the session runs as before."""
    wav = tmp_path / "s.wav"
    speech_wav(wav, "hi")
    transport = HeyGenTransport(api_key="novideo-key-1", base_url=emulator.base_url,
                                params=HeyGenParams(video_enabled=False))
    collector = Collector()
    await run_until([WavFileInput(wav), transport.output(), transport.input(), collector],
                    collector.until(lambda: collector.count(OutputAudioRawFrame) > 50),
                    "the avatar's voice")
    assert subscriptions(transport.session.room) == {"video": [False], "audio": [True]}
    assert collector.count(OutputImageRawFrame) == 0


async def test_audio_that_no_one_uses_is_not_received(emulator: EmulatorServer) -> None:
    """With audio off, the avatar's audio track is never subscribed (LiveKit neither
    receives, decodes nor plays it out); its video still comes."""
    transport = HeyGenTransport(api_key="noaudio-key-1", base_url=emulator.base_url,
                                params=HeyGenParams(audio_enabled=False))
    collector = Collector()
    await run_until([transport.output(), transport.input(), collector],
                    collector.until(lambda: collector.count(OutputImageRawFrame) > 5),
                    "the avatar's video")
    assert subscriptions(transport.session.room) == {"video": [True], "audio": [False]}
    assert collector.count(OutputAudioRawFrame) == 0


def test_a_file_with_no_video_output_does_not_receive_video(tmp_path: Path) -> None:
    """Video only for outputs that show or record it; the avatar's voice only for those
    that play or record it; a video: section says what to receive whatever the outputs."""
    from agent.pipeline.builder import build
    from agent.pipeline.loader import load_agent_file

    config = tmp_path / "a.yaml"
    for outputs, video, audio in (
        ("[{type: none}]", False, False), ("[{type: speaker}]", False, True),
        ("[{type: viewer, port: 0}]", True, False),
        (f"[{{type: recorder, path: {tmp_path / 'a.mp4'}}}]", True, True),
        ("[{type: none}]\nvideo: {video_enabled: false}", False, True),
    ):
        config.write_text("heygen: {base_url: 'http://127.0.0.1:9', api_key: k-123456}\n"
                          f"input: {{type: none}}\noutputs: {outputs}\n")
        file, specs = load_agent_file(config)
        params = build(file, specs, base_dir=tmp_path).transport.params
        assert (params.video_enabled, params.audio_enabled) == (video, audio), outputs


def test_every_output_type_says_what_media_it_takes() -> None:
    from typing import get_args

    from agent.pipeline.face import OUTPUT_TAKES
    from agent.pipeline.schema import Output

    kinds = get_args(get_args(Output)[0])
    assert {get_args(k.model_fields["type"].annotation)[0] for k in kinds} == set(OUTPUT_TAKES)
