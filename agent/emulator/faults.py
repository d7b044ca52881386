"""Faults the emulator injects on request, so the client's error paths run for real.

Set at start-up (``heygen-agent emulate --latency-ms ...``) or at run time with
``POST /_emulator/faults``; the same pydantic model validates both.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict, Field, model_validator


class FailNext(BaseModel):
    """The next ``count`` REST requests (to ``path``, or any) answer with this error. A
    2xx status needs a ``code``: LiveAvatar fails that way, with a failure code in a
    success status."""

    model_config = ConfigDict(extra="forbid")

    count: int = Field(1, ge=1)
    status: int = Field(503, ge=200, le=599)
    code: int | None = None
    message: str = "Injected failure"
    path: str | None = None
    #: sent as ``Retry-After`` (seconds)
    retry_after: float | None = Field(None, ge=0)

    @model_validator(mode="after")
    def _failure(self) -> FailNext:
        if self.status < 400 and self.code is None:
            raise ValueError("a failure with a status below 400 needs a code")
        return self


class OmitFields(BaseModel):
    """The next ``count`` success answers to ``path`` leave these fields out of their
    ``data``: a service whose answer lacks what the client needs (LiveAvatar's REST)."""

    model_config = ConfigDict(extra="forbid")

    path: str
    fields: list[str] = Field(min_length=1)
    count: int = Field(1, ge=1)


class FaultSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    latency_ms: float | None = Field(None, ge=0, description="added to every REST answer")
    latency_path: str | None = Field(
        None, description="the latency is added only to requests to this path (a slow "
        "step, e.g. streaming.new past the client's timeout)")
    fail_next: FailNext | None = None
    ws_drop_after_messages: int | None = Field(None, ge=0)
    ws_drop_after_seconds: float | None = Field(None, ge=0)
    media_delay_ms: float | None = Field(
        None, ge=0, description="a new avatar waits this long before publishing its tracks, "
        "as on a loaded media server")
    listen_delay_ms: float | None = Field(
        None, ge=0, description="a new avatar waits this long before subscribing to the "
        "tracks a client publishes (its microphone), as on a loaded media server")
    omit_fields: OmitFields | None = None
    ignore_stops_before_connected: int | None = Field(
        None, ge=0, description="the next N LiveAvatar stops of a started session not yet "
        "'connected' answer success and leave it open (and billed), as the real service "
        "has been seen to")
    liveavatar_agent_absent: bool | None = Field(
        None, description="FULL sessions' agent participant (liveavatar-agent-<id>) does "
        "not join the room (the avatar, 'heygen', does)")
    reset: bool = False


@dataclass
class _Failure:
    remaining: int
    rule: FailNext


@dataclass
class Faults:
    latency_s: float = 0.0
    latency_path: str | None = None
    ws_drop_after_messages: int | None = None
    ws_drop_after_seconds: float | None = None
    media_delay_s: float = 0.0
    listen_delay_s: float = 0.0
    ignore_stops_before_connected: int = 0
    liveavatar_agent_absent: bool = False
    _failures: list[_Failure] = field(default_factory=list)
    _omissions: list[OmitFields] = field(default_factory=list)

    def apply(self, settings: FaultSettings) -> None:
        if settings.reset:
            self.latency_s = 0.0
            self.latency_path = None
            self.ws_drop_after_messages = None
            self.ws_drop_after_seconds = None
            self.media_delay_s = 0.0
            self.listen_delay_s = 0.0
            self.ignore_stops_before_connected = 0
            self.liveavatar_agent_absent = False
            self._failures.clear()
            self._omissions.clear()
        if settings.latency_ms is not None:
            self.latency_s = settings.latency_ms / 1000
            self.latency_path = settings.latency_path
        if settings.fail_next is not None:
            self._failures.append(_Failure(settings.fail_next.count, settings.fail_next))
        if settings.omit_fields is not None:
            self._omissions.append(settings.omit_fields.model_copy())
        if settings.ignore_stops_before_connected is not None:
            self.ignore_stops_before_connected = settings.ignore_stops_before_connected
        if settings.liveavatar_agent_absent is not None:
            self.liveavatar_agent_absent = settings.liveavatar_agent_absent
        if settings.ws_drop_after_messages is not None:
            self.ws_drop_after_messages = settings.ws_drop_after_messages
        if settings.ws_drop_after_seconds is not None:
            self.ws_drop_after_seconds = settings.ws_drop_after_seconds
        if settings.media_delay_ms is not None:
            self.media_delay_s = settings.media_delay_ms / 1000
        if settings.listen_delay_ms is not None:
            self.listen_delay_s = settings.listen_delay_ms / 1000

    def latency_for(self, path: str) -> float:
        """Seconds the answer to ``path`` is held."""
        return self.latency_s if self.latency_path in (None, path) else 0.0

    def take_failure(self, path: str) -> FailNext | None:
        """The injected failure for this request, if one is armed; uses it up."""
        for failure in self._failures:
            if failure.rule.path in (None, path):
                failure.remaining -= 1
                if failure.remaining <= 0:
                    self._failures.remove(failure)
                return failure.rule
        return None

    def take_omissions(self, path: str) -> list[str]:
        """The fields to leave out of this success answer to ``path``; uses them up."""
        for omission in self._omissions:
            if omission.path == path:
                omission.count -= 1
                if omission.count <= 0:
                    self._omissions.remove(omission)
                return list(omission.fields)
        return []

    def take_ignored_stop(self) -> bool:
        """Whether this stop (of a session not yet connected) is to be ignored."""
        if self.ignore_stops_before_connected <= 0:
            return False
        self.ignore_stops_before_connected -= 1
        return True

    def describe(self) -> dict[str, object]:
        return {
            "latency_ms": self.latency_s * 1000,
            "latency_path": self.latency_path,
            "pending_failures": [
                {**f.rule.model_dump(), "remaining": f.remaining} for f in self._failures
            ],
            "ws_drop_after_messages": self.ws_drop_after_messages,
            "ws_drop_after_seconds": self.ws_drop_after_seconds,
            "media_delay_ms": self.media_delay_s * 1000,
            "listen_delay_ms": self.listen_delay_s * 1000,
            "omit_fields": [o.model_dump() for o in self._omissions],
            "ignore_stops_before_connected": self.ignore_stops_before_connected,
            "liveavatar_agent_absent": self.liveavatar_agent_absent,
        }
