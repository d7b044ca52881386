"""``heygen-agent avatars | voices | sessions``: the account, listed from the API."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable

from agent.heygen.api import HeyGenClient, HeyGenError
from agent.heygen.ledger import SessionLedger, stop_left_behind

EXIT_OK, EXIT_ERROR = 0, 1


def add_parsers(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    for name, help_, handler in (
        ("avatars", "list the streaming avatars your account can use", avatars),
        ("voices", "list voices (--realtime: only those streaming can use)", voices),
    ):
        parser = commands.add_parser(name, help=help_)
        _connection_options(parser)
        if name == "voices":
            parser.add_argument("--realtime", action="store_true")
        parser.set_defaults(handler=lambda args, h=handler: _call(args, h))
    sessions = commands.add_parser("sessions", help="list open sessions; 'stop ID' or --all")
    _connection_options(sessions)
    sessions.add_argument("action", nargs="?", choices=["stop"])
    sessions.add_argument("session_id", nargs="?")
    sessions.add_argument("--all", action="store_true", help="with stop: every open session")
    sessions.set_defaults(handler=lambda args: _call(args, sessions_command))


def _connection_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--base-url", help="default: $HEYGEN_BASE_URL or https://api.heygen.com")
    parser.add_argument("--api-key", help="default: $HEYGEN_API_KEY")


Action = Callable[[HeyGenClient, argparse.Namespace], Awaitable[int]]


def _call(args: argparse.Namespace, action: Action) -> int:
    async def go() -> int:
        async with HeyGenClient(args.api_key, base_url=args.base_url) as client:
            return await action(client, args)

    try:
        return asyncio.run(go())
    except (HeyGenError, ValueError) as exc:
        print(f"heygen-agent: {exc}", file=sys.stderr)
        return EXIT_ERROR


async def avatars(client: HeyGenClient, args: argparse.Namespace) -> int:
    for avatar in await client.list_avatars():
        print(f"{avatar.avatar_id}\t{avatar.pose_name or ''}\t{avatar.status or ''}")
    return EXIT_OK


async def voices(client: HeyGenClient, args: argparse.Namespace) -> int:
    for voice in await client.list_voices(realtime_only=args.realtime):
        print(f"{voice.voice_id}\t{voice.name or ''}\t{voice.language or ''}")
    return EXIT_OK


async def sessions_command(client: HeyGenClient, args: argparse.Namespace) -> int:
    ledger = SessionLedger()
    # a process of ours was killed before it could stop these: stop them now
    for record in await stop_left_behind(client, ledger):
        print(f"stopped {record.session_id} (left open by process {record.pid}, "
              f"which ended without stopping it)")
    if args.action != "stop":
        for session in await client.list_sessions():
            print(f"{session.session_id}\t{session.status}\t{session.created_at}")
        return EXIT_OK
    if args.all == bool(args.session_id):
        print("heygen-agent: give a session id or --all (not both)", file=sys.stderr)
        return 2
    ids = [s.session_id for s in await client.list_sessions()] if args.all else [args.session_id]
    for session_id in ids:
        await client.stop_session(session_id)
        ledger.remove(session_id)
        print(f"stopped {session_id}")
    return EXIT_OK
