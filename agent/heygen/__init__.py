"""HeyGen streaming avatars for Pipecat: what a user imports.

``from agent.heygen import HeyGenTransport, SessionOptions, LiveAvatarOptions``. Names load
on first use (PEP 562): ``agent.heygen.api`` alone, as the account commands use it, must not
pull in Pipecat and LiveKit.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agent.heygen.api import (
        APIError,
        AuthenticationError,
        ConcurrencyLimitError,
        HeyGenClient,
        HeyGenError,
        LiveAvatarClient,
        RateLimitError,
        SessionStateError,
        WrongServiceKeyError,
    )
    from agent.heygen.backend import AvatarSession, LifeOptions
    from agent.heygen.frames import (
        HeyGenAvatarTranscriptFrame,
        HeyGenPushToTalkFrame,
        HeyGenSpeakFrame,
    )
    from agent.heygen.liveavatar import LiveAvatarOptions, LiveAvatarSession
    from agent.heygen.protocol.interactive import NewSessionRequest, TaskMode, TaskType
    from agent.heygen.session import (
        HeyGenSession,
        SessionAborted,
        SessionListener,
        SessionOptions,
        SessionState,
    )
    from agent.heygen.transport import HeyGenParams, HeyGenTransport

_WHERE = {
    "agent.heygen.api": ["APIError", "AuthenticationError", "ConcurrencyLimitError",
                         "HeyGenClient", "HeyGenError", "LiveAvatarClient", "RateLimitError",
                         "SessionStateError", "WrongServiceKeyError"],
    "agent.heygen.backend": ["AvatarSession", "LifeOptions"],
    "agent.heygen.liveavatar": ["LiveAvatarOptions", "LiveAvatarSession"],
    "agent.heygen.frames": ["HeyGenAvatarTranscriptFrame", "HeyGenPushToTalkFrame",
                            "HeyGenSpeakFrame"],
    "agent.heygen.protocol.interactive": ["NewSessionRequest", "TaskMode", "TaskType"],
    "agent.heygen.session": ["HeyGenSession", "SessionAborted", "SessionListener",
                             "SessionOptions", "SessionState"],
    "agent.heygen.transport": ["HeyGenParams", "HeyGenTransport"],
}
_MODULE_OF = {name: module for module, names in _WHERE.items() for name in names}

__all__ = [
    "APIError",
    "AuthenticationError",
    "AvatarSession",
    "ConcurrencyLimitError",
    "HeyGenAvatarTranscriptFrame",
    "HeyGenClient",
    "HeyGenError",
    "HeyGenParams",
    "HeyGenPushToTalkFrame",
    "HeyGenSession",
    "HeyGenSpeakFrame",
    "HeyGenTransport",
    "LifeOptions",
    "LiveAvatarClient",
    "LiveAvatarOptions",
    "LiveAvatarSession",
    "NewSessionRequest",
    "RateLimitError",
    "SessionAborted",
    "SessionListener",
    "SessionOptions",
    "SessionState",
    "SessionStateError",
    "TaskMode",
    "TaskType",
    "WrongServiceKeyError",
]


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'agent.heygen' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
