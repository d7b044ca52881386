"""JSON checks shared by the event parsers: one wording for every malformed message."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from agent.heygen.protocol.errors import ProtocolError


def json_object(text: str | bytes, what: str) -> dict[str, Any]:
    """Parse ``text`` as a JSON object or raise :class:`ProtocolError` naming ``what``."""
    try:
        value = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"{what} is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ProtocolError(f"{what} is not a JSON object")
    return value


def number(raw: Mapping[str, Any], key: str, default: float) -> float:
    """A numeric field; booleans and strings are rejected rather than coerced."""
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ProtocolError(f"field {key!r} must be a number, got {value!r}")
    return float(value)


def text(raw: Mapping[str, Any], key: str, default: str = "") -> str:
    value = raw.get(key, default)
    if value is None:
        return default
    if not isinstance(value, str):
        raise ProtocolError(f"field {key!r} must be a string, got {type(value).__name__}")
    return value
