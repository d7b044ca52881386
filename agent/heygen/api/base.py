"""How the project sends a REST call to HeyGen, whichever of its two APIs it goes to.

The Interactive Avatar client (:mod:`.client`) and the LiveAvatar client
(:mod:`.liveavatar`) differ in paths, credentials and answer envelopes, not in how a call
is sent, retried and reported. That part lives here, once: one :class:`httpx.AsyncClient`
(one connection pool) serves a client and every view derived from it with
:meth:`RestClient.with_session_token`. Retries follow each endpoint's ``retry`` rule: a call
that creates or re-does something billable is sent again only when the service certainly
did nothing with it (never reached, or 429/503); the others (stop, keep-alive, listings)
on any failure that may pass, because a stop that gives up after one dropped packet leaks
a session billed by the minute. Waits grow exponentially with full jitter (many clients
retrying in step would hit the service together) and honour ``Retry-After``. Every secret
the client learns goes into its :class:`~agent.heygen.redact.Redactor`, which scrubs every
error message and log line it writes.
"""

from __future__ import annotations

import asyncio
import copy
import ipaddress
import math
import os
import random
import time
from collections.abc import Callable
from typing import Any, ClassVar, Self, TypeVar

import httpx
from loguru import logger
from pydantic import SecretStr

from agent.heygen.api.errors import (
    APIError,
    AuthenticationError,
    ConfigurationError,
    ConnectError,
    HeyGenError,
    InvalidResponseError,
    RequestTimeout,
    TransportError,
    WrongServiceKeyError,
    api_error,
)
from agent.heygen.ledger import Record, fingerprint
from agent.heygen.protocol._rest import Endpoint
from agent.heygen.protocol.errors import ProtocolError
from agent.heygen.redact import Redactor
from agent.heygen.settings import Service, resolve_api_key, resolve_base_url

T = TypeVar("T")

DEFAULT_TIMEOUT_S = 15.0
#: Overrides :data:`DEFAULT_TIMEOUT_S` (seconds): a slow network, or a test of timeouts.
ENV_TIMEOUT = "HEYGEN_HTTP_TIMEOUT_S"
DEFAULT_MAX_RETRIES = 2
_BACKOFF_S = 0.25
#: The longest ``Retry-After`` honoured; a longer one is the caller's to wait out.
MAX_RETRY_AFTER_S = 30.0


class RestClient:
    """The REST calls of one account of :attr:`service`. Subclasses name the service,
    the header that carries the key, and how an error answer reads."""

    service: ClassVar[Service]
    #: The header that carries the account key.
    api_key_header: ClassVar[str]

    def __init__(
        self,
        api_key: str | None = None,
        *,
        base_url: str | None = None,
        timeout: float | None = None,
        max_retries: int = DEFAULT_MAX_RETRIES,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        self._api_key = resolve_api_key(api_key, self.service)
        self.base_url = resolve_base_url(base_url, self.service)
        timeout = timeout if timeout is not None else default_timeout()
        self.timeout = timeout
        self.max_retries = max_retries
        self._session_token: str | None = None
        self._redact = Redactor()
        self._redact.add(self._api_key)
        host = httpx.URL(self.base_url).host
        if not looks_like_a_host(host):  # what the network library says may name it
            for text in (host, host.lower(), self.base_url.split("://", 1)[-1].split("/")[0]):
                self._redact.add(text)
        self._owns_http = http_client is None
        self._http = http_client or httpx.AsyncClient(
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            limits=httpx.Limits(max_connections=20, max_keepalive_connections=10),
        )

    @property
    def _host(self) -> str:
        """Where the calls go, for errors: host and port only (never a user or query), and
        only when the host looks like one: a key pasted after ``https://`` is a valid URL,
        and its "host" (the key, lowercased) must not be printed."""
        url = httpx.URL(self.base_url)
        if not looks_like_a_host(url.host):
            return "the base_url's host"
        return f"{url.host}:{url.port}" if url.port else url.host

    @property
    def key_fingerprint(self) -> str:
        """Identifies this client's API key without revealing it (for local records)."""
        return fingerprint(self._api_key)

    @property
    def redact(self) -> Redactor:
        """The redactor that knows this client's secrets, for callers that log URLs."""
        return self._redact

    def with_session_token(self, token: str | SecretStr) -> Self:
        """A view of this client that authenticates session calls with ``Bearer`` token.
        It shares the connection pool and the redactor; closing it does not close the
        pool."""
        view = copy.copy(self)
        view._session_token = token.get_secret_value() if isinstance(token, SecretStr) else token
        view._owns_http = False
        self._redact.add(view._session_token)
        return view

    async def check_key(self) -> None:
        """One call that needs the account key and changes nothing (a listing): raises
        the typed error a refused key gets (``heygen-agent validate --check-key``)."""
        raise NotImplementedError

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # ------------------------------------------------------------------ for subclasses

    def _headers(self, endpoint: Endpoint) -> dict[str, str]:
        """The credential ``endpoint`` takes: a Bearer session token where it takes one and
        this view has one, else the account key."""
        if endpoint.auth in ("session", "bearer") and self._session_token:
            return {"Authorization": f"Bearer {self._session_token}"}
        if endpoint.auth == "bearer":
            raise ConfigurationError(
                f"{endpoint.path} needs a session token: call it on with_session_token(...)"
            )
        if not self._api_key:
            raise ConfigurationError(
                f"{endpoint.path} needs a {self.service.name} API key: pass api_key or set "
                f"{self.service.env_api_key}"
            )
        return {self.api_key_header: self._api_key}

    def _error_fields(self, payload: Any) -> tuple[int | None, str]:
        """The service's code and message in an error answer (``payload`` is its JSON, or
        ``None``); must not raise."""
        raise NotImplementedError

    def _answer(self, endpoint: Endpoint, response: httpx.Response, payload: Any) -> Any:
        """The JSON of a successful answer, or the error it stands for."""
        if response.is_success:
            if payload is None:
                raise InvalidResponseError(f"{endpoint.path}: answer is not JSON")
            return payload
        code, message = self._error_fields(payload)
        raise self._api_error(
            endpoint, response.status_code, code, message or response.reason_phrase,
            _retry_after(response),
        )

    #: Calls after which the service may have created a session whose id a timeout hid
    creating_paths: ClassVar[frozenset[str]] = frozenset()
    #: The command that lists (and stops) this service's sessions
    sessions_command: ClassVar[str] = "heygen-agent sessions"

    #: HeyGen's other API: its key, given here, is the likely mistake when a key is refused
    other_service: ClassVar[Service | None] = None
    #: added to a refused key's error: in general; when it is the other API's key (from
    #: that API's environment variable); when the service said whose key it is
    key_hint: ClassVar[str] = ""
    other_key_hint: ClassVar[str] = ""
    said_so_hint: ClassVar[str] = ""

    def _api_error(
        self, endpoint: Endpoint, status: int, code: int | None, message: str,
        retry_after: float | None,
    ) -> APIError:
        error = api_error(endpoint=endpoint.path, status=status, code=code,
                          message=self._redact(message), retry_after=retry_after)
        if (endpoint.auth != "api_key" or not isinstance(error, AuthenticationError)
                or self.other_service is None):
            return error
        # A refused key: say what the other API's key given here would mean.
        other = bool(self._api_key) and self._api_key == resolve_api_key(None,
                                                                         self.other_service)
        said_so = isinstance(error, WrongServiceKeyError)
        cls: type[APIError] = WrongServiceKeyError if other or said_so else type(error)
        hint = self.other_key_hint if other else self.said_so_hint if said_so else self.key_hint
        return cls(endpoint=error.endpoint, status=status, code=code,
                   message=f"{error.message} ({hint})", retry_after=retry_after)

    def _checked(self, parse: Callable[[], T]) -> T:
        """``parse()``, its :class:`ProtocolError` turned into a redacted
        :class:`InvalidResponseError`."""
        try:
            return parse()
        except ProtocolError as exc:
            raise InvalidResponseError(self._redact(str(exc))) from None

    # ------------------------------------------------------------------ sending

    async def _send(
        self,
        endpoint: Endpoint,
        body: dict[str, Any] | None,
        *,
        request_timeout: float | None = None,
    ) -> Any:
        attempts = 1 + self.max_retries
        for attempt in range(1, attempts + 1):
            try:
                return await self._send_once(endpoint, body, request_timeout)
            except HeyGenError as exc:
                if not may_retry(endpoint, exc) or attempt == attempts:
                    raise
                delay = retry_delay(attempt, exc)
                logger.warning(
                    f"{self.service.name} {endpoint.path}: {exc}; retry {attempt} in {delay:.2f}s"
                )
                await asyncio.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _send_once(
        self, endpoint: Endpoint, body: dict[str, Any] | None, request_timeout: float | None
    ) -> Any:
        started = time.perf_counter()
        timeout = httpx.USE_CLIENT_DEFAULT if request_timeout is None else request_timeout
        try:
            response = await self._http.request(
                endpoint.method,
                self.base_url + endpoint.path,
                json=body if endpoint.method == "POST" else None,
                headers=self._headers(endpoint),
                timeout=timeout,
            )
        except httpx.HTTPError as exc:
            raise self._transport_error(endpoint, exc) from None
        elapsed_ms = (time.perf_counter() - started) * 1000
        logger.debug(
            f"{self.service.name} {endpoint.method} {endpoint.path} → {response.status_code} "
            f"in {elapsed_ms:.0f} ms"
        )
        return self._answer(endpoint, response, _json_or_none(response))

    def _transport_error(self, endpoint: Endpoint, exc: httpx.HTTPError) -> TransportError:
        """The typed, redacted error for a request that got no answer."""
        if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
            reason = self._redact(str(exc)) or type(exc).__name__
            return ConnectError(f"{endpoint.path}: cannot connect to {self._host}: {reason}")
        if isinstance(exc, httpx.TimeoutException):
            maybe = ""
            if endpoint.path in self.creating_paths:
                # The service may have created it; with no id, nothing proves it ours to stop.
                maybe = (f"; a session may have been created (billed): list and stop it with "
                         f"{self.sessions_command}")
            return RequestTimeout(f"{endpoint.path}: no answer from {self._host} within the "
                                  f"timeout{maybe}")
        return TransportError(f"{endpoint.path}: {self._redact(str(exc)) or type(exc).__name__}")

    # ------------------------------------------------------------------ from any thread

    def _stop_call(self, record: Record) -> tuple[Endpoint, dict[str, Any] | None]:
        """The endpoint and body that stop the session of ``record`` (the subclass's
        protocol module builds them)."""
        raise NotImplementedError

    def stop_blocking(self, record: Record, timeout: float) -> None:
        """Stop the session of ``record`` with one blocking call, from any thread: for a
        process whose event loop no longer runs (a processor blocks it), where nothing
        awaited can. Authenticates with the record's session token when it has one, else
        with the key this client holds in memory. Raises the :class:`HeyGenError` that
        :meth:`_send` would."""
        endpoint, body = self._stop_call(record)
        view = self.with_session_token(record.stop_token) if record.stop_token else self
        try:
            with httpx.Client(timeout=timeout) as http:
                response = http.request(endpoint.method, self.base_url + endpoint.path,
                                        json=body, headers=view._headers(endpoint))
        except httpx.HTTPError as exc:
            raise self._transport_error(endpoint, exc) from None
        self._answer(endpoint, response, _json_or_none(response))


def default_timeout() -> float:
    """A request's timeout: ``$HEYGEN_HTTP_TIMEOUT_S`` if it is a positive number (else
    said, and ignored), else :data:`DEFAULT_TIMEOUT_S`."""
    text = os.environ.get(ENV_TIMEOUT, "")
    if not text:
        return DEFAULT_TIMEOUT_S
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        logger.warning(f"{ENV_TIMEOUT}: a positive number of seconds, not {text!r}; "
                       f"using {DEFAULT_TIMEOUT_S:g}")
        return DEFAULT_TIMEOUT_S
    return value


def looks_like_a_host(host: str) -> bool:
    """A host name (with a dot), ``localhost`` or an IP address: a name worth echoing."""
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return "." in host or host.lower() == "localhost"
    return True


def may_retry(endpoint: Endpoint, error: HeyGenError) -> bool:
    """Whether ``error`` from ``endpoint`` may be answered by sending the call again."""
    if endpoint.retry == "always":
        return error.retryable
    return error.refused


def retry_delay(attempt: int, error: HeyGenError) -> float:
    """Seconds before retry ``attempt`` (1-based): what the service asked for, else an
    exponential backoff with full jitter."""
    if error.retry_after is not None:
        return min(error.retry_after, MAX_RETRY_AFTER_S)
    return random.uniform(0, _BACKOFF_S * 2**attempt)


def _retry_after(response: httpx.Response) -> float | None:
    """``Retry-After`` in seconds (the HTTP-date form is not used by HeyGen)."""
    try:
        return max(0.0, float(response.headers.get("Retry-After", "")))
    except ValueError:
        return None


def _json_or_none(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None
