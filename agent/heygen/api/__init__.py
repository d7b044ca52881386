"""Async REST clients for HeyGen's two APIs (Interactive Avatar and LiveAvatar), with typed
errors and redacted logging."""

from agent.heygen.api.client import HeyGenClient
from agent.heygen.api.errors import (
    APIError,
    AuthenticationError,
    ConcurrencyLimitError,
    ConfigurationError,
    ConnectError,
    HeyGenError,
    InvalidResponseError,
    NotFoundError,
    RateLimitError,
    RequestTimeout,
    ServerError,
    SessionStateError,
    TransportError,
    WrongServiceKeyError,
)
from agent.heygen.api.liveavatar import LiveAvatarClient

__all__ = [
    "APIError",
    "AuthenticationError",
    "ConcurrencyLimitError",
    "ConfigurationError",
    "ConnectError",
    "HeyGenClient",
    "HeyGenError",
    "InvalidResponseError",
    "LiveAvatarClient",
    "NotFoundError",
    "RateLimitError",
    "RequestTimeout",
    "ServerError",
    "SessionStateError",
    "TransportError",
    "WrongServiceKeyError",
]
