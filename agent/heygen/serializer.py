"""A Pipecat ``FrameSerializer`` for HeyGen's voice-chat WebSocket.

Out: user audio frames become protobuf audio messages of 512 samples at 16 kHz mono
(resampled when the source differs; the remainder is carried to the next call); text
frames become protobuf text messages, which HeyGen answers. In: the socket's JSON events
become the frames listed in :mod:`agent.heygen.frames`.

One Pipecat frame can hold several 32 ms chunks while one WebSocket message holds one, so
:meth:`serialize` returns the first message a frame produces and :meth:`drain` the rest;
callers that send everything call both (see :meth:`serialize_all`).
"""

from __future__ import annotations

from collections import deque

from loguru import logger
from pipecat.frames.frames import (
    AudioRawFrame,
    Frame,
    InterimTranscriptionFrame,
    OutputAudioRawFrame,
    TextFrame,
    TranscriptionFrame,
)
from pipecat.serializers.base_serializer import FrameSerializer

from agent.heygen.chunker import AudioChunker
from agent.heygen.frames import frames_for_event
from agent.heygen.protocol import ProtocolError
from agent.heygen.protocol import voice_chat as vc
from agent.heygen.session import InteractiveEvents

#: Text that describes speech rather than asks for an answer never goes to HeyGen.
_NOT_FOR_HEYGEN = (TranscriptionFrame, InterimTranscriptionFrame)


class HeyGenFrameSerializer(FrameSerializer):
    def __init__(self) -> None:
        super().__init__()
        self._chunker = AudioChunker()
        self._outbox: deque[bytes] = deque()

    @property
    def muted(self) -> bool:
        return self._chunker.muted

    @muted.setter
    def muted(self, value: bool) -> None:
        """Muted audio keeps its cadence but carries zeros, as the official client does."""
        self._chunker.muted = value

    async def serialize(self, frame: Frame) -> bytes | None:
        if isinstance(frame, AudioRawFrame) and not isinstance(frame, OutputAudioRawFrame):
            for chunk in self._chunker.push(frame.audio, frame.sample_rate, frame.num_channels):
                self._outbox.append(vc.encode_audio(chunk))
        elif (
            isinstance(frame, TextFrame)
            and not isinstance(frame, _NOT_FOR_HEYGEN)
            and frame.text.strip()
        ):
            self._outbox.append(vc.encode_text(frame.text))
        return self._outbox.popleft() if self._outbox else None

    def drain(self) -> list[bytes]:
        """Messages produced by earlier frames and not yet returned."""
        messages = list(self._outbox)
        self._outbox.clear()
        return messages

    async def serialize_all(self, frame: Frame) -> list[bytes]:
        first = await self.serialize(frame)
        return ([first] if first is not None else []) + self.drain()

    def reset(self) -> None:
        """Forget buffered audio (after an interruption or a reconnect)."""
        self._chunker.reset()
        self._outbox.clear()

    async def deserialize(self, data: str | bytes) -> Frame | None:
        if isinstance(data, bytes):
            return None  # HeyGen sends events as text; binary is not part of the protocol
        try:
            event = InteractiveEvents().from_chat(vc.parse_event(data))
            return next(iter(frames_for_event(event)), None)
        except ProtocolError as exc:
            logger.warning(f"HeyGen voice-chat message ignored: {exc}")
            return None
