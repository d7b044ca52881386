"""A local record of the HeyGen sessions this machine created and has not seen stopped.

A process killed outright (SIGKILL, the OOM killer, a power cut) cannot stop its session:
HeyGen bills it until its idle timeout, and it holds one of the account's few concurrent
slots. So a session is recorded here as soon as ``new`` has answered and forgotten once
its stop is confirmed; the next session started with the same key (and ``heygen-agent
sessions``) stops what a dead process left behind.

One small JSON file per session in the state directory (``$HEYGEN_AGENT_STATE_DIR``, else
``$XDG_STATE_HOME/heygen-agent``, else ``~/.local/state/heygen-agent``), written to a
temporary name and renamed, and removed by whoever confirms the stop: two processes never
write the same file, so no lock is needed. The API key is never written: a record keeps a
fingerprint of it (a SHA-256 prefix), so that only the key that created a session stops it.
LiveAvatar stops a session only with that session's own token, so its records also keep
that token (it can do nothing but act on that one session, and expires with it); the files
are readable by their owner alone.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from loguru import logger

if TYPE_CHECKING:
    from agent.heygen.api.base import RestClient

ENV_STATE_DIR = "HEYGEN_AGENT_STATE_DIR"


def state_dir() -> Path:
    explicit = os.environ.get(ENV_STATE_DIR)
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "heygen-agent"


def fingerprint(api_key: str | None) -> str:
    """What identifies a key in a record without revealing it."""
    return hashlib.sha256((api_key or "").encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Record:
    session_id: str
    base_url: str
    key: str  # fingerprint(api_key)
    pid: int
    host: str
    created_at: float
    #: the session's own token, where the service stops a session only with it
    stop_token: str = ""

    def owner_is_gone(self) -> bool:
        """The process that created it has ended (on this host; elsewhere we cannot tell,
        so it counts as alive)."""
        if self.host != socket.gethostname():
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            pass  # alive, another user's
        return False


class SessionLedger:
    """The records in one directory."""

    def __init__(self, directory: Path | None = None) -> None:
        self.directory = (directory or state_dir()) / "sessions"

    def add(self, session_id: str, base_url: str, key: str, stop_token: str = "") -> None:
        record = Record(session_id, base_url, key, os.getpid(), socket.gethostname(),
                        time.time(), stop_token)
        try:
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            path = self._path(session_id)
            temporary = path.with_suffix(".tmp")
            with contextlib.suppress(FileNotFoundError):
                temporary.unlink()
            descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "w") as out:
                out.write(json.dumps(asdict(record)))
            os.replace(temporary, path)
        except OSError as exc:  # never a reason to fail the session itself
            logger.warning(f"cannot record HeyGen session {session_id} in {self.directory}: "
                           f"{exc}")

    def remove(self, session_id: str) -> None:
        with contextlib.suppress(OSError):
            self._path(session_id).unlink()

    def records(self) -> list[Record]:
        found = []
        for path in sorted(self.directory.glob("*.json")):
            try:
                found.append(Record(**json.loads(path.read_text())))
            except FileNotFoundError:
                pass  # forgotten (its stop confirmed) by another process since the listing
            except (OSError, ValueError, TypeError):
                logger.warning(f"ignoring an unreadable session record: {path}")
        return found

    def left_behind(self, base_url: str, key: str) -> list[Record]:
        """Records of sessions created with this key at this service by processes that
        have ended: theirs to stop."""
        return [r for r in self.records()
                if r.key == key and r.base_url == base_url and r.owner_is_gone()]

    def _path(self, session_id: str) -> Path:
        safe = "".join(c for c in session_id if c.isalnum() or c in "-_")
        return self.directory / f"{safe}.json"


async def stop_left_behind(
    client: RestClient, ledger: SessionLedger, stop: Callable[[Record], Awaitable[None]]
) -> list[Record]:
    """Stop, with ``stop``, the sessions that killed processes of ``client``'s key left
    open, as the local record knows them; returns those now ended. Best effort: a stop
    that fails is logged and its record kept for next time."""
    from agent.heygen.api import HeyGenError, SessionStateError  # the client imports us

    ended = []
    for record in ledger.left_behind(client.base_url, client.key_fingerprint):
        try:
            await stop(record)
        except SessionStateError:
            pass  # it had ended by itself (idle timeout)
        except HeyGenError as exc:
            logger.warning(f"HeyGen session {record.session_id} left by process "
                           f"{record.pid} could not be stopped yet: {exc}")
            continue
        ledger.remove(record.session_id)
        ended.append(record)
    return ended
