"""How an emulator instance is set up: credentials it accepts, limits, media, faults."""

from __future__ import annotations

from dataclasses import dataclass, field

from agent.emulator.faults import FaultSettings


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

    def accepts_key(self, key: str | None) -> bool:
        if not key:
            return False
        return self.api_keys is None or key in self.api_keys
