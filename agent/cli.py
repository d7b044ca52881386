"""The ``heygen-agent`` command.

This module imports nothing but the standard library at its top: everything else loads
inside :func:`main`, where a Ctrl-C is an exit code (130), not an import traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

from agent import __version__
from agent.commands import EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE

Command = Callable[[argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    from agent.commands import account, emulate, run

    parser = argparse.ArgumentParser(
        prog="heygen-agent",
        description="HeyGen streaming avatars in Pipecat voice pipelines.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    run.add_parsers(commands)
    account.add_parsers(commands)
    emulate.add_parser(commands)
    bench = commands.add_parser(
        "bench", help="time the hot paths, as ratios against baselines timed in the same run",
        description="Time the per-frame hot paths (audio encoding, resampling, the emulated "
        "avatar's frame, the viewer's JPEG) against the obvious alternative timed in the same "
        "run. Each figure is a ratio (our time ÷ baseline time; below 1 is faster), because "
        "absolute times on a shared machine say more about the machine than the code.")
    bench.add_argument("--sessions", action="store_true",
                       help="time whole sessions against the emulator and a local LiveKit "
                       "server instead (start, turn and lip-sync latency, sessions per "
                       "machine); the options below are for this mode")
    from agent.bench_options import add_arguments

    add_arguments(bench)
    bench.set_defaults(handler=_bench)
    return parser


def _bench(args: argparse.Namespace) -> int:
    if args.sessions:
        from agent.session_bench import main_with

        return main_with(args)
    from agent.bench import main as bench_main

    bench_main()
    return EXIT_OK


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line. A command whose positionals may come after its options (its
    parser set as ``intermixed``: ``sessions stop --json ID``, where argparse gives both
    optional positionals to ``stop`` and is left with the id) is parsed again by its own
    parser, intermixed; anything else left over is refused, as ``parse_args`` would."""
    parser = build_parser()
    words = list(sys.argv[1:] if argv is None else argv)
    args, rest = parser.parse_known_args(words)
    if not rest:
        return args
    own: argparse.ArgumentParser | None = getattr(args, "intermixed", None)
    if own is None:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    return own.parse_intermixed_args(words[words.index(args.command) + 1:],
                                     argparse.Namespace(command=args.command))


def main(argv: Sequence[str] | None = None) -> int:
    try:
        from loguru import logger

        # Quiet by default: a command's output is its answer; `run` takes its level from
        # the pipeline file, and HEYGEN_LOG_LEVEL overrides both.
        logger.remove()
        logger.add(sys.stderr, level=os.environ.get("HEYGEN_LOG_LEVEL", "WARNING"))
        args = parse(argv)
        handler: Command | None = getattr(args, "handler", None)
        if handler is None:
            build_parser().print_help()
            return EXIT_USAGE
        code = handler(args)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    from agent.commands import native

    native.exit_now_if_marked(code)  # after run/emulate: see agent.commands.native
    return code


if __name__ == "__main__":
    sys.exit(main())
