"""Real speech for tests: espeak-ng renders text to a WAV, so VAD hears a voice."""

from __future__ import annotations

import subprocess
import wave
from pathlib import Path

from tests.machine import require


def speech_wav(path: Path, text: str, *, pad_s: float = 0.0) -> float:
    """Write ``text`` spoken by espeak-ng to ``path``, with ``pad_s`` of silence after;
    return the duration of the speech alone."""
    espeak = require("espeak-ng", "apt-get install espeak-ng")
    subprocess.run([espeak, "-w", str(path), text], check=True)
    with wave.open(str(path), "rb") as wav:
        params = wav.getparams()
        audio = wav.readframes(params.nframes)
    speech_s = params.nframes / params.framerate
    audio += bytes(int(pad_s * params.framerate) * params.sampwidth)
    with wave.open(str(path), "wb") as wav:
        wav.setparams(params)
        wav.writeframes(audio)
    return speech_s
