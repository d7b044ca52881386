from __future__ import annotations

import pytest
from pydantic import ValidationError

from agent.heygen.protocol import ProtocolError
from agent.heygen.protocol import interactive as ia


def test_new_session_body_is_snake_case_and_drops_unset() -> None:
    request = ia.NewSessionRequest(
        avatar_name="Wayne_20240711",
        quality=ia.AvatarQuality.LOW,
        voice=ia.VoiceSettings(voice_id="v1", rate=1.2, emotion="friendly"),
        stt_settings=ia.STTSettings(provider="deepgram", confidence=0.55),
        activity_idle_timeout=60,
    )
    assert request.to_body() == {
        "avatar_name": "Wayne_20240711",
        "quality": "low",
        "voice": {"voice_id": "v1", "rate": 1.2, "emotion": "friendly"},
        "version": "v2",
        "source": "sdk",
        "activity_idle_timeout": 60,
        "stt_settings": {"provider": "deepgram", "confidence": 0.55},
    }


@pytest.mark.parametrize(
    "kwargs",
    [
        {"quality": "ultra"},
        {"activity_idle_timeout": 10},
        {"voice": {"rate": 2.0}},
        {"voice": {"emotion": "angry"}},
        {"avatar_nme": "typo"},
        {"stt_settings": {"provider": "whisper"}},
    ],
)
def test_bad_settings_fail_before_any_call(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        ia.NewSessionRequest.model_validate(kwargs)


def test_answers_hide_tokens_and_keep_unknown_fields() -> None:
    answer = ia.parse_data(
        ia.NewSessionAnswer,
        {"data": {"session_id": "s", "access_token": "lk-secret-token", "url": "wss://lk",
                  "is_paid": True, "session_duration_limit": 600, "brand_new": 1}},
        ia.NEW,
    )
    assert "lk-secret-token" not in repr(answer) and "lk-secret-token" not in str(answer)
    assert answer.access_token.get_secret_value() == "lk-secret-token"
    assert answer.model_extra == {"brand_new": 1}
    assert ia.to_wire(answer)["access_token"] == "lk-secret-token"


@pytest.mark.parametrize(
    "body,match",
    [({}, "no 'data'"), ({"data": {"session_id": "s"}}, "access_token"), ([1], "no 'data'")],
)
def test_malformed_answers(body: object, match: str) -> None:
    with pytest.raises(ProtocolError, match=match):
        ia.parse_data(ia.NewSessionAnswer, body, ia.NEW)


def test_lists_accept_both_shapes() -> None:
    item = {"avatar_id": "a1", "pose_name": "Pose"}
    flat = ia.parse_list(ia.AvatarInfo, {"data": [item]}, ia.LIST_AVATARS, "avatars")
    nested = ia.parse_list(ia.AvatarInfo, {"data": {"avatars": [item]}}, ia.LIST_AVATARS, "avatars")
    assert flat == nested and flat[0].avatar_id == "a1"
    with pytest.raises(ProtocolError):
        ia.parse_list(ia.AvatarInfo, {"data": {"avatars": "x"}}, ia.LIST_AVATARS, "avatars")


@pytest.mark.parametrize(
    "body,code,message",
    [
        ({"code": 400112, "message": "Unauthorized"}, 400112, "Unauthorized"),
        ({"error": {"code": 400006, "message": "Session is not in correct state"}}, 400006,
         "Session is not in correct state"),
        ({"code": True, "msg": "odd"}, None, "odd"),
        ("plain text", None, ""),
        (None, None, ""),
    ],
)
def test_parse_error(body: object, code: int | None, message: str) -> None:
    error = ia.parse_error(body)
    assert (error.code, error.message) == (code, message)


def test_endpoint_table_is_complete_and_unique() -> None:
    paths = [e.path for e in ia.ENDPOINTS]
    assert len(paths) == len(set(paths)) == 13
    gets = {e for e in ia.ENDPOINTS if e.method == "GET"}
    assert gets == {ia.LIST_SESSIONS, ia.LIST_AVATARS, ia.LIST_VOICES, ia.LIST_VOICES_V2}
    assert all(e.auth == "api_key" for e in gets | {ia.CREATE_TOKEN})
    billable = {ia.NEW, ia.START, ia.TASK}
    assert {e for e in ia.ENDPOINTS if e.retry != "always"} == billable
