"""``heygen-agent bench``: the hot paths, each as a ratio against a baseline timed in the
same run.

Machines here are shared and noisy, so absolute times drift from run to run. Each case
times its candidate and its baseline in alternating rounds and reports the median of the
per-round ratios: load that slows both cancels out. The baseline is the floor or the
alternative the code chose against, so the ratio says what the design costs or saves.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Case:
    name: str
    candidate: Callable[[], object]
    baseline_name: str
    baseline: Callable[[], object]


Clock = Callable[[], float]


def _per_call_s(fn: Callable[[], object], calls: int, clock: Clock) -> float:
    started = clock()
    for _ in range(calls):
        fn()
    return (clock() - started) / calls


def measure(
    case: Case, rounds: int = 15, calls: int = 20, clock: Clock = time.perf_counter
) -> tuple[float, float, float]:
    """(median ratio, median candidate seconds, median baseline seconds)."""
    ratios, cand, base = [], [], []
    case.candidate(), case.baseline()  # warm up
    for _ in range(rounds):
        c = _per_call_s(case.candidate, calls, clock)
        b = _per_call_s(case.baseline, calls, clock)
        ratios.append(c / b)
        cand.append(c)
        base.append(b)
    return statistics.median(ratios), statistics.median(cand), statistics.median(base)


def cases() -> list[Case]:
    import soxr
    from PIL import Image
    from pipecat.frames.frames import OutputImageRawFrame
    from pipecat.frames.protobufs import frames_pb2 as pipecat_pb2

    from agent.emulator.video import MOUTH_STATES, FaceCanvas, FaceFrames
    from agent.heygen.chunker import AudioChunker
    from agent.heygen.frames import I420
    from agent.heygen.protocol import voice_chat as vc
    from agent.media.viewer import to_jpeg

    mic = (np.sin(np.arange(960) / 48_000 * 2 * np.pi * 220) * 8000).astype("<i2")
    mic_bytes = mic.tobytes()
    chunker = AudioChunker()
    resampler = soxr.ResampleStream(48_000, 16_000, 1, dtype="int16", quality="HQ")

    def ours_voice() -> object:
        return [vc.encode_audio(c) for c in chunker.push(mic_bytes, 48_000)]

    chunk = bytes(vc.CHUNK_BYTES)

    def pipecat_encode() -> object:
        frame = pipecat_pb2.Frame()  # type: ignore[attr-defined]
        frame.audio.audio = chunk
        frame.audio.sample_rate = 16_000
        frame.audio.num_channels = 1
        return frame.SerializeToString()

    faces = FaceFrames()
    canvas = FaceCanvas(faces)
    counter = iter(range(10**9))
    image = OutputImageRawFrame(image=faces.frame(1, 7, 7), size=(640, 360), format=I420)

    def jpeg_via_rgb() -> object:
        data = np.frombuffer(image.image, np.uint8)
        y = data[: 640 * 360].reshape(360, 640).astype(np.float32)
        u = data[640 * 360 : 640 * 360 * 5 // 4].reshape(180, 320).repeat(2, 0).repeat(2, 1)
        v = data[640 * 360 * 5 // 4 :].reshape(180, 320).repeat(2, 0).repeat(2, 1)
        c, d, e = y - 16, u.astype(np.float32) - 128, v.astype(np.float32) - 128
        rgb = np.stack([1.164 * c + 1.596 * e, 1.164 * c - 0.392 * d - 0.813 * e,
                        1.164 * c + 2.017 * d], axis=-1)
        import io

        out = io.BytesIO()
        Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8)).save(out, "JPEG", quality=80)
        return out.getvalue()

    return [
        Case("mic 20 ms @48 kHz → 512-sample protobuf messages", ours_voice,
             "soxr resampling alone (the floor)", lambda: resampler.resample_chunk(mic)),
        Case("one voice-chat audio message (our schema)", lambda: vc.encode_audio(chunk),
             "the same with Pipecat's frames_pb2", pipecat_encode),
        Case("emulated avatar frame, drawn in place (mouth moving: face + stamp)",
             lambda: canvas.draw(next(counter) % MOUTH_STATES, next(counter), 0),
             "copying a 640x360 I420 frame out", lambda: faces.faces[0].copy().tobytes()),
        Case("viewer JPEG straight from I420", lambda: to_jpeg(image),
             "JPEG after an I420 → RGB conversion", jpeg_via_rgb),
    ]


def main() -> None:
    all_cases = cases()
    width = max(len(case.name) for case in all_cases)
    print(f"{'case':<{width}} {'ratio':>7}  {'candidate':>10}  baseline "
          "(ratio: candidate ÷ baseline; below 1 is faster)")
    for case in all_cases:
        ratio, cand, base = measure(case)
        print(f"{case.name:<{width}} {ratio:>6.2f}x  {cand * 1e6:>8.1f}µs  "
              f"{case.baseline_name} ({base * 1e6:.1f}µs)")


if __name__ == "__main__":
    main()
