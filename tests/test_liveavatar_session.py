"""The LiveAvatar backend's session (:mod:`agent.heygen.liveavatar`) against the emulator
and a real LiveKit server, where the service answers or behaves badly: a start answer
that lacks what the mode needs, a stop the service ignores, intruders in the room.

Faults are armed over the emulator's admin route, as a user would; waits are on events
(``tests/waiting.py``).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from agent.emulator.config import EMULATOR_LIVEAVATAR_KEY
from agent.emulator.server import EmulatorServer
from agent.emulator.sessions import Session
from agent.heygen import api
from agent.heygen.backend import SessionAborted
from agent.heygen.liveavatar import LiveAvatarOptions, LiveAvatarSession
from agent.heygen.protocol.liveavatar import rest as la
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
    assert "--backend liveavatar" in session.end_command
