"""The session benchmark's settings and their command-line options, standard library only.

``heygen-agent``'s parser is built before anything heavy loads (see :mod:`agent.cli`), so
the options of ``bench --sessions`` live here, apart from :mod:`agent.session_bench`,
which needs LiveKit and numpy.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class BenchConfig:
    latency_ms: float = 50.0
    # Ten: the first video frame waits for a key frame, and one late key frame in five
    # rounds moved a median by 10 % (a run of five once showed a change backwards).
    start_rounds: int = 10
    turn_rounds: int = 10
    lipsync_rounds: int = 10
    utterance_s: float = 60.0
    session_counts: tuple[int, ...] = (1, 5, 10, 20)
    soak_s: float = 10.0
    decodes: tuple[Literal["i420", "rgb"], ...] = ("i420", "rgb")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = BenchConfig()
    parser.add_argument("--latency-ms", type=float, default=d.latency_ms,
                        help="added to every REST answer and WebSocket handshake")
    parser.add_argument("--rounds", type=int, default=d.start_rounds,
                        help="rounds of the start, turn and lip-sync latency cases")
    parser.add_argument("--utterance-s", type=float, default=d.utterance_s,
                        help="the long utterance whose drift is measured")
    parser.add_argument("--counts", default=",".join(map(str, d.session_counts)),
                        help="session counts for the sessions-per-machine case")
    parser.add_argument("--soak-s", type=float, default=d.soak_s,
                        help="how long each session count streams")
    parser.add_argument("--decode", choices=["i420", "rgb", "both"], default="both",
                        help="the video format(s) the avatar's frames are decoded to in the "
                             "decode cases: i420 (YUV, as received), rgb (converted), or "
                             "both; default both")
    parser.add_argument("--json", metavar="FILE", help="also write the JSON here")


def config_from(args: argparse.Namespace) -> BenchConfig:
    decodes: tuple[Literal["i420", "rgb"], ...] = (
        ("i420", "rgb") if args.decode == "both" else (args.decode,))
    return BenchConfig(
        latency_ms=args.latency_ms, start_rounds=args.rounds, turn_rounds=args.rounds,
        lipsync_rounds=args.rounds, utterance_s=args.utterance_s,
        session_counts=tuple(int(n) for n in args.counts.split(",") if n.strip()),
        soak_s=args.soak_s, decodes=decodes)


