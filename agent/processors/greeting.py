"""Has the avatar say something when the session starts, before the user speaks."""

from __future__ import annotations

from pipecat.frames.frames import Frame, InputAudioRawFrame
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor

from agent.heygen.frames import HeyGenSpeakFrame
from agent.heygen.protocol.interactive import TaskType


class Greeting(FrameProcessor):
    """Sits before the transport's output() (the builder puts it there): it sends one
    :class:`HeyGenSpeakFrame` with the first audio frame, once the pipeline flows."""

    placement = "before_heygen"

    def __init__(self, text: str, answer: bool = False) -> None:
        super().__init__()
        self.text = text
        self.task_type = TaskType.TALK if answer else TaskType.REPEAT
        self.sent = False

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        await self.push_frame(frame, direction)
        if not self.sent and isinstance(frame, InputAudioRawFrame):
            self.sent = True
            await self.push_frame(HeyGenSpeakFrame(text=self.text, task_type=self.task_type))
