"""The loopback livekit-server launcher that the tests, the demo and `emulate` share."""

from __future__ import annotations

import socket

import httpx
import pytest

from agent.emulator.livekit_server import LiveKitServer, free_port
from tests.machine import require_livekit_binary

pytestmark = pytest.mark.livekit


def test_ports_are_outside_the_ephemeral_range() -> None:
    ports = {free_port() for _ in range(20)}
    assert all(20_000 <= p <= 32_000 for p in ports)


async def test_a_port_taken_meanwhile_is_retried_with_fresh_ones() -> None:
    server = LiveKitServer(require_livekit_binary())
    with socket.socket() as squatter:  # someone grabs the RTC port before we start
        squatter.bind(("0.0.0.0", server.rtc_tcp_port))
        squatter.listen()
        taken = server.rtc_tcp_port
        await server.start()
        try:
            assert server.rtc_tcp_port != taken
            async with httpx.AsyncClient() as http:
                assert (await http.get(f"http://127.0.0.1:{server.port}/")).status_code < 500
        finally:
            await server.stop()
