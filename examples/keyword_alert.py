"""An example custom processor, loaded from YAML as ``examples.keyword_alert:KeywordAlert``.

It watches the user's transcripts for words you name and logs when one is said. Copy it
as a starting point: a processor is a Pipecat FrameProcessor whose ``__init__`` keyword
arguments are what the YAML file's ``args`` may set (they are checked before anything
connects).
"""

from __future__ import annotations

from loguru import logger
from pipecat.frames.frames import Frame, TranscriptionFrame
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor


class KeywordAlert(FrameProcessor):
    def __init__(self, keywords: list[str], case_sensitive: bool = False) -> None:
        super().__init__()
        self.keywords = keywords if case_sensitive else [k.lower() for k in keywords]
        self.case_sensitive = case_sensitive
        self.hits: list[str] = []

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, TranscriptionFrame):
            text = frame.text if self.case_sensitive else frame.text.lower()
            for keyword in self.keywords:
                if keyword in text:
                    self.hits.append(keyword)
                    logger.info(f"keyword heard: {keyword!r}")
        await self.push_frame(frame, direction)
