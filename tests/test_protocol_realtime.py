from __future__ import annotations

import base64
import json

import pytest

from agent.heygen.protocol import ProtocolError
from agent.heygen.protocol import realtime as rt


def test_speak_command_carries_base64_pcm() -> None:
    pcm = b"\x01\x00\x02\x00"
    body = json.loads(rt.speak(pcm).to_json())
    assert body["type"] == "agent.speak"
    assert base64.b64decode(body["audio"]) == pcm
    assert len(body["event_id"]) == 32


def test_parse_command_round_trip() -> None:
    command = rt.Command(rt.AGENT_INTERRUPT, event_id="e1")
    assert rt.parse_command(command.to_json()) == command
    speak = rt.speak(b"\x00\x00" * 10)
    assert rt.parse_command(speak.to_json()).audio == b"\x00\x00" * 10


@pytest.mark.parametrize(
    "message,match",
    [
        ('{"type": "agent.dance"}', "unknown realtime command"),
        ('{"type": "agent.speak", "audio": "@@@"}', "base64"),
        ('{"type": "agent.speak", "audio": "AAAA"}', "whole s16le"),
        ("nope", "not JSON"),
    ],
)
def test_bad_commands(message: str, match: str) -> None:
    with pytest.raises(ProtocolError, match=match):
        rt.parse_command(message)


def test_server_events() -> None:
    event = rt.parse_server_event(rt.agent_state("idle", "speaking").to_json())
    assert (event.type, event.previous_state, event.state) == (
        rt.AGENT_STATE_UPDATED, "idle", "speaking")
    assert rt.parse_server_event(rt.session_state("connected").to_json()).state == "connected"
    newer = rt.parse_server_event('{"type": "agent.speak_started", "x": 1}')
    assert newer.type == "agent.speak_started" and newer.raw["x"] == 1
    with pytest.raises(ProtocolError):
        rt.parse_server_event('{"state": "x"}')
