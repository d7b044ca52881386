"""Session events on the LiveKit data channel (heygen-protocol.md §3), sans-I/O.

HeyGen's avatar publishes UTF-8 JSON objects with a ``type`` and usually a ``task_id``.
The emulator encodes them with the same classes the client parses them with.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from agent.heygen.protocol._json import json_object, number, text
from agent.heygen.protocol.errors import ProtocolError

#: Push-to-talk over the LiveKit voice transport: a JSON-encoded string, not an object.
PUSH_TO_TALK_START = json.dumps("push_to_talk:start")
PUSH_TO_TALK_STOP = json.dumps("push_to_talk:stop")
_PUSH_TO_TALK = {"push_to_talk:start": True, "push_to_talk:stop": False}


# ------------------------------------------------------------ client → HeyGen
# With the LiveKit voice transport the client writes to the data channel too, as the
# official client does: a JSON-encoded string, either a push-to-talk command or text for
# the avatar to answer (an async ``talk``).


@dataclass(frozen=True, slots=True)
class PushToTalk:
    talking: bool


@dataclass(frozen=True, slots=True)
class TalkText:
    text: str


ClientMessage = PushToTalk | TalkText


def encode_talk(text: str) -> bytes:
    """An async ``talk`` as the official client sends it on the data channel."""
    return json.dumps(text).encode()


def parse_client_message(payload: bytes) -> ClientMessage | None:
    """What a client's data message asks of the avatar; ``None`` for anything else (a data
    channel carries whatever participants send)."""
    try:
        message = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(message, str):
        return None
    if message in _PUSH_TO_TALK:
        return PushToTalk(_PUSH_TO_TALK[message])
    return TalkText(message) if message.strip() else None


@dataclass(frozen=True, slots=True)
class RoomEvent:
    """One data-channel event; ``raw`` keeps every field, known or not."""

    event_type: ClassVar[str] = ""
    task_id: str = ""
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def type(self) -> str:
        return self.event_type

    def _fields(self) -> dict[str, Any]:
        return {}

    def to_json(self) -> bytes:
        body = {**self.raw, "type": self.type, **self._fields()}
        if self.task_id:
            body["task_id"] = self.task_id
        return json.dumps(body).encode()


@dataclass(frozen=True, slots=True)
class AvatarStartTalking(RoomEvent):
    event_type: ClassVar[str] = "avatar_start_talking"


@dataclass(frozen=True, slots=True)
class AvatarStopTalking(RoomEvent):
    event_type: ClassVar[str] = "avatar_stop_talking"
    duration_ms: float = 0.0

    def _fields(self) -> dict[str, Any]:
        return {"duration_ms": self.duration_ms}


@dataclass(frozen=True, slots=True)
class AvatarTalkingMessage(RoomEvent):
    """A chunk of the avatar's words as it says them."""

    event_type: ClassVar[str] = "avatar_talking_message"
    message: str = ""

    def _fields(self) -> dict[str, Any]:
        return {"message": self.message}


@dataclass(frozen=True, slots=True)
class AvatarEndMessage(RoomEvent):
    """The avatar's utterance is complete (the chunks so far make one message)."""

    event_type: ClassVar[str] = "avatar_end_message"


@dataclass(frozen=True, slots=True)
class UserTalkingMessage(RoomEvent):
    """A chunk of HeyGen's transcript of the user."""

    event_type: ClassVar[str] = "user_talking_message"
    message: str = ""

    def _fields(self) -> dict[str, Any]:
        return {"message": self.message}


@dataclass(frozen=True, slots=True)
class UserEndMessage(RoomEvent):
    event_type: ClassVar[str] = "user_end_message"


@dataclass(frozen=True, slots=True)
class UnknownRoomEvent(RoomEvent):
    """A type this client does not know; kept so a newer server breaks nothing."""

    name: str = ""

    @property
    def type(self) -> str:
        return self.name


_SIMPLE: dict[str, type[RoomEvent]] = {
    cls.event_type: cls
    for cls in (AvatarStartTalking, AvatarEndMessage, UserEndMessage)
}


def parse_room_event(payload: bytes | str) -> RoomEvent:
    """Parse one data message; raises :class:`ProtocolError` if it is not an event object."""
    raw = json_object(payload, "LiveKit data event")
    name = raw.get("type")
    if not isinstance(name, str):
        raise ProtocolError("LiveKit data event has no string 'type'")
    task_id = text(raw, "task_id")
    if name in _SIMPLE:
        return _SIMPLE[name](task_id=task_id, raw=raw)
    if name == AvatarStopTalking.event_type:
        duration_ms = number(raw, "duration_ms", 0)
        return AvatarStopTalking(task_id=task_id, raw=raw, duration_ms=duration_ms)
    if name == AvatarTalkingMessage.event_type:
        return AvatarTalkingMessage(task_id=task_id, raw=raw, message=text(raw, "message"))
    if name == UserTalkingMessage.event_type:
        return UserTalkingMessage(task_id=task_id, raw=raw, message=text(raw, "message"))
    return UnknownRoomEvent(task_id=task_id, raw=raw, name=name)
