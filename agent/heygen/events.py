"""What an avatar session reports, in words that do not depend on HeyGen's API.

HeyGen has two streaming APIs (Interactive Avatar and its successor LiveAvatar) whose
events differ in name, channel and shape: ``avatar_start_talking`` on a LiveKit data
message here, ``avatar.speak_started`` on a topic or a WebSocket there; a user transcript
assembled from chunks here, sent whole there. Each backend translates its wire events
into these, once; everything above (the transport's frames and event handlers, the CLI's
transcript) reads only these, so nothing above a backend branches on which one runs.

``raw`` keeps the wire event for whoever wants the detail (``HeyGenEventFrame``).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class AvatarEvent:
    raw: object = None


@dataclass(frozen=True, slots=True)
class UserStartedSpeaking(AvatarEvent):
    """HeyGen's own detection heard the user start."""


@dataclass(frozen=True, slots=True)
class UserStoppedSpeaking(AvatarEvent):
    pass


@dataclass(frozen=True, slots=True)
class UserSilence(AvatarEvent):
    """The user has been quiet ``silence_times`` times (HeyGen's silence prompt)."""

    silence_times: int = 0
    count_down: float = 0.0


@dataclass(frozen=True, slots=True)
class UserTranscriptSoFar(AvatarEvent):
    """What HeyGen has heard of the user's current utterance, so far."""

    text: str = ""


@dataclass(frozen=True, slots=True)
class UserTranscript(AvatarEvent):
    """The user's whole utterance, final."""

    text: str = ""


@dataclass(frozen=True, slots=True)
class AvatarStartedSpeaking(AvatarEvent):
    task_id: str = ""


@dataclass(frozen=True, slots=True)
class AvatarStoppedSpeaking(AvatarEvent):
    """The avatar fell silent: it finished, or was interrupted (``interrupted``)."""

    task_id: str = ""
    duration_ms: float | None = None
    interrupted: bool = False


@dataclass(frozen=True, slots=True)
class AvatarWords(AvatarEvent):
    """A piece of what the avatar is saying, as it says it."""

    text: str = ""


@dataclass(frozen=True, slots=True)
class AvatarTranscript(AvatarEvent):
    """Everything the avatar said in one utterance."""

    text: str = ""
    task_id: str = ""


@dataclass(frozen=True, slots=True)
class OtherEvent(AvatarEvent):
    """A wire event with no meaning above its backend (a newer type, a state update)."""


def join_words(parts: list[str]) -> str:
    """Chunks of a transcript as one text."""
    return " ".join(p.strip() for p in parts if p.strip())
