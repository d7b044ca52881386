"""HeyGen's events as Pipecat frames: the one place that decides the mapping.

Each backend reports the events of :mod:`agent.heygen.events`; this maps them, the same
whichever backend runs:

  event                    Interactive wire           → frame
  UserStartedSpeaking      ``user_start`` (socket)     → UserStartedSpeakingFrame
  UserStoppedSpeaking      ``user_stop`` (socket)      → UserStoppedSpeakingFrame
  UserSilence              ``user_silence`` (socket)   → HeyGenUserSilenceFrame
  AvatarStartedSpeaking    ``avatar_start_talking``    → BotStartedSpeakingFrame
  AvatarStoppedSpeaking    ``avatar_stop_talking``     → BotStoppedSpeakingFrame
  AvatarWords              ``avatar_talking_message``  → TTSTextFrame (a chunk of its words)
  AvatarTranscript         ``avatar_end_message``      → HeyGenAvatarTranscriptFrame (whole)
  UserTranscriptSoFar      ``user_talking_message``    → InterimTranscriptionFrame (so far)
  UserTranscript           ``user_end_message``        → TranscriptionFrame (finalized)
  anything else                                        → HeyGenEventFrame (the wire event)

These are the Pipecat frames closest in meaning: HeyGen's avatar is the bot, its words
are what a TTS would report, and its transcript of the user is what an STT would give.
Media: the avatar's video is OutputImageRawFrame and its voice OutputAudioRawFrame, the
frames another Pipecat transport's output() renders.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TypeVar

from pipecat.frames.frames import (
    BotStartedSpeakingFrame,
    BotStoppedSpeakingFrame,
    DataFrame,
    Frame,
    InterimTranscriptionFrame,
    SystemFrame,
    TextFrame,
    TranscriptionFrame,
    TTSTextFrame,
    UserStartedSpeakingFrame,
    UserStoppedSpeakingFrame,
)

from agent.heygen import events as ev
from agent.heygen.protocol import interactive as ia

T = TypeVar("T", bound=TextFrame)

#: The ``user_id`` on transcription frames of what HeyGen heard the user say.
USER_ID = "user"
#: ``format`` of image frames left in LiveKit's native planar YUV (no RGB conversion).
I420 = "I420"


@dataclass
class HeyGenAvatarTranscriptFrame(TextFrame):
    """Everything the avatar said in one utterance (sent at ``avatar_end_message``)."""

    task_id: str = ""


@dataclass
class HeyGenUserSilenceFrame(SystemFrame):
    """HeyGen's silence prompt: the user has been quiet ``silence_times`` times."""

    silence_times: int = 0
    count_down: float = 0.0


@dataclass
class HeyGenEventFrame(SystemFrame):
    """A HeyGen event with no closer Pipecat frame, e.g. a newer event type."""

    #: the wire event as the backend parsed it (e.g. a ``RoomEvent``)
    event: object = None


@dataclass
class HeyGenSpeakFrame(DataFrame):
    """Ask the avatar to say (``repeat``) or answer (``talk``) ``text``.

    A plain TextFrame reaching the transport's output is answered (``talk``), as the
    voice-chat socket does with text; this frame chooses explicitly."""

    text: str = ""
    task_type: ia.TaskType = ia.TaskType.REPEAT


@dataclass
class HeyGenPushToTalkFrame(SystemFrame):
    """Press (``talking``) or release the push-to-talk button, for sessions created with
    push-to-talk: HeyGen then waits for the release instead of detecting the end of the
    user's turn. The transport's output does what it says (as ``transport.push_to_talk``)."""

    talking: bool = False


def said(frame: T) -> T:
    """A frame telling what the avatar said: for transcripts and viewers, never for an
    LLM's context (the bot's own LLM frames are what its context records)."""
    frame.append_to_context = False
    return frame


def frames_for_event(event: ev.AvatarEvent) -> list[Frame]:
    """The frames that say ``event`` in a pipeline (none for an empty transcript)."""
    match event:
        case ev.UserStartedSpeaking():
            return [UserStartedSpeakingFrame()]
        case ev.UserStoppedSpeaking():
            return [UserStoppedSpeakingFrame()]
        case ev.UserSilence(silence_times=times, count_down=count_down):
            return [HeyGenUserSilenceFrame(silence_times=times, count_down=count_down)]
        case ev.UserTranscriptSoFar(text=text):
            return [InterimTranscriptionFrame(text, USER_ID, _now())] if text else []
        case ev.UserTranscript(text=text):
            return [TranscriptionFrame(text, USER_ID, _now(), finalized=True)] if text else []
        case ev.AvatarStartedSpeaking():
            return [BotStartedSpeakingFrame()]
        case ev.AvatarStoppedSpeaking():
            return [BotStoppedSpeakingFrame()]
        case ev.AvatarWords(text=text):
            return [said(TTSTextFrame(text, text_type="word"))] if text else []
        case ev.AvatarTranscript(text=text, task_id=task_id):
            return [said(HeyGenAvatarTranscriptFrame(text, task_id=task_id))] if text else []
    return [HeyGenEventFrame(event=event.raw)]


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")
