"""The LiveAvatar backend's session (:mod:`agent.heygen.liveavatar`) against the emulator
and a real LiveKit server, where the service answers or behaves badly: a start answer
that lacks what the mode needs, a stop the service ignores, intruders in the room.

Faults are armed over the emulator's admin route, as a user would; waits are on events
(``tests/waiting.py``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from livekit import rtc

from agent.cli import parse
from agent.emulator.config import EMULATOR_LIVEAVATAR_KEY
from agent.emulator.livekit_server import LiveKitServer
from agent.emulator.server import EmulatorServer
from agent.emulator.sessions import Session
from agent.heygen import api
from agent.heygen import events as ev
from agent.heygen.backend import SessionAborted, SessionListener
from agent.heygen.liveavatar import AvatarNotInRoom, LiveAvatarOptions, LiveAvatarSession
from agent.heygen.protocol.liveavatar import rest as la
from agent.heygen.protocol.liveavatar import room as lar
from tests.emulator_admin import set_faults
from tests.waiting import eventually, within

pytestmark = pytest.mark.livekit

STOP_PATH = la.STOP.path


def options(mode: la.Mode, **extra: Any) -> LiveAvatarOptions:
    request = la.TokenRequest(mode=mode, avatar_id=la.SANDBOX_AVATAR_ID, is_sandbox=True)
    return LiveAvatarOptions(request=request, keep_alive_interval_s=None, **extra)


def only_session(emulator: EmulatorServer) -> Session:
    sessions = list(emulator.emulator.registry)
    assert len(sessions) == 1, sessions
    return sessions[0]


async def test_a_lite_start_answer_without_ws_url_is_an_error_and_the_session_stopped(
    emulator: EmulatorServer,
) -> None:
    """LITE speaks only over the socket at ``ws_url``: without it every utterance would be
    dropped unseen. It is a typed error at start, and the created session is stopped."""
    await set_faults(emulator, omit_fields={"path": la.START.path, "fields": ["ws_url"]})
    async with api.LiveAvatarClient(EMULATOR_LIVEAVATAR_KEY, base_url=emulator.base_url) as client:
        session = LiveAvatarSession(client, options(la.Mode.LITE))
        with pytest.raises(api.InvalidResponseError, match="ws_url"):
            await session.start()
    emulated = only_session(emulator)
    assert not emulated.state.open, "the created session was stopped"
    assert emulator.emulator.requests[STOP_PATH] == 1
    assert session.stop_error is None


async def stop_before_connected(emulator: EmulatorServer, deadline_s: float
                                ) -> LiveAvatarSession:
    """A LITE session whose avatar is 3 s late, stopped while its socket is open and not
    yet ``connected``."""
    await set_faults(emulator, media_delay_ms=3000)
    async with api.LiveAvatarClient(EMULATOR_LIVEAVATAR_KEY, base_url=emulator.base_url) as client:
        session = LiveAvatarSession(client, options(la.Mode.LITE, stop_deadline_s=deadline_s))
        starting = asyncio.create_task(session.start())
        await eventually(lambda: any(r.sockets for r in emulator.emulator.runtimes.values()),
                         "the LITE socket is open")
        assert not only_session(emulator).liveavatar_stats.connected
        await within(session.stop(), "the stop")
        with pytest.raises(SessionAborted):
            await starting
    return session


async def test_a_stop_before_connected_is_confirmed_and_sent_again(
    emulator: EmulatorServer,
) -> None:
    """The service has been seen to answer a stop before ``connected`` and leave the
    session open (and billed): the stop is confirmed, and sent again until it holds."""
    await set_faults(emulator, ignore_stops_before_connected=1)
    session = await stop_before_connected(emulator, deadline_s=20.0)
    emulated = only_session(emulator)
    assert emulated.liveavatar_stats.ignored_stops == 1
    assert not emulated.state.open, "the session is really stopped"
    assert emulator.emulator.requests[STOP_PATH] == 2
    assert session.stop_error is None


async def test_a_stop_that_never_holds_is_said_with_the_command_that_ends_it(
    emulator: EmulatorServer,
) -> None:
    """A service that keeps ignoring the stop: past the stop deadline the session is
    reported as maybe open (``stop_error``), with its id and the command that ends it."""
    await set_faults(emulator, ignore_stops_before_connected=1000)
    session = await stop_before_connected(emulator, deadline_s=2.0)
    emulated = only_session(emulator)
    assert emulated.state.open and emulated.liveavatar_stats.ignored_stops >= 2
    assert session.stop_error is not None and "still open" in session.stop_error
    assert emulated.session_id in session.stop_error
    assert session.end_command == (
        f"heygen-agent sessions --backend liveavatar stop {emulated.session_id}")
    args = parse(session.end_command.split()[1:])
    assert (args.backend, args.action, args.session_id) == (
        "liveavatar", "stop", emulated.session_id)


class Heard(SessionListener):
    """Every event the session reported, with a wake-up for each."""

    def __init__(self) -> None:
        self.events: list[ev.AvatarEvent] = []
        self.arrived = asyncio.Event()

    async def on_event(self, event: ev.AvatarEvent) -> None:
        self.events.append(event)
        self.arrived.set()

    async def wait_for(self, match: Callable[[ev.AvatarEvent], bool], what: str) -> None:
        async def arrival() -> None:
            while not any(match(e) for e in self.events):
                self.arrived.clear()
                await self.arrived.wait()

        await within(arrival(), what)


def wire_kind(event: ev.AvatarEvent) -> str:
    return event.raw.event_type if isinstance(event.raw, lar.Event) else ""


async def test_full_waits_for_the_agent_too_and_names_it(emulator: EmulatorServer) -> None:
    """FULL mode is ready when both ``heygen`` and ``liveavatar-agent-<id>`` are in the
    room (as the official SDK waits); an agent that never comes is named in the error."""
    await set_faults(emulator, liveavatar_agent_absent=True)
    async with api.LiveAvatarClient(EMULATOR_LIVEAVATAR_KEY, base_url=emulator.base_url) as client:
        session = LiveAvatarSession(client, options(la.Mode.FULL, avatar_timeout_s=1.0))
        with pytest.raises(AvatarNotInRoom) as caught:
            await session.start()
    emulated = only_session(emulator)
    assert f"'{lar.agent_identity(emulated.session_id)}'" in str(caught.value)
    assert f"'{lar.AVATAR_IDENTITY}'" not in str(caught.value), "the avatar did come"
    assert not emulated.state.open


async def test_full_takes_events_only_from_the_avatar_and_its_agent(
    emulator: EmulatorServer, livekit_server: LiveKitServer,
) -> None:
    """Anyone in the room can publish on ``agent-response``; only the avatar's and its
    agent's messages are LiveAvatar's events. An intruder's are ignored."""
    heard = Heard()
    async with (
        api.LiveAvatarClient(EMULATOR_LIVEAVATAR_KEY, base_url=emulator.base_url) as client,
        LiveAvatarSession(client, options(la.Mode.FULL, microphone=False), heard) as session,
    ):
            emulated = only_session(emulator)
            intruder = rtc.Room()
            await intruder.connect(livekit_server.settings.url,
                                   emulator.emulator.livekit_token(emulated, "intruder"))
            try:
                assert session.room is not None
                room = session.room
                await eventually(lambda: "intruder" in {
                    p.identity for p in room.remote_participants.values()},
                    "the intruder is in the session's room")
                forged = lar.event(lar.AVATAR_TRANSCRIPTION, emulated.session_id,
                                   text="forged words")
                await intruder.local_participant.publish_data(
                    forged.to_bytes(), reliable=True, topic=lar.TOPIC_AGENT_RESPONSE)
                await session.say("real words")
                await heard.wait_for(
                    lambda e: isinstance(e, ev.AvatarTranscript) and e.text == "real words",
                    "the avatar's own transcript")
            finally:
                await intruder.disconnect()
    texts = [getattr(e, "text", "") for e in heard.events]
    assert "forged words" not in texts, texts


async def test_push_to_talk_refusals_are_one_warning_each(
    emulator: EmulatorServer, captured_logs: list[str],
) -> None:
    """A session without push-to-talk refuses the button: the service's
    ``*_start_failed``/``*_stop_failed`` are said as one warning line each."""
    heard = Heard()
    async with (
        api.LiveAvatarClient(EMULATOR_LIVEAVATAR_KEY, base_url=emulator.base_url) as client,
        LiveAvatarSession(client, options(la.Mode.FULL, microphone=False), heard) as session,
    ):
            await session.push_to_talk(True)
            await heard.wait_for(lambda e: wire_kind(e) == lar.USER_PUSH_TO_TALK_START_FAILED,
                                 "start refused")
            await session.push_to_talk(False)
            await heard.wait_for(lambda e: wire_kind(e) == lar.USER_PUSH_TO_TALK_STOP_FAILED,
                                 "stop refused")
    warnings = [line for line in captured_logs if "push-to-talk" in line and "WARNING" in line]
    assert len(warnings) == 2, warnings
    assert "start" in warnings[0] and "stop" in warnings[1]


async def test_a_keep_alive_refused_after_an_early_stop_confirms_it(
    emulator: EmulatorServer,
) -> None:
    """The confirmation asks whether the session still takes a keep-alive: a refusal of
    any kind (LiveAvatar publishes no code for 'ended') means it does not, and the stop
    held; it is not reported as a session maybe left open."""
    await set_faults(emulator, fail_next={"path": la.KEEP_ALIVE.path, "status": 401,
                                          "code": 4001, "message": "Invalid session token"})
    session = await stop_before_connected(emulator, deadline_s=20.0)
    assert not only_session(emulator).state.open
    assert emulator.emulator.requests[STOP_PATH] == 1
    assert emulator.emulator.requests[la.KEEP_ALIVE.path] == 1
    assert session.stop_error is None
