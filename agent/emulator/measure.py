"""How much CPU one emulated avatar costs while it publishes (``scripts/avatar-cpu``).

The figure is the emulator process's CPU time over wall time, LiveKit's native encoder
threads included; the viewer that makes LiveKit forward the media runs in a separate
process so that its decoding is not counted.
"""

from __future__ import annotations

import asyncio
import sys
import time

from loguru import logger

from agent.emulator.config import EmulatorConfig
from agent.emulator.livekit_server import LiveKitServer
from agent.emulator.server import EmulatorServer
from agent.heygen import api
from agent.heygen.protocol import interactive as ia

VIEWER = """
import asyncio, sys
from livekit import rtc
async def main():
    room = rtc.Room()
    tasks = []
    @room.on("track_subscribed")
    def on_track(track, pub, participant):
        async def drain(stream):
            async for _ in stream:
                pass
        if track.kind == rtc.TrackKind.KIND_VIDEO:
            tasks.append(asyncio.ensure_future(drain(rtc.VideoStream(track))))
    await room.connect(sys.argv[1], sys.argv[2])
    await asyncio.sleep(float(sys.argv[3]))
    for task in tasks:
        task.cancel()
    await room.disconnect()  # before the loop closes, or LiveKit's callbacks hit a dead loop
asyncio.run(main())
"""


async def measure(seconds: float = 5.0) -> dict[str, float]:
    results: dict[str, float] = {}
    async with (
        LiveKitServer() as livekit,
        EmulatorServer(EmulatorConfig(livekit=livekit.settings)) as emulator,
        api.HeyGenClient("measure-key", base_url=emulator.base_url) as client,
    ):
        answer = await client.new_session(ia.NewSessionRequest())
        await client.start_session(answer.session_id)
        viewer = await asyncio.create_subprocess_exec(
            sys.executable, "-c", VIEWER, answer.url,
            answer.access_token.get_secret_value(), str(seconds * 2 + 4),
        )
        await asyncio.sleep(2)
        for label in ("idle", "speaking"):
            if label == "speaking":
                text = "The quick brown fox jumps over the lazy dog. " * 6
                await client.speak(answer.session_id, text)  # async task: returns at once
                await asyncio.sleep(0.5)
            wall, cpu = time.perf_counter(), time.process_time()
            await asyncio.sleep(seconds)
            results[label] = (time.process_time() - cpu) / (time.perf_counter() - wall) * 100
        await viewer.wait()
        await client.stop_session(answer.session_id)
    return results


def main() -> None:
    logger.remove()
    for label, percent in asyncio.run(measure()).items():
        print(f"one emulated avatar, {label}: {percent:.1f}% of one core")


if __name__ == "__main__":
    main()
