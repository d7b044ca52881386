"""The account's listings, one :class:`Catalogue` per backend, printed as tables.

Each listing is a table with column headers (or ``--json``), and an empty one says so:
a bare column of ids, or nothing at all, leaves a new user guessing. Either backend is one
:class:`Catalogue`: what differs is which calls it makes and which columns it has, never
how a listing is printed. Loaded only when an account command runs (see
:mod:`agent.commands.account`, which only describes the commands).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from agent.commands import EXIT_ERROR, EXIT_OK, EXIT_USAGE
from agent.heygen.api import (
    ConfigurationError,
    HeyGenClient,
    HeyGenError,
    LiveAvatarClient,
    SessionStateError,
)
from agent.heygen.api.base import RestClient
from agent.heygen.ledger import Record, SessionLedger, stop_left_behind


@dataclass
class Table:
    what: str  # "avatars": said when the list is empty
    columns: list[str]
    rows: list[list[str]] = field(default_factory=list)
    #: lines said before the table (what was done on the way, e.g. sessions stopped)
    notes: list[str] = field(default_factory=list)


class Unsupported(Exception):
    """The backend has no such listing."""


class Catalogue:
    """One backend's listings."""

    def __init__(self, client: RestClient) -> None:
        self.client = client

    async def avatars(self, args: argparse.Namespace) -> Table:
        raise Unsupported("avatars")

    async def voices(self, args: argparse.Namespace) -> Table:
        raise Unsupported("voices")

    async def contexts(self, args: argparse.Namespace) -> Table:
        raise Unsupported("contexts (LiveAvatar only: --backend liveavatar)")

    async def sessions(self, args: argparse.Namespace) -> Table:
        raise Unsupported("sessions")


class InteractiveCatalogue(Catalogue):
    client: HeyGenClient

    async def avatars(self, args: argparse.Namespace) -> Table:
        return Table("avatars", ["AVATAR ID", "POSE", "STATUS"], [
            [a.avatar_id, a.pose_name or "", a.status or ""]
            for a in await self.client.list_avatars()])

    async def voices(self, args: argparse.Namespace) -> Table:
        return Table("voices", ["VOICE ID", "NAME", "LANGUAGE", "STREAMING"], [
            [v.voice_id, v.name or "", v.language or "", _yes(v.support_realtime)]
            for v in await self.client.list_voices(realtime_only=args.realtime)])

    async def sessions(self, args: argparse.Namespace) -> Table:
        ledger = SessionLedger()
        notes = await _stop_left_behind(self.client, ledger,
                                        lambda r: self.client.stop_session(r.session_id))
        if args.action == "stop":
            ids = ([s.session_id for s in await self.client.list_sessions()] if args.all
                   else [args.session_id])
            for session_id in ids:
                await self.client.stop_session(session_id)
                ledger.remove(session_id)
                notes.append(f"stopped {session_id}")
            return Table("sessions stopped", [], notes=notes)
        return Table("open sessions", ["SESSION ID", "STATUS", "CREATED"], [
            [s.session_id, s.status, _when(s.created_at)]
            for s in await self.client.list_sessions()], notes)


class LiveAvatarCatalogue(Catalogue):
    client: LiveAvatarClient

    async def avatars(self, args: argparse.Namespace) -> Table:
        mine = await self.client.list_avatars()
        public = await self.client.list_public_avatars()
        return Table("avatars", ["AVATAR ID", "NAME", "WHOSE"],
                     [[a.id, a.name, "yours"] for a in mine]
                     + [[a.id, a.name, "public"] for a in public])

    async def voices(self, args: argparse.Namespace) -> Table:
        return Table("voices", ["VOICE ID", "NAME"],
                     [[v.id, v.name] for v in await self.client.list_voices()])

    async def contexts(self, args: argparse.Namespace) -> Table:
        return Table("contexts", ["CONTEXT ID", "NAME"],
                     [[c.id, c.name] for c in await self.client.list_contexts()])

    async def sessions(self, args: argparse.Namespace) -> Table:
        # LiveAvatar lists no sessions by key, and stops one only with that session's own
        # token: what this machine knows is its local record, which keeps the token.
        ledger = SessionLedger()
        notes = await _stop_left_behind(self.client, ledger, self.client.stop_recorded)
        mine = [r for r in ledger.records()
                if r.base_url == self.client.base_url and r.key == self.client.key_fingerprint]
        if args.action == "stop":
            for record in mine if args.all else [self._recorded(ledger, args.session_id)]:
                try:
                    await self.client.stop_recorded(record)
                    notes.append(f"stopped {record.session_id}")
                except SessionStateError:
                    notes.append(f"{record.session_id} had already ended")
                ledger.remove(record.session_id)
            return Table("sessions stopped", [], notes=notes)
        return Table("sessions of this key recorded here as open", ["SESSION ID", "PROCESS"],
                     [[r.session_id, str(r.pid)] for r in mine], notes)

    def _recorded(self, ledger: SessionLedger, session_id: str) -> Record:
        """The record of ``session_id`` at this service, with the token that stops it."""
        for record in ledger.records():
            if (record.session_id == session_id and record.base_url == self.client.base_url
                    and record.stop_token):
                return record
        raise ConfigurationError(
            f"LiveAvatar session {session_id}: no record on this machine holds its session "
            f"token (for {self.client.base_url}), and LiveAvatar stops a session only with "
            "it; a session left open ends after 5 idle minutes")


async def _stop_left_behind(client: RestClient, ledger: SessionLedger,
                            stop: Callable[[Record], Awaitable[None]]) -> list[str]:
    """Stop what a killed process of ours left open (with this key); a note for each."""
    return [f"stopped {r.session_id} (left open by process {r.pid}, which ended without "
            f"stopping it)" for r in await stop_left_behind(client, ledger, stop)]


CATALOGUES: dict[str, tuple[type[RestClient], type[Catalogue]]] = {
    "interactive": (HeyGenClient, InteractiveCatalogue),
    "liveavatar": (LiveAvatarClient, LiveAvatarCatalogue),
}


def _ignored(args: argparse.Namespace) -> str | None:
    """What the command line asks that the command would not do: said before any call."""
    if getattr(args, "action", None) == "stop":
        if args.all and args.session_id:
            return "give a session id or --all, not both"
        if not (args.all or args.session_id):
            return "give a session id or --all"
    elif getattr(args, "all", False):
        return "--all goes with stop: sessions stop --all"
    if getattr(args, "realtime", False) and args.backend != "interactive":
        return "--realtime is for interactive (it lists the voices streaming sessions can use)"
    return None


def call(args: argparse.Namespace, listing: str) -> int:
    """Make one listing (``avatars``, ``voices``, ...) and print it; the exit code."""
    problem = _ignored(args)
    if problem:
        print(f"heygen-agent: {problem}", file=sys.stderr)
        return EXIT_USAGE
    client_type, catalogue_type = CATALOGUES[args.backend]

    async def go() -> Table:
        async with client_type(args.api_key, base_url=args.base_url) as client:
            method: Callable[[argparse.Namespace], Awaitable[Table]] = getattr(
                catalogue_type(client), listing)
            return await method(args)

    try:
        table = asyncio.run(go())
    except Unsupported as exc:
        print(f"heygen-agent: {args.backend} has no {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (HeyGenError, ValueError) as exc:
        print(f"heygen-agent: {exc}", file=sys.stderr)
        return EXIT_ERROR
    print(render(table, as_json=args.json))
    return EXIT_OK


def render(table: Table, *, as_json: bool = False) -> str:
    """The table as aligned columns under their headers, or as JSON lines."""
    if as_json:
        keys = [c.lower().replace(" ", "_") for c in table.columns]
        rows = [json.dumps(dict(zip(keys, row, strict=True))) for row in table.rows]
        if table.columns and not rows:
            rows = ["[]"]  # nothing, as JSON a reader takes (an empty output is not JSON)
        return "\n".join([json.dumps({"note": n}) for n in table.notes] + rows)
    lines = list(table.notes)
    if not table.columns:
        return "\n".join(lines)
    if not table.rows:
        return "\n".join([*lines, f"no {table.what}"])
    widths = [max(len(str(c)) for c in column) for column in zip(table.columns, *table.rows,
                                                                    strict=True)]
    for row in [table.columns, *table.rows]:
        lines.append("  ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True))
                     .rstrip())
    return "\n".join(lines)


def _yes(flag: bool | None) -> str:
    return "" if flag is None else "yes" if flag else "no"


def _when(created: Any) -> str:
    """A Unix time as local ISO time; anything else as it came."""
    if isinstance(created, int | float):
        return datetime.datetime.fromtimestamp(created).isoformat(timespec="seconds")
    return "" if created is None else str(created)
