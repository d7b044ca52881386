"""The emulator's REST side, driven by the project's own client over 127.0.0.1.

No LiveKit here: these sessions have a media-less avatar, so the REST rules are tested
fast; tests/test_emulator_media.py covers the avatar in a real LiveKit room.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import AsyncIterator

import httpx
import pytest

from agent.emulator.config import EmulatorConfig
from agent.emulator.faults import FailNext, FaultSettings
from agent.emulator.server import EmulatorServer
from agent.emulator.sessions import EMULATOR_CONCURRENT_LIMIT_CODE
from agent.heygen import api
from agent.heygen.protocol import interactive as ia
from tests.emulator_admin import set_faults
from tests.waiting import eventually

KEY = "emu-test-key-123456"


@pytest.fixture
async def server() -> AsyncIterator[EmulatorServer]:
    async with EmulatorServer(EmulatorConfig(api_keys=frozenset({KEY}))) as server:
        yield server


@pytest.fixture
async def client(server: EmulatorServer) -> AsyncIterator[api.HeyGenClient]:
    async with api.HeyGenClient(KEY, base_url=server.base_url, max_retries=0) as client:
        yield client


async def new_started(client: api.HeyGenClient) -> str:
    session = await client.new_session(ia.NewSessionRequest(avatar_name="Emulated_Anna"))
    await client.start_session(session.session_id)
    return session.session_id


async def state(server: EmulatorServer) -> dict[str, object]:
    async with httpx.AsyncClient(verify=False) as http:
        answer = await http.get(server.base_url + "/_emulator/state")
        return dict(answer.json())


async def test_whole_session_with_the_api_key(
    server: EmulatorServer, client: api.HeyGenClient
) -> None:
    answer = await client.new_session(
        ia.NewSessionRequest(avatar_name="Emulated_Anna", quality=ia.AvatarQuality.LOW)
    )
    assert answer.session_id and answer.access_token.get_secret_value()
    assert answer.realtime_endpoint == (
        f"ws://127.0.0.1:{server.port}/v2-alpha/interactive-avatar/session/{answer.session_id}"
    )
    assert answer.session_duration_limit == 600
    sid = answer.session_id
    listed = await client.list_sessions()
    assert [s.status for s in listed] == ["new"]
    # a Unix time, as HeyGen answers, not the emulator's monotonic clock
    assert isinstance(listed[0].created_at, int | float)
    assert abs(listed[0].created_at - time.time()) < 60
    await client.start_session(sid)
    assert [s.status for s in await client.list_sessions()] == ["connected"]

    started = time.monotonic()
    sync = await client.speak(sid, "Hello there", task_mode=ia.TaskMode.SYNC)
    sync_elapsed = time.monotonic() - started
    assert sync.duration_ms is not None and sync.duration_ms >= 300
    assert sync_elapsed >= sync.duration_ms / 1000 * 0.9, "a sync task returns after speaking"

    started = time.monotonic()
    talk = await client.speak(sid, "What is this?", task_type=ia.TaskType.TALK)
    assert talk.duration_ms is not None
    assert time.monotonic() - started < talk.duration_ms / 1000, "async: returns before the end"
    assert talk.task_id != sync.task_id
    await client.interrupt(sid)
    await client.keep_alive(sid)
    await client.start_listening(sid)
    described = (await state(server))["per_session"][sid]  # type: ignore[index]
    assert described["listening"] is True
    assert [t["text"] for t in described["tasks"]] == ["Hello there", "You said: What is this?"]
    await client.stop_listening(sid)
    await client.stop_session(sid)
    assert await client.list_sessions() == []
    counts = (await state(server))["sessions"]
    assert counts == {"created": 1, "started": 1, "stopped": 1, "expired": 0, "open": 0}


async def test_session_token_flow(server: EmulatorServer, client: api.HeyGenClient) -> None:
    token = await client.create_token()
    session = client.with_session_token(token)
    answer = await session.new_session(ia.NewSessionRequest())
    await session.start_session(answer.session_id)
    await session.keep_alive(answer.session_id)

    other = await client.new_session(ia.NewSessionRequest())  # same account, by key
    with pytest.raises(api.AuthenticationError, match="does not belong"):
        await session.stop_session(other.session_id)
    with pytest.raises(api.AuthenticationError, match="already been used"):
        await session.new_session(ia.NewSessionRequest())
    await session.stop_session(answer.session_id)
    await client.stop_session(other.session_id)


@pytest.mark.parametrize("key", ["wrong-key-000000", None])
async def test_refused_credentials(
    server: EmulatorServer, key: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HEYGEN_API_KEY", raising=False)
    async with httpx.AsyncClient() as http:
        headers = {"x-api-key": key} if key else {"Authorization": "Bearer not-a-token"}
        answer = await http.post(server.base_url + "/v1/streaming.new", json={}, headers=headers)
    assert answer.status_code == 401
    assert answer.json()["code"] == (ia.CODE_INVALID_CREDENTIALS if key else ia.CODE_UNAUTHORIZED)
    if key:
        async with api.HeyGenClient(key, base_url=server.base_url) as bad:
            with pytest.raises(api.AuthenticationError) as caught:
                await bad.new_session(ia.NewSessionRequest())
        assert not caught.value.retryable


async def test_create_token_needs_the_key_not_a_token(server: EmulatorServer) -> None:
    async with httpx.AsyncClient() as http:
        answer = await http.post(
            server.base_url + "/v1/streaming.create_token", json={},
            headers={"Authorization": "Bearer whatever"},
        )
    assert answer.status_code == 401


async def test_session_state_errors(client: api.HeyGenClient) -> None:
    with pytest.raises(api.SessionStateError, match="not found"):
        await client.keep_alive("no-such-session")
    created = (await client.new_session(ia.NewSessionRequest())).session_id
    with pytest.raises(api.SessionStateError):
        await client.speak(created, "too early")  # not started yet
    with pytest.raises(api.SessionStateError):
        await client.interrupt(created)
    await client.start_session(created)
    with pytest.raises(api.SessionStateError):
        await client.start_session(created)  # twice
    await client.stop_session(created)
    for call in (client.keep_alive, client.stop_session, client.start_session):
        with pytest.raises(api.SessionStateError, match="correct state"):
            await call(created)


async def test_bad_request_bodies_name_the_field(server: EmulatorServer) -> None:
    async with httpx.AsyncClient(headers={"x-api-key": KEY}) as http:
        url = server.base_url
        bad_quality = await http.post(url + "/v1/streaming.new", json={"quality": "ultra"})
        not_json = await http.post(url + "/v1/streaming.start", content=b"{",
                                   headers={"content-type": "application/json"})
        no_id = await http.post(url + "/v1/streaming.stop", json={})
    assert bad_quality.status_code == 400 and "quality" in bad_quality.json()["message"]
    assert not_json.status_code == 400 and "JSON" in not_json.json()["message"]
    assert no_id.status_code == 400 and "session_id" in no_id.json()["message"]


async def test_concurrency_limit(client: api.HeyGenClient) -> None:
    ids = [(await client.new_session(ia.NewSessionRequest())).session_id for _ in range(3)]
    with pytest.raises(api.ConcurrencyLimitError) as caught:
        await client.new_session(ia.NewSessionRequest())
    assert caught.value.code == EMULATOR_CONCURRENT_LIMIT_CODE
    assert caught.value.message == ia.CONCURRENT_LIMIT_MESSAGE
    await client.stop_session(ids[0])
    await client.new_session(ia.NewSessionRequest())  # a slot is free again


async def test_duration_limit_expires_sessions() -> None:
    config = EmulatorConfig(session_duration_limit_s=0.5, expiry_check_interval_s=0.05)
    async with EmulatorServer(config) as server, api.HeyGenClient(
        "any-key-1234567", base_url=server.base_url
    ) as client:
        sid = await new_started(client)
        registry = server.emulator.registry
        await eventually(lambda: registry.counts()["expired"] == 1, "the session expired")
        with pytest.raises(api.SessionStateError):
            await client.keep_alive(sid)
        assert (await state(server))["sessions"]["expired"] == 1  # type: ignore[index]


async def test_listings(client: api.HeyGenClient) -> None:
    avatars = await client.list_avatars()
    assert "Emulated_Anna" in {a.avatar_id for a in avatars}
    voices = await client.list_voices()
    realtime = await client.list_voices(realtime_only=True)
    assert len(realtime) < len(voices) and all(v.support_realtime for v in realtime)


async def test_fault_latency(server: EmulatorServer, client: api.HeyGenClient) -> None:
    await set_faults(server, latency_ms=1000)
    started = time.monotonic()
    await client.list_avatars()
    assert time.monotonic() - started >= 1.0
    await set_faults(server, reset=True)
    started = time.monotonic()
    await client.list_avatars()
    assert time.monotonic() - started < 1.0, "reset: no added latency"


async def test_fault_next_requests_fail(server: EmulatorServer) -> None:
    await set_faults(server, fail_next={"count": 2, "status": 503, "message": "injected"})
    async with api.HeyGenClient(KEY, base_url=server.base_url, max_retries=2) as client:
        await client.list_avatars()  # two failures, retried through
        await set_faults(server, fail_next={"count": 1, "status": 500, "path": "/v1/streaming.new"})
        await client.list_avatars()  # not that path: unaffected
        with pytest.raises(api.ServerError):
            await client.new_session(ia.NewSessionRequest())  # may have created: not retried
        await client.new_session(ia.NewSessionRequest())
        await set_faults(server, fail_next={"count": 2, "status": 429, "path": "/v1/streaming.new"})
        await client.new_session(ia.NewSessionRequest())  # refused: nothing created, retried
    assert server.emulator.requests["/v1/streaming.new"] == 5
    assert server.emulator.registry.counts()["created"] == 2


async def test_faults_at_start_up() -> None:
    config = EmulatorConfig(faults=FaultSettings(fail_next=FailNext(count=1, status=500)))
    async with EmulatorServer(config) as server, api.HeyGenClient(
        "k-123456", base_url=server.base_url, max_retries=0
    ) as client:
        with pytest.raises(api.ServerError):
            await client.list_avatars()
        await client.list_avatars()


async def test_fault_settings_are_validated(server: EmulatorServer) -> None:
    async with httpx.AsyncClient() as http:
        answer = await http.post(server.base_url + "/_emulator/faults", json={"latncy_ms": 5})
    assert answer.status_code == 400 and "latncy_ms" in answer.json()["message"]


async def test_cors(server: EmulatorServer) -> None:
    origin = "http://localhost:5173"
    async with httpx.AsyncClient() as http:
        preflight = await http.options(
            server.base_url + "/v1/streaming.new",
            headers={"Origin": origin, "Access-Control-Request-Method": "POST",
                     "Access-Control-Request-Headers": "authorization,content-type"},
        )
        actual = await http.post(server.base_url + "/v1/streaming.create_token", json={},
                                 headers={"Origin": origin, "x-api-key": KEY})
    assert preflight.status_code == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == origin
    assert "authorization" in preflight.headers["Access-Control-Allow-Headers"]
    assert "POST" in preflight.headers["Access-Control-Allow-Methods"]
    assert actual.status_code == 200 and actual.headers["Access-Control-Allow-Origin"] == origin


async def test_tls() -> None:
    async with EmulatorServer(EmulatorConfig(), tls=True) as server:
        assert server.base_url.startswith("https://") and server.cert_path is not None
        trusted = ssl.create_default_context(cafile=str(server.cert_path))
        async with httpx.AsyncClient(verify=trusted) as http, api.HeyGenClient(
            "k-123456", base_url=server.base_url, http_client=http
        ) as client:
            answer = await client.new_session(ia.NewSessionRequest())
            assert answer.realtime_endpoint is not None
            assert answer.realtime_endpoint.startswith("wss://")
        async with httpx.AsyncClient() as untrusting:
            with pytest.raises(httpx.ConnectError):
                await untrusting.get(server.base_url + "/")
