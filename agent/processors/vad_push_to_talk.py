"""Presses HeyGen's push-to-talk button while the local VAD hears the user.

A push-to-talk session waits for the button instead of detecting the end of the user's
turn, so something must press it: in an app, the app's button. A pipeline file has none,
so this processor lets the local VAD (Silero, before the avatar) be it: the user's turn
ends where the VAD says speech ended, on this machine, not where HeyGen's detection would.
Replace it with your own button by sending :class:`HeyGenPushToTalkFrame` (or calling
``transport.push_to_talk``).
"""

from __future__ import annotations

from pipecat.frames.frames import Frame, VADUserStartedSpeakingFrame, VADUserStoppedSpeakingFrame
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor

from agent.heygen.frames import HeyGenPushToTalkFrame


class VADPushToTalk(FrameProcessor):
    """Between the VAD and the transport's output() (the builder puts it there)."""

    placement = "before_heygen"

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        await self.push_frame(frame, direction)
        if isinstance(frame, VADUserStartedSpeakingFrame | VADUserStoppedSpeakingFrame):
            talking = isinstance(frame, VADUserStartedSpeakingFrame)
            await self.push_frame(HeyGenPushToTalkFrame(talking=talking))
