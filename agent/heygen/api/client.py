"""Async client for HeyGen's Interactive Avatar REST API (heygen-protocol.md §1).

Sending, retrying and redacting are :class:`~agent.heygen.api.base.RestClient`'s (shared
with the LiveAvatar client); this module holds the Interactive API's calls. Its retry
rules: ``new``, ``start`` and ``task`` create or re-do something billable and are sent
again only when refused; ``stop``, ``keep_alive``, ``create_token`` and the listings on
any failure that may pass.
"""

from __future__ import annotations

from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel, SecretStr

from agent.heygen.api.base import RestClient
from agent.heygen.ledger import Record
from agent.heygen.protocol import interactive as ia
from agent.heygen.settings import HEYGEN, LIVEAVATAR, Service

M = TypeVar("M", bound=BaseModel)

#: A sync task returns when the avatar has finished speaking, which can take a while.
SYNC_TASK_TIMEOUT_S = 180.0


#: Added to a refused key's error: a LiveAvatar key is the likely mistake.
KEY_HINT = "if this is a LiveAvatar key, it works only with heygen.backend: liveavatar"
SAID_SO_HINT = "a LiveAvatar key works only with heygen.backend: liveavatar"
LIVEAVATAR_KEY_HINT = ("this is the key in LIVEAVATAR_API_KEY; the Interactive API takes a "
                       "HeyGen key (HEYGEN_API_KEY), or set heygen.backend: liveavatar")


class HeyGenClient(RestClient):
    """The REST calls of one HeyGen account.

    ``api_key`` and ``base_url`` default to ``HEYGEN_API_KEY`` and ``HEYGEN_BASE_URL``
    (then ``https://api.heygen.com``); an explicit argument wins. Use as an async context
    manager, or call :meth:`aclose`. :meth:`with_session_token` gives a view that
    authenticates session calls with a session token, as the official client does.
    """

    service: ClassVar[Service] = HEYGEN
    api_key_header: ClassVar[str] = ia.API_KEY_HEADER
    other_service: ClassVar[Service | None] = LIVEAVATAR
    key_hint: ClassVar[str] = KEY_HINT
    other_key_hint: ClassVar[str] = LIVEAVATAR_KEY_HINT
    said_so_hint: ClassVar[str] = SAID_SO_HINT
    creating_paths: ClassVar[frozenset[str]] = frozenset({ia.NEW.path})

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

    def _stop_call(self, record: Record) -> tuple[ia.Endpoint, dict[str, Any] | None]:
        return ia.STOP, _session(record.session_id)

    async def list_sessions(self) -> list[ia.SessionInfo]:
        body = await self._send(ia.LIST_SESSIONS, None)
        return self._parse_list(ia.SessionInfo, body, ia.LIST_SESSIONS, "sessions")

    async def check_key(self) -> None:
        await self.list_avatars()

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
        return self._checked(lambda: ia.parse_data(answer, data, endpoint))

    def _parse_list(self, model: type[M], body: Any, endpoint: ia.Endpoint, key: str) -> list[M]:
        return self._checked(lambda: ia.parse_list(model, body, endpoint, key))

    def _error_fields(self, payload: Any) -> tuple[int | None, str]:
        error = ia.parse_error(payload)
        return error.code, error.message


def _session(session_id: str) -> dict[str, Any]:
    return ia.SessionRequest(session_id=session_id).to_body()
