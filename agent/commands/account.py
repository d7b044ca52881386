"""``heygen-agent avatars | voices | contexts | sessions``: the account, listed from the API.

This module only describes the commands: every command line builds all parsers, so the
API clients (httpx, LiveKit) load in :mod:`agent.commands.catalogue`, and only when one of
these commands runs.
"""

from __future__ import annotations

import argparse

#: The backends a listing can ask (``agent.commands.catalogue.CATALOGUES`` has one each).
BACKENDS = ("interactive", "liveavatar")

COMMANDS: list[tuple[str, str, str]] = [
    ("avatars", "list the avatars your account can stream",
     "List the streaming avatars of the account (LiveAvatar: yours and the public ones). "
     "Use an id as heygen.session.avatar_name (interactive) or heygen.liveavatar.avatar_id."),
    ("voices", "list the voices",
     "List the account's voices. With --realtime (interactive only): only the voices that "
     "streaming sessions can use (STREAMING = yes)."),
    ("contexts", "list LiveAvatar contexts (what a FULL-mode avatar knows and is)",
     "List the LiveAvatar contexts of the account. FULL mode needs one "
     "(heygen.liveavatar.context_id), or the avatar does not answer."),
    ("sessions", "list open sessions (and stop those a killed run left); 'stop ID' or --all",
     "List the account's open (billed) streaming sessions: id, status, creation time. "
     "First stops any session a killed heygen-agent process left open, from the local "
     "record. 'sessions stop ID' stops one; 'sessions stop --all' stops every open one. "
     "LiveAvatar lists no sessions by key and stops one only with its own token: with "
     "--backend liveavatar, the sessions are those this machine's record holds as open, "
     "and 'stop ID' stops one whose token the record holds."),
]


def add_parsers(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    for name, help_, description in COMMANDS:
        parser = commands.add_parser(name, help=help_, description=description)
        default = "liveavatar" if name == "contexts" else "interactive"  # LiveAvatar's only
        parser.add_argument("--backend", choices=list(BACKENDS), default=default,
                            help="which HeyGen API: interactive (HEYGEN_* variables) or "
                                 f"liveavatar (LIVEAVATAR_* variables); default {default}")
        parser.add_argument("--base-url", help="default: $HEYGEN_BASE_URL or "
                            "$LIVEAVATAR_BASE_URL, then the service's own")
        parser.add_argument("--api-key", help="default: $HEYGEN_API_KEY or $LIVEAVATAR_API_KEY")
        parser.add_argument("--json", action="store_true", help="print JSON, one object a row")
        if name == "voices":
            parser.add_argument("--realtime", action="store_true",
                                help="only voices streaming sessions can use (interactive)")
        if name == "sessions":
            parser.add_argument("action", nargs="?", choices=["stop"],
                                help="stop: stop the session SESSION_ID (or every one, --all) "
                                     "instead of listing them")
            parser.add_argument("session_id", nargs="?",
                                help="with stop: the id of the session to stop")
            parser.add_argument("--all", action="store_true",
                                help="with stop: every open session")
            parser.set_defaults(intermixed=parser)  # 'sessions stop --json ID'
        parser.set_defaults(handler=lambda args, listing=name: _call(args, listing))


def _call(args: argparse.Namespace, listing: str) -> int:
    from agent.commands.catalogue import call

    return call(args, listing)
