"""Typed errors for everything that talks to HeyGen over HTTP.

Modelled on httpx: one base class to catch, subclasses for what a caller decides on, and
a ``retryable`` flag so that retry logic need not know status codes. Both APIs (Interactive
Avatar and LiveAvatar) raise these; LiveAvatar's failures on HTTP 200 (a failure code in a
success status) are :class:`APIError` too, with that status. Messages are already
redacted: they never contain an API key or token.
"""

from __future__ import annotations

from agent.heygen.protocol import interactive
from agent.heygen.protocol.liveavatar import rest as liveavatar


class HeyGenError(Exception):
    """Anything that went wrong talking to HeyGen.

    ``retryable``: the same call may succeed later. ``refused``: the service certainly did
    nothing with it (never reached, or it said so), so even a call that creates something
    may be sent again. ``retry_after``: the seconds the service asked to wait, if it did."""

    retryable: bool = False
    refused: bool = False
    retry_after: float | None = None


class ConfigurationError(HeyGenError):
    """The client cannot make the call as configured (e.g. no API key)."""


class TransportError(HeyGenError):
    """The request did not get an answer: refused, reset, DNS. Worth retrying."""

    retryable = True


class ConnectError(TransportError):
    """The request never reached the service (refused, unreachable, no connection in time)."""

    refused = True


class RequestTimeout(TransportError):
    """No answer in time (the service may have acted on it)."""


class InvalidResponseError(HeyGenError):
    """A 2xx answer that does not hold what the protocol promises."""


class APIError(HeyGenError):
    """HeyGen answered with an error status.

    ``status`` is the HTTP status, ``code`` HeyGen's own numeric code when it sent one,
    ``message`` its text. A 4xx other than 408 and 429 is final; 408, 429 and 5xx may
    succeed if tried again.
    """

    def __init__(
        self, *, endpoint: str, status: int, code: int | None, message: str,
        retry_after: float | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.status = status
        self.code = code
        self.message = message
        self.retryable = status in (408, 429) or status >= 500
        self.refused = status in (429, 503)
        self.retry_after = retry_after
        code_part = f", code {code}" if code is not None else ""
        super().__init__(f"{endpoint}: HTTP {status}{code_part}: {message or 'no message'}")


class AuthenticationError(APIError):
    """The API key or session token was refused, or the account has no API access."""


class WrongServiceKeyError(AuthenticationError):
    """The key was refused because it belongs to the other API: a HeyGen API key given to
    LiveAvatar, which has keys of its own (``LIVEAVATAR_API_KEY``)."""


class NotFoundError(APIError):
    """No such path or resource."""


class SessionStateError(APIError):
    """The session is unknown, stopped, expired, or not in the state the call needs."""


class ConcurrencyLimitError(APIError):
    """The account has as many open sessions as it may; stop one (``sessions stop``)."""


class RateLimitError(APIError):
    """Too many requests; retry later."""


class ServerError(APIError):
    """HeyGen failed on its side (5xx)."""


_AUTH_CODES = {
    interactive.CODE_UNAUTHORIZED,
    interactive.CODE_INVALID_CREDENTIALS,
    interactive.CODE_NO_API_ACCESS,
}


def api_error(
    *, endpoint: str, status: int, code: int | None, message: str,
    retry_after: float | None = None,
) -> APIError:
    """The most specific :class:`APIError` for an error answer."""
    cls: type[APIError]
    if status in (401, 403) or code in _AUTH_CODES:
        heygen_key = liveavatar.HEYGEN_KEY_MESSAGE.lower() in message.lower()
        cls = WrongServiceKeyError if heygen_key else AuthenticationError
    elif interactive.CONCURRENT_LIMIT_MESSAGE.lower() in message.lower():
        cls = ConcurrencyLimitError
    elif code in (interactive.CODE_SESSION_STATE, liveavatar.CODE_SESSION_STATE):
        cls = SessionStateError
    elif status == 404:
        cls = NotFoundError
    elif status == 429:
        cls = RateLimitError
    elif status >= 500:
        cls = ServerError
    else:
        cls = APIError
    return cls(endpoint=endpoint, status=status, code=code, message=message,
               retry_after=retry_after)
