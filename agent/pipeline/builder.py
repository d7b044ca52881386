"""From a validated pipeline file to a running Pipecat pipeline.

The order is fixed by what flows where::

    input → VAD → [processors placed before HeyGen] → heygen.output() → heygen.input()
          → [processors] → outputs

Processors go after the transport's input (they see the avatar's frames and HeyGen's
transcripts) unless their class says ``placement = "before_heygen"`` (a greeting, a
filter on the user's audio). With a ``brain:`` (your own STT, LLM and TTS), HeyGen is
only the face::

    input → VAD → STT → user context → LLM → [TTS] → heygen.output() → heygen.input()
          → [processors] → outputs → assistant context
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.processors.aggregators.llm_response_universal import (
    LLMContextAggregatorPair,
    LLMUserAggregatorParams,
)
from pipecat.processors.frame_processor import FrameProcessor
from pipecat.turns.user_start import (
    TranscriptionUserTurnStartStrategy,
    VADUserTurnStartStrategy,
)
from pipecat.turns.user_stop import SpeechTimeoutUserTurnStopStrategy
from pipecat.turns.user_turn_strategies import UserTurnStrategies

from agent.heygen.api.base import RestClient
from agent.heygen.transport import HeyGenTransport
from agent.media.devices import MicrophoneInput, SpeakerOutput
from agent.media.recorder import RecorderOutput
from agent.media.sinks import NullSink
from agent.media.vad import silero_vad
from agent.media.viewer import ViewerOutput
from agent.media.wav_source import WavFileInput
from agent.pipeline.face import avatar_transport
from agent.pipeline.loader import resolve_path
from agent.pipeline.registry import ProcessorSpec
from agent.pipeline.schema import PipelineFile
from agent.processors.latency_probe import LatencyProbe

BEFORE_HEYGEN = "before_heygen"


@dataclass
class Agent:
    """Everything built from one file, for the runner and the status line."""

    worker: PipelineWorker
    transport: HeyGenTransport
    client: RestClient
    processors: list[FrameProcessor]
    latency: LatencyProbe
    viewer: ViewerOutput | None = None
    recorder: RecorderOutput | None = None
    wav: WavFileInput | None = None
    extras: dict[str, Any] = field(default_factory=dict)


def build(
    file: PipelineFile,
    specs: list[ProcessorSpec],
    *,
    base_dir: Path,
    base_url: str | None = None,
    api_key: str | None = None,
    transport: HeyGenTransport | None = None,
    processors: list[FrameProcessor] | None = None,
) -> Agent:
    """Build the pipeline; ``specs`` are the file's processors, already resolved and
    checked, their paths resolved (see :func:`agent.pipeline.loader.load_agent_file`).
    ``base_url`` and ``api_key`` override the file's (the emulator the command started).
    ``transport`` and ``processors`` (``specs`` built, in order) may be made beforehand,
    as ``run`` does to start the session while the rest is built. A processor whose
    constructor raises is a one-line :class:`ConfigError`."""
    if transport is None:
        transport = avatar_transport(file, base_url=base_url, api_key=api_key)
    if processors is None:
        processors = [spec.build() for spec in specs]
    built_by_spec = list(zip(specs, processors, strict=True))

    before: list[FrameProcessor] = []
    source: FrameProcessor | None = None
    wav: WavFileInput | None = None
    if file.input.type == "microphone":
        source = MicrophoneInput(device=file.input.device, sample_rate=file.input.sample_rate)
    elif file.input.type == "wav":
        # A recording stands in for a person: it speaks once the avatar is there.
        wav = source = WavFileInput(resolve_path(file.input.path, base_dir),
                                    after_end=file.input.after_end,
                                    lead_in_s=file.input.lead_in_s,
                                    start_when=transport.session_running)
    if source is not None:
        before.append(source)
        if file.vad is not None:
            before.append(silero_vad(file.vad))

    after: list[FrameProcessor] = []
    brain = {s.role: p for s, p in built_by_spec if s.role}
    assistant: FrameProcessor | None = None
    if file.brain is not None:
        # STT → the user's turn into the context → LLM (→ TTS) → HeyGen as the face; the
        # assistant's side of the context hears what was said after the avatar said it.
        system = file.brain.system_prompt
        context = LLMContext([{"role": "system", "content": system}] if system else None)
        turns = UserTurnStrategies(
            start=[VADUserTurnStartStrategy(), TranscriptionUserTurnStartStrategy()],
            stop=[SpeechTimeoutUserTurnStopStrategy()])  # no turn model to load
        pair = LLMContextAggregatorPair(
            context, user_params=LLMUserAggregatorParams(user_turn_strategies=turns))
        user = pair.user()

        async def _told(_aggregator: Any, _strategy: Any, message: Any) -> None:
            # the aggregator keeps the user's words for the LLM: tell the rest too
            await transport.user_said(getattr(message, "content", None) or "")

        user.add_event_handler("on_user_turn_stopped", _told)
        before += [brain["stt"], user, brain["llm"]]
        if "tts" in brain:
            before.append(brain["tts"])
        assistant = pair.assistant()
    built = list(brain.values())
    for processor_spec, processor in built_by_spec:
        if processor_spec.role:
            continue
        built.append(processor)
        if getattr(processor_spec.cls, "placement", None) == BEFORE_HEYGEN:
            before.append(processor)
        else:
            after.append(processor)
    latency = next((p for p in built if isinstance(p, LatencyProbe)), None) or LatencyProbe(
        log=False)
    if latency not in built:
        after.insert(0, latency)  # the status line always has a latency to show

    viewer = recorder = None
    for output in file.outputs:
        if output.type == "speaker":
            after.append(SpeakerOutput(device=output.device))
        elif output.type == "viewer":
            viewer = ViewerOutput(host=output.host, port=output.port)
            after.append(viewer)
        elif output.type == "recorder":
            recorder = RecorderOutput(resolve_path(output.path, base_dir))
            after.append(recorder)
        else:
            after.append(NullSink())

    # The assistant's context takes the bot's text out of the pipeline: last, so that
    # processors and outputs (the transcript, the viewer) see it first.
    last = [assistant] if assistant is not None else []
    pipeline = Pipeline([*before, transport.output(), transport.input(), *after, *last])
    worker = PipelineWorker(
        pipeline,
        params=PipelineParams(enable_metrics=file.logging.metrics),
        idle_timeout_secs=None,  # an avatar waiting for its user is not idle
    )
    return Agent(worker=worker, transport=transport, client=transport.client, processors=built,
                 latency=latency, viewer=viewer, recorder=recorder, wav=wav)
