"""Errors in a pipeline file, each one line a person can act on.

``config/demo.yaml:12:5: heygen.session.quality: expected 'low', 'medium' or 'high'``
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass


def did_you_mean(word: str, options: Sequence[str]) -> str | None:
    """The option closest to a misspelt ``word``, if one is close enough to suggest."""
    close = difflib.get_close_matches(word, options, n=1)
    return close[0] if close else None


@dataclass(frozen=True)
class Problem:
    file: str
    line: int
    column: int
    key: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:{self.column}"
        return f"{where}: {self.key}: {self.message}" if self.key else f"{where}: {self.message}"


class ConfigError(Exception):
    """A pipeline file that cannot be used; ``str()`` is the whole report."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))
