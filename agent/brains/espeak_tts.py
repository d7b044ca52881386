"""A Pipecat TTS service that speaks with espeak-ng: a bot's voice with no key and no network.

Robotic, but real speech, produced the way a Pipecat TTS service produces it: the base
class aggregates LLM text into sentences, opens an audio context per turn and pushes
``TTSStartedFrame`` and ``TTSStoppedFrame`` around it (``push_start_frame`` and
``push_stop_frames``); :meth:`EspeakTTSService.run_tts` only synthesises one sentence and
yields its audio, resampled to the pipeline's output rate, in short chunks.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import Any

from pipecat.audio.utils import create_file_resampler
from pipecat.frames.frames import ErrorFrame, Frame, TTSAudioRawFrame
from pipecat.services.settings import TTSSettings
from pipecat.services.tts_service import TTSService
from pipecat.utils.tracing.service_decorators import traced_tts
from pipecat.utils.types import NOT_GIVEN, NotGiven

from agent.media import espeak

#: Audio goes out in 40 ms frames: short enough to stop promptly on an interruption,
#: half the frames (and wake-ups downstream) of 20 ms.
CHUNK_S = 0.04


@dataclass
class EspeakTTSSettings(TTSSettings):
    """Settings for :class:`EspeakTTSService`; voice and speed changes (a
    ``TTSUpdateSettingsFrame``) apply from the next sentence on. espeak-ng has no model,
    and its language is its voice: ``language`` only tunes sentence splitting.

    Parameters:
        voice: An espeak-ng voice (``espeak-ng --voices``: ``en-us``, ``de``...); ``None``
            for espeak-ng's default.
        speed: How fast, as a multiple of espeak-ng's default rate (175 words a minute).
    """

    speed: float | NotGiven = field(default_factory=lambda: NOT_GIVEN)


class EspeakTTSService(TTSService):
    """Text to speech with the espeak-ng program, for offline pipelines and tests.

    Each sentence runs espeak-ng once, in a subprocess the event loop waits on; an
    interruption cancels the wait (the base class cancels synthesis) and kills it. A
    missing or failing espeak-ng is an ``ErrorFrame`` of one line.
    """

    Settings = EspeakTTSSettings
    _settings: EspeakTTSSettings

    #: In a pipeline file, it goes where a TTS goes: before the HeyGen transport.
    placement = "before_heygen"

    def __init__(
        self,
        *,
        voice: str | None = None,
        speed: float = 1.0,
        sample_rate: int | None = None,
        espeak_path: str | None = None,
        settings: EspeakTTSSettings | None = None,
        **kwargs: Any,
    ) -> None:
        """Initialize the service.

        Args:
            voice: espeak-ng voice, ``None`` for its default.
            speed: Rate as a multiple of espeak-ng's default.
            sample_rate: Output rate; ``None`` for the pipeline's ``audio_out_sample_rate``.
            espeak_path: The espeak-ng program; ``None`` to find it on the PATH.
            settings: A settings delta applied over ``voice`` and ``speed`` (Pipecat's
                canonical way; ``TTSUpdateSettingsFrame`` sends one at run time).
            **kwargs: For :class:`TTSService` (``text_aggregation_mode``, ...).
        """
        store = EspeakTTSSettings(model=None, voice=voice, language=None, speed=speed)
        if settings is not None:
            store.apply_update(settings)
        super().__init__(
            push_start_frame=True,
            push_stop_frames=True,
            sample_rate=sample_rate,
            settings=store,
            **kwargs,
        )
        self._espeak_path = espeak_path
        # One-shot, whole-utterance resampling: unlike the base class's stream
        # resampler it holds nothing back, so every utterance keeps its tail.
        self._utterance_resampler = create_file_resampler()

    def can_generate_metrics(self) -> bool:
        return True

    def _words_per_minute(self) -> int | None:
        speed = self._settings.speed
        if not isinstance(speed, int | float) or speed == 1.0:
            return None
        # espeak-ng's own limits: 80 to 450 words a minute
        return max(80, min(450, round(espeak.DEFAULT_WORDS_PER_MINUTE * speed)))

    @traced_tts
    async def run_tts(self, text: str, context_id: str) -> AsyncGenerator[Frame, None]:
        """One sentence's audio, at :attr:`sample_rate`, in :data:`CHUNK_S` frames."""
        voice = self._settings.voice
        try:
            await self.start_tts_usage_metrics(text)
            pcm, rate = await espeak.speak_async(
                text,
                voice=voice if isinstance(voice, str) else None,
                words_per_minute=self._words_per_minute(),
                binary=self._espeak_path,
            )
            pcm = await self._utterance_resampler.resample(pcm, rate, self.sample_rate)
        except espeak.EspeakError as exc:
            yield ErrorFrame(error=str(exc))
            return
        finally:
            await self.stop_ttfb_metrics()  # the whole sentence is its first byte
        step = max(2, int(self.sample_rate * CHUNK_S) * 2)
        for offset in range(0, len(pcm), step):
            yield TTSAudioRawFrame(
                audio=pcm[offset : offset + step],
                sample_rate=self.sample_rate,
                num_channels=1,
                context_id=context_id,
            )
