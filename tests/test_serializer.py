from __future__ import annotations

import numpy as np
import pytest
from pipecat.frames.frames import (
    InputAudioRawFrame,
    InterimTranscriptionFrame,
    OutputAudioRawFrame,
    TextFrame,
    TranscriptionFrame,
    UserStartedSpeakingFrame,
    UserStoppedSpeakingFrame,
)

from agent.heygen.frames import HeyGenEventFrame, HeyGenUserSilenceFrame
from agent.heygen.protocol import voice_chat as vc
from agent.heygen.serializer import HeyGenFrameSerializer


def mic(samples: int, rate: int = 16000, value: int = 7) -> InputAudioRawFrame:
    return InputAudioRawFrame(audio=np.full(samples, value, "<i2").tobytes(),
                              sample_rate=rate, num_channels=1)


async def test_audio_becomes_512_sample_protobuf_messages() -> None:
    serializer = HeyGenFrameSerializer()
    assert await serializer.serialize(mic(320)) is None  # buffered: 320 < 512
    message = await serializer.serialize(mic(320))
    assert message is not None
    frame = vc.decode_frame(message)
    assert frame == vc.AudioChunk(np.full(512, 7, "<i2").tobytes(), 16000, 1)
    assert serializer.drain() == []


async def test_a_long_frame_gives_several_messages_in_order() -> None:
    serializer = HeyGenFrameSerializer()
    pcm = np.arange(512 * 3, dtype="<i2").tobytes()
    messages = await serializer.serialize_all(
        InputAudioRawFrame(audio=pcm, sample_rate=16000, num_channels=1))
    assert [vc.decode_frame(m).audio for m in messages] == [  # type: ignore[union-attr]
        pcm[:1024], pcm[1024:2048], pcm[2048:]]


async def test_48k_microphone_is_resampled() -> None:
    serializer = HeyGenFrameSerializer()
    messages: list[bytes] = []
    for _ in range(50):  # 1 s of 20 ms frames
        messages += await serializer.serialize_all(mic(960, rate=48000, value=1000))
    chunks = [vc.decode_frame(m) for m in messages]
    assert all(isinstance(c, vc.AudioChunk) and c.sample_rate == 16000 and c.num_samples == 512
               for c in chunks)
    # short by less than one chunk (the carried remainder) plus <= 20 ms of filter delay
    assert 16000 - 511 - 320 <= len(chunks) * 512 <= 16000


async def test_muted_audio_is_zeros_at_the_same_cadence() -> None:
    serializer = HeyGenFrameSerializer()
    serializer.muted = True
    messages = await serializer.serialize_all(mic(1024))
    assert [vc.decode_frame(m) for m in messages] == [vc.AudioChunk(bytes(1024))] * 2


async def test_text_is_sent_but_transcripts_and_avatar_audio_are_not() -> None:
    serializer = HeyGenFrameSerializer()
    message = await serializer.serialize(TextFrame("What's new?"))
    assert message == vc.encode_text("What's new?")
    for frame in (TranscriptionFrame("x", "u", "t"), InterimTranscriptionFrame("x", "u", "t"),
                  TextFrame("   "),
                  OutputAudioRawFrame(audio=bytes(2048), sample_rate=16000, num_channels=1)):
        assert await serializer.serialize(frame) is None


@pytest.mark.parametrize(
    "message,kind",
    [
        ('{"event_type": "user_start"}', UserStartedSpeakingFrame),
        ('{"event_type": "user_stop"}', UserStoppedSpeakingFrame),
        ('{"event_type": "user_silence", "silence_times": 3, "count_down": 2}',
         HeyGenUserSilenceFrame),
        ('{"event_type": "brand_new"}', HeyGenEventFrame),
    ],
)
async def test_events_become_frames(message: str, kind: type) -> None:
    frame = await HeyGenFrameSerializer().deserialize(message)
    assert type(frame) is kind
    if isinstance(frame, HeyGenUserSilenceFrame):
        assert (frame.silence_times, frame.count_down) == (3, 2.0)


async def test_malformed_input_is_dropped_not_raised() -> None:
    serializer = HeyGenFrameSerializer()
    assert await serializer.deserialize("not json") is None
    assert await serializer.deserialize(b"\x00\x01") is None
