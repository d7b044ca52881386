"""LiveAvatar, HeyGen's successor to the Interactive Avatar API (heygen-protocol.md §5), sans-I/O.

Its wire facts are held once, here, for the client (:mod:`agent.heygen.api.liveavatar`)
and the emulator (:mod:`agent.emulator.liveavatar`) alike, so that a change to the wire is
one edit and the emulator cannot drift from what the client sends. Three wires, three
modules: :mod:`.rest` (the REST calls, their envelope and the session token), :mod:`.room`
(FULL mode's LiveKit data topics) and :mod:`.socket` (LITE mode's WebSocket).
"""
