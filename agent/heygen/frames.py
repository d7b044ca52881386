"""HeyGen's events as Pipecat frames: the one place that decides the mapping.

Voice-chat events (socket)            → frame
  ``user_start`` / ``user_stop``      → UserStartedSpeakingFrame / UserStoppedSpeakingFrame
  ``user_silence``                    → HeyGenUserSilenceFrame
LiveKit data events                   → frame
  ``avatar_start_talking``            → BotStartedSpeakingFrame
  ``avatar_stop_talking``             → BotStoppedSpeakingFrame
  ``avatar_talking_message``          → TTSTextFrame (a chunk of the avatar's words)
  ``avatar_end_message``              → HeyGenAvatarTranscriptFrame (the whole utterance)
  ``user_talking_message``            → InterimTranscriptionFrame (the words so far)
  ``user_end_message``                → TranscriptionFrame (the whole utterance, finalized)
Anything else                         → HeyGenEventFrame (the parsed event, kept whole)

These are the Pipecat frames closest in meaning: HeyGen's avatar is the bot, its words
are what a TTS would report, and its transcript of the user is what an STT would give.
Media: the avatar's video is OutputImageRawFrame and its voice OutputAudioRawFrame, the
frames another Pipecat transport's output() renders.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

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

from agent.heygen.protocol import interactive as ia
from agent.heygen.protocol import room_events as rev
from agent.heygen.protocol import voice_chat as vc

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

    event: rev.RoomEvent | vc.VoiceChatEvent | None = None


@dataclass
class HeyGenSpeakFrame(DataFrame):
    """Ask the avatar to say (``repeat``) or answer (``talk``) ``text``.

    A plain TextFrame reaching the transport's output is answered (``talk``), as the
    voice-chat socket does with text; this frame chooses explicitly."""

    text: str = ""
    task_type: ia.TaskType = ia.TaskType.REPEAT


@dataclass
class TranscriptAssembler:
    """Builds whole utterances from HeyGen's chunked transcripts."""

    _avatar: list[str] = field(default_factory=list)
    _user: list[str] = field(default_factory=list)

    def frames_for_room_event(self, event: rev.RoomEvent) -> list[Frame]:
        if isinstance(event, rev.AvatarStartTalking):
            return [BotStartedSpeakingFrame()]
        if isinstance(event, rev.AvatarStopTalking):
            return [BotStoppedSpeakingFrame()]
        if isinstance(event, rev.AvatarTalkingMessage):
            self._avatar.append(event.message)
            return [TTSTextFrame(event.message, text_type="word")]
        if isinstance(event, rev.AvatarEndMessage):
            text = _join(self._avatar)
            self._avatar.clear()
            return [HeyGenAvatarTranscriptFrame(text, task_id=event.task_id)] if text else []
        if isinstance(event, rev.UserTalkingMessage):
            self._user.append(event.message)
            return [InterimTranscriptionFrame(_join(self._user), USER_ID, _now())]
        if isinstance(event, rev.UserEndMessage):
            text = _join(self._user)
            self._user.clear()
            if not text:
                return []
            return [TranscriptionFrame(text, USER_ID, _now(), finalized=True)]
        return [HeyGenEventFrame(event=event)]


def frame_for_chat_event(event: vc.VoiceChatEvent) -> Frame:
    if isinstance(event, vc.UserStart):
        return UserStartedSpeakingFrame()
    if isinstance(event, vc.UserStop):
        return UserStoppedSpeakingFrame()
    if isinstance(event, vc.UserSilence):
        return HeyGenUserSilenceFrame(silence_times=event.silence_times,
                                      count_down=event.count_down)
    return HeyGenEventFrame(event=event)


def _join(parts: list[str]) -> str:
    return " ".join(p.strip() for p in parts if p.strip())


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")
