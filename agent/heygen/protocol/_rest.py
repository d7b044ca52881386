"""What every HeyGen REST wire has in common, held once for both APIs.

The Interactive Avatar API (:mod:`.interactive`) and LiveAvatar (:mod:`.liveavatar`)
differ in paths, credentials and answer envelopes, but not in how an endpoint is
described, how request and answer models treat unknown fields, or how a validation
problem is worded. Those live here so that the two protocol modules, the clients and the
emulator agree on them without copies.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, SecretStr, ValidationError

from agent.heygen.protocol.errors import ProtocolError

M = TypeVar("M", bound=BaseModel)

#: Which credential an endpoint takes: ``api_key`` only the account key; ``session`` the
#: key or a Bearer session token (Interactive Avatar); ``bearer`` only a Bearer session
#: token (LiveAvatar's session calls).
Auth = Literal["api_key", "session", "bearer"]


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One REST path. ``auth`` says which credential it takes (see :data:`Auth`).
    ``retry`` says when a failed call may be sent again without creating or re-doing
    anything that costs money: ``always`` (it changes nothing, or the same thing again),
    ``when_refused`` (only when the service certainly did nothing: it was never reached,
    or it answered 429 or 503)."""

    name: str
    method: Literal["GET", "POST"]
    path: str
    auth: Auth
    retry: Literal["always", "when_refused"]


class Request(BaseModel):
    """A request body: unknown fields are refused, so that a misspelt setting fails
    before anything is created (and billed)."""

    model_config = ConfigDict(extra="forbid", use_enum_values=True)

    def to_body(self) -> dict[str, Any]:
        """The JSON body, secrets (e.g. a LiveKit token the caller hands over) revealed."""
        return to_wire(self)


class Answer(BaseModel):
    """An answer's ``data``: unknown fields are kept, so that a newer server breaks
    nothing."""

    model_config = ConfigDict(extra="allow")


def to_wire(model: BaseModel) -> dict[str, Any]:
    """A model as it goes on the wire, secrets revealed and ``None`` left out."""
    return {k: _reveal(v) for k, v in model.model_dump(mode="python", exclude_none=True).items()}


def _reveal(value: Any) -> Any:
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, StrEnum):
        return value.value
    if isinstance(value, dict):
        return {k: _reveal(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_reveal(v) for v in value]
    return value


def first_problem(exc: ValidationError, whole: str = "data") -> str:
    """``where: what`` for the first thing pydantic found wrong (``whole`` when it is the
    object itself); shared by the clients' and the emulator's answers."""
    error = exc.errors()[0]
    where = ".".join(str(part) for part in error["loc"]) or whole
    return f"{where}: {error['msg']}"


def validate(model: type[M], data: Any, endpoint: Endpoint) -> M:
    """``data`` of an answer from ``endpoint`` as ``model``, or :class:`ProtocolError`."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ProtocolError(f"{endpoint.path}: unexpected answer: {first_problem(exc)}") from None


def validate_list(model: type[M], data: Any, endpoint: Endpoint, keys: tuple[str, ...]) -> list[M]:
    """A listing's items: ``data`` is the list itself, or an object holding it under the
    first of ``keys`` it has (none of them: an empty listing)."""
    if isinstance(data, Mapping):
        data = next((data[key] for key in keys if key in data), [])
    if not isinstance(data, list):
        raise ProtocolError(f"{endpoint.path}: 'data' is not a list of {keys[0]}")
    return [validate(model, item, endpoint) for item in data]


def int_or_none(value: Any) -> int | None:
    """A numeric code as the service sent it; anything else (a boolean too) is no code."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None
