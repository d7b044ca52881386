"""The two HeyGen backends as test parameters: each scenario runs against both.

A scenario asks for the options of a use (HeyGen's brain, lip-sync of your TTS, your text
in HeyGen's voice); each backend says how it does that use. The tests themselves are
written once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import pytest

from agent.emulator.config import EMULATOR_HEYGEN_KEY, EMULATOR_LIVEAVATAR_KEY
from agent.emulator.server import EmulatorServer
from agent.heygen.backend import LifeOptions
from agent.heygen.liveavatar import LiveAvatarOptions
from agent.heygen.protocol import interactive as ia
from agent.heygen.protocol.liveavatar import rest as la
from agent.heygen.session import SessionOptions


@dataclass(frozen=True)
class Backend:
    name: str
    key: str
    #: HeyGen's brain hears the microphone and answers (voice chat; LiveAvatar FULL)
    brain: Callable[[], LifeOptions]
    #: your TTS's audio, lip-synced (the realtime socket; LiveAvatar LITE)
    lipsync: Callable[[], LifeOptions]
    #: your text, said in HeyGen's voice
    text: Callable[[], LifeOptions]
    #: HeyGen's brain, the user's turn held with push-to-talk
    push_to_talk: Callable[[], LifeOptions]

    #: how many interrupts the emulator received (a REST call; an agent-control message)
    interrupts: Callable[[EmulatorServer], int] = lambda emulator: 0

    def __str__(self) -> str:
        return self.name


def _liveavatar(mode: la.Mode, interactivity: str | None = None) -> Callable[[], LifeOptions]:
    return lambda: LiveAvatarOptions(
        request=la.TokenRequest(mode=mode, avatar_id=la.SANDBOX_AVATAR_ID, is_sandbox=True,
                                interactivity_type=interactivity),
        keep_alive_interval_s=None)


INTERACTIVE = Backend(
    "interactive", EMULATOR_HEYGEN_KEY,
    brain=lambda: SessionOptions(keep_alive_interval_s=None),
    lipsync=lambda: SessionOptions(voice_chat=False, realtime=True, keep_alive_interval_s=None),
    text=lambda: SessionOptions(voice_chat=False, keep_alive_interval_s=None),
    push_to_talk=lambda: SessionOptions(push_to_talk=True, keep_alive_interval_s=None),
    interrupts=lambda emulator: emulator.emulator.requests["/v1/streaming.interrupt"],
)
LIVEAVATAR = Backend(
    "liveavatar", EMULATOR_LIVEAVATAR_KEY,
    brain=_liveavatar(la.Mode.FULL),
    lipsync=_liveavatar(la.Mode.LITE),
    text=_liveavatar(la.Mode.FULL),
    push_to_talk=_liveavatar(la.Mode.FULL, la.PUSH_TO_TALK),
    interrupts=lambda emulator: sum(
        s.liveavatar_stats.full_commands.get("avatar.interrupt", 0)
        + s.liveavatar_stats.lite_interrupts
        for s in emulator.emulator.registry if s.liveavatar is not None),
)

#: Interactive with its LiveKit voice transport: the microphone is a track in the room,
#: as LiveAvatar FULL's is (only where the path of the user's audio is what is tested).
INTERACTIVE_LIVEKIT_VOICE = replace(
    INTERACTIVE, name="interactive-livekit-voice",
    push_to_talk=lambda: SessionOptions(
        request=ia.NewSessionRequest(ia_is_livekit_transport=True), push_to_talk=True,
        keep_alive_interval_s=None),
)

both_backends = pytest.mark.parametrize("backend", [INTERACTIVE, LIVEAVATAR], ids=str)
