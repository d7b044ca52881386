"""A Pipecat LLM service that answers from a table: an own brain with no key and no network.

It sits where a real LLM service sits, between the user and assistant context
aggregators, and speaks their protocol: it answers each ``LLMContextFrame`` the user
aggregator pushes, reading the last user message of the context, and streams the answer
word by word (``LLMFullResponseStartFrame``, ``LLMTextFrame``..., ``LLMFullResponseEndFrame``)
so everything downstream (sentence aggregation in the TTS, the assistant aggregator
writing the answer into the context) works as it does with a real model.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pipecat.frames.frames import (
    Frame,
    LLMContextFrame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
)
from pipecat.processors.aggregators.llm_context import (
    LLMContext,
    LLMSpecificMessage,
    standard_message_text,
)
from pipecat.processors.frame_processor import FrameDirection
from pipecat.services.llm_service import LLMService
from pipecat.services.settings import LLMSettings

#: The answer to a context without a user message (a bot that speaks first, say).
DEFAULT_GREETING = "Hello! I am a scripted stand-in. Say something and I will answer."

_TOKEN = re.compile(r"\s*\S+")


def last_user_text(context: LLMContext) -> str | None:
    """The text of the context's last user message, ``None`` when it has none."""
    for message in reversed(context.get_messages()):
        if isinstance(message, LLMSpecificMessage):
            continue
        if message.get("role") == "user":
            return standard_message_text(message).strip()
    return None


def tokens(text: str) -> list[str]:
    """``text`` as an LLM streams it: word by word, each with the space before it."""
    return _TOKEN.findall(text)


class ScriptedLLMService(LLMService):
    """Answers the last user message from ``answers``, else echoes it.

    ``answers`` maps a keyword (or phrase) to an answer; the first keyword, in the
    table's order, found in the user's message as whole words, ignoring case, gives
    the answer. Without a match the answer is ``"You said: <text>"``; without any user
    message it is ``greeting``. ``system_prompt`` is accepted, so a pipeline written for
    a real LLM keeps its arguments, and stored as the ``system_instruction`` setting, but
    it changes no answer: the table is the whole brain.
    """

    #: In a pipeline file, it goes where an LLM goes: before the HeyGen transport.
    placement = "before_heygen"

    def __init__(
        self,
        *,
        answers: Mapping[str, str] | None = None,
        greeting: str = DEFAULT_GREETING,
        system_prompt: str | None = None,
        **kwargs: Any,
    ) -> None:
        """Initialize the service.

        Args:
            answers: Keyword → answer, matched case-insensitively, first match wins.
            greeting: The answer when the context has no user message.
            system_prompt: Accepted and ignored (kept as ``system_instruction``).
            **kwargs: For :class:`LLMService`. There is no ``settings``: nothing in
                them would change an answer (``LLMUpdateSettingsFrame`` still applies).
        """
        store = LLMSettings(
            model=None, system_instruction=system_prompt, temperature=None, max_tokens=None,
            top_p=None, top_k=None, frequency_penalty=None, presence_penalty=None, seed=None,
            filter_incomplete_user_turns=False, user_turn_completion_config=None,
        )
        super().__init__(settings=store, **kwargs)
        self.answers = dict(answers or {})
        self.greeting = greeting
        self._patterns = [
            (re.compile(rf"(?<!\w){re.escape(keyword.strip())}(?!\w)", re.IGNORECASE), answer)
            for keyword, answer in self.answers.items()
            if keyword.strip()
        ]

    def can_generate_metrics(self) -> bool:
        return True

    def answer(self, text: str | None) -> str:
        """The answer to a user's ``text`` (``None``: there was no user message)."""
        if text is None:
            return self.greeting
        for pattern, answer in self._patterns:
            if pattern.search(text):
                return answer
        return f"You said: {text}"

    async def run_inference(
        self,
        context: LLMContext,
        max_tokens: int | None = None,
        system_instruction: str | None = None,
        response_schema: dict[str, Any] | None = None,
    ) -> str | None:
        """The answer, out of band (summaries and the like use this); the other
        arguments change nothing."""
        return self.answer(last_user_text(context))

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, LLMContextFrame):
            await self._respond(frame.context)
        else:
            await self.push_frame(frame, direction)

    async def _respond(self, context: LLMContext) -> None:
        """One response, streamed as a real service streams one: an interruption cancels
        it between words, and its end frame still goes out."""
        self._log_llm_response(context)
        await self.push_frame(LLMFullResponseStartFrame())
        await self.start_processing_metrics()
        try:
            await self.start_ttfb_metrics()
            reply = self.answer(last_user_text(context))
            await self.stop_ttfb_metrics()
            for token in tokens(reply):
                await self._push_llm_text(token)
        finally:
            await self.stop_processing_metrics()
            await self.push_frame(LLMFullResponseEndFrame())
