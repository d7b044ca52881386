"""A bot's streamed text, cut into sentences for the avatar to say as they complete.

An LLM streams its answer a few tokens at a time (``LLMTextFrame``); HeyGen says each
text it is given as one task, so tokens sent one by one would come out as a stammer, and
a whole answer sent at the end would come late. Sentences are the unit both want: the
first one goes as soon as it ends, each goes once, in order. Where a sentence ends is
Pipecat's own judgement (``match_endofsentence``), so the avatar pauses where a Pipecat
TTS would.
"""

from __future__ import annotations

from pipecat.utils.string import match_endofsentence


class SentenceSplitter:
    def __init__(self) -> None:
        self._text = ""

    def push(self, text: str) -> list[str]:
        """Add streamed text; return the sentences it completed."""
        self._text += text
        done = []
        while end := match_endofsentence(self._text):
            sentence, self._text = self._text[:end].strip(), self._text[end:]
            if sentence:
                done.append(sentence)
        return done

    def flush(self) -> list[str]:
        """The rest, at the end of a response, even without a full stop."""
        rest, self._text = self._text.strip(), ""
        return [rest] if rest else []

    def clear(self) -> None:
        """Forget the unsaid rest (the user interrupted)."""
        self._text = ""
