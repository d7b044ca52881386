"""Offline stand-ins for a bot's own brain: a scripted LLM and an espeak-ng TTS.

The own-brain path (your LLM and TTS, HeyGen's face, see
:class:`agent.heygen.session.SessionOptions` ``realtime``) needs an LLM and a TTS service
in the pipeline, and every real one wants a key and the network. These are real Pipecat
services that need neither, so that path runs end to end on a laptop, in CI and in
demos: :class:`ScriptedLLMService` answers from a small table (or echoes) and streams
its answer as an LLM does; :class:`EspeakTTSService` speaks text with espeak-ng. Both
plug in where a real service would, between Pipecat's context aggregators.
"""

from agent.brains.espeak_tts import EspeakTTSService, EspeakTTSSettings
from agent.brains.scripted_llm import ScriptedLLMService

__all__ = ["EspeakTTSService", "EspeakTTSSettings", "ScriptedLLMService"]
