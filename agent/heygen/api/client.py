"""Async client for HeyGen's Interactive Avatar REST API (heygen-protocol.md §1).

One :class:`httpx.AsyncClient` (one connection pool) serves a client and every view
derived from it with :meth:`HeyGenClient.with_session_token`. Retries follow each
endpoint's ``retry`` rule: a call that creates or re-does something billable (``new``,
``start``, ``task``) is sent again only when the service certainly did nothing with it
(never reached, or 429/503); the others (``stop``, ``keep_alive``, ``create_token``,
listings) on any failure that may pass, because a ``stop`` that gives up after one dropped
packet leaks a session billed by the minute. Waits grow exponentially with full jitter
(many clients retrying in step would hit the service together) and honour ``Retry-After``.
"""

from __future__ import annotations

import asyncio
import copy
import random
import time
from typing import Any, TypeVar

import httpx
from loguru import logger
from pydantic import BaseModel, SecretStr

from agent.heygen.api.errors import (
    ConfigurationError,
    ConnectError,
    HeyGenError,
    InvalidResponseError,
    RequestTimeout,
    TransportError,
    api_error,
)
from agent.heygen.ledger import fingerprint
from agent.heygen.protocol import interactive as ia
from agent.heygen.protocol.errors import ProtocolError
from agent.heygen.redact import Redactor
from agent.heygen.settings import resolve_api_key, resolve_base_url

M = TypeVar("M", bound=BaseModel)

DEFAULT_TIMEOUT_S = 15.0
#: A sync task returns when the avatar has finished speaking, which can take a while.
SYNC_TASK_TIMEOUT_S = 180.0
DEFAULT_MAX_RETRIES = 2
_BACKOFF_S = 0.25
#: The longest ``Retry-After`` honoured; a longer one is the caller's to wait out.
MAX_RETRY_AFTER_S = 30.0


class HeyGenClient:
    """The REST calls of one HeyGen account.

    ``api_key`` and ``base_url`` default to ``HEYGEN_API_KEY`` and ``HEYGEN_BASE_URL``
    (then ``https://api.heygen.com``); an explicit argument wins. Use as an async context
    manager, or call :meth:`aclose`.
    """

    def __init__(
        self,
        api_key: str | None = None,
        *,
        base_url: str | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
        max_retries: int = DEFAULT_MAX_RETRIES,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        self._api_key = resolve_api_key(api_key)
        self.base_url = resolve_base_url(base_url)
        self.timeout = timeout
        self.max_retries = max_retries
        self._session_token: str | None = None
        self._redact = Redactor()
        self._redact.add(self._api_key)
        self._owns_http = http_client is None
        self._http = http_client or httpx.AsyncClient(
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            limits=httpx.Limits(max_connections=20, max_keepalive_connections=10),
        )

    @property
    def key_fingerprint(self) -> str:
        """Identifies this client's API key without revealing it (for local records)."""
        return fingerprint(self._api_key)

    @property
    def redact(self) -> Redactor:
        """The redactor that knows this client's secrets, for callers that log URLs."""
        return self._redact

    def with_session_token(self, token: str | SecretStr) -> HeyGenClient:
        """A view of this client that authenticates session calls with ``Bearer`` token,
        as the official client does. It shares the connection pool and the redactor;
        closing it does not close the pool."""
        view = copy.copy(self)
        view._session_token = token.get_secret_value() if isinstance(token, SecretStr) else token
        view._owns_http = False
        self._redact.add(view._session_token)
        return view

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    async def __aenter__(self) -> HeyGenClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # ------------------------------------------------------------------ endpoints

    async def create_token(self) -> SecretStr:
        """A short-lived session token, minted with the API key; it serves one session."""
        answer = await self._call(ia.CREATE_TOKEN, {}, ia.TokenAnswer)
        self._redact.add(answer.token)
        return answer.token

    async def new_session(self, request: ia.NewSessionRequest) -> ia.NewSessionAnswer:
        answer = await self._call(ia.NEW, request.to_body(), ia.NewSessionAnswer)
        self._redact.add(answer.access_token)
        self._redact.add(answer.livekit_agent_token)
        return answer

    async def start_session(self, session_id: str) -> None:
        await self._send(ia.START, _session(session_id))

    async def task(self, request: ia.TaskRequest) -> ia.TaskAnswer:
        timeout = SYNC_TASK_TIMEOUT_S if request.task_mode == ia.TaskMode.SYNC else None
        return await self._call(
            ia.TASK, request.to_body(), ia.TaskAnswer, request_timeout=timeout
        )

    async def speak(
        self,
        session_id: str,
        text: str,
        *,
        task_type: ia.TaskType = ia.TaskType.REPEAT,
        task_mode: ia.TaskMode = ia.TaskMode.ASYNC,
    ) -> ia.TaskAnswer:
        """Shorthand for :meth:`task`: ``repeat`` says ``text``, ``talk`` answers it."""
        request = ia.TaskRequest(
            session_id=session_id, text=text, task_type=task_type, task_mode=task_mode
        )
        return await self.task(request)

    async def interrupt(self, session_id: str) -> None:
        await self._send(ia.INTERRUPT, _session(session_id))

    async def keep_alive(self, session_id: str) -> None:
        await self._send(ia.KEEP_ALIVE, _session(session_id))

    async def start_listening(self, session_id: str) -> None:
        await self._send(ia.START_LISTENING, _session(session_id))

    async def stop_listening(self, session_id: str) -> None:
        await self._send(ia.STOP_LISTENING, _session(session_id))

    async def stop_session(self, session_id: str) -> None:
        await self._send(ia.STOP, _session(session_id))

    async def list_sessions(self) -> list[ia.SessionInfo]:
        body = await self._send(ia.LIST_SESSIONS, None)
        return self._parse_list(ia.SessionInfo, body, ia.LIST_SESSIONS, "sessions")

    async def list_avatars(self) -> list[ia.AvatarInfo]:
        body = await self._send(ia.LIST_AVATARS, None)
        return self._parse_list(ia.AvatarInfo, body, ia.LIST_AVATARS, "avatars")

    async def list_voices(self, *, realtime_only: bool = False) -> list[ia.VoiceInfo]:
        """Voices from ``/v1/voice.list``, or with ``realtime_only`` from ``/v2/voices``
        keeping those marked ``support_realtime`` (the only ones streaming can use)."""
        endpoint = ia.LIST_VOICES_V2 if realtime_only else ia.LIST_VOICES
        body = await self._send(endpoint, None)
        voices = self._parse_list(ia.VoiceInfo, body, endpoint, "voices")
        return [v for v in voices if v.support_realtime] if realtime_only else voices

    # ------------------------------------------------------------------ plumbing

    async def _call(
        self,
        endpoint: ia.Endpoint,
        body: dict[str, Any],
        answer: type[M],
        *,
        request_timeout: float | None = None,
    ) -> M:
        data = await self._send(endpoint, body, request_timeout=request_timeout)
        try:
            return ia.parse_data(answer, data, endpoint)
        except ProtocolError as exc:
            raise InvalidResponseError(self._redact(str(exc))) from None

    def _parse_list(self, model: type[M], body: Any, endpoint: ia.Endpoint, key: str) -> list[M]:
        try:
            return ia.parse_list(model, body, endpoint, key)
        except ProtocolError as exc:
            raise InvalidResponseError(self._redact(str(exc))) from None

    async def _send(
        self,
        endpoint: ia.Endpoint,
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
                logger.warning(f"HeyGen {endpoint.path}: {exc}; retry {attempt} in {delay:.2f}s")
                await asyncio.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _send_once(
        self, endpoint: ia.Endpoint, body: dict[str, Any] | None, request_timeout: float | None
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
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            reason = self._redact(str(exc)) or type(exc).__name__
            raise ConnectError(f"{endpoint.path}: cannot connect: {reason}") from None
        except httpx.TimeoutException:
            raise RequestTimeout(f"{endpoint.path}: no answer within the timeout") from None
        except httpx.HTTPError as exc:
            reason = self._redact(str(exc)) or type(exc).__name__
            raise TransportError(f"{endpoint.path}: {reason}") from None
        elapsed_ms = (time.perf_counter() - started) * 1000
        logger.debug(
            f"HeyGen {endpoint.method} {endpoint.path} → {response.status_code} "
            f"in {elapsed_ms:.0f} ms"
        )
        payload = _json_or_none(response)
        if response.is_success:
            if payload is None:
                raise InvalidResponseError(f"{endpoint.path}: answer is not JSON")
            return payload
        error = ia.parse_error(payload)
        message = error.message or response.reason_phrase
        raise api_error(
            endpoint=endpoint.path,
            status=response.status_code,
            code=error.code,
            message=self._redact(message),
            retry_after=_retry_after(response),
        )

    def _headers(self, endpoint: ia.Endpoint) -> dict[str, str]:
        if endpoint.auth == "session" and self._session_token:
            return {"Authorization": f"Bearer {self._session_token}"}
        if not self._api_key:
            raise ConfigurationError(
                f"{endpoint.path} needs a HeyGen API key: pass api_key or set HEYGEN_API_KEY"
            )
        return {ia.API_KEY_HEADER: self._api_key}


def may_retry(endpoint: ia.Endpoint, error: HeyGenError) -> bool:
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


def _session(session_id: str) -> dict[str, Any]:
    return ia.SessionRequest(session_id=session_id).to_body()


def _json_or_none(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None
