"""The "realtime" WebSocket at ``realtime_endpoint`` (heygen-protocol.md §4), sans-I/O.

Used to lip-sync the avatar to audio from the bot's own TTS: the client streams base64
PCM with ``agent.speak`` and the server reports session and agent state.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from agent.heygen.protocol._json import json_object, text
from agent.heygen.protocol.errors import ProtocolError

#: Audio for ``agent.speak``: PCM s16le mono at 24 kHz.
SAMPLE_RATE = 24_000
#: Pipecat sends a keep-alive every 150 s; HeyGen ends an inactive session after ~5 min.
KEEP_ALIVE_INTERVAL_S = 150.0

AGENT_SPEAK = "agent.speak"
AGENT_SPEAK_END = "agent.speak_end"
AGENT_INTERRUPT = "agent.interrupt"
AGENT_START_LISTENING = "agent.start_listening"
AGENT_STOP_LISTENING = "agent.stop_listening"
SESSION_KEEP_ALIVE = "session.keep_alive"
AGENT_AUDIO_BUFFER_APPEND = "agent.audio_buffer_append"
AGENT_AUDIO_BUFFER_COMMIT = "agent.audio_buffer_commit"
AGENT_AUDIO_BUFFER_CLEAR = "agent.audio_buffer_clear"
#: Commands a client may send; the emulator rejects any other ``type``.
CLIENT_COMMANDS = frozenset(
    {
        AGENT_SPEAK,
        AGENT_SPEAK_END,
        AGENT_INTERRUPT,
        AGENT_START_LISTENING,
        AGENT_STOP_LISTENING,
        SESSION_KEEP_ALIVE,
        AGENT_AUDIO_BUFFER_APPEND,
        AGENT_AUDIO_BUFFER_COMMIT,
        AGENT_AUDIO_BUFFER_CLEAR,
    }
)

SESSION_STATE_UPDATED = "session.state_updated"
AGENT_STATE_UPDATED = "agent.state_updated"


@dataclass(frozen=True, slots=True)
class Command:
    """A client → server message. ``audio`` is raw PCM (base64 only on the wire)."""

    type: str
    event_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    audio: bytes | None = None

    def to_json(self) -> str:
        body: dict[str, Any] = {"type": self.type, "event_id": self.event_id}
        if self.audio is not None:
            body["audio"] = base64.b64encode(self.audio).decode("ascii")
        return json.dumps(body)


def speak(audio: bytes) -> Command:
    return Command(AGENT_SPEAK, audio=audio)


def parse_command(
    message: str | bytes,
    commands: frozenset[str] = CLIENT_COMMANDS,
    what: str = "realtime",
) -> Command:
    """A client message whose ``type`` is one of ``commands``. LiveAvatar's LITE socket
    speaks the same messages (fewer of them), so it parses with its own set and name."""
    raw = json_object(message, f"{what} command")
    kind = text(raw, "type")
    if kind not in commands:
        raise ProtocolError(f"unknown {what} command type {kind!r}")
    audio: bytes | None = None
    if "audio" in raw:
        try:
            audio = base64.b64decode(text(raw, "audio"), validate=True)
        except (binascii.Error, ValueError):
            raise ProtocolError(f"{what} 'audio' is not valid base64") from None
        if len(audio) % 2:
            raise ProtocolError(f"{what} 'audio' is not whole s16le samples")
    return Command(kind, event_id=text(raw, "event_id"), audio=audio)


@dataclass(frozen=True, slots=True)
class ServerEvent:
    """A server → client message: state updates, or anything newer, kept whole."""

    type: str
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def state(self) -> str:
        """``state`` of a session update, ``new_state`` of an agent update."""
        return text(self.raw, "state") or text(self.raw, "new_state")

    @property
    def previous_state(self) -> str:
        return text(self.raw, "previous_state")

    def to_json(self) -> str:
        return json.dumps({**self.raw, "type": self.type})


def session_state(state: str) -> ServerEvent:
    return ServerEvent(SESSION_STATE_UPDATED, {"state": state})


def agent_state(previous: str, new: str) -> ServerEvent:
    return ServerEvent(AGENT_STATE_UPDATED, {"previous_state": previous, "new_state": new})


def parse_server_event(message: str | bytes) -> ServerEvent:
    raw = json_object(message, "realtime event")
    kind = raw.get("type")
    if not isinstance(kind, str):
        raise ProtocolError("realtime event has no string 'type'")
    return ServerEvent(kind, raw)
