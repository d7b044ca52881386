"""Async REST client for HeyGen, with typed errors and redacted logging."""

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
)

__all__ = [
    "APIError",
    "AuthenticationError",
    "ConcurrencyLimitError",
    "ConfigurationError",
    "ConnectError",
    "HeyGenClient",
    "HeyGenError",
    "InvalidResponseError",
    "NotFoundError",
    "RateLimitError",
    "RequestTimeout",
    "ServerError",
    "SessionStateError",
    "TransportError",
]
