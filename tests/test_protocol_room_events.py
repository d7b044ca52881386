from __future__ import annotations

import json

import pytest

from agent.heygen.protocol import ProtocolError
from agent.heygen.protocol import room_events as re_


@pytest.mark.parametrize(
    "payload,expected",
    [
        ({"type": "avatar_start_talking", "task_id": "t1"}, re_.AvatarStartTalking(task_id="t1")),
        (
            {"type": "avatar_stop_talking", "task_id": "t1", "duration_ms": 1500},
            re_.AvatarStopTalking(task_id="t1", duration_ms=1500.0),
        ),
        (
            {"type": "avatar_talking_message", "task_id": "t1", "message": "Hello"},
            re_.AvatarTalkingMessage(task_id="t1", message="Hello"),
        ),
        ({"type": "avatar_end_message", "task_id": "t1"}, re_.AvatarEndMessage(task_id="t1")),
        (
            {"type": "user_talking_message", "task_id": "u", "message": "hi"},
            re_.UserTalkingMessage(task_id="u", message="hi"),
        ),
        ({"type": "user_end_message"}, re_.UserEndMessage()),
    ],
)
def test_parse_and_encode_round_trip(payload: dict[str, object], expected: re_.RoomEvent) -> None:
    event = re_.parse_room_event(json.dumps(payload).encode())
    assert event == expected
    assert type(event) is type(expected)
    assert json.loads(event.to_json()) == payload


def test_unknown_type_is_kept() -> None:
    event = re_.parse_room_event(b'{"type": "avatar_gesture", "task_id": "g", "name": "wave"}')
    assert isinstance(event, re_.UnknownRoomEvent)
    assert (event.type, event.task_id, event.raw["name"]) == ("avatar_gesture", "g", "wave")


@pytest.mark.parametrize(
    "payload",
    [
        b"\xff\xfe",
        b"[]",
        b'{"task_id": "x"}',
        b'{"type": "avatar_stop_talking", "duration_ms": "5"}',
        b'{"type": "avatar_talking_message", "message": 3}',
    ],
)
def test_malformed_events_raise(payload: bytes) -> None:
    with pytest.raises(ProtocolError):
        re_.parse_room_event(payload)


def test_push_to_talk_messages_are_json_strings() -> None:
    assert json.loads(re_.PUSH_TO_TALK_START) == "push_to_talk:start"
    assert re_.PUSH_TO_TALK_STOP == '"push_to_talk:stop"'


@pytest.mark.parametrize(
    "payload,expected",
    [(b'"push_to_talk:start"', re_.PushToTalk(True)),
     (b'"push_to_talk:stop"', re_.PushToTalk(False)),
     (re_.encode_talk("What is new?"), re_.TalkText("What is new?")),
     (b'"  "', None), (b'{"type": "x"}', None), (b"[1]", None), (b"\xff", None)],
)
def test_client_data_messages(payload: bytes, expected: re_.ClientMessage | None) -> None:
    """What a client may write on the data channel, and anything else, which is ignored."""
    assert re_.parse_client_message(payload) == expected


def test_talk_text_is_a_json_string_as_the_official_client_sends_it() -> None:
    assert re_.encode_talk('Say "hi"') == b'"Say \\"hi\\""'
