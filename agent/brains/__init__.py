"""Offline stand-ins for a bot's own brain: an STT, a scripted LLM and an espeak-ng TTS.

The own-brain path (your LLM and TTS, HeyGen's face, see
:class:`agent.heygen.session.SessionOptions` ``realtime``) needs an LLM and a TTS service
in the pipeline, and every real one wants a key and the network. These are real Pipecat
services that need neither, so that path runs end to end on a laptop, in CI and in
demos: :class:`ScriptedLLMService` answers from a small table (or echoes) and streams
its answer as an LLM does; :class:`EspeakTTSService` speaks text with espeak-ng;
:class:`SpeechLengthSTTService` hears how long the user spoke (not what). They plug in where
real services would, around Pipecat's context aggregators.
"""

from agent.brains.espeak_tts import EspeakTTSService, EspeakTTSSettings
from agent.brains.scripted_llm import ScriptedLLMService
from agent.brains.speech_length_stt import SpeechLengthSTTService

__all__ = ["EspeakTTSService", "EspeakTTSSettings", "ScriptedLLMService",
           "SpeechLengthSTTService"]
