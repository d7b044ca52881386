"""Appends the conversation to a JSON Lines file: one line per finished utterance."""

from __future__ import annotations

import json
import time
from pathlib import Path

from pipecat.frames.frames import Frame, TranscriptionFrame
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor

from agent.heygen.frames import HeyGenAvatarTranscriptFrame


class TranscriptLogger(FrameProcessor):
    """``{"t": <unix time>, "who": "user"|"avatar", "text": ...}`` per line, flushed at
    once so the file is readable while the agent runs (``tail -f``)."""

    def __init__(self, path: str = "transcript.jsonl") -> None:
        super().__init__()
        self.path = Path(path)
        self.lines_written = 0

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, HeyGenAvatarTranscriptFrame | TranscriptionFrame):
            who = "avatar" if isinstance(frame, HeyGenAvatarTranscriptFrame) else "user"
            self.path.parent.mkdir(parents=True, exist_ok=True)
            line = json.dumps({"t": round(time.time(), 3), "who": who, "text": frame.text})
            with self.path.open("a", encoding="utf-8") as out:
                out.write(line + "\n")
            self.lines_written += 1
        await self.push_frame(frame, direction)
