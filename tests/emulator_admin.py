"""The emulator's admin routes (``/_emulator/...``) as tests call them: over real HTTP,
like any client, so that a fault is armed exactly as a user would arm it."""

from __future__ import annotations

import httpx

from agent.emulator.server import EmulatorServer


async def set_faults(server: EmulatorServer, **settings: object) -> None:
    """Arm faults (see :class:`agent.emulator.faults.FaultSettings`)."""
    async with httpx.AsyncClient() as http:
        answer = await http.post(server.base_url + "/_emulator/faults", json=settings)
        answer.raise_for_status()
