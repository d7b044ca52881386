"""espeak-ng run as a program: the one place the project turns text into speech itself.

Two things speak without a provider: the emulated avatar (its voice) and the offline
brain's TTS service (a bot's voice with no keys and no network). Both need the same
details right, so they live here, below both: the text goes on stdin (as an argument,
text starting with '-' would be taken for an option), the WAV espeak-ng writes to stdout
declares a length it never has (so the data is read to its end, not to the header's
count), and a failure is one line of text, not a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import shutil
import subprocess
import wave

PROGRAM = "espeak-ng"
INSTALL_HINT = "apt-get install espeak-ng"

#: espeak-ng's own default rate, in words per minute (``-s``).
DEFAULT_WORDS_PER_MINUTE = 175

#: Longer than any sentence takes espeak-ng (it runs ~50x faster than real time).
TIMEOUT_S = 30.0


class EspeakError(RuntimeError):
    """espeak-ng is missing or failed; the message is one line, fit for a log or a frame."""


def find(binary: str | None = None) -> str:
    """The program to run: ``binary`` as given, else espeak-ng on the PATH."""
    if binary is not None:
        return binary
    found = shutil.which(PROGRAM)
    if found is None:
        raise EspeakError(f"{PROGRAM} is not installed ({INSTALL_HINT})")
    return found


def command(binary: str, *, voice: str | None = None,
            words_per_minute: int | None = None) -> list[str]:
    """The command line: WAV on stdout, text read from stdin."""
    args = [binary, "--stdout"]
    if voice:
        args += ["-v", voice]
    if words_per_minute is not None:
        args += ["-s", str(words_per_minute)]
    return args


def decode(returncode: int, stdout: bytes, stderr: bytes, binary: str) -> tuple[bytes, int]:
    """A finished run's speech as (PCM s16le mono, sample rate), or :class:`EspeakError`."""
    if returncode != 0:
        said = stderr.decode(errors="replace").strip().splitlines()
        reason = said[-1] if said else f"exit status {returncode}"
        raise EspeakError(f"{binary} failed: {reason}")
    try:
        with wave.open(io.BytesIO(stdout), "rb") as wav:
            if wav.getsampwidth() != 2 or wav.getnchannels() != 1:
                raise EspeakError(f"{binary} wrote audio that is not 16-bit mono")
            rate = wav.getframerate()
            # The header's frame count is a placeholder (stdout cannot be rewound): read
            # whatever data there is instead.
            pcm = wav.readframes(len(stdout) // 2)
    except (wave.Error, EOFError) as exc:
        raise EspeakError(f"{binary} wrote no readable WAV: {exc}") from None
    return pcm[: len(pcm) // 2 * 2], rate


def speak(text: str, *, voice: str | None = None, words_per_minute: int | None = None,
          binary: str | None = None) -> tuple[bytes, int]:
    """``text`` spoken, as (PCM s16le mono, sample rate). Blocking: run it in a thread."""
    program = find(binary)
    try:
        result = subprocess.run(
            command(program, voice=voice, words_per_minute=words_per_minute),
            input=text.encode(), capture_output=True, check=False, timeout=TIMEOUT_S,
        )
    except OSError as exc:
        raise EspeakError(f"cannot run {program}: {exc.strerror or exc}") from None
    except subprocess.TimeoutExpired:
        raise EspeakError(f"{program} took over {TIMEOUT_S:.0f} s") from None
    return decode(result.returncode, result.stdout, result.stderr, program)


async def speak_async(text: str, *, voice: str | None = None,
                      words_per_minute: int | None = None,
                      binary: str | None = None) -> tuple[bytes, int]:
    """:func:`speak` without blocking the event loop. Cancelling it (an interruption)
    kills espeak-ng: nothing keeps synthesising speech nobody will hear."""
    program = find(binary)
    try:
        process = await asyncio.create_subprocess_exec(
            *command(program, voice=voice, words_per_minute=words_per_minute),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
    except OSError as exc:
        raise EspeakError(f"cannot run {program}: {exc.strerror or exc}") from None
    try:
        async with asyncio.timeout(TIMEOUT_S):
            stdout, stderr = await process.communicate(text.encode())
    except TimeoutError:
        raise EspeakError(f"{program} took over {TIMEOUT_S:.0f} s") from None
    finally:
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
    assert process.returncode is not None
    return decode(process.returncode, stdout, stderr, program)
