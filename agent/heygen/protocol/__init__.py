"""Everything HeyGen puts on the wire, with no I/O: models, event parsing, frame coding.

One module per wire: :mod:`.interactive` (REST), :mod:`.voice_chat` (the voice-chat
WebSocket and its protobuf frames), :mod:`.room_events` (LiveKit data events) and
:mod:`.realtime` (the lip-sync WebSocket), and the package :mod:`.liveavatar` for
HeyGen's successor API; :mod:`._rest` holds what both REST APIs share. The clients and the
emulator all build on these, so a change to the wire is one edit.
"""

from agent.heygen.protocol.errors import ProtocolError

__all__ = ["ProtocolError"]
