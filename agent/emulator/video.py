"""The emulated avatar's face: precomputed I420 frames with a stamp tests can read.

Every frame is one of a few precomputed faces (mouth closed, half open, open), so the
per-frame cost is a copy and a small patch: an emulated session must stay cheap. The
patch is a strip of big black and white blocks at the top carrying the frame counter
and the send time in milliseconds, plus a marker and a checksum so a decoder can tell a
stamp from anything else. The blocks are 20 px wide so they survive VP8/H.264.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

BLOCK = 20
BITS_PER_ROW = 32
STAMP_ROWS = 3  # counter, timestamp, marker + checksum
STAMP_HEIGHT = BLOCK * STAMP_ROWS
MARKER = 0xA5C3
BLACK, WHITE = 16, 235
MOUTH_STATES = 3

U8 = NDArray[np.uint8]


def _rgb_to_i420(rgb: U8) -> U8:
    """BT.601 limited range, chroma averaged over 2x2 blocks."""
    f = rgb.astype(np.float32)
    r, g, b = f[..., 0], f[..., 1], f[..., 2]
    y = 16 + 0.257 * r + 0.504 * g + 0.098 * b
    u = 128 - 0.148 * r - 0.291 * g + 0.439 * b
    v = 128 + 0.439 * r - 0.368 * g - 0.071 * b
    h, w = y.shape

    def sub(p: NDArray[np.float32]) -> NDArray[np.float32]:
        return p.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))  # type: ignore[no-any-return]

    planes = [y, sub(u), sub(v)]
    return np.concatenate([np.clip(p, 0, 255).astype(np.uint8).ravel() for p in planes])


def draw_face(width: int, height: int, mouth: int) -> U8:
    """An RGB face; ``mouth`` from 0 (closed) to MOUTH_STATES - 1 (open)."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    rgb = np.empty((height, width, 3), np.uint8)
    rgb[:] = (52, 78, 120)  # background
    cx, cy = width / 2, height * 0.58
    rgb[((xx - cx) / (height * 0.30)) ** 2 + ((yy - cy) / (height * 0.38)) ** 2 <= 1] = (
        236,
        188,
        150,
    )

    def ellipse(x: float, y: float, rx: float, ry: float) -> NDArray[np.bool_]:
        inside: NDArray[np.bool_] = ((xx - x) / (height * rx)) ** 2 + (
            (yy - y) / (height * ry)
        ) ** 2 <= 1
        return inside

    for ex in (cx - height * 0.11, cx + height * 0.11):
        rgb[ellipse(ex, cy - height * 0.10, 0.035, 0.045)] = (40, 30, 30)
    opening = 0.012 + 0.05 * mouth / max(MOUTH_STATES - 1, 1)
    rgb[ellipse(cx, cy + height * 0.16, 0.10, opening)] = (150, 40, 50)
    return rgb


class FaceFrames:
    """The precomputed faces, and the stamping of one frame."""

    def __init__(self, width: int = 640, height: int = 360) -> None:
        if width % 2 or height % 2 or width < BLOCK * BITS_PER_ROW or height < STAMP_HEIGHT * 2:
            raise ValueError(f"frame size {width}x{height} cannot carry a stamp")
        self.width, self.height = width, height
        self.faces = [_rgb_to_i420(draw_face(width, height, m)) for m in range(MOUTH_STATES)]
        chroma = (width // 2) * (STAMP_HEIGHT // 2)
        self._u_start = width * height
        self._v_start = self._u_start + (width // 2) * (height // 2)
        for face in self.faces:  # neutral chroma under the stamp, once
            face[self._u_start : self._u_start + chroma] = 128
            face[self._v_start : self._v_start + chroma] = 128

    def frame(self, mouth: int, counter: int, timestamp_ms: int) -> bytes:
        """One stamped frame, on its own (see :class:`FaceCanvas` for a stream of them)."""
        data = self.faces[mouth].copy()
        self.stamp(data, counter, timestamp_ms)
        return data.tobytes()

    def stamp(self, frame: U8, counter: int, timestamp_ms: int) -> None:
        """Draw the stamp into ``frame`` (a whole I420 frame, flat), in place."""
        y = frame[: self.width * self.height].reshape(self.height, self.width)
        rows = np.where(np.repeat(stamp_bits(counter, timestamp_ms), BLOCK, axis=1),
                        WHITE, BLACK).astype(np.uint8)
        strip = y[:STAMP_HEIGHT, : BLOCK * BITS_PER_ROW].reshape(
            STAMP_ROWS, BLOCK, BLOCK * BITS_PER_ROW)
        strip[:] = rows[:, None, :]  # each row of blocks: one line, BLOCK times


class FaceCanvas:
    """One avatar's frame buffer, drawn in place: the face is copied in only when the
    mouth changes, the stamp every frame. ``VideoSource.capture_frame`` copies a frame
    before it returns, so one buffer serves them all: no 345 KB frame made, copied and
    dropped 25 times a second per avatar (what :meth:`FaceFrames.frame` costs)."""

    def __init__(self, faces: FaceFrames) -> None:
        self.faces = faces
        self.buffer = bytearray(faces.faces[0].nbytes)
        self._pixels = np.frombuffer(self.buffer, np.uint8)
        self._mouth = -1

    def draw(self, mouth: int, counter: int, timestamp_ms: int) -> bytearray:
        if mouth != self._mouth:
            self._pixels[:] = self.faces.faces[mouth]
            self._mouth = mouth
        self.faces.stamp(self._pixels, counter, timestamp_ms)
        return self.buffer


def _checksum(counter: int, timestamp_ms: int) -> int:
    word = (counter ^ timestamp_ms ^ 0x5A5A5A5A) & 0xFFFFFFFF
    return (word >> 16) ^ (word & 0xFFFF)


#: Each bit's weight in a stamp word, most significant first.
_BIT_WEIGHTS = np.array([1 << (BITS_PER_ROW - 1 - i) for i in range(BITS_PER_ROW)],
                        dtype=np.uint64)


def stamp_bits(counter: int, timestamp_ms: int) -> NDArray[np.bool_]:
    counter &= 0xFFFFFFFF
    timestamp_ms &= 0xFFFFFFFF
    words = [counter, timestamp_ms, (MARKER << 16) | _checksum(counter, timestamp_ms)]
    bits: NDArray[np.bool_] = (np.array(words, np.uint64)[:, None] & _BIT_WEIGHTS) != 0
    return bits


def read_stamp(y_plane: bytes | memoryview | U8, width: int, height: int) -> tuple[int, int] | None:
    """``(counter, timestamp_ms)`` from a frame's luma plane, or ``None`` if it holds no
    valid stamp (wrong marker or checksum)."""
    y = np.frombuffer(y_plane, np.uint8, count=width * STAMP_HEIGHT).reshape(STAMP_HEIGHT, width)
    # The middle line of each row of blocks, each block's inner part (its edges blur under
    # VP8) summed: one bit per block. Cheap, as every frame of a soak is read.
    inner = BLOCK // 4
    lines = y[BLOCK // 2 :: BLOCK, : BLOCK * BITS_PER_ROW].reshape(STAMP_ROWS, BITS_PER_ROW, BLOCK)
    sums = lines[:, :, inner : BLOCK - inner].sum(axis=2, dtype=np.uint32)
    bits = sums > (BLACK + WHITE) / 2 * (BLOCK - 2 * inner)
    words = [int(w) for w in bits.astype(np.uint64) @ _BIT_WEIGHTS]
    counter, timestamp_ms, check = words
    if check >> 16 != MARKER or check & 0xFFFF != _checksum(counter, timestamp_ms):
        return None
    return counter, timestamp_ms
