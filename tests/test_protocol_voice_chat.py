"""Golden bytes for the voice-chat frames, assembled by hand from the protobuf wire rules
(tag = field_number << 3 | wire_type; LEN = 2, VARINT = 0) rather than by the encoder."""

from __future__ import annotations

import json

import pytest

from agent.heygen.protocol import ProtocolError
from agent.heygen.protocol import voice_chat as vc


def varint(value: int) -> bytes:
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        out.append(low | (0x80 if value else 0))
        if not value:
            return bytes(out)


def test_text_frame_bytes() -> None:
    # Frame.text (1, LEN) { TextFrame.text (3, LEN) "hi" }
    assert vc.encode_text("hi") == bytes([0x0A, 0x04, 0x1A, 0x02]) + b"hi"


def test_text_frame_utf8_bytes() -> None:
    word = "héllo".encode()  # 6 bytes
    assert vc.encode_text("héllo") == bytes([0x0A, 0x08, 0x1A, 0x06]) + word


def test_small_audio_frame_bytes() -> None:
    pcm = b"\x01\x00\xff\x7f"  # two samples: 1, 32767
    inner = bytes([0x1A, 0x04]) + pcm + bytes([0x20, 0x80, 0x7D, 0x28, 0x01])  # 16000 = 80 7D
    assert vc.encode_audio(pcm) == bytes([0x12, len(inner)]) + inner


def test_official_client_chunk_bytes() -> None:
    """512 samples at 16 kHz: the message the official client sends every 32 ms."""
    pcm = bytes(range(256)) * 4  # 1024 bytes
    inner = b"\x1a" + bytes([0x80, 0x08]) + pcm + b"\x20\x80\x7d" + b"\x28\x01"
    expected = b"\x12" + bytes([0x88, 0x08]) + inner  # len(inner) = 1032
    assert len(inner) == 1032
    assert vc.encode_audio(pcm) == expected
    assert varint(1032) == bytes([0x88, 0x08])


def test_audio_at_other_rate_and_stereo() -> None:
    pcm = b"\x00\x00" * 4
    inner = b"\x1a\x08" + pcm + b"\x20" + varint(48000) + b"\x28\x02"
    assert vc.encode_audio(pcm, 48000, 2) == b"\x12" + bytes([len(inner)]) + inner


def test_decode_round_trip() -> None:
    pcm = b"\x10\x00" * vc.CHUNK_SAMPLES
    frame = vc.decode_frame(vc.encode_audio(pcm))
    assert frame == vc.AudioChunk(pcm, 16000, 1)
    assert isinstance(frame, vc.AudioChunk)
    assert frame.num_samples == 512
    assert frame.duration_s == pytest.approx(0.032)
    assert vc.decode_frame(vc.encode_text("hello")) == vc.TextMessage("hello")
    t = vc.Transcription("hi", "u1", "2026-01-01")
    assert vc.decode_frame(vc.encode_frame(t)) == t


def test_decode_hand_made_bytes() -> None:
    assert vc.decode_frame(bytes([0x0A, 0x04, 0x1A, 0x02]) + b"ok") == vc.TextMessage("ok")


@pytest.mark.parametrize(
    "data",
    [b"\x12\x05\x1a", b"\xff\xff\xff", b"\x12\x04\x1a\x03ab\x28"],
    ids=["truncated", "garbage", "bad-inner-length"],
)
def test_malformed_frames_raise_protocol_error(data: bytes) -> None:
    with pytest.raises(ProtocolError):
        vc.decode_frame(data)


def test_odd_audio_length_rejected_both_ways() -> None:
    with pytest.raises(ValueError):
        vc.encode_audio(b"\x00\x00\x00")
    inner = b"\x1a\x03abc\x20\x80\x7d\x28\x01"
    with pytest.raises(ProtocolError, match="3 bytes"):
        vc.decode_frame(b"\x12" + bytes([len(inner)]) + inner)


def test_empty_message_is_unknown_frame() -> None:
    assert vc.decode_frame(b"") == vc.UnknownFrame(b"")


def test_parse_known_events() -> None:
    assert isinstance(vc.parse_event('{"event_type": "user_start"}'), vc.UserStart)
    assert isinstance(vc.parse_event(b'{"event_type": "user_stop", "x": 1}'), vc.UserStop)
    silence = vc.parse_event('{"event_type": "user_silence", "silence_times": 2, "count_down": 5}')
    assert silence == vc.UserSilence(silence_times=2, count_down=5.0)


def test_unknown_event_is_kept_not_dropped() -> None:
    event = vc.parse_event('{"event_type": "avatar_mood", "mood": "happy"}')
    assert isinstance(event, vc.UnknownVoiceChatEvent)
    assert event.type == "avatar_mood"
    assert event.raw["mood"] == "happy"


@pytest.mark.parametrize(
    "text,match",
    [
        ("not json", "not JSON"),
        ("[1, 2]", "not a JSON object"),
        ('{"type": "user_start"}', "event_type"),
        ('{"event_type": "user_silence", "silence_times": "two"}', "silence_times"),
    ],
)
def test_bad_events_raise_protocol_error(text: str, match: str) -> None:
    with pytest.raises(ProtocolError, match=match):
        vc.parse_event(text)


def test_events_encode_for_the_emulator() -> None:
    assert json.loads(vc.UserStart().to_json()) == {"event_type": "user_start"}
    body = json.loads(vc.UserSilence(silence_times=1, count_down=3.0).to_json())
    assert body == {"event_type": "user_silence", "silence_times": 1, "count_down": 3.0}
    assert vc.parse_event(vc.UserStop().to_json()) == vc.UserStop()


def test_chat_url() -> None:
    url = vc.chat_url("https://api.heygen.com", session_id="s1", session_token="tok")
    assert url == (
        "wss://api.heygen.com/v1/ws/streaming.chat?session_id=s1&session_token=tok"
        "&silence_response=false&push_to_talk=false"
    )
    local = vc.chat_url(
        "http://127.0.0.1:8123", session_id="s", session_token="t", push_to_talk=True,
        silence_response=True, livekit_transport=True,
    )
    assert local == (
        "ws://127.0.0.1:8123/v1/ws/streaming.chat?session_id=s&session_token=t"
        "&silence_response=true&push_to_talk=true&arch_version=v2"
    )
    with pytest.raises(ValueError):
        vc.chat_url("ftp://x", session_id="s", session_token="t")
