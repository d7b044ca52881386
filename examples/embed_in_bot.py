"""HeyGenTransport inside an existing Pipecat bot, built in Python: no YAML.

Your bot keeps its own pieces (here a WAV "microphone", Silero VAD, a custom processor and
a recorder); HeyGen is two more processors in the list. Run it against the emulator, from
the repository with its venv active (``. .venv/bin/activate``):

    heygen-agent emulate &                      # serves http://127.0.0.1:8700
    espeak-ng -w q.wav "What is the weather like today?"
    HEYGEN_BASE_URL=http://127.0.0.1:8700 HEYGEN_API_KEY=any python examples/embed_in_bot.py q.wav
"""

from __future__ import annotations

import asyncio
import contextlib
import sys

# Run as a script, this file's directory is on sys.path: its neighbour imports as is.
from keyword_alert import KeywordAlert  # type: ignore[import-not-found,unused-ignore]
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineWorker
from pipecat.workers.runner import WorkerRunner

from agent.heygen.protocol.interactive import NewSessionRequest
from agent.heygen.session import SessionOptions
from agent.heygen.transport import HeyGenTransport
from agent.media.recorder import RecorderOutput
from agent.media.vad import silero_vad
from agent.media.wav_source import WavFileInput


async def main(wav: str, recording: str, seconds: float) -> None:
    """Ask the WAV's question; stop once the avatar has answered, or after ``seconds``."""
    heygen = HeyGenTransport(
        session_options=SessionOptions(request=NewSessionRequest(avatar_name="Emulated_Anna"))
    )
    answered = asyncio.Event()

    @heygen.event_handler("on_user_transcript")
    async def heard(transport: HeyGenTransport, text: str) -> None:
        print(f"user: {text}", flush=True)

    @heygen.event_handler("on_avatar_transcript")
    async def said(transport: HeyGenTransport, text: str) -> None:
        print(f"avatar: {text}", flush=True)

    @heygen.event_handler("on_avatar_stopped_speaking")
    async def done(transport: HeyGenTransport) -> None:
        answered.set()

    pipeline = Pipeline([
        WavFileInput(wav, lead_in_s=0.5, after_end="silence"),
        silero_vad(),
        heygen.output(),
        heygen.input(),
        KeywordAlert(keywords=["seconds"]),
        RecorderOutput(recording),
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
    wav_path = sys.argv[1]
    out = sys.argv[2] if len(sys.argv) > 2 else "recordings/embedded.mp4"
    asyncio.run(main(wav_path, out, float(sys.argv[3]) if len(sys.argv) > 3 else 30.0))
