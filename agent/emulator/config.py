"""How an emulator instance is set up: credentials it accepts, limits, media, faults."""

from __future__ import annotations

from dataclasses import dataclass, field

from agent.emulator.faults import FaultSettings
from agent.heygen.protocol.liveavatar import rest as la

#: The HeyGen API key ``heygen-agent run`` gives the emulator it starts. LiveAvatar
#: refuses it, as the real one refuses HeyGen keys, and says that it is a HeyGen key.
EMULATOR_HEYGEN_KEY = "emulator-key"
#: A LiveAvatar key the emulator always accepts: LiveAvatar's keys are not HeyGen's.
EMULATOR_LIVEAVATAR_KEY = "emulator-liveavatar-key"
#: The key a client of each backend uses with the emulator (``heygen.backend`` → key).
EMULATOR_KEYS = {"interactive": EMULATOR_HEYGEN_KEY, "liveavatar": EMULATOR_LIVEAVATAR_KEY}


@dataclass(frozen=True)
class LiveKitSettings:
    """The LiveKit server the avatars join, and the key pair that signs their tokens."""

    url: str
    api_key: str = "devkey"
    api_secret: str = "secret"


@dataclass(frozen=True)
class EmulatorConfig:
    #: API keys the emulated account accepts; ``None`` accepts any non-empty key, so the
    #: demo runs without one while tests can still exercise a refused key.
    api_keys: frozenset[str] | None = None
    #: Without LiveKit the sessions still work, but their avatar has no media.
    livekit: LiveKitSettings | None = None
    max_concurrent_sessions: int = 3
    session_duration_limit_s: float = 600.0
    expiry_check_interval_s: float = 0.25
    avatar_width: int = 640
    avatar_height: int = 360
    avatar_fps: int = 25
    #: With ``silence_response``, how long the user may stay silent before a prompt.
    silence_prompt_s: float = 8.0
    faults: FaultSettings = field(default_factory=lambda: FaultSettings())
    #: LiveAvatar keys the emulated account accepts besides :data:`EMULATOR_LIVEAVATAR_KEY`;
    #: ``None`` accepts any non-empty key that is not a HeyGen one.
    liveavatar_api_keys: frozenset[str] | None = None
    #: LiveAvatar sandbox sessions end after about a minute; tests shorten it.
    liveavatar_sandbox_duration_s: float = la.SANDBOX_DURATION_S
    liveavatar_idle_timeout_s: float = la.IDLE_TIMEOUT_S

    def accepts_key(self, key: str | None) -> bool:
        """A HeyGen key: never one of the LiveAvatar keys, which HeyGen does not take."""
        if not key or self.is_liveavatar_key(key):
            return False
        return self.api_keys is None or key in self.api_keys

    def is_liveavatar_key(self, key: str) -> bool:
        listed = self.liveavatar_api_keys is not None and key in self.liveavatar_api_keys
        return key == EMULATOR_LIVEAVATAR_KEY or listed

    def is_heygen_key(self, key: str) -> bool:
        """A key this emulator knows as a HeyGen one (never a LiveAvatar one)."""
        return key == EMULATOR_HEYGEN_KEY or (self.api_keys is not None and key in self.api_keys)

    def accepts_liveavatar_key(self, key: str | None) -> bool:
        if not key:
            return False
        if self.is_liveavatar_key(key):
            return True
        return self.liveavatar_api_keys is None and not self.is_heygen_key(key)
