"""The voice-chat WebSocket (heygen-protocol.md §2), sans-I/O.

The client sends binary protobuf ``Frame`` messages (user audio, text to answer); the
server sends JSON text messages with an ``event_type``. This module turns bytes into typed
objects and back; it never touches a socket, so the client, the emulator and the tests
all hold to the same bytes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar
from urllib.parse import urlencode, urlsplit, urlunsplit

from google.protobuf.message import DecodeError

from agent.heygen.protocol import frames_pb2
from agent.heygen.protocol._json import json_object, number
from agent.heygen.protocol.errors import ProtocolError

#: What HeyGen expects from the microphone: 16 kHz, mono, signed 16-bit little-endian.
SAMPLE_RATE = 16_000
NUM_CHANNELS = 1
SAMPLE_WIDTH = 2
#: The official client sends 512 samples (32 ms) per message.
CHUNK_SAMPLES = 512
CHUNK_BYTES = CHUNK_SAMPLES * NUM_CHANNELS * SAMPLE_WIDTH
CHUNK_SECONDS = CHUNK_SAMPLES / SAMPLE_RATE

CHAT_PATH = "/v1/ws/streaming.chat"


def chat_url(
    base_url: str,
    *,
    session_id: str,
    session_token: str,
    silence_response: bool = False,
    push_to_talk: bool = False,
    livekit_transport: bool = False,
) -> str:
    """The voice-chat URL for a session, derived from the REST base URL.

    Unlike the official JavaScript client, which always uses ``wss://`` and the default
    port, this keeps the base URL's scheme (``http`` → ``ws``) and port so that a local
    emulator works without TLS. For ``https://api.heygen.com`` both agree.
    """
    parts = urlsplit(base_url)
    scheme = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}.get(parts.scheme)
    if scheme is None or not parts.netloc:
        raise ValueError(f"base URL must be http(s)://host[:port], got {base_url!r}")
    query: dict[str, str] = {
        "session_id": session_id,
        "session_token": session_token,
        "silence_response": _flag(silence_response),
        "push_to_talk": _flag(push_to_talk),
    }
    if livekit_transport:
        query["arch_version"] = "v2"
    return urlunsplit((scheme, parts.netloc, CHAT_PATH, urlencode(query), ""))


def _flag(value: bool) -> str:
    return "true" if value else "false"


# --------------------------------------------------------------------------- frames


@dataclass(frozen=True, slots=True)
class AudioChunk:
    """User audio: raw PCM s16le."""

    audio: bytes
    sample_rate: int = SAMPLE_RATE
    num_channels: int = NUM_CHANNELS

    @property
    def num_samples(self) -> int:
        return len(self.audio) // (SAMPLE_WIDTH * max(self.num_channels, 1))

    @property
    def duration_s(self) -> float:
        return self.num_samples / self.sample_rate if self.sample_rate else 0.0


@dataclass(frozen=True, slots=True)
class TextMessage:
    """Text for the avatar to answer (an async ``talk`` task over the socket)."""

    text: str


@dataclass(frozen=True, slots=True)
class Transcription:
    """A transcription frame; part of the schema, not sent by HeyGen's client today."""

    text: str
    user_id: str = ""
    timestamp: str = ""


@dataclass(frozen=True, slots=True)
class UnknownFrame:
    """A well-formed frame whose oneof this schema does not know (e.g. Pipecat's
    ``MessageFrame`` = 4). Kept, not dropped, so callers can log it."""

    data: bytes


WireFrame = AudioChunk | TextMessage | Transcription | UnknownFrame


def encode_audio(
    audio: bytes, sample_rate: int = SAMPLE_RATE, num_channels: int = NUM_CHANNELS
) -> bytes:
    """One binary WebSocket message carrying user audio."""
    if len(audio) % (SAMPLE_WIDTH * num_channels):
        raise ValueError("audio must be whole s16le samples for every channel")
    frame = frames_pb2.Frame()
    frame.audio.audio = audio
    frame.audio.sample_rate = sample_rate
    frame.audio.num_channels = num_channels
    return frame.SerializeToString()


def encode_text(text: str) -> bytes:
    """One binary WebSocket message asking the avatar to answer ``text``."""
    frame = frames_pb2.Frame()
    frame.text.text = text
    return frame.SerializeToString()


def encode_frame(frame: WireFrame) -> bytes:
    if isinstance(frame, AudioChunk):
        return encode_audio(frame.audio, frame.sample_rate, frame.num_channels)
    if isinstance(frame, TextMessage):
        return encode_text(frame.text)
    if isinstance(frame, Transcription):
        message = frames_pb2.Frame()
        message.transcription.text = frame.text
        message.transcription.user_id = frame.user_id
        message.transcription.timestamp = frame.timestamp
        return bytes(message.SerializeToString())
    return frame.data


def decode_frame(data: bytes) -> WireFrame:
    """Parse one binary message; raises :class:`ProtocolError` on malformed bytes."""
    message = frames_pb2.Frame()
    try:
        message.ParseFromString(data)
    except DecodeError as exc:
        raise ProtocolError(f"voice-chat frame is not a valid protobuf Frame: {exc}") from None
    kind = message.WhichOneof("frame")
    if kind == "audio":
        audio = message.audio
        if audio.num_channels == 0 or len(audio.audio) % (SAMPLE_WIDTH * audio.num_channels):
            raise ProtocolError(
                f"audio frame has {len(audio.audio)} bytes for {audio.num_channels} channel(s)"
            )
        return AudioChunk(bytes(audio.audio), audio.sample_rate, audio.num_channels)
    if kind == "text":
        return TextMessage(message.text.text)
    if kind == "transcription":
        t = message.transcription
        return Transcription(t.text, t.user_id, t.timestamp)
    return UnknownFrame(bytes(data))


# --------------------------------------------------------------------------- events


@dataclass(frozen=True, slots=True)
class VoiceChatEvent:
    """A JSON event from the server; ``raw`` keeps every field, known or not."""

    event_type: ClassVar[str] = ""
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def to_json(self) -> str:
        return json.dumps({**self.raw, "event_type": self.type})

    @property
    def type(self) -> str:
        return self.event_type


@dataclass(frozen=True, slots=True)
class UserStart(VoiceChatEvent):
    """HeyGen heard the user start speaking."""

    event_type: ClassVar[str] = "user_start"


@dataclass(frozen=True, slots=True)
class UserStop(VoiceChatEvent):
    """HeyGen heard the user stop speaking."""

    event_type: ClassVar[str] = "user_stop"


@dataclass(frozen=True, slots=True)
class UserSilence(VoiceChatEvent):
    """The silence prompt (sessions created with ``silence_response``)."""

    event_type: ClassVar[str] = "user_silence"
    silence_times: int = 0
    count_down: float = 0.0

    def to_json(self) -> str:
        return json.dumps(
            {
                **self.raw,
                "event_type": self.type,
                "silence_times": self.silence_times,
                "count_down": self.count_down,
            }
        )


@dataclass(frozen=True, slots=True)
class UnknownVoiceChatEvent(VoiceChatEvent):
    """An event type this client does not know; kept so a newer server breaks nothing."""

    name: str = ""

    @property
    def type(self) -> str:
        return self.name


def parse_event(text: str | bytes) -> VoiceChatEvent:
    """Parse one server text message; raises :class:`ProtocolError` if it is not an event."""
    raw = json_object(text, "voice-chat event")
    name = raw.get("event_type")
    if not isinstance(name, str):
        raise ProtocolError("voice-chat event has no string 'event_type'")
    if name == UserStart.event_type:
        return UserStart(raw=raw)
    if name == UserStop.event_type:
        return UserStop(raw=raw)
    if name == UserSilence.event_type:
        return UserSilence(
            raw=raw,
            silence_times=int(number(raw, "silence_times", 0)),
            count_down=number(raw, "count_down", 0.0),
        )
    return UnknownVoiceChatEvent(raw=raw, name=name)
