"""LiveAvatar's REST API: the project's client against the emulator, over 127.0.0.1.

No LiveKit here (the avatar has no media), so the REST rules are tested fast. Faults are
the emulator's own (``/_emulator/faults``); waits are on the emulator's counts, never on
a guess of how long something takes.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import httpx
import pytest

from agent.emulator.config import EMULATOR_HEYGEN_KEY, EMULATOR_LIVEAVATAR_KEY, EmulatorConfig
from agent.emulator.server import EmulatorServer
from agent.heygen import api
from agent.heygen.ledger import fingerprint
from agent.heygen.protocol.liveavatar import rest as la
from agent.heygen.protocol.liveavatar import socket as lite
from agent.heygen.redact import MASK
from tests.emulator_admin import set_faults
from tests.waiting import within

KEY = "la-test-key-0123456789"
HEYGEN_KEY = "hg-test-key-0123456789"


def sandbox(mode: la.Mode = la.Mode.LITE) -> la.TokenRequest:
    return la.TokenRequest(mode=mode, avatar_id=la.SANDBOX_AVATAR_ID, is_sandbox=True)


@pytest.fixture
async def server() -> AsyncIterator[EmulatorServer]:
    config = EmulatorConfig(api_keys=frozenset({HEYGEN_KEY}),
                            liveavatar_api_keys=frozenset({KEY}))
    async with EmulatorServer(config) as server:
        yield server


@pytest.fixture
async def client(server: EmulatorServer) -> AsyncIterator[api.LiveAvatarClient]:
    async with api.LiveAvatarClient(KEY, base_url=server.base_url, max_retries=2) as client:
        yield client


# ------------------------------------------------------------------ the session's life


async def test_token_start_keep_alive_stop(
    server: EmulatorServer, client: api.LiveAvatarClient
) -> None:
    token = await client.create_session_token(sandbox())
    assert la.token_mode(token.session_token) == "LITE"
    assert la.session_token_payload(token.session_token)["session_id"] == token.session_id
    session = client.with_session_token(token.session_token)
    started = await session.start_session()
    assert started.session_id == token.session_id
    assert started.max_session_duration == 60, "a sandbox session lasts about a minute"
    assert started.livekit_client_token is not None and started.livekit_agent_token is not None
    assert started.ws_url is not None
    assert started.ws_url.get_secret_value().startswith(
        f"ws://127.0.0.1:{server.port}"
        + lite.EMULATOR_WS_PATH.format(session_id=token.session_id) + "?token=")
    await session.keep_alive()
    await session.stop_session(token.session_id, reason="test over")
    await session.aclose()  # a view leaves the shared pool open...
    assert (await client.list_public_avatars())[0].name == "Wayne"  # ...which still works

    described = server.emulator.describe()
    assert described["sessions"] == {"created": 1, "started": 1, "stopped": 1, "expired": 0,
                                     "open": 0}
    state = described["per_session"][token.session_id]
    assert state["end_reason"] == "test over"
    assert {k: state["liveavatar"][k] for k in ("mode", "is_sandbox", "avatar_id")} == {
        "mode": "LITE", "is_sandbox": True, "avatar_id": la.SANDBOX_AVATAR_ID}
    assert state["liveavatar"]["lite"]["utterances"] == 0, "no socket was opened"
    assert server.emulator.requests[la.START.path] == 1


async def test_the_wire_as_the_official_sdk_reads_it(server: EmulatorServer) -> None:
    """Codes 100 and 1000; start, keep-alive and stop with no body at all."""
    async with httpx.AsyncClient(base_url=server.base_url) as http:
        token = await http.post(la.TOKEN.path, headers={la.API_KEY_HEADER: KEY},
                                json=sandbox(la.Mode.FULL).to_body())
        assert token.status_code == 200 and token.json()["code"] == la.CODE_TOKEN_OK
        bearer = {"Authorization": f"Bearer {token.json()['data']['session_token']}",
                  "Content-Type": "application/json"}
        for endpoint in (la.START, la.KEEP_ALIVE, la.STOP):
            answer = await http.post(endpoint.path, headers=bearer)
            assert (answer.status_code, answer.json()["code"]) == (200, la.CODE_OK), endpoint
            if endpoint is la.START:
                data = answer.json()["data"]
                assert "ws_url" not in data, "FULL mode: commands go over LiveKit, no socket"
                assert {"session_id", "livekit_url", "livekit_client_token",
                        "livekit_agent_token", "max_session_duration"} <= data.keys()


async def test_a_session_that_ended_answers_a_failure_code(client: api.LiveAvatarClient) -> None:
    token = await client.create_session_token(sandbox())
    session = client.with_session_token(token.session_token)
    await session.start_session()
    with pytest.raises(api.SessionStateError, match="already started") as twice:
        await session.start_session()
    assert (twice.value.status, twice.value.code) == (200, la.CODE_SESSION_STATE)
    await session.stop_session()
    for call in (session.stop_session, session.keep_alive, session.start_session):
        with pytest.raises(api.SessionStateError, match="already ended") as caught:
            await call()
        assert caught.value.status == 200 and not caught.value.retryable
        assert "(stopped by client)" in caught.value.message


async def test_a_failure_code_on_http_200_is_not_retried(
    server: EmulatorServer, client: api.LiveAvatarClient
) -> None:
    token = await client.create_session_token(sandbox())
    session = client.with_session_token(token.session_token)
    await session.start_session()
    await set_faults(server, fail_next={"status": 200, "code": 4242, "message": "Odd",
                                        "path": la.KEEP_ALIVE.path})
    with pytest.raises(api.APIError, match=r"HTTP 200, code 4242: Odd") as caught:
        await session.keep_alive()
    assert type(caught.value) is api.APIError
    assert server.emulator.requests[la.KEEP_ALIVE.path] == 1
    await session.keep_alive()


async def test_the_token_belongs_to_its_session(client: api.LiveAvatarClient) -> None:
    first = await client.create_session_token(sandbox())
    second = await client.create_session_token(sandbox())
    session = client.with_session_token(first.session_token)
    with pytest.raises(api.AuthenticationError, match="does not belong") as caught:
        await session.stop_session(second.session_id)
    assert "LIVEAVATAR_API_KEY" not in str(caught.value), "a session token, not the key"
    await session.stop_session(first.session_id)


async def test_session_calls_need_a_session_token(
    server: EmulatorServer, client: api.LiveAvatarClient
) -> None:
    for call in (client.start_session, client.keep_alive, client.stop_session):
        with pytest.raises(api.ConfigurationError, match="with_session_token"):
            await call()
    assert server.emulator.requests[la.START.path] == 0
    forged = client.with_session_token(la.mint_session_token({"session_id": "x"}))
    with pytest.raises(api.AuthenticationError, match="Invalid session token"):
        await forged.start_session()


# ------------------------------------------------------------------ keys


async def test_a_heygen_key_is_refused_and_said_to_be_one(server: EmulatorServer) -> None:
    for heygen_key in (HEYGEN_KEY, EMULATOR_HEYGEN_KEY):
        async with api.LiveAvatarClient(heygen_key, base_url=server.base_url) as client:
            with pytest.raises(api.WrongServiceKeyError) as caught:
                await client.create_session_token(sandbox())
        error = caught.value
        assert error.status == 401 and error.code == la.CODE_UNAUTHORIZED
        assert "HeyGen API key" in str(error) and "LIVEAVATAR_API_KEY" in str(error)
        assert heygen_key not in str(error)
    assert server.emulator.registry.counts()["created"] == 0
    for liveavatar_key in (KEY, EMULATOR_LIVEAVATAR_KEY):  # nor the other way round
        async with api.HeyGenClient(liveavatar_key, base_url=server.base_url) as heygen:
            with pytest.raises(api.AuthenticationError):
                await heygen.list_avatars()


async def test_a_wrong_key_says_what_key_liveavatar_takes(
    server: EmulatorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with api.LiveAvatarClient("la-wrong-key-000000", base_url=server.base_url,
                                    max_retries=0) as client:
        with pytest.raises(api.AuthenticationError, match="Invalid API key") as caught:
            await client.list_voices()
    assert type(caught.value) is api.AuthenticationError
    assert "LIVEAVATAR_API_KEY" in str(caught.value)
    # a key the emulator does not know as HeyGen's, but that is HEYGEN_API_KEY here
    monkeypatch.setenv("HEYGEN_API_KEY", "hg-from-env-000000")
    async with api.LiveAvatarClient("hg-from-env-000000", base_url=server.base_url) as client:
        with pytest.raises(api.WrongServiceKeyError, match="the key in HEYGEN_API_KEY"):
            await client.list_avatars()


async def test_keys_and_urls_from_the_environment(
    server: EmulatorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HEYGEN_API_KEY", HEYGEN_KEY)
    monkeypatch.setenv("HEYGEN_BASE_URL", "http://127.0.0.1:1")
    monkeypatch.delenv("LIVEAVATAR_API_KEY", raising=False)
    monkeypatch.setenv("LIVEAVATAR_BASE_URL", server.base_url + "/")
    async with api.LiveAvatarClient() as client:
        assert client.base_url == server.base_url
        with pytest.raises(api.ConfigurationError, match=r"LiveAvatar API key.*LIVEAVATAR_API_KEY"):
            await client.list_voices()
    monkeypatch.setenv("LIVEAVATAR_API_KEY", KEY)
    async with api.LiveAvatarClient() as client:
        assert await client.list_voices()
        assert client.key_fingerprint == fingerprint(KEY)
        assert KEY not in client.key_fingerprint
    with pytest.raises(ValueError, match="LiveAvatar base_url: expected an http") as caught:
        api.LiveAvatarClient(KEY, base_url=KEY)
    assert KEY not in str(caught.value), "a key pasted as the URL is never echoed"
    monkeypatch.setenv("LIVEAVATAR_BASE_URL", "api.liveavatar.com")
    with pytest.raises(ValueError, match="LIVEAVATAR_BASE_URL: expected an http"):
        api.LiveAvatarClient(KEY)
    monkeypatch.delenv("LIVEAVATAR_BASE_URL")
    async with api.LiveAvatarClient(KEY) as default:
        assert default.base_url == la.DEFAULT_BASE_URL


# ------------------------------------------------------------------ requests the service refuses


async def test_bad_token_requests(server: EmulatorServer, client: api.LiveAvatarClient) -> None:
    async with httpx.AsyncClient(base_url=server.base_url,
                                 headers={la.API_KEY_HEADER: KEY}) as http:
        no_mode = await http.post(la.TOKEN.path, json={"avatar_id": "a"})
        not_json = await http.post(la.TOKEN.path, content=b"{",
                                   headers={"content-type": "application/json"})
        no_key = await http.post(la.TOKEN.path, json=sandbox().to_body(),
                                 headers={la.API_KEY_HEADER: ""})
        no_bearer = await http.post(la.START.path)
    assert (no_mode.status_code, no_mode.json()["code"]) == (422, la.CODE_BAD_REQUEST)
    assert "mode" in no_mode.json()["message"]
    assert not_json.status_code == 400 and "JSON" in not_json.json()["message"]
    assert no_key.status_code == 401 and "X-API-KEY" in no_key.json()["message"]
    assert no_bearer.status_code == 401 and "Bearer" in no_bearer.json()["message"]
    with pytest.raises(api.APIError, match="only use the sandbox avatar Wayne") as caught:
        await client.create_session_token(
            la.TokenRequest(mode="LITE", avatar_id="someone-else", is_sandbox=True))
    assert caught.value.status == 400
    assert server.emulator.registry.counts()["created"] == 0


# ------------------------------------------------------------------ retries


async def test_a_refused_token_call_is_retried_after_retry_after(
    server: EmulatorServer, client: api.LiveAvatarClient
) -> None:
    await set_faults(server, fail_next={"status": 429, "retry_after": 0.3,
                                        "message": "Too many requests", "path": la.TOKEN.path})
    started = time.monotonic()
    await client.create_session_token(sandbox())
    assert time.monotonic() - started >= 0.3, "Retry-After was honoured"
    assert server.emulator.requests[la.TOKEN.path] == 2
    assert server.emulator.registry.counts()["created"] == 1


async def test_start_is_retried_only_when_refused(
    server: EmulatorServer, client: api.LiveAvatarClient
) -> None:
    token = await client.create_session_token(sandbox())
    session = client.with_session_token(token.session_token)
    await set_faults(server, fail_next={"status": 500, "path": la.START.path})
    with pytest.raises(api.ServerError):
        await session.start_session()
    assert server.emulator.requests[la.START.path] == 1, "500: it may have started"
    await set_faults(server, fail_next={"status": 503, "path": la.START.path})
    await session.start_session()
    assert server.emulator.requests[la.START.path] == 3, "503: refused, so sent again"
    await set_faults(server, fail_next={"count": 2, "status": 500, "path": la.STOP.path})
    await session.stop_session()
    assert server.emulator.requests[la.STOP.path] == 3, "stop is always retried"


async def test_no_secret_in_any_error_or_log_line(
    server: EmulatorServer, client: api.LiveAvatarClient, captured_logs: list[str]
) -> None:
    token = await client.create_session_token(sandbox())
    session = client.with_session_token(token.session_token)
    started = await session.start_session()
    assert started.ws_url is not None and started.livekit_client_token is not None
    ws_token = started.ws_url.get_secret_value().split("token=")[1]
    secrets = [KEY, token.session_token.get_secret_value(), ws_token,
               started.livekit_client_token.get_secret_value()]
    echo = " ".join(secrets)
    texts = [repr(token), str(token), repr(started), str(started)]
    await set_faults(server, fail_next={"count": 2, "status": 503, "message": echo,
                                        "path": la.KEEP_ALIVE.path})
    await set_faults(server, fail_next={"status": 401, "message": echo, "path": la.STOP.path})
    await set_faults(server, fail_next={"status": 200, "code": 1, "message": echo,
                                        "path": la.LIST_VOICES.path})
    await session.keep_alive()  # two failures, retried (and logged)
    for call in (session.stop_session(), client.list_voices()):
        with pytest.raises(api.APIError) as caught:
            await call
        texts += [str(caught.value), repr(caught.value), caught.value.message]
    assert any("retry" in line for line in captured_logs), "the retries were logged"
    for text in [*texts, *captured_logs]:
        for secret in secrets:
            assert secret not in text
    assert MASK in texts[-1]
    await session.stop_session()


# ------------------------------------------------------------------ catalogue


async def test_catalogue(client: api.LiveAvatarClient) -> None:
    public = await client.list_public_avatars()
    assert (public[0].id, public[0].name) == (la.SANDBOX_AVATAR_ID, "Wayne")
    assert len(public) >= 3
    own = await client.list_avatars()
    assert own and la.SANDBOX_AVATAR_ID not in {a.id for a in own}
    voices = await client.list_voices()
    contexts = await client.list_contexts()
    assert len(voices) >= 2 and all(v.id and v.name for v in voices)
    assert contexts and contexts[0].model_extra and "prompt" in contexts[0].model_extra


# ------------------------------------------------------------------ limits


async def test_a_sandbox_session_ends_after_its_minute() -> None:
    config = EmulatorConfig(liveavatar_sandbox_duration_s=0.3, expiry_check_interval_s=0.05)
    async with EmulatorServer(config) as server, api.LiveAvatarClient(
        KEY, base_url=server.base_url
    ) as client:
        token = await client.create_session_token(sandbox())
        session = client.with_session_token(token.session_token)
        started = await session.start_session()
        assert started.max_session_duration == 1
        await within(server.emulator.ends.reach(token.session_id), "the sandbox session ended")
        with pytest.raises(api.SessionStateError, match="session duration limit"):
            await session.keep_alive()
        assert server.emulator.registry.counts()["expired"] == 1


async def test_an_idle_session_ends_and_keep_alive_is_activity() -> None:
    config = EmulatorConfig(liveavatar_idle_timeout_s=0.3, expiry_check_interval_s=0.05)
    async with EmulatorServer(config) as server, api.LiveAvatarClient(
        KEY, base_url=server.base_url
    ) as client:
        token = await client.create_session_token(
            la.TokenRequest(mode="FULL", avatar_id="any", max_session_duration=3600))
        session = client.with_session_token(token.session_token)
        assert (await session.start_session()).max_session_duration == 600, "capped"
        (held,) = [s for s in server.emulator.registry if s.session_id == token.session_id]
        before = held.last_activity
        await session.keep_alive()
        assert held.last_activity > before, "keep-alive restarts the idle timer"
        await within(server.emulator.ends.reach(token.session_id), "the idle session ended")
        with pytest.raises(api.SessionStateError, match="idle timeout"):
            await session.keep_alive()


# ------------------------------------------------------------------ browsers


async def test_cors_lets_the_official_sdk_send_credentials(server: EmulatorServer) -> None:
    origin = "http://localhost:5173"
    async with httpx.AsyncClient(base_url=server.base_url) as http:
        preflight = await http.options(
            la.START.path,
            headers={"Origin": origin, "Access-Control-Request-Method": "POST",
                     "Access-Control-Request-Headers": "authorization,content-type"})
        catalogue = await http.get(la.LIST_VOICES.path,
                                   headers={"Origin": origin, la.API_KEY_HEADER: KEY})
        interactive = await http.post("/v1/streaming.create_token", json={},
                                      headers={"Origin": origin, "x-api-key": HEYGEN_KEY})
        no_origin = await http.get(la.LIST_VOICES.path, headers={la.API_KEY_HEADER: KEY})
    for answer in (preflight, catalogue):
        assert answer.headers["Access-Control-Allow-Origin"] == origin
        assert answer.headers["Access-Control-Allow-Credentials"] == "true"
    assert "authorization" in preflight.headers["Access-Control-Allow-Headers"]
    assert "x-api-key" in preflight.headers["Access-Control-Allow-Headers"]
    assert interactive.headers["Access-Control-Allow-Origin"] == origin
    assert "Access-Control-Allow-Credentials" not in interactive.headers, "unchanged"
    assert no_origin.headers["Access-Control-Allow-Origin"] == "*"
    assert "Access-Control-Allow-Credentials" not in no_origin.headers
