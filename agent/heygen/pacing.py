"""The bot's TTS audio → paced ``agent.speak`` chunks, with no I/O (time is passed in).

Why: both wires that lip-sync the avatar to our own TTS, the Interactive realtime socket
(heygen-protocol.md §4) and LiveAvatar LITE (§5), take 24 kHz mono s16le in messages of at
most 1 MB, and HeyGen plays what it is sent into a buffer. A TTS that is faster than real
time would flood that buffer with a whole answer at once (and an interruption would then
have minutes of audio to throw away); sent sparingly, the avatar starves and stutters.
HeyGen's official LITE client sends a first chunk of 400 ms, then chunks of 1 s; Pipecat
sends the first 3 s unpaced, then paces to real time. TTS services deliver any rate, mono
or stereo, in frames of any size, so the audio is downmixed and resampled on the way (by
:class:`~agent.heygen.chunker.AudioChunker`'s streaming resampler).

The rule (defaults in :class:`PacingRules`):

* Sizes, per utterance: the first chunk is released once ``first_chunk_s`` (0.4 s) of
  audio has accumulated, each later one once ``chunk_s`` (1 s) more has; :meth:`end`
  releases the rest, however short. No chunk exceeds ``max_chunk_bytes`` (749,850 bytes,
  about 15.6 s: what fits in a 1 MB message after base64's 4/3 and the JSON around it).
* Times: the avatar is taken to play continuously from the moment it is sent audio after
  having none (``start``). A complete chunk is released at once if the avatar has run dry;
  otherwise no earlier than ``start + sent - lead_s``, where ``sent`` is the audio released
  since ``start`` — at most ``lead_s`` (1 s) ahead of the avatar's playback. So a fast TTS
  leaves between 1 s and 2 s in HeyGen's buffer (never more than ``lead_s + chunk_s``),
  a 60 s answer goes out in step with its playback rather than at once, and a TTS slower
  than real time is never held back: its chunks go as soon as they are complete. After
  a dry spell ``start`` moves to the new release, so audio that comes late is not then
  sent in a burst to make up for lost time.
* Utterances queue one behind another on the same clock, so a new utterance's chunks never
  overtake the previous one's; every chunk carries its utterance's event id.

Every sample pushed comes out exactly once, in order; the resampler holds back a few tens
of milliseconds (:data:`~agent.heygen.chunker.RESAMPLER_HOLDBACK_S`) until :meth:`end`.
The caller sends each chunk as ``agent.speak`` and, after a chunk marked ``final``,
``agent.speak_end``; it sleeps until :meth:`SpeechPacer.next_due_at` between calls.
"""

from __future__ import annotations

import math
import uuid
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from agent.heygen.chunker import AudioChunker
from agent.heygen.protocol.liveavatar.socket import MAX_SPEAK_AUDIO_BYTES
from agent.heygen.protocol.realtime import SAMPLE_RATE

#: Bytes per sample of s16le.
SAMPLE_WIDTH = 2


@dataclass(frozen=True, slots=True)
class PacingRules:
    """How audio is cut and how far ahead of the avatar's playback it may be sent."""

    #: Audio in an utterance's first chunk: the official client's 400 ms.
    first_chunk_s: float = 0.4
    #: Audio in each later chunk: the official client's 1 s.
    chunk_s: float = 1.0
    #: How far ahead of real time (the avatar's playback) a chunk may be released.
    lead_s: float = 1.0
    #: The most PCM in one chunk; the default fits a 1 MB message once base64-encoded.
    max_chunk_bytes: int = MAX_SPEAK_AUDIO_BYTES

    def __post_init__(self) -> None:
        if not (self.first_chunk_s > 0 and self.chunk_s > 0):
            raise ValueError("chunk durations must be positive")
        if not self.lead_s >= 0:
            raise ValueError("lead_s must not be negative")
        if self.max_chunk_bytes < SAMPLE_WIDTH:
            raise ValueError("max_chunk_bytes must hold a sample")


@dataclass(frozen=True, slots=True)
class Chunk:
    """Audio for one ``agent.speak``: mono s16le at the pacer's rate.

    ``offset_s`` is the audio of the same utterance released before it. ``final`` marks the
    utterance's last chunk, after which the caller sends ``agent.speak_end``; a final chunk
    is empty (send no ``agent.speak`` for it) only when the utterance ended on a chunk
    boundary after all its audio had gone.
    """

    event_id: str
    pcm: bytes
    offset_s: float
    duration_s: float
    final: bool


@dataclass(slots=True)
class _Utterance:
    event_id: str
    pcm: bytearray = field(default_factory=bytearray)  # converted, not yet released
    released: int = 0  # samples
    ended: bool = False


class SpeechPacer:
    """Cuts utterances of TTS audio into paced chunks (see the module docstring).

    Call :meth:`begin`, then :meth:`push` per TTS frame, then :meth:`end`; send what each
    returns; between calls sleep until :meth:`next_due_at` and call :meth:`due`. One
    utterance is open at a time: :meth:`begin` refuses while one is, so ``end`` it first
    (its queued chunks still go out, ahead of the new utterance's). ``now`` is any
    monotonic clock in seconds and must not go backwards.
    """

    def __init__(self, rules: PacingRules | None = None, sample_rate: int = SAMPLE_RATE) -> None:
        if sample_rate <= 0:
            raise ValueError("sample_rate must be positive")
        self.rules = rules or PacingRules()
        self.sample_rate = sample_rate
        cap = max(1, self.rules.max_chunk_bytes // SAMPLE_WIDTH)
        self._first = min(cap, max(1, round(self.rules.first_chunk_s * sample_rate)))
        self._later = min(cap, max(1, round(self.rules.chunk_s * sample_rate)))
        self._converter = AudioChunker(sample_rate=sample_rate)
        self._queue: deque[_Utterance] = deque()
        self._open: _Utterance | None = None
        self._latest: _Utterance | None = None
        self._run_start: float | None = None  # when the avatar last started from empty
        self._run_sent = 0  # samples released since then
        self._now = -math.inf

    # ------------------------------------------------------------------ state

    @property
    def event_id(self) -> str | None:
        """The latest utterance's event id (kept after it ends), None before the first."""
        return self._latest.event_id if self._latest else None

    @property
    def speaking(self) -> bool:
        """An utterance is begun and not yet ended (nor interrupted)."""
        return self._open is not None

    @property
    def queued_s(self) -> float:
        """Audio taken in and not yet released, over every queued utterance (the
        resampler's few held-back milliseconds aside)."""
        return sum(len(u.pcm) for u in self._queue) / SAMPLE_WIDTH / self.sample_rate

    @property
    def sent_s(self) -> float:
        """Audio of the latest utterance released so far."""
        return self._latest.released / self.sample_rate if self._latest else 0.0

    # ------------------------------------------------------------------ input

    def begin(self) -> str:
        """Start an utterance; return its new event id (uuid4 hex).

        :class:`RuntimeError` if one is open: :meth:`end` (or :meth:`interrupt`) it first.
        """
        if self._open is not None:
            raise RuntimeError("an utterance is still open: end it before beginning another")
        utterance = _Utterance(uuid.uuid4().hex)
        self._queue.append(utterance)
        self._open = self._latest = utterance
        return utterance.event_id

    def push(self, pcm: bytes, sample_rate: int, num_channels: int, now: float) -> list[Chunk]:
        """Add TTS audio (s16le, interleaved if stereo) to the open utterance; return the
        chunks due now, possibly none."""
        if self._open is None:
            raise RuntimeError("no utterance is open: begin one first")
        if sample_rate <= 0 or num_channels < 1:
            raise ValueError(f"bad audio format: {sample_rate} Hz, {num_channels} channels")
        if len(pcm) % (SAMPLE_WIDTH * num_channels):
            raise ValueError(f"{len(pcm)} bytes are not whole {num_channels}-channel frames")
        if pcm:
            self._open.pcm += self._converter.convert(pcm, sample_rate, num_channels)
        return self.due(now)

    def end(self, now: float) -> list[Chunk]:
        """End the open utterance: its remainder and the resampler's tail become its last
        chunk(s), which go out as the rule allows; return the chunks due now. The caller
        sends ``agent.speak_end`` after the chunk marked ``final``. An utterance that
        produced no audio yields no chunks at all. With none open, this is :meth:`due`."""
        utterance = self._open
        if utterance is not None:
            utterance.pcm += self._converter.finish()
            utterance.ended = True
            self._open = None
            if not utterance.released and not utterance.pcm:
                self._queue.remove(utterance)
        return self.due(now)

    def interrupt(self) -> None:
        """Drop every queued chunk, the open utterance and the resampler's state; the
        avatar is taken to be silent from now. The caller sends ``agent.interrupt``."""
        self._queue.clear()
        self._open = None
        self._converter.reset()
        self._run_start = None
        self._run_sent = 0

    # ------------------------------------------------------------------ output

    def due(self, now: float) -> list[Chunk]:
        """Release, in order, every chunk whose audio is complete and whose time has come."""
        self._now = now
        out: list[Chunk] = []
        while self._queue:
            utterance = self._queue[0]
            if not self._complete(utterance):
                break
            if utterance.ended and not utterance.pcm:  # all its audio already went
                out.append(self._chunk(utterance, b"", final=True))
                self._queue.popleft()
                continue
            earliest = self._earliest()
            if earliest is not None and now < earliest:
                break
            size = min(self._size(utterance), len(utterance.pcm) // SAMPLE_WIDTH)
            pcm = bytes(utterance.pcm[: size * SAMPLE_WIDTH])
            del utterance.pcm[: size * SAMPLE_WIDTH]
            final = utterance.ended and not utterance.pcm
            out.append(self._chunk(utterance, pcm, final=final))
            utterance.released += size
            if self._run_start is None or now >= self._playback_end():
                self._run_start, self._run_sent = now, 0  # the avatar had run dry
            self._run_sent += size
            if final:
                self._queue.popleft()
        return out

    def next_due_at(self) -> float | None:
        """When to call :meth:`due` next, or None until more audio (or ``end``) comes."""
        if not self._queue or not self._complete(self._queue[0]):
            return None
        earliest = self._earliest()
        return self._now if earliest is None else max(earliest, self._now)

    # ------------------------------------------------------------------ rule

    def _size(self, utterance: _Utterance) -> int:
        return self._later if utterance.released else self._first

    def _complete(self, utterance: _Utterance) -> bool:
        return utterance.ended or len(utterance.pcm) >= self._size(utterance) * SAMPLE_WIDTH

    def _playback_end(self) -> float:
        """When the avatar will have played all audio released since ``_run_start``."""
        assert self._run_start is not None
        return self._run_start + self._run_sent / self.sample_rate

    def _earliest(self) -> float | None:
        """The earliest release of the next chunk; None while the avatar is idle."""
        if self._run_start is None:
            return None
        return self._playback_end() - self.rules.lead_s

    def _chunk(self, utterance: _Utterance, pcm: bytes, *, final: bool) -> Chunk:
        return Chunk(
            event_id=utterance.event_id,
            pcm=pcm,
            offset_s=utterance.released / self.sample_rate,
            duration_s=len(pcm) / SAMPLE_WIDTH / self.sample_rate,
            final=final,
        )


@dataclass(frozen=True, slots=True)
class Drift:
    """How one utterance's releases kept to real time, measured from its first release."""

    #: The most audio released ahead of its playback time (the rule keeps it <= lead_s).
    max_lead_s: float
    #: The longest a chunk came after its playback time: the avatar waited that long.
    max_lag_s: float
    #: The last chunk's lead; with a steady lead throughout, no drift accumulated.
    final_lead_s: float


def measure_drift(releases: Iterable[tuple[float, float]]) -> Drift:
    """Drift of ``(released_at, offset_s)`` pairs of one utterance, in release order: a
    chunk at offset ``o`` released at ``t`` is ``o - (t - t0)`` ahead of real time, ``t0``
    being the first release. For benchmarks."""
    t0: float | None = None
    leads: list[float] = []
    for released_at, offset_s in releases:
        t0 = released_at if t0 is None else t0
        leads.append(offset_s - (released_at - t0))
    if not leads:
        return Drift(0.0, 0.0, 0.0)
    return Drift(max(0.0, *leads), max(0.0, *(-lead for lead in leads)), leads[-1])
