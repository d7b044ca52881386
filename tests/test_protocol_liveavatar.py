"""LiveAvatar's wire facts (heygen-protocol.md §5), with no network: requests, envelopes,
the session token, FULL mode's data topics and LITE mode's socket messages."""

from __future__ import annotations

import base64
import json

import pytest
from pydantic import SecretStr, ValidationError

from agent.heygen.protocol import ProtocolError
from agent.heygen.protocol.liveavatar import rest as la
from agent.heygen.protocol.liveavatar import room
from agent.heygen.protocol.liveavatar import socket as lite

# ------------------------------------------------------------------ REST


def test_token_request_body_reveals_the_livekit_token_and_drops_unset_fields() -> None:
    request = la.TokenRequest(
        mode=la.Mode.FULL, avatar_id="a1", is_sandbox=True,
        video_settings=la.VideoSettings(encoding="H264", quality="very_high"),
        avatar_persona=la.AvatarPersona(voice_id="v", context_id="c", language="en",
                                        voice_settings=la.VoiceSettings(speed=1.1)),
        livekit_config=la.LiveKitConfig(livekit_url="wss://lk", livekit_room="r",
                                        livekit_client_token=SecretStr("lk-secret-token")),
    )
    assert request.to_body() == {
        "mode": "FULL", "avatar_id": "a1", "is_sandbox": True,
        "video_settings": {"encoding": "H264", "quality": "very_high"},
        "avatar_persona": {"voice_id": "v", "context_id": "c", "language": "en",
                           "voice_settings": {"speed": 1.1}},
        "livekit_config": {"livekit_url": "wss://lk", "livekit_room": "r",
                           "livekit_client_token": "lk-secret-token"},
    }
    assert "lk-secret-token" not in repr(request)


@pytest.mark.parametrize("body", [
    {"mode": "MEDIUM", "avatar_id": "a"},
    {"mode": "LITE"},
    {"mode": "LITE", "avatar_id": "a", "avatar_name": "typo"},
    {"mode": "LITE", "avatar_id": "a", "video_settings": {"quality": "ultra"}},
    {"mode": "LITE", "avatar_id": "a", "max_session_duration": 0},
])
def test_token_request_refuses_bad_fields(body: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        la.TokenRequest.model_validate(body)


def test_endpoints_and_their_rules() -> None:
    assert {e.path for e in la.ENDPOINTS} == {
        "/v1/sessions/token", "/v1/sessions/start", "/v1/sessions/stop",
        "/v1/sessions/keep-alive", "/v1/avatars", "/v1/avatars/public", "/v1/voices",
        "/v1/contexts"}
    assert (la.TOKEN.auth, la.TOKEN.retry) == ("api_key", "when_refused")
    assert (la.START.auth, la.START.retry) == ("bearer", "when_refused")
    assert all((e.auth, e.retry) == ("bearer", "always") for e in (la.STOP, la.KEEP_ALIVE))
    assert all(e.method == "GET" and e.auth == "api_key" and e.retry == "always"
               for e in la.ENDPOINTS if e.name.endswith(("avatars", "voices", "contexts")))


def test_success_answers() -> None:
    token = la.parse_data(la.TokenAnswer, la.success(
        {"session_id": "s", "session_token": "jwt-secret-1"}, la.CODE_TOKEN_OK), la.TOKEN)
    assert token.session_token.get_secret_value() == "jwt-secret-1"
    assert "jwt-secret-1" not in repr(token)
    start = la.parse_data(la.StartAnswer, la.success({
        "session_id": "s", "livekit_url": "wss://lk", "livekit_client_token": "c-token",
        "livekit_agent_token": "a-token", "max_session_duration": 60,
        "ws_url": "wss://x/ws?token=w-token", "newer_field": 1}), la.START)
    assert start.ws_url is not None and start.ws_url.get_secret_value().endswith("w-token")
    assert start.model_extra == {"newer_field": 1}
    full = la.parse_data(la.StartAnswer, la.success({"session_id": "s"}), la.START)
    assert full.ws_url is None and full.livekit_client_token is None


@pytest.mark.parametrize("body,match", [
    ({"code": 4009, "data": None, "message": "Session already stopped"},
     "failure code 4009: Session already stopped"),
    ({"code": 1001, "data": {"session_id": "s"}}, "failure code 1001"),
    ({"data": {"session_id": "s", "session_token": "t"}}, "no 'code'"),
    ({"code": 1000, "data": None}, "no 'data' object"),
    ({"code": 1000, "data": {"session_id": 5}}, "session_id"),
    ("not an object", "no 'code'"),
])
def test_everything_else_is_a_protocol_error(body: object, match: str) -> None:
    with pytest.raises(ProtocolError, match=match):
        la.parse_data(la.TokenAnswer, body, la.TOKEN)


def test_envelope_reads_any_answer() -> None:
    assert la.parse_envelope(la.failure(4001, "Invalid API key")) == la.Envelope(
        4001, "Invalid API key")
    assert not la.parse_envelope({"code": 4001}).ok
    assert la.parse_envelope({"code": True}).code is None
    assert la.parse_envelope({"code": 100, "data": {}}).ok
    fastapi = {"detail": [{"loc": ["body", "avatar_id"], "msg": "Field required"}]}
    assert la.parse_envelope(fastapi).message == "body.avatar_id: Field required"
    assert la.parse_envelope({"detail": "Not authenticated"}).message == "Not authenticated"
    assert la.parse_envelope([1, 2]) == la.Envelope(None)


def test_listings_accept_a_list_results_or_a_key() -> None:
    wayne = {"id": la.SANDBOX_AVATAR_ID, "name": "Wayne", "preview_url": "x"}
    for data in ([wayne], {"results": [wayne], "count": 1}, {"avatars": [wayne]}):
        (avatar,) = la.parse_list(la.Avatar, la.success(data), la.LIST_AVATARS, "avatars")
        assert (avatar.id, avatar.name) == (la.SANDBOX_AVATAR_ID, "Wayne")
    (voice,) = la.parse_list(la.Voice, la.success([{"voice_id": "v1"}]), la.LIST_VOICES, "voices")
    assert voice.id == "v1"
    assert la.parse_list(la.Context, la.success({}), la.LIST_CONTEXTS, "contexts") == []
    with pytest.raises(ProtocolError, match="not a list"):
        la.parse_list(la.Context, la.success({"results": 3}), la.LIST_CONTEXTS, "contexts")


# ------------------------------------------------------------------ session token


def test_session_token_is_a_jwt_the_sdk_can_read() -> None:
    request = la.TokenRequest(mode="LITE", avatar_id="a", is_sandbox=True)
    claims = la.session_token_claims(session_id="s1", request=request, expires_at=2e9)
    token = la.mint_session_token(claims)
    header, _payload, signature = token.split(".")
    assert json.loads(base64.urlsafe_b64decode(header + "==")) == {"alg": "HS256", "typ": "JWT"}
    assert "=" not in token and signature
    assert la.session_token_payload(token) == {
        "session_id": "s1", "exp": 2_000_000_000,
        "start_session_data": {"mode": "LITE", "avatar_id": "a", "is_sandbox": True}}
    assert la.token_mode(token) == "LITE"
    assert la.token_mode(SecretStr(token)) == "LITE"
    assert la.mint_session_token(claims) == token, "same claims, same token"


@pytest.mark.parametrize("payload", [
    {"start_session_data": {"mode": "FULL"}},
    {"start_session_data": {"mode": "lite"}},
    {"start_session_data": {"mode": None}},
    {"start_session_data": "LITE"},
    {},
])
def test_anything_but_lite_counts_as_full(payload: dict[str, object]) -> None:
    assert la.token_mode(la.mint_session_token(payload)) == "FULL"


@pytest.mark.parametrize("token,match", [
    ("not-a-jwt", "not a JWT"),
    ("a.!!!.c", "base64url"),
    ("a." + base64.urlsafe_b64encode(b"[1]").decode() + ".c", "not a JSON object"),
    ("a." + base64.urlsafe_b64encode(b"\xff\xfe").decode() + ".c", "not JSON"),
])
def test_malformed_tokens(token: str, match: str) -> None:
    with pytest.raises(ProtocolError, match=match):
        la.token_mode(token)


# ------------------------------------------------------------------ FULL: data topics


def test_commands_as_the_sdk_sends_them() -> None:
    speak = room.speak_text("Hello", event_id="e1")
    assert json.loads(speak.to_bytes()) == {
        "event_type": "avatar.speak_text", "event_id": "e1", "text": "Hello"}
    answer = json.loads(room.speak_response("Why?").to_json())
    assert answer["event_type"] == "avatar.speak_response" and answer["event_id"]
    assert json.loads(room.interrupt().to_json()) == {"event_type": "avatar.interrupt"}
    for kind in (room.START_LISTENING, room.STOP_LISTENING, room.START_PUSH_TO_TALK,
                 room.STOP_PUSH_TO_TALK, room.SESSION_STOP):
        body = json.loads(room.command(kind).to_json())
        assert body.keys() == {"event_type", "event_id"} and body["event_type"] == kind
    assert room.command(room.INTERRUPT) == room.interrupt()
    with pytest.raises(ValueError):
        room.command(room.SPEAK_TEXT)


def test_commands_round_trip() -> None:
    for command in (room.speak_text("Hi", "e1"), room.speak_response("Q", "e2"),
                    room.interrupt(), room.command(room.SESSION_STOP, "e3")):
        assert room.parse_command(command.to_bytes()) == command
        assert room.parse_command(command.to_json()) == command


@pytest.mark.parametrize("message,match", [
    ('{"event_type": "avatar.dance"}', "unknown agent-control"),
    ('{"event_type": "avatar.speak_text", "event_id": "e"}', "no 'text'"),
    ('{"event_type": "avatar.speak_text", "text": 5}', "'text' must be a string"),
    ("[]", "not a JSON object"),
    (b"\xff", "not JSON"),
])
def test_bad_commands(message: str | bytes, match: str) -> None:
    with pytest.raises(ProtocolError, match=match):
        room.parse_command(message)


def test_events_round_trip_and_unknown_types_are_kept() -> None:
    said = room.event(room.AVATAR_TRANSCRIPTION, "s1", source_event_id="e1", text="Hello")
    parsed = room.parse_event(said.to_bytes())
    assert parsed == said and parsed.event_id
    stopped = room.parse_event(room.event(room.SESSION_STOPPED, "s1",
                                          stop_reason="USER_CLOSED").to_json())
    assert stopped.stop_reason == "USER_CLOSED" and stopped.text == ""
    newer = room.parse_event('{"event_type": "avatar.dances", "event_id": "e", "style": 2}')
    assert newer.event_type == "avatar.dances" and newer.raw["style"] == 2
    assert json.loads(newer.to_json())["style"] == 2


@pytest.mark.parametrize("message", [
    "nope", b"\xc3", "[1]", "{}", '{"event_type": 3}', '{"event_type": ""}',
    '{"event_type": "user.transcription", "text": ["x"]}',
])
def test_bad_events(message: str | bytes) -> None:
    with pytest.raises(ProtocolError):
        room.parse_event(message)


# ------------------------------------------------------------------ LITE: the socket


def test_speak_chunks_share_the_utterance_id() -> None:
    pcm = b"\x01\x00\x02\x00" * 100
    first, second = lite.speak(pcm, "utt-1"), lite.speak(pcm[:8], "utt-1")
    body = json.loads(lite.encode(first))
    assert body == {"type": "agent.speak", "event_id": "utt-1",
                    "audio": base64.b64encode(pcm).decode()}
    assert lite.parse_command(lite.encode(second)).event_id == "utt-1"
    end = lite.command(lite.SPEAK_END, "utt-1")
    assert lite.parse_command(lite.encode(end)) == end
    for kind in (lite.INTERRUPT, lite.START_LISTENING, lite.STOP_LISTENING, lite.KEEP_ALIVE):
        assert lite.parse_command(lite.encode(lite.command(kind))).type == kind
    with pytest.raises(ValueError):
        lite.command(lite.SPEAK)


def test_the_one_megabyte_limit() -> None:
    biggest = lite.speak(b"\x00" * lite.MAX_SPEAK_AUDIO_BYTES, "e")
    message = lite.encode(biggest)
    assert len(message) <= lite.MAX_MESSAGE_BYTES
    assert lite.parse_command(message).audio == biggest.audio
    with pytest.raises(ProtocolError, match="send it in chunks"):
        lite.speak(b"\x00" * (lite.MAX_SPEAK_AUDIO_BYTES + 2), "e")
    too_big = json.dumps({"type": "agent.speak", "event_id": "e",
                          "audio": "A" * lite.MAX_MESSAGE_BYTES})
    with pytest.raises(ProtocolError, match="exceeds 1000000"):
        lite.parse_command(too_big)
    with pytest.raises(ProtocolError, match="exceeds"):
        lite.parse_server_event(too_big.encode())


@pytest.mark.parametrize("message,match", [
    ('{"type": "agent.audio_buffer_append", "audio": "AAAA"}', "unknown LITE command"),
    ('{"type": "agent.speak", "audio": "@@@"}', "LITE 'audio' is not valid base64"),
    ('{"type": "agent.speak", "audio": "AA=="}', "whole s16le"),
    ("{", "LITE command is not JSON"),
])
def test_bad_client_messages(message: str, match: str) -> None:
    with pytest.raises(ProtocolError, match=match):
        lite.parse_command(message)


def test_server_events_round_trip() -> None:
    for event in (lite.state_updated(lite.CONNECTED),
                  lite.speak_event(lite.SPEAK_STARTED, "utt-1"),
                  lite.speak_event(lite.SPEAK_ENDED, "utt-1"),
                  lite.speak_event(lite.SPEAK_INTERRUPTED, "utt-1")):
        assert lite.parse_server_event(event.to_json()) == event
    assert json.loads(lite.state_updated("closing").to_json()) == {
        "type": "session.state_updated", "state": "closing"}
    newer = lite.parse_server_event('{"type": "agent.thinking", "n": 1}')
    assert newer.type == "agent.thinking" and newer.raw == {"type": "agent.thinking", "n": 1}
    with pytest.raises(ValueError):
        lite.state_updated("open")
    with pytest.raises(ValueError):
        lite.speak_event(lite.STATE_UPDATED, "e")
    for bad in ('{"state": "connected"}', '{"type": "x", "event_id": 7}', "[]", b"\xff"):
        with pytest.raises(ProtocolError):
            lite.parse_server_event(bad)
