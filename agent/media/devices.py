"""Microphone and speakers through sounddevice (PortAudio).

A machine without a sound card, or without PortAudio at all, is normal here (servers,
CI, containers): the processors then say so in one line and carry on as a silent
microphone or a null speaker, so the rest of the pipeline (the avatar, the viewer, the
recorder) still works.
"""

from __future__ import annotations

import asyncio
from typing import Any

from loguru import logger
from pipecat.frames.frames import (
    CancelFrame,
    EndFrame,
    Frame,
    InputAudioRawFrame,
    OutputAudioRawFrame,
    StartFrame,
)
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor

BLOCK_S = 0.02


class AudioDeviceUnavailable(RuntimeError):
    """No PortAudio, or no such device: one line that says which and what to do."""


def _sounddevice() -> Any:
    try:
        import sounddevice
    except OSError as exc:  # the module imports, PortAudio's shared library does not
        raise AudioDeviceUnavailable(
            f"PortAudio is not installed ({exc}); on Debian: apt-get install libportaudio2"
        ) from None
    return sounddevice


def list_devices() -> str:
    return str(_sounddevice().query_devices())


class MicrophoneInput(FrameProcessor):
    """The default (or named) input device, 20 ms blocks of s16le.

    Without a usable device it logs why and, with ``fallback_silence`` (the default),
    sends silence at the same pace, so HeyGen still sees a live stream."""

    def __init__(
        self,
        *,
        device: int | str | None = None,
        sample_rate: int = 16_000,
        fallback_silence: bool = True,
        name: str | None = None,
    ) -> None:
        super().__init__(name=name)
        self.device = device
        self.sample_rate = sample_rate
        self.fallback_silence = fallback_silence
        self.available: bool | None = None
        self._stream: Any = None
        self._task: asyncio.Task[None] | None = None
        self._queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=50)

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, EndFrame | CancelFrame):  # stop first: nothing after the end
            self._close()
            if self._task is not None:
                await self.cancel_task(self._task)
                self._task = None
        await self.push_frame(frame, direction)
        if isinstance(frame, StartFrame) and self._task is None:
            self._open()
            self._task = self.create_task(self._forward(), "microphone")

    def _open(self) -> None:
        loop = asyncio.get_running_loop()
        block = int(self.sample_rate * BLOCK_S)

        def callback(data: Any, frames: int, time: Any, status: Any) -> None:
            loop.call_soon_threadsafe(self._offer, bytes(data))

        try:
            sd = _sounddevice()
            self._stream = sd.RawInputStream(
                samplerate=self.sample_rate, blocksize=block, device=self.device,
                channels=1, dtype="int16", callback=callback,
            )
            self._stream.start()
            self.available = True
        except Exception as exc:
            self.available = False
            then = "sending silence instead" if self.fallback_silence else "no microphone input"
            logger.warning(f"Microphone unavailable ({_one_line(exc)}); {then}")

    def _offer(self, pcm: bytes) -> None:
        if self._queue.full():
            self._queue.get_nowait()  # the pipeline stalled: keep the newest audio
        self._queue.put_nowait(pcm)

    async def _forward(self) -> None:
        if not self.available:
            if not self.fallback_silence:
                return
            loop = asyncio.get_running_loop()
            silence, deadline = bytes(int(self.sample_rate * BLOCK_S) * 2), loop.time()
            while True:
                deadline += BLOCK_S
                await self._push(silence)
                await asyncio.sleep(max(0.0, deadline - loop.time()))
        while True:
            await self._push(await self._queue.get())

    async def _push(self, pcm: bytes) -> None:
        await self.push_frame(
            InputAudioRawFrame(audio=pcm, sample_rate=self.sample_rate, num_channels=1)
        )

    def _close(self) -> None:
        _close_stream(self._stream, "microphone")
        self._stream = None


class SpeakerOutput(FrameProcessor):
    """Plays the avatar's voice (``OutputAudioRawFrame``) on the default or named device.

    Without one it logs why once and drops the audio; the pipeline is unaffected."""

    def __init__(self, *, device: int | str | None = None, name: str | None = None) -> None:
        super().__init__(name=name)
        self.device = device
        self.available: bool | None = None
        self._stream: Any = None
        self._rate: int | None = None

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, OutputAudioRawFrame) and self.available is not False:
            self._play(frame)
        elif isinstance(frame, EndFrame | CancelFrame):
            self._close()
        await self.push_frame(frame, direction)

    def _play(self, frame: OutputAudioRawFrame) -> None:
        if self._stream is None or self._rate != frame.sample_rate:
            self._close()
            try:
                sd = _sounddevice()
                self._stream = sd.RawOutputStream(
                    samplerate=frame.sample_rate, channels=frame.num_channels, dtype="int16",
                    device=self.device,
                )
                self._stream.start()
                self._rate = frame.sample_rate
                self.available = True
            except Exception as exc:
                self.available = False
                logger.warning(f"Speaker unavailable ({_one_line(exc)}); avatar audio not played")
                return
        try:
            self._stream.write(frame.audio)  # PortAudio buffers; blocks at most a block
        except Exception as exc:
            logger.warning(f"Speaker write failed ({_one_line(exc)})")

    def _close(self) -> None:
        _close_stream(self._stream, "speaker")
        self._stream = None


def _close_stream(stream: Any, what: str) -> None:
    """Stop and close a PortAudio stream; a device that vanished must not stop a shutdown."""
    if stream is not None:
        try:
            stream.stop()
            stream.close()
        except Exception as exc:
            logger.debug(f"{what} close: {exc}")


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    if "querying device -1" in text:  # PortAudio's way of saying there is no default device
        return "no audio device found"
    return text
