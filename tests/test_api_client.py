"""The REST client over a real socket, against a programmable server on 127.0.0.1."""

from __future__ import annotations

import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from agent.heygen import api
from agent.heygen.protocol import interactive as ia
from tests.stub_http import Reply, StubServer

KEY = "sk-FAKEKEY-0123456789abcdef"
SESSION_TOKEN = "st-FAKETOKEN-ffeeddccbbaa"
LIVEKIT_TOKEN = "lk-FAKEJWT-a1b2c3d4e5f6"
NEW_ANSWER = {
    "data": {
        "session_id": "sess-1",
        "access_token": LIVEKIT_TOKEN,
        "url": "wss://livekit.example",
        "is_paid": False,
        "session_duration_limit": 600,
        "realtime_endpoint": "wss://rt.example/v2-alpha/interactive-avatar/session/sess-1",
    }
}


@pytest.fixture
async def stub() -> AsyncIterator[StubServer]:
    server = StubServer()
    await server.start()
    yield server
    await server.close()


@pytest.fixture
async def client(stub: StubServer) -> AsyncIterator[api.HeyGenClient]:
    async with api.HeyGenClient(KEY, base_url=stub.base_url, timeout=2.0) as c:
        yield c


async def test_every_session_endpoint_sends_the_documented_request(
    stub: StubServer, client: api.HeyGenClient
) -> None:
    stub.program("/v1/streaming.new", Reply(body=NEW_ANSWER))
    stub.program("/v1/streaming.task", Reply(body={"data": {"task_id": "t1", "duration_ms": 900}}))

    answer = await client.new_session(ia.NewSessionRequest(avatar_name="Anna", quality="low"))
    assert answer.session_id == "sess-1"
    assert answer.access_token.get_secret_value() == LIVEKIT_TOKEN
    await client.start_session("sess-1")
    task = await client.speak("sess-1", "Hello", task_type=ia.TaskType.TALK)
    assert (task.task_id, task.duration_ms) == ("t1", 900)
    await client.interrupt("sess-1")
    await client.keep_alive("sess-1")
    await client.start_listening("sess-1")
    await client.stop_listening("sess-1")
    await client.stop_session("sess-1")

    assert [(s.method, s.path) for s in stub.seen] == [
        ("POST", "/v1/streaming.new"),
        ("POST", "/v1/streaming.start"),
        ("POST", "/v1/streaming.task"),
        ("POST", "/v1/streaming.interrupt"),
        ("POST", "/v1/streaming.keep_alive"),
        ("POST", "/v1/streaming.start_listening"),
        ("POST", "/v1/streaming.stop_listening"),
        ("POST", "/v1/streaming.stop"),
    ]
    assert stub.seen[0].body == {"avatar_name": "Anna", "quality": "low", "version": "v2",
                                 "source": "sdk"}
    assert stub.seen[2].body == {"session_id": "sess-1", "text": "Hello", "task_type": "talk",
                                 "task_mode": "async"}
    assert all(s.body == {"session_id": "sess-1"} for s in stub.seen[3:])
    assert all(s.headers["x-api-key"] == KEY for s in stub.seen)
    assert all("Authorization" not in s.headers for s in stub.seen)


async def test_session_token_auth_uses_bearer_for_session_calls(
    stub: StubServer, client: api.HeyGenClient
) -> None:
    stub.program("/v1/streaming.create_token", Reply(body={"data": {"token": SESSION_TOKEN}}))
    stub.program("/v1/streaming.new", Reply(body=NEW_ANSWER))
    stub.program("/v1/streaming.list", Reply(body={"data": {"sessions": []}}))

    token = await client.create_token()
    assert token.get_secret_value() == SESSION_TOKEN
    session = client.with_session_token(token)
    await session.new_session(ia.NewSessionRequest())
    await session.stop_session("sess-1")
    await session.list_sessions()  # a listing still takes the account key
    await session.aclose()  # a view does not close the shared pool...
    await client.keep_alive("sess-1")  # ...so the parent still works

    create, new, stop, listing, keep = stub.seen
    assert create.headers["x-api-key"] == KEY and create.body == {}
    for seen in (new, stop):
        assert seen.headers["Authorization"] == f"Bearer {SESSION_TOKEN}"
        assert "x-api-key" not in seen.headers
    assert listing.method == "GET" and listing.headers["x-api-key"] == KEY
    assert keep.headers["x-api-key"] == KEY


async def test_listings(stub: StubServer, client: api.HeyGenClient) -> None:
    stub.program("/v1/streaming.list", Reply(body={"data": {"sessions": [
        {"session_id": "a", "status": "connected", "created_at": 1700000000}]}}))
    stub.program("/v1/streaming/avatar.list", Reply(body={"data": [
        {"avatar_id": "Anna_public", "is_public": True, "status": "ACTIVE"}]}))
    stub.program("/v1/voice.list", Reply(body={"data": {"voices": [
        {"voice_id": "v1", "name": "One"}, {"voice_id": "v2"}]}}))
    stub.program("/v2/voices", Reply(body={"data": {"voices": [
        {"voice_id": "v1", "support_realtime": True}, {"voice_id": "v2"}]}}))

    assert [s.status for s in await client.list_sessions()] == ["connected"]
    assert [a.avatar_id for a in await client.list_avatars()] == ["Anna_public"]
    assert [v.voice_id for v in await client.list_voices()] == ["v1", "v2"]
    assert [v.voice_id for v in await client.list_voices(realtime_only=True)] == ["v1"]
    assert all(s.method == "GET" and s.body is None for s in stub.seen)


@pytest.mark.parametrize(
    "status,body,error,retryable",
    [
        (401, {"code": 400112, "message": "Unauthorized"}, api.AuthenticationError, False),
        (400, {"code": 40009, "message": "Invalid credentials"}, api.AuthenticationError, False),
        (400, {"code": 400006, "message": "Session is not in correct state"},
         api.SessionStateError, False),
        (400, {"code": 10004, "message": ia.CONCURRENT_LIMIT_MESSAGE},
         api.ConcurrencyLimitError, False),
        (404, {"message": "not found"}, api.NotFoundError, False),
        (422, {"code": 1, "message": "bad"}, api.APIError, False),
        (408, {"message": "slow"}, api.APIError, True),
        (429, {"message": "slow down"}, api.RateLimitError, True),
        (500, {"message": "boom"}, api.ServerError, True),
    ],
)
async def test_error_answers_are_typed(
    stub: StubServer, client: api.HeyGenClient, status: int, body: dict[str, object],
    error: type[api.APIError], retryable: bool,
) -> None:
    stub.program("/v1/streaming.new", *[Reply(status=status, body=body)] * 3)
    with pytest.raises(error) as caught:
        await client.new_session(ia.NewSessionRequest())
    exc = caught.value
    assert type(exc) is error
    assert exc.status == status and exc.retryable is retryable
    assert exc.code == body.get("code")
    assert exc.message == body["message"]
    assert str(exc).startswith(f"/v1/streaming.new: HTTP {status}")
    # a billable call is sent again only when it was refused (429): nothing was created
    sent = 1 + client.max_retries if status == 429 else 1
    assert len(stub.calls("/v1/streaming.new")) == sent


async def test_non_json_error_body_uses_reason(stub: StubServer, client: api.HeyGenClient) -> None:
    stub.program("/v1/streaming.start", Reply(status=502, raw=b"<html>bad gateway</html>"))
    with pytest.raises(api.ServerError, match="HTTP 502: Bad Gateway"):
        await client.start_session("s")


async def test_repeatable_calls_are_retried(stub: StubServer, client: api.HeyGenClient) -> None:
    stub.program("/v1/streaming.stop", Reply(status=503), Reply(status=500), Reply())
    await client.stop_session("s")
    assert len(stub.calls("/v1/streaming.stop")) == 3


@pytest.mark.parametrize("path,call", [
    ("/v1/streaming.create_token", lambda c: c.create_token()),
    ("/v1/streaming.new", lambda c: c.new_session(ia.NewSessionRequest())),
    ("/v1/streaming.start", lambda c: c.start_session("s")),
])
async def test_the_start_calls_are_retried_when_refused(
    stub: StubServer, client: api.HeyGenClient, path: str, call: Any
) -> None:
    """429 and 503 mean the service did nothing: safe to send again, even ``new``; the
    wait is the service's Retry-After."""
    ok = NEW_ANSWER if path.endswith("new") else {"data": {"token": "t-1"}}
    stub.program(path, Reply(status=429, body={"message": "slow down"},
                             headers={"Retry-After": "0.3"}), Reply(status=503), Reply(body=ok))
    started = time.monotonic()
    await call(client)
    assert len(stub.calls(path)) == 3
    assert time.monotonic() - started >= 0.3, "Retry-After was honoured"


@pytest.mark.parametrize("status", [500, 502, 504])
async def test_start_is_not_retried_when_the_service_may_have_acted(
    stub: StubServer, client: api.HeyGenClient, status: int
) -> None:
    stub.program("/v1/streaming.start", *[Reply(status=status)] * 3)
    with pytest.raises(api.ServerError):
        await client.start_session("s")
    assert len(stub.calls("/v1/streaming.start")) == 1


async def test_retries_give_up(stub: StubServer, client: api.HeyGenClient) -> None:
    stub.program("/v1/streaming.keep_alive", *[Reply(status=503)] * 5)
    with pytest.raises(api.ServerError):
        await client.keep_alive("s")
    assert len(stub.calls("/v1/streaming.keep_alive")) == 1 + client.max_retries


async def test_final_errors_are_not_retried(stub: StubServer, client: api.HeyGenClient) -> None:
    stub.program("/v1/streaming.stop", Reply(status=400, body={"code": 400006, "message": "x"}))
    with pytest.raises(api.SessionStateError):
        await client.stop_session("s")
    assert len(stub.calls("/v1/streaming.stop")) == 1


async def test_timeout(stub: StubServer) -> None:
    stub.program("/v1/streaming.start", Reply(delay_s=1.0))
    async with api.HeyGenClient(KEY, base_url=stub.base_url, timeout=0.2) as client:
        with pytest.raises(api.RequestTimeout) as caught:
            await client.start_session("s")
    assert caught.value.retryable


async def test_connection_refused_is_a_transport_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again before the call: nothing listens
    async with api.HeyGenClient(KEY, base_url=f"http://127.0.0.1:{port}", max_retries=0) as c:
        with pytest.raises(api.TransportError, match=r"/v1/streaming\.new") as caught:
            await c.new_session(ia.NewSessionRequest())
    # the host it could not reach: "cannot connect: All connection attempts failed" did not
    assert f"cannot connect to 127.0.0.1:{port}: " in str(caught.value)


async def test_a_timeout_names_the_host(stub: StubServer) -> None:
    stub.program("/v1/streaming.start", Reply(delay_s=1.0))
    async with api.HeyGenClient(KEY, base_url=stub.base_url, timeout=0.2, max_retries=0) as c:
        with pytest.raises(api.RequestTimeout) as caught:
            await c.start_session("s")
    host = stub.base_url.split("://")[1].rstrip("/")
    assert str(caught.value) == f"/v1/streaming.start: no answer from {host} within the timeout"


@pytest.mark.parametrize(
    "reply",
    [Reply(raw=b"not json"), Reply(body={"nodata": 1}), Reply(body={"data": {"session_id": 1}})],
)
async def test_malformed_success_answers(
    stub: StubServer, client: api.HeyGenClient, reply: Reply
) -> None:
    stub.program("/v1/streaming.new", reply)
    with pytest.raises(api.InvalidResponseError):
        await client.new_session(ia.NewSessionRequest())


async def test_missing_key_fails_before_sending(
    stub: StubServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HEYGEN_API_KEY", raising=False)
    async with api.HeyGenClient(base_url=stub.base_url) as client:
        with pytest.raises(api.ConfigurationError, match="HEYGEN_API_KEY"):
            await client.list_avatars()
    assert stub.seen == []


async def test_environment_is_honoured_and_explicit_wins(
    stub: StubServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HEYGEN_API_KEY", "sk-FROM-ENV-000000")
    monkeypatch.setenv("HEYGEN_BASE_URL", stub.base_url + "/")
    async with api.HeyGenClient() as client:
        assert client.base_url == stub.base_url
        await client.keep_alive("s")
    async with api.HeyGenClient(KEY, base_url=stub.base_url) as client:
        await client.keep_alive("s")
    async with api.HeyGenClient(base_url="http://127.0.0.1:1") as client:
        assert client.base_url == "http://127.0.0.1:1"
    assert [s.headers["x-api-key"] for s in stub.seen] == ["sk-FROM-ENV-000000", KEY]
    with pytest.raises(ValueError, match="base_url: expected an http") as caught:
        api.HeyGenClient(KEY, base_url="sk-pasted-key-here-0000")
    assert "sk-pasted-key-here-0000" not in str(caught.value), "the value is never echoed"
    monkeypatch.setenv("HEYGEN_BASE_URL", "api.heygen.com")
    with pytest.raises(ValueError, match="HEYGEN_BASE_URL: expected an http"):
        api.HeyGenClient(KEY)


async def test_no_secret_in_any_log_line_or_error(
    stub: StubServer, captured_logs: list[str]
) -> None:
    """The server echoes every secret back in its error messages; none may escape."""
    secrets = (KEY, SESSION_TOKEN, LIVEKIT_TOKEN)
    echo = f"bad key {KEY}, token {SESSION_TOKEN}, livekit {LIVEKIT_TOKEN}"
    stub.program("/v1/streaming.create_token", Reply(body={"data": {"token": SESSION_TOKEN}}))
    stub.program("/v1/streaming.new", Reply(body=NEW_ANSWER))
    stub.program("/v1/streaming.start", Reply(status=401, body={"code": 400112, "message": echo}))
    stub.program("/v1/streaming.stop", *[Reply(status=503, body={"message": echo})] * 3)
    stub.program("/v1/streaming.list", Reply(body={"data": {"sessions": [{"status": KEY}]}}))
    texts: list[str] = []
    async with api.HeyGenClient(KEY, base_url=stub.base_url, timeout=2.0) as client:
        token = await client.create_token()
        session = client.with_session_token(token)
        answer = await session.new_session(ia.NewSessionRequest())
        texts += [repr(answer), str(answer), repr(token)]
        for call in (session.start_session("s"), session.stop_session("s")):
            with pytest.raises(api.APIError) as caught:
                await call
            texts += [str(caught.value), repr(caught.value), caught.value.message]
        with pytest.raises(api.InvalidResponseError) as invalid:
            await client.list_sessions()
        texts.append(str(invalid.value))
    assert any("retry" in line for line in captured_logs), "the retries were logged"
    assert any("/v1/streaming.new" in line for line in captured_logs)
    for text in [*texts, *captured_logs]:
        for secret in secrets:
            assert secret not in text
    assert "[redacted]" in texts[3]


@pytest.mark.parametrize("host,echoed", [
    ("api.heygen.com", True), ("localhost", True), ("127.0.0.1", True), ("[::1]", True),
    ("sk-REALLOOKINGKEY123456abcdef", False), ("heygen", False),
])
def test_a_host_is_echoed_only_when_it_looks_like_one(host: str, echoed: bool) -> None:
    from agent.heygen.api.base import looks_like_a_host

    assert looks_like_a_host(host.lower()) is echoed


@pytest.mark.parametrize("value,timeout", [("0.5", 0.5), ("", 15.0), ("-1", 15.0), ("x", 15.0)])
def test_the_http_timeout_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, value: str, timeout: float
) -> None:
    from agent.heygen.api.base import ENV_TIMEOUT

    monkeypatch.setenv(ENV_TIMEOUT, value)
    assert api.HeyGenClient(KEY, base_url="http://127.0.0.1:9").timeout == timeout
