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


class FaultSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    latency_ms: float | None = Field(None, ge=0, description="added to every REST answer")
    fail_next: FailNext | None = None
    ws_drop_after_messages: int | None = Field(None, ge=0)
    ws_drop_after_seconds: float | None = Field(None, ge=0)
    media_delay_ms: float | None = Field(
        None, ge=0, description="a new avatar waits this long before publishing its tracks, "
        "as on a loaded media server")
    listen_delay_ms: float | None = Field(
        None, ge=0, description="a new avatar waits this long before subscribing to the "
        "tracks a client publishes (its microphone), as on a loaded media server")
    reset: bool = False


@dataclass
class _Failure:
    remaining: int
    rule: FailNext


@dataclass
class Faults:
    latency_s: float = 0.0
    ws_drop_after_messages: int | None = None
    ws_drop_after_seconds: float | None = None
    media_delay_s: float = 0.0
    listen_delay_s: float = 0.0
    _failures: list[_Failure] = field(default_factory=list)

    def apply(self, settings: FaultSettings) -> None:
        if settings.reset:
            self.latency_s = 0.0
            self.ws_drop_after_messages = None
            self.ws_drop_after_seconds = None
            self.media_delay_s = 0.0
            self.listen_delay_s = 0.0
            self._failures.clear()
        if settings.latency_ms is not None:
            self.latency_s = settings.latency_ms / 1000
        if settings.fail_next is not None:
            self._failures.append(_Failure(settings.fail_next.count, settings.fail_next))
        if settings.ws_drop_after_messages is not None:
            self.ws_drop_after_messages = settings.ws_drop_after_messages
        if settings.ws_drop_after_seconds is not None:
            self.ws_drop_after_seconds = settings.ws_drop_after_seconds
        if settings.media_delay_ms is not None:
            self.media_delay_s = settings.media_delay_ms / 1000
        if settings.listen_delay_ms is not None:
            self.listen_delay_s = settings.listen_delay_ms / 1000

    def take_failure(self, path: str) -> FailNext | None:
        """The injected failure for this request, if one is armed; uses it up."""
        for failure in self._failures:
            if failure.rule.path in (None, path):
                failure.remaining -= 1
                if failure.remaining <= 0:
                    self._failures.remove(failure)
                return failure.rule
        return None

    def describe(self) -> dict[str, object]:
        return {
            "latency_ms": self.latency_s * 1000,
            "pending_failures": [
                {**f.rule.model_dump(), "remaining": f.remaining} for f in self._failures
            ],
            "ws_drop_after_messages": self.ws_drop_after_messages,
            "ws_drop_after_seconds": self.ws_drop_after_seconds,
            "media_delay_ms": self.media_delay_s * 1000,
            "listen_delay_ms": self.listen_delay_s * 1000,
        }
