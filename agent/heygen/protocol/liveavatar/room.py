"""LiveAvatar FULL mode's LiveKit data messages (heygen-protocol.md §5), sans-I/O.

In FULL mode the client commands the avatar with JSON on topic ``agent-control`` and
hears back on topic ``agent-response``. The client encodes commands and the emulator
parses them with the same code, and the other way round for events, so the two agree.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from agent.heygen.protocol._json import json_object, text
from agent.heygen.protocol.errors import ProtocolError
from agent.heygen.protocol.liveavatar.socket import CONNECTED as CONNECTED
from agent.heygen.protocol.liveavatar.socket import STATES

TOPIC_AGENT_CONTROL = "agent-control"
TOPIC_AGENT_RESPONSE = "agent-response"

#: The participant identities in a LiveAvatar room: the avatar, and (FULL mode) its agent.
AVATAR_IDENTITY = "heygen"
AGENT_IDENTITY_PREFIX = "liveavatar-agent-"

# ------------------------------------------------------------ commands (client → avatar)

SPEAK_TEXT = "avatar.speak_text"  # say the text verbatim
SPEAK_RESPONSE = "avatar.speak_response"  # answer the text with HeyGen's brain
INTERRUPT = "avatar.interrupt"
START_LISTENING = "avatar.start_listening"
STOP_LISTENING = "avatar.stop_listening"
START_PUSH_TO_TALK = "user.start_push_to_talk"
STOP_PUSH_TO_TALK = "user.stop_push_to_talk"
SESSION_STOP = "session.stop"
COMMANDS = frozenset({SPEAK_TEXT, SPEAK_RESPONSE, INTERRUPT, START_LISTENING, STOP_LISTENING,
                      START_PUSH_TO_TALK, STOP_PUSH_TO_TALK, SESSION_STOP})
_WITH_TEXT = frozenset({SPEAK_TEXT, SPEAK_RESPONSE})


def agent_identity(session_id: str) -> str:
    return AGENT_IDENTITY_PREFIX + session_id


def new_event_id() -> str:
    return str(uuid.uuid4())


@dataclass(frozen=True, slots=True)
class Command:
    """One ``agent-control`` message. ``event_id`` is ``None`` only for an interrupt,
    which the official SDK sends without one."""

    event_type: str
    event_id: str | None = None
    text: str | None = None

    def to_json(self) -> str:
        body: dict[str, Any] = {"event_type": self.event_type}
        if self.event_id is not None:
            body["event_id"] = self.event_id
        if self.text is not None:
            body["text"] = self.text
        return json.dumps(body)

    def to_bytes(self) -> bytes:
        """The payload for LiveKit's ``publish_data`` (reliable, topic ``agent-control``)."""
        return self.to_json().encode()


def speak_text(text: str, event_id: str | None = None) -> Command:
    return Command(SPEAK_TEXT, event_id or new_event_id(), text)


def speak_response(text: str, event_id: str | None = None) -> Command:
    return Command(SPEAK_RESPONSE, event_id or new_event_id(), text)


def interrupt() -> Command:
    return Command(INTERRUPT)


def command(event_type: str, event_id: str | None = None) -> Command:
    """A command with no text: listening, push-to-talk, ``session.stop``."""
    if event_type not in COMMANDS or event_type in _WITH_TEXT:
        raise ValueError(f"not a command without text: {event_type!r}")
    if event_type == INTERRUPT:
        return interrupt()
    return Command(event_type, event_id or new_event_id())


def parse_command(message: str | bytes) -> Command:
    """An ``agent-control`` message (emulator side): a known ``event_type``, and text for
    the speak commands."""
    raw = json_object(message, "agent-control message")
    kind = text(raw, "event_type")
    if kind not in COMMANDS:
        raise ProtocolError(f"unknown agent-control event_type {kind!r}")
    event_id = text(raw, "event_id") or None
    said = text(raw, "text") if kind in _WITH_TEXT else None
    if kind in _WITH_TEXT and not said:
        raise ProtocolError(f"{kind} has no 'text'")
    return Command(kind, event_id, said)


# ------------------------------------------------------------ events (avatar → client)

SESSION_STATE_UPDATED = "session.state_updated"
SESSION_STOPPED = "session.stopped"
USER_SPEAK_STARTED = "user.speak_started"
USER_SPEAK_ENDED = "user.speak_ended"
USER_TRANSCRIPTION = "user.transcription"
USER_TRANSCRIPTION_CHUNK = "user.transcription.chunk"
AVATAR_TRANSCRIPTION = "avatar.transcription"
AVATAR_TRANSCRIPTION_CHUNK = "avatar.transcription.chunk"
AVATAR_SPEAK_STARTED = "avatar.speak_started"
AVATAR_SPEAK_ENDED = "avatar.speak_ended"
USER_PUSH_TO_TALK_STARTED = "user.push_to_talk_started"
USER_PUSH_TO_TALK_START_FAILED = "user.push_to_talk_start_failed"
USER_PUSH_TO_TALK_STOPPED = "user.push_to_talk_stopped"
USER_PUSH_TO_TALK_STOP_FAILED = "user.push_to_talk_stop_failed"


@dataclass(frozen=True, slots=True)
class Event:
    """One ``agent-response`` message. Every type parses, known or not; ``raw`` keeps
    every field, so a newer event breaks nothing."""

    event_type: str
    event_id: str = ""
    source_event_id: str = ""
    session_id: str = ""
    text: str = ""
    stop_reason: str = ""
    #: ``session.state_updated``'s state (LITE's states: :data:`socket.STATES`)
    state: str = ""
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def to_json(self) -> str:
        body = {"event_type": self.event_type, "event_id": self.event_id,
                "source_event_id": self.source_event_id, "session_id": self.session_id,
                "text": self.text, "stop_reason": self.stop_reason, "state": self.state}
        return json.dumps({**self.raw, **{k: v for k, v in body.items() if v}})

    def to_bytes(self) -> bytes:
        return self.to_json().encode()


def event(
    event_type: str, session_id: str, *, source_event_id: str = "", text: str = "",
    stop_reason: str = "",
) -> Event:
    """An event as the avatar sends it (emulator side), with a new ``event_id``."""
    return Event(event_type, new_event_id(), source_event_id, session_id, text, stop_reason)


def session_state(state: str, session_id: str) -> Event:
    """``session.state_updated`` (emulator side); ``connected`` once the avatar is in the
    room. The states are LITE's: FULL's documentation names the event, not its states."""
    if state not in STATES:
        raise ValueError(f"not a LiveAvatar session state: {state!r}")
    return Event(SESSION_STATE_UPDATED, new_event_id(), session_id=session_id, state=state)



def parse_event(message: str | bytes) -> Event:
    raw = json_object(message, "agent-response message")
    kind = raw.get("event_type")
    if not isinstance(kind, str) or not kind:
        raise ProtocolError("agent-response message has no string 'event_type'")
    return Event(
        kind,
        event_id=text(raw, "event_id"),
        source_event_id=text(raw, "source_event_id"),
        session_id=text(raw, "session_id"),
        text=text(raw, "text"),
        stop_reason=text(raw, "stop_reason"),
        state=text(raw, "state"),
        raw=raw,
    )
