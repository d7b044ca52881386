"""The avatar's video and voice in your own LiveKit room, through Pipecat's LiveKit transport.

Why: HeyGen's avatar lives in a LiveKit room of HeyGen's (one per session, joined with
HeyGen's tokens). Your app has its own room, which its browser clients already join. This
bot takes the avatar into the bot's pipeline (``heygen.input()``) and publishes it into your
room with Pipecat's own ``LiveKitTransport``, as one participant with a camera track and a
microphone track: the page needs no HeyGen SDK, never sees a HeyGen token, and the bot may
put any processor between the avatar and your users::

    WAV "microphone" -> Silero VAD -> heygen.output() -> heygen.input()
        -> LiveKitTransport(LIVEKIT_URL, token, ROOM).output()

With ``--own-brain``, the bot's own ears, brain and voice answer, and HeyGen is only the
face: it lip-syncs the bot's TTS, and what reaches your room is the avatar's video with
that lip-synced voice (the raw TTS audio goes no further than HeyGen)::

    WAV -> Silero VAD -> STT -> user context -> LLM -> TTS -> heygen.output()
        -> heygen.input() -> LiveKitTransport(...).output() -> assistant context

Here the brain is the project's offline stand-ins (a speech-length STT, a scripted LLM,
espeak-ng), so it runs with no key; a real bot puts e.g. Deepgram, OpenAI and Cartesia
there (see ``examples/face_for_my_bot.py``).

The bot's participant (identity ``heygen-avatar``) publishes the avatar's video at its own
size and 25 fps (640x360 from the emulator; ``--size`` for another avatar, whose frames
Pipecat would otherwise scale) and its voice at 24 kHz. It asks the WAV's question, stops
once the avatar has answered or after ``--seconds`` (60), stops the HeyGen session, and
leaves the room.

Configuration comes from the environment, as in a Pipecat app: ``HEYGEN_BASE_URL`` and
``HEYGEN_API_KEY``; ``LIVEKIT_URL``, ``LIVEKIT_API_KEY`` and ``LIVEKIT_API_SECRET`` of the
LiveKit server or LiveKit Cloud project that holds your room (the bot mints its own token
with them). ``heygen-agent emulate`` starts a LiveKit server of its own whose secret is
generated and never printed, so for your room use a server whose key and secret you know:
``livekit-server --dev`` (key ``devkey``, secret ``secret``, on ws://127.0.0.1:7880), which
the emulator can use for its avatars too, or your LiveKit Cloud project. From the
repository with its venv active (``. .venv/bin/activate``; ``scripts/setup`` put
``livekit-server`` in ``.tools/bin``)::

    PATH=$PWD/.tools/bin:$PATH livekit-server --dev &             # ws://127.0.0.1:7880
    heygen-agent emulate --livekit-url ws://127.0.0.1:7880 &      # http://127.0.0.1:8700
    espeak-ng -w q.wav "What is the weather like today?"
    HEYGEN_BASE_URL=http://127.0.0.1:8700 HEYGEN_API_KEY=any \\
    LIVEKIT_URL=ws://127.0.0.1:7880 LIVEKIT_API_KEY=devkey LIVEKIT_API_SECRET=secret \\
        python examples/avatar_to_livekit_room.py my-room q.wav   # [--own-brain]

Against HeyGen, leave ``HEYGEN_BASE_URL`` unset and use your key; with LiveKit Cloud, your
project's ``wss://`` URL, key and secret. To watch, join ``my-room`` from a browser with a
token of your own for it (any identity), e.g. from LiveKit's Meet example app.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

from livekit import api
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineWorker
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.processors.aggregators.llm_response_universal import (
    LLMContextAggregatorPair,
    LLMUserAggregatorParams,
)
from pipecat.processors.frame_processor import FrameProcessor
from pipecat.transports.livekit.transport import LiveKitParams, LiveKitTransport
from pipecat.turns.user_start import VADUserTurnStartStrategy
from pipecat.turns.user_stop import SpeechTimeoutUserTurnStopStrategy
from pipecat.turns.user_turn_strategies import UserTurnStrategies
from pipecat.workers.runner import WorkerRunner

from agent.brains import EspeakTTSService, ScriptedLLMService, SpeechLengthSTTService
from agent.heygen.protocol.interactive import NewSessionRequest
from agent.heygen.session import SessionOptions
from agent.heygen.transport import HeyGenTransport
from agent.media.vad import silero_vad
from agent.media.wav_source import WavFileInput

BOT_IDENTITY = "heygen-avatar"
#: The emulated avatar's (and HeyGen's) frame rate and voice sample rate.
AVATAR_FPS = 25
AVATAR_SAMPLE_RATE = 24_000


def environment(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        sys.exit(f"avatar_to_livekit_room: set {name} (see the docstring)")
    return value


def bot_token(room: str, key: str, secret: str) -> str:
    """A token for the bot's participant in ``room``: it joins and publishes."""
    grants = api.VideoGrants(room_join=True, room=room, can_publish=True, can_subscribe=True)
    return (api.AccessToken(key, secret).with_identity(BOT_IDENTITY).with_name("Avatar")
            .with_grants(grants).to_jwt())


#: The scripted brain's answer to the speech-length STT's transcript of any question.
OWN_ANSWER = "I heard you, and I answer with my own brain."


def own_brain(heygen: HeyGenTransport) -> tuple[list[FrameProcessor], FrameProcessor]:
    """The bot's own STT, user context, LLM and TTS (before the avatar), and its
    assistant context (after the outputs)."""
    context = LLMContext([{"role": "system", "content": "You are a friendly assistant."}])
    turns = UserTurnStrategies(start=[VADUserTurnStartStrategy()],
                               stop=[SpeechTimeoutUserTurnStopStrategy()])
    aggregators = LLMContextAggregatorPair(
        context, user_params=LLMUserAggregatorParams(user_turn_strategies=turns))
    user = aggregators.user()

    async def tell(_aggregator: object, _strategy: object, message: object) -> None:
        # what the bot's STT heard, told as HeyGen's own transcripts are
        await heygen.user_said(getattr(message, "content", None) or "")

    user.add_event_handler("on_user_turn_stopped", tell)
    brain: list[FrameProcessor] = [
        SpeechLengthSTTService(), user,
        ScriptedLLMService(answers={"seconds": OWN_ANSWER}), EspeakTTSService()]
    return brain, aggregators.assistant()


async def main(room: str, wav: str, seconds: float, size: tuple[int, int],
               own: bool = False) -> int:
    """Ask the WAV's question; stop once the avatar has answered, or after ``seconds``.
    Returns the exit status: 1 if the pipeline ended by itself (no HeyGen session)."""
    url = environment("LIVEKIT_URL")
    token = bot_token(room, environment("LIVEKIT_API_KEY"), environment("LIVEKIT_API_SECRET"))
    options = SessionOptions(request=NewSessionRequest(avatar_name="Emulated_Anna"))
    heygen = HeyGenTransport(  # HEYGEN_API_KEY / HEYGEN_BASE_URL from the environment
        # own brain: HeyGen lip-syncs the bot's TTS (no voice chat, no HeyGen brain)
        session_options=options.for_own_brain("lipsync") if own else options
    )
    room_out = LiveKitTransport(url, token, room, params=LiveKitParams(
        audio_out_enabled=True,
        # HeyGenTransport's audio is 24 kHz mono: the track's rate, so nothing resamples.
        audio_out_sample_rate=AVATAR_SAMPLE_RATE,
        audio_out_channels=1,
        video_out_enabled=True,
        # Its video is RGB (what the transport takes) at the avatar's size, so nothing
        # converts or scales. Live: each avatar frame is published once, paced at the
        # avatar's rate, instead of the latest image repeated at video_out_framerate.
        video_out_is_live=True,
        video_out_width=size[0],
        video_out_height=size[1],
        video_out_framerate=AVATAR_FPS,
        video_out_color_format="RGB",
    ))
    answered = asyncio.Event()

    @heygen.event_handler("on_user_transcript")
    async def heard(transport: HeyGenTransport, text: str) -> None:
        print(f"user: {text}", flush=True)

    @heygen.event_handler("on_avatar_transcript")
    async def said(transport: HeyGenTransport, text: str) -> None:
        print(f"avatar: {text}", flush=True)
        answered.set()

    brain, assistant = own_brain(heygen) if own else ([], None)
    pipeline = Pipeline([
        WavFileInput(wav, lead_in_s=0.5, after_end="silence"),
        silero_vad(),
        *brain,
        heygen.output(),
        heygen.input(),
        room_out.output(),
        *([assistant] if assistant else []),
    ])
    worker = PipelineWorker(pipeline, idle_timeout_secs=None)
    runner = WorkerRunner()
    await runner.add_workers(worker)
    running = asyncio.create_task(runner.run())
    answer = asyncio.create_task(answered.wait())
    await asyncio.wait([running, answer], timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    answer.cancel()
    if running.done():  # HeyGen's session did not start, or ended: said in the log
        await running
        print("avatar_to_livekit_room: the pipeline ended before an answer", file=sys.stderr)
        return 1
    if not answered.is_set():
        print(f"avatar_to_livekit_room: no answer within {seconds:g} s", file=sys.stderr)
    await worker.stop_when_done()  # ends the HeyGen session, then leaves the room
    await running
    return 0


def parse_size(text: str) -> tuple[int, int]:
    width, _, height = text.partition("x")
    return int(width), int(height)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("room", help="the LiveKit room your app's clients join")
    parser.add_argument("wav", help="the question, a 16-bit PCM WAV")
    parser.add_argument("--seconds", type=float, default=60.0, help="stop after this long")
    parser.add_argument("--size", type=parse_size, default=(640, 360), metavar="WxH",
                        help="the avatar's video size (640x360 from the emulator)")
    parser.add_argument("--own-brain", action="store_true",
                        help="the bot's own STT, LLM and TTS answer; HeyGen lip-syncs the TTS")
    args = parser.parse_args()
    sys.exit(asyncio.run(main(args.room, args.wav, args.seconds, args.size, args.own_brain)))
