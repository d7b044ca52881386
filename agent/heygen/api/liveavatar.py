"""Async client for HeyGen's LiveAvatar REST API (heygen-protocol.md §5).

LiveAvatar is the successor of the Interactive Avatar API, with its own base URL, its own
API key and its own answer envelope. Sending, retrying and redacting are
:class:`~agent.heygen.api.base.RestClient`'s, as for :class:`~agent.heygen.api.HeyGenClient`;
what is LiveAvatar's is here: a failure code in an HTTP 200 answer is an error like any
other, the session calls authenticate with the session token only, and a refused key
says that a HeyGen key does not work here (the mistake most users will make).

A session's life: :meth:`LiveAvatarClient.create_session_token` with the account key,
then on the view :meth:`~LiveAvatarClient.with_session_token` returns,
:meth:`~LiveAvatarClient.start_session`, :meth:`~LiveAvatarClient.keep_alive` and
:meth:`~LiveAvatarClient.stop_session`.
"""

from __future__ import annotations

from typing import Any, ClassVar, TypeVar

import httpx
from pydantic import BaseModel

from agent.heygen.api.base import RestClient
from agent.heygen.api.errors import (
    ConfigurationError,
    InvalidResponseError,
)
from agent.heygen.ledger import Record
from agent.heygen.protocol._rest import Endpoint
from agent.heygen.protocol.liveavatar import rest as la
from agent.heygen.settings import HEYGEN, LIVEAVATAR, Service

M = TypeVar("M", bound=BaseModel)

#: Added to a refused key's error: what a user most likely did wrong.
KEY_HINT = "LiveAvatar takes its own API key (LIVEAVATAR_API_KEY), not a HeyGen one"
SAID_SO_HINT = "set LIVEAVATAR_API_KEY to a LiveAvatar key"
HEYGEN_KEY_HINT = (
    "this is the key in HEYGEN_API_KEY; LiveAvatar takes its own API key (LIVEAVATAR_API_KEY)"
)


class LiveAvatarClient(RestClient):
    """The REST calls of one LiveAvatar account.

    ``api_key`` and ``base_url`` default to ``LIVEAVATAR_API_KEY`` and
    ``LIVEAVATAR_BASE_URL`` (then ``https://api.liveavatar.com``); an explicit argument
    wins. Use as an async context manager, or call :meth:`aclose`.
    """

    service: ClassVar[Service] = LIVEAVATAR
    api_key_header: ClassVar[str] = la.API_KEY_HEADER
    other_service: ClassVar[Service | None] = HEYGEN
    key_hint: ClassVar[str] = KEY_HINT
    other_key_hint: ClassVar[str] = HEYGEN_KEY_HINT
    said_so_hint: ClassVar[str] = SAID_SO_HINT
    # the token call creates the session; after it, its id and token are known (recorded)
    # and a start that timed out is stopped like any other
    creating_paths: ClassVar[frozenset[str]] = frozenset({la.TOKEN.path})
    sessions_command: ClassVar[str] = "heygen-agent sessions --backend liveavatar"

    # ------------------------------------------------------------------ session

    async def create_session_token(self, request: la.TokenRequest) -> la.TokenAnswer:
        """Creates the session (not started, not billed yet) and its session token, with
        which :meth:`with_session_token` makes the view for the session's calls."""
        if request.livekit_config is not None:
            self._redact.add(request.livekit_config.livekit_client_token)
        answer = await self._call(la.TOKEN, request.to_body(), la.TokenAnswer)
        self._redact.add(answer.session_token)
        return answer

    async def start_session(self) -> la.StartAnswer:
        """Starts the session of this view's token: billing begins, the avatar joins."""
        answer = await self._call(la.START, None, la.StartAnswer)
        for secret in (answer.livekit_client_token, answer.livekit_agent_token):
            self._redact.add(secret)
        self._redact.add_url(answer.ws_url)
        return answer

    async def stop_session(self, session_id: str | None = None, reason: str | None = None) -> None:
        """Stops the session of this view's token. A session that has already ended
        answers :class:`~agent.heygen.api.errors.SessionStateError`."""
        body = la.StopRequest(session_id=session_id, reason=reason).to_body()
        await self._send(la.STOP, body or None)

    async def keep_alive(self) -> None:
        """Counts as activity: restarts the session's 5-minute idle timer."""
        await self._send(la.KEEP_ALIVE, None)

    async def check_key(self) -> None:
        await self.list_avatars()

    async def stop_recorded(self, record: Record) -> None:
        """Stop a session a killed process left open, with the session token its local
        record keeps (LiveAvatar stops a session only with its own token)."""
        if not record.stop_token:
            raise ConfigurationError(
                f"LiveAvatar session {record.session_id}: its record has no session token to "
                "stop it with (it ends after 5 idle minutes)")
        view = self.with_session_token(record.stop_token)
        await view.stop_session(record.session_id, reason="left open by a process that ended")

    def _stop_call(self, record: Record) -> tuple[Endpoint, dict[str, Any] | None]:
        if not record.stop_token:
            raise ConfigurationError(
                f"LiveAvatar session {record.session_id}: no session token to stop it with")
        body = la.StopRequest(session_id=record.session_id,
                              reason="the process that runs it was stopped at once")
        return la.STOP, body.to_body()

    # ------------------------------------------------------------------ catalogue

    async def list_avatars(self) -> list[la.Avatar]:
        """The account's own avatars."""
        return await self._list(la.LIST_AVATARS, la.Avatar, "avatars")

    async def list_public_avatars(self) -> list[la.Avatar]:
        """LiveAvatar's public avatars (the sandbox's Wayne among them)."""
        return await self._list(la.LIST_PUBLIC_AVATARS, la.Avatar, "avatars")

    async def list_voices(self) -> list[la.Voice]:
        return await self._list(la.LIST_VOICES, la.Voice, "voices")

    async def list_contexts(self) -> list[la.Context]:
        """Contexts (a persona's instructions); FULL mode needs one to answer."""
        return await self._list(la.LIST_CONTEXTS, la.Context, "contexts")

    # ------------------------------------------------------------------ plumbing

    async def _call(self, endpoint: Endpoint, body: dict[str, Any] | None, answer: type[M]) -> M:
        payload = await self._send(endpoint, body)
        return self._checked(lambda: la.parse_data(answer, payload, endpoint))

    async def _list(self, endpoint: Endpoint, model: type[M], key: str) -> list[M]:
        payload = await self._send(endpoint, None)
        return self._checked(lambda: la.parse_list(model, payload, endpoint, key))

    def _answer(self, endpoint: Endpoint, response: httpx.Response, payload: Any) -> Any:
        """A 2xx answer is a success only with a success code: LiveAvatar also fails with
        HTTP 200 and another code, which becomes an :class:`APIError` with status 200."""
        if response.is_success and payload is not None:
            envelope = la.parse_envelope(payload)
            if envelope.code is None:
                raise InvalidResponseError(f"{endpoint.path}: answer has no 'code'")
            if not envelope.ok:
                raise self._api_error(endpoint, response.status_code, envelope.code,
                                      envelope.message or "failure code", None)
        return super()._answer(endpoint, response, payload)

    def _error_fields(self, payload: Any) -> tuple[int | None, str]:
        envelope = la.parse_envelope(payload)
        return envelope.code, envelope.message

