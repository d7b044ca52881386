"""Reading WAV files, without Pipecat: the pipeline loader checks a file's WAV input before
anything connects, and the WAV source plays it."""

from __future__ import annotations

import re
import wave
from dataclasses import dataclass
from pathlib import Path


class WavFileError(ValueError):
    """The file is not a WAV this project can play (16-bit PCM); ``str()`` names it."""


@dataclass(frozen=True)
class WavInfo:
    sample_rate: int
    num_channels: int
    num_frames: int


#: WAVE_FORMAT_IEEE_FLOAT: what many recorders save; the standard library reads only PCM
FLOAT_FORMAT = 3


def _open(path: Path) -> wave.Wave_read:
    try:
        wav = wave.open(str(path), "rb")  # noqa: SIM115 - the caller closes it
    except FileNotFoundError:
        raise WavFileError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise WavFileError(f"{path}: is a directory, not a WAV file") from None
    except wave.Error as exc:
        raise WavFileError(f"{path}: {_unplayable(path, exc)}") from None
    except (OSError, EOFError) as exc:
        detail = f" ({exc})" if str(exc) else ""
        raise WavFileError(f"{path}: not a readable WAV file{detail}") from None
    if wav.getsampwidth() != 2:
        bits = wav.getsampwidth() * 8
        wav.close()
        raise WavFileError(f"{path}: 16-bit PCM expected, got {bits}-bit")
    return wav


def _unplayable(path: Path, exc: wave.Error) -> str:
    """Why the standard library refused a WAV, as a user can act on it."""
    kind = re.fullmatch(r"unknown format: (\d+)", str(exc))
    if kind is None:
        return f"not a readable WAV file ({exc})" if str(exc) else "not a readable WAV file"
    number = int(kind.group(1))
    what = "floating-point samples" if number == FLOAT_FORMAT else "samples"
    return (f"16-bit PCM expected, got {what} (WAV format {number}); sox {path.name} -b 16 "
            f"-e signed-integer {path.stem}16{path.suffix} converts it")


def probe_wav(path: Path) -> WavInfo:
    """The header of a playable WAV; reads no audio, so checking a long file is cheap."""
    with _open(path) as wav:
        return WavInfo(wav.getframerate(), wav.getnchannels(), wav.getnframes())


def read_wav(path: Path) -> tuple[bytes, int, int]:
    """PCM s16le, sample rate and channel count of a WAV file."""
    with _open(path) as wav:
        try:
            return wav.readframes(wav.getnframes()), wav.getframerate(), wav.getnchannels()
        except (OSError, EOFError, wave.Error) as exc:
            raise WavFileError(f"{path}: not a readable WAV file ({exc})") from None
