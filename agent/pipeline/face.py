"""The avatar's transport, made from a pipeline file without building the rest.

``heygen-agent run`` starts the HeyGen session while the rest of the pipeline is still
being built (its imports and models take about a second, as long as a start), so the
transport must be made first, from the file alone, and without the builder's imports:
this module needs only the transport's.
"""

from __future__ import annotations

from agent.heygen.transport import HeyGenParams, HeyGenTransport
from agent.pipeline.schema import PipelineFile

#: The avatar's media each output type takes.
OUTPUT_TAKES: dict[str, frozenset[str]] = {
    "viewer": frozenset({"video"}),
    "speaker": frozenset({"audio"}),
    "recorder": frozenset({"video", "audio"}),
    "none": frozenset(),
}


def avatar_transport(
    file: PipelineFile, *, base_url: str | None = None, api_key: str | None = None
) -> HeyGenTransport:
    """The file's HeyGen transport (nothing connects); ``base_url`` and ``api_key``
    override the file's (the emulator the command started)."""
    heygen = file.heygen
    key = api_key or (heygen.api_key.get_secret_value() if heygen.api_key else None)
    options = heygen.session_options(brain=file.brain.face if file.brain else None)
    params = HeyGenParams.model_validate(file.video.model_dump()) if file.video else HeyGenParams()
    if file.video is None:
        # What no output takes is not received, decoded nor played out (a processor that
        # wants the avatar's frames or voice says so with a video: section).
        taken = {kind for o in file.outputs for kind in OUTPUT_TAKES[o.type]}
        params = params.model_copy(update={"video_enabled": "video" in taken,
                                           "audio_enabled": "audio" in taken})
    if params.video_format == "auto":
        # A file's outputs are this project's, which read LiveKit's I420 as it comes:
        # converting every frame to RGB would cost CPU for no one.
        params = params.model_copy(update={"video_format": "I420"})
    return HeyGenTransport(api_key=key, base_url=base_url or heygen.base_url,
                           session_options=options, params=params)
