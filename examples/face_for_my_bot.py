"""An existing Pipecat bot with its own ears, brain and voice gets HeyGen as its face.

Your bot already has a speech-to-text, an LLM between Pipecat's context aggregators, and
a TTS. Put HeyGen's transport after the TTS: its ``output()`` takes the TTS audio and has
the avatar lip-sync it (HeyGen's brain stays out of it), its ``input()`` brings back the
avatar's video and its lip-synced voice, which your own outputs play instead of the raw
TTS. Nothing else in the bot changes.

Here the bot's services are the project's offline stand-ins, so the example runs with no
key and no network; the comments say what a real bot puts there. Run it against the
emulator, from the repository with its venv active (``. .venv/bin/activate``):

    heygen-agent emulate &                      # serves http://127.0.0.1:8700
    espeak-ng -w q.wav "Hello, can you hear me?"
    HEYGEN_BASE_URL=http://127.0.0.1:8700 HEYGEN_API_KEY=any \
        python examples/face_for_my_bot.py q.wav

For HeyGen's successor API, pass ``--liveavatar`` (LiveAvatar LITE mode) and set
LIVEAVATAR_BASE_URL / LIVEAVATAR_API_KEY instead (the emulator takes any key that is not
a HeyGen one).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib

from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineWorker
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.processors.aggregators.llm_response_universal import (
    LLMContextAggregatorPair,
    LLMUserAggregatorParams,
)
from pipecat.turns.user_start import VADUserTurnStartStrategy
from pipecat.turns.user_stop import SpeechTimeoutUserTurnStopStrategy
from pipecat.turns.user_turn_strategies import UserTurnStrategies
from pipecat.workers.runner import WorkerRunner

from agent.brains import EspeakTTSService, ScriptedLLMService, SpeechLengthSTTService
from agent.heygen.backend import LifeOptions
from agent.heygen.liveavatar import LiveAvatarOptions
from agent.heygen.session import SessionOptions
from agent.heygen.transport import HeyGenTransport
from agent.media.recorder import RecorderOutput
from agent.media.vad import silero_vad
from agent.media.wav_source import WavFileInput


def my_bot_services() -> tuple[object, object, object]:
    """The bot's own STT, LLM and TTS. A real bot has e.g.
    DeepgramSTTService(api_key=...), OpenAILLMService(api_key=..., model=...) and
    CartesiaTTSService(api_key=..., settings=CartesiaTTSService.Settings(voice=...))
    here (Pipecat 1.14 deprecates its voice_id argument)."""
    stt = SpeechLengthSTTService()
    llm = ScriptedLLMService(answers={"seconds": "I heard you, and I answer with my own brain."})
    tts = EspeakTTSService()
    return stt, llm, tts


async def main(wav: str, recording: str, seconds: float, liveavatar: bool) -> None:
    # HeyGen as the face only: lip-sync the bot's TTS (voice chat off, no HeyGen brain).
    options: LifeOptions = (LiveAvatarOptions() if liveavatar else SessionOptions())
    heygen = HeyGenTransport(session_options=options.for_own_brain("lipsync"))
    answered = asyncio.Event()

    @heygen.event_handler("on_user_transcript")
    async def heard(transport: HeyGenTransport, text: str) -> None:
        print(f"user: {text}", flush=True)

    @heygen.event_handler("on_avatar_transcript")
    async def said(transport: HeyGenTransport, text: str) -> None:
        print(f"avatar: {text}", flush=True)
        answered.set()

    stt, llm, tts = my_bot_services()
    context = LLMContext([{"role": "system", "content": "You are a friendly assistant."}])
    turns = UserTurnStrategies(start=[VADUserTurnStartStrategy()],
                               stop=[SpeechTimeoutUserTurnStopStrategy()])
    aggregators = LLMContextAggregatorPair(
        context, user_params=LLMUserAggregatorParams(user_turn_strategies=turns))
    user = aggregators.user()

    async def tell(_aggregator: object, _strategy: object, message: object) -> None:
        await heygen.user_said(getattr(message, "content", None) or "")

    user.add_event_handler("on_user_turn_stopped", tell)

    pipeline = Pipeline([
        WavFileInput(wav, lead_in_s=0.5, after_end="silence"),  # your input transport
        silero_vad(),
        stt,
        user,
        llm,
        tts,
        heygen.output(),            # the TTS audio goes to the avatar...
        heygen.input(),             # ...whose video and lip-synced voice come back
        RecorderOutput(recording),  # your output transport
        aggregators.assistant(),
    ])
    worker = PipelineWorker(pipeline, idle_timeout_secs=None)
    runner = WorkerRunner()
    await runner.add_workers(worker)
    running = asyncio.create_task(runner.run())
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(answered.wait(), seconds)
    await worker.stop_when_done()
    await running


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("wav", help="the user's question, as a WAV file")
    parser.add_argument("recording", nargs="?", default="recordings/face_for_my_bot.mp4")
    parser.add_argument("--seconds", type=float, default=60.0, help="give up after this long")
    parser.add_argument("--liveavatar", action="store_true", help="LiveAvatar (LITE mode)")
    args = parser.parse_args()
    asyncio.run(main(args.wav, args.recording, args.seconds, args.liveavatar))
