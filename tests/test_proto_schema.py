"""The committed protobuf module must match proto/heygen_frames.proto, and live beside Pipecat's."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2

from agent.heygen.protocol import frames_pb2, voice_chat

ROOT = Path(__file__).resolve().parents[1]
PROTO = ROOT / "proto" / "heygen_frames.proto"


def test_committed_module_matches_proto(tmp_path: Path) -> None:
    """Compare descriptors, not generated text, so a newer protoc does not fail the test
    while any change to a message, field, number or type does."""
    pytest.importorskip("grpc_tools")
    out = tmp_path / "schema.pb"
    subprocess.run(
        [
            sys.executable, "-m", "grpc_tools.protoc",
            f"-I{PROTO.parent}", f"--descriptor_set_out={out}", PROTO.name,
        ],
        check=True,
    )
    from_proto = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes()).file[0]
    committed = descriptor_pb2.FileDescriptorProto()
    frames_pb2.DESCRIPTOR.CopyToProto(committed)
    for descriptor in (committed, from_proto):
        for message in descriptor.message_type:
            for field in message.field:
                field.ClearField("json_name")  # protoc adds it; the runtime copy omits it
    assert committed == from_proto, "run scripts/gen-proto: frames_pb2.py is stale"


def test_pyi_stub_is_committed_next_to_module() -> None:
    assert (ROOT / "agent/heygen/protocol/frames_pb2.pyi").is_file()


def test_imports_beside_pipecats_own_module_and_is_wire_compatible() -> None:
    """Both declare a ``Frame``; under one package name protobuf's default pool would
    refuse the second import. The bytes must still mean the same to both."""
    from pipecat.frames.protobufs import frames_pb2 as pipecat_pb2

    assert frames_pb2.Frame.DESCRIPTOR.full_name != pipecat_pb2.Frame.DESCRIPTOR.full_name

    ours = voice_chat.encode_audio(b"\x01\x02" * 512)
    theirs = pipecat_pb2.Frame.FromString(ours)
    assert theirs.WhichOneof("frame") == "audio"
    assert theirs.audio.sample_rate == 16000
    assert theirs.audio.num_channels == 1
    assert theirs.audio.audio == b"\x01\x02" * 512

    message = pipecat_pb2.Frame()
    message.text.text = "hello"
    assert voice_chat.decode_frame(message.SerializeToString()) == voice_chat.TextMessage("hello")


def test_pipecat_only_frames_decode_as_unknown() -> None:
    from pipecat.frames.protobufs import frames_pb2 as pipecat_pb2

    if "message" not in pipecat_pb2.Frame.DESCRIPTOR.fields_by_name:
        pytest.skip("this Pipecat has no MessageFrame")
    message = pipecat_pb2.Frame()
    message.message.data = '{"x": 1}'
    data = message.SerializeToString()
    assert voice_chat.decode_frame(data) == voice_chat.UnknownFrame(data)
