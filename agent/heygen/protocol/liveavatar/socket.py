"""LiveAvatar LITE mode's WebSocket at ``ws_url`` (heygen-protocol.md §5), sans-I/O.

The client lip-syncs the avatar to its own TTS: ``agent.speak`` chunks of base64 PCM
(s16le mono, 24 kHz) sharing one ``event_id`` per utterance, closed by ``agent.speak_end``.
Its client messages are the realtime socket's (:mod:`..realtime`, §4) minus the audio
buffer ones, so they are built and parsed by that module's code; what differs is the set
of messages, the server's events and the size limit, which live here.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from agent.heygen.protocol import realtime as rt
from agent.heygen.protocol._json import json_object, text
from agent.heygen.protocol.errors import ProtocolError

Command = rt.Command
SAMPLE_RATE = rt.SAMPLE_RATE

#: A message may be at most 1 MB (read as 10^6 bytes, the stricter reading).
MAX_MESSAGE_BYTES = 1_000_000
#: The most PCM one ``agent.speak`` can carry under the limit (base64 grows it by 4/3;
#: 200 bytes are left for the rest of the message), in whole samples.
MAX_SPEAK_AUDIO_BYTES = (MAX_MESSAGE_BYTES - 200) // 4 * 3 // 2 * 2

#: The idle limit is 5 minutes; LiveKit Agents' plugin sends a keep-alive every 60 s.
KEEP_ALIVE_INTERVAL_S = 60.0

#: Where the emulator serves the socket (LiveAvatar's own ``ws_url`` is opaque: a client
#: uses it as given); the query parameter carries the socket's credential.
EMULATOR_WS_PATH = "/v1/liveavatar/ws/{session_id}"
EMULATOR_WS_TOKEN_PARAM = "token"

# ------------------------------------------------------------ client → service

SPEAK = rt.AGENT_SPEAK
SPEAK_END = rt.AGENT_SPEAK_END
INTERRUPT = rt.AGENT_INTERRUPT
START_LISTENING = rt.AGENT_START_LISTENING
STOP_LISTENING = rt.AGENT_STOP_LISTENING
KEEP_ALIVE = rt.SESSION_KEEP_ALIVE
CLIENT_COMMANDS = frozenset({SPEAK, SPEAK_END, INTERRUPT, START_LISTENING, STOP_LISTENING,
                             KEEP_ALIVE})


def speak(audio: bytes, event_id: str) -> Command:
    """One chunk of an utterance; every chunk of it takes the same ``event_id``."""
    if len(audio) > MAX_SPEAK_AUDIO_BYTES:
        raise ProtocolError(
            f"agent.speak: {len(audio)} bytes of audio exceed one message "
            f"({MAX_SPEAK_AUDIO_BYTES} at most); send it in chunks"
        )
    return Command(SPEAK, event_id=event_id, audio=audio)


def command(kind: str, event_id: str | None = None) -> Command:
    """Any message without audio (``agent.speak_end`` takes its utterance's id)."""
    if kind not in CLIENT_COMMANDS or kind == SPEAK:
        raise ValueError(f"not a LITE command without audio: {kind!r}")
    return Command(kind) if event_id is None else Command(kind, event_id=event_id)


def check_size(message: str | bytes) -> None:
    """:class:`ProtocolError` if ``message`` is over the service's 1 MB limit."""
    size = len(message.encode()) if isinstance(message, str) else len(message)
    if size > MAX_MESSAGE_BYTES:
        raise ProtocolError(f"LITE message of {size} bytes exceeds {MAX_MESSAGE_BYTES}")


def encode(command: Command) -> str:
    """``command`` as a text frame, checked against the size limit."""
    message = command.to_json()
    check_size(message)
    return message


def parse_command(message: str | bytes) -> Command:
    """A client message (emulator side); one over the size limit is refused unread."""
    check_size(message)
    return rt.parse_command(message, CLIENT_COMMANDS, what="LITE")


# ------------------------------------------------------------ service → client

STATE_UPDATED = "session.state_updated"
SPEAK_STARTED = "agent.speak_started"
SPEAK_ENDED = "agent.speak_ended"
SPEAK_INTERRUPTED = "agent.speak_interrupted"

CONNECTING, CONNECTED, CLOSING, CLOSED = "connecting", "connected", "closing", "closed"
#: Send nothing before ``connected``.
STATES = (CONNECTING, CONNECTED, CLOSING, CLOSED)


@dataclass(frozen=True, slots=True)
class ServerEvent:
    """A service message: ``state`` for state updates, ``event_id`` for the speak events
    (the utterance's). Unknown types parse too; ``raw`` keeps every field."""

    type: str
    event_id: str = ""
    state: str = ""
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def to_json(self) -> str:
        known = {"type": self.type, "event_id": self.event_id, "state": self.state}
        return json.dumps({**self.raw, **{k: v for k, v in known.items() if v}})


def state_updated(state: str) -> ServerEvent:
    if state not in STATES:
        raise ValueError(f"not a LITE session state: {state!r}")
    return ServerEvent(STATE_UPDATED, state=state)


def speak_event(kind: str, event_id: str) -> ServerEvent:
    """``agent.speak_started`` / ``_ended`` / ``_interrupted`` for utterance ``event_id``."""
    if kind not in (SPEAK_STARTED, SPEAK_ENDED, SPEAK_INTERRUPTED):
        raise ValueError(f"not a LITE speak event: {kind!r}")
    return ServerEvent(kind, event_id=event_id)


def parse_server_event(message: str | bytes) -> ServerEvent:
    check_size(message)
    raw = json_object(message, "LITE event")
    kind = raw.get("type")
    if not isinstance(kind, str) or not kind:
        raise ProtocolError("LITE event has no string 'type'")
    return ServerEvent(kind, event_id=text(raw, "event_id"), state=text(raw, "state"), raw=raw)
