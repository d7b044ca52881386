"""``docs/PERFORMANCE.md`` and the bench's table, written from the session benchmark's JSON.

The figures in the document must be the figures a run measured, so nothing in it is
typed by hand: ``python -m agent.performance_report FILE.json`` prints the document
(``scripts/performance-report`` runs the benchmark, then this), and
:func:`table` is the short form ``heygen-agent bench --sessions`` prints.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def _f(value: float, digits: int = 0) -> str:
    return "n/a" if value != value else f"{value:,.{digits}f}"  # NaN: nothing measured


def _spread(s: dict[str, float]) -> str:
    """A summary's median and range, in milliseconds."""
    return f"{_f(s['median'])} ms ({_f(s['min'])}-{_f(s['max'])})"


def soak_variant(run: dict[str, Any]) -> str:
    """A soak run's video mode, and ``video only`` when the avatar's audio was left
    unsubscribed (runs written before that choice existed received it)."""
    return run["decode"] if run.get("avatar_audio", True) else f"{run['decode']}, video only"


def per_added_session(runs: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """What one more session costs, per video mode: the difference between the two
    smallest session counts that ran without problems, divided by the sessions added.
    Larger counts saturate a small machine (CPU then stops growing with N while frames
    are dropped), so a line through every run would understate the cost. Agent memory is
    what each run added to its process's memory before the sessions."""
    out: dict[str, dict[str, float]] = {}
    for variant in dict.fromkeys(soak_variant(r) for r in runs):
        clean = sorted((r for r in runs if soak_variant(r) == variant and not r["problems"]),
                       key=lambda r: r["sessions"])
        if len(clean) < 2:
            continue
        a, b = clean[0], clean[1]
        n = b["sessions"] - a["sessions"]

        def added(r: dict[str, Any]) -> float:
            return float(r["agent_rss_mb"] - r["agent_rss_before_mb"])

        out[variant] = {
            "from": a["sessions"], "to": b["sessions"],
            "agent_cpu_percent": round((b["agent_cpu_percent"] - a["agent_cpu_percent"]) / n, 1),
            "emulator_cpu_percent": round(
                (b["emulator_cpu_percent"] - a["emulator_cpu_percent"]) / n, 1),
            "agent_rss_mb": round((added(b) - added(a)) / n, 1),
            "emulator_rss_mb": round((b["emulator_rss_mb"] - a["emulator_rss_mb"]) / n, 1),
        }
    return out


def table(data: dict[str, Any]) -> str:
    """The headline figures, one line each: ours, the baseline, the ratio."""
    rows = [("figure", "ours", "baseline", "ratio")]
    for section, backend in (("start", ""), ("start_liveavatar", "LiveAvatar, ")):
        if section not in data:  # runs written before LiveAvatar's section have none
            continue
        start = data[section]["variants"]
        base = start["sequential"]
        for key, label in (("start_ms", "start() returns"),
                           ("video_ms", "start → first video frame"),
                           ("audio_ms", "start → first audio frame")):
            for variant in ("concurrent", "livekit_during_start"):
                if variant in start:
                    v = start[variant]
                    rows.append((f"{label} ({backend}{variant})", f"{_f(v[key]['median'])} ms",
                                 f"{_f(base[key]['median'])} ms", f"{v['ratio'][key]:.2f}x"))
    command = data["command"]["variants"]
    rows.append(("heygen-agent run → first video frame",
                 f"{_f(command['during_build']['video_ms']['median'])} ms",
                 f"{_f(command['after_build']['video_ms']['median'])} ms",
                 f"{command['during_build']['ratio']:.2f}x"))
    turn = data["turn"]
    for name, v in turn["variants"].items():
        rows.append((f"end of speech → user_stop ({name})",
                     f"{_f(v['end_to_user_stop_ms']['median'])} ms",
                     f"{_f(turn['vad_stop_delay_ms'])} ms (detector stop delay)",
                     f"+{_f(v['agent_side_ms']['median'])} ms"))
    lip = data["lipsync"]
    rows.append(("TTS frame into output() → avatar audio out of input()",
                 f"{_f(lip['transport_first_audio_ms']['median'])} ms",
                 f"{_f(lip['transport_floor_first_audio_ms']['median'])} ms (straight to "
                 "the socket)", f"{lip['transport_ratio']:.2f}x"))
    if "lipsync_liveavatar" in data:
        lite = data["lipsync_liveavatar"]
        rows.append(("the same, LiveAvatar LITE",
                     f"{_f(lite['transport_first_audio_ms']['median'])} ms",
                     f"{_f(lite['transport_floor_first_audio_ms']['median'])} ms (straight "
                     "to the socket)", f"{lite['transport_ratio']:.2f}x"))
    drift = lip["drift"]
    rows.append((f"avatar audio behind real time ({drift['utterance_s']:g} s)",
                 f"{_f(drift['avatar_behind_ms_per_min'])} ms/min", "0 ms/min", ""))
    for decode, per in per_added_session(data["sessions"]["runs"]).items():
        rows.append((f"per added session ({decode}): agent CPU / RSS",
                     f"{per['agent_cpu_percent']:.1f} % / {per['agent_rss_mb']:.1f} MB",
                     f"emulator {per['emulator_cpu_percent']:.1f} % / "
                     f"{per['emulator_rss_mb']:.1f} MB", ""))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                     for r in rows)


def _threads(per_added: dict[str, dict[str, float]],
             runs: list[dict[str, Any]]) -> list[str]:
    """Where the agent's CPU goes, by thread, in the larger of the two runs the per-session
    figures come from, divided by its sessions."""
    lines: list[str] = []
    for variant, per in per_added.items():
        run = next((r for r in runs if soak_variant(r) == variant and r["sessions"] == per["to"]
                    and r.get("agent_cpu_by_thread")), None)
        if run is None:
            continue
        n = run["sessions"]
        kinds = list(run["agent_cpu_by_thread"].items())
        shown = kinds[:6]
        rest = sum(v for _, v in kinds[6:])
        cells = [f"{kind}: {v / n:.1f} %" for kind, v in shown]
        if rest:
            cells.append(f"others: {rest / n:.1f} %")
        lines.append(f"- {variant}, N={n}: " + "; ".join(cells))
    if not lines:
        return []
    return ["", "The agent's CPU per session by thread (the thread's name without its "
            "numbers; `python` is the interpreter's own thread, the others are LiveKit's "
            "native ones: `VideoDecoderQue` decodes the avatar's VP8, `SyntheticAudioD` "
            "plays out its audio, `tokio-rt-worker` runs the SDK), read over most of the "
            "steady state:\n", *lines]


def _start_table(start: dict[str, Any]) -> list[str]:
    out = ["| variant | start() returns | first video frame | first audio frame | "
           "ratio video | ratio audio |",
           "|---|---|---|---|---|---|"]
    for name, row in start["variants"].items():
        ratio = row.get("ratio", {"video_ms": 1.0, "audio_ms": 1.0})
        out.append(f"| **{name}**: {row['description']} | {_spread(row['start_ms'])} | "
                   f"{_spread(row['video_ms'])} | {_spread(row['audio_ms'])} | "
                   f"{ratio['video_ms']:.2f} | {ratio['audio_ms']:.2f} |")
    return out



def _lipsync_table(lip: dict[str, Any]) -> list[str]:
    out = ["| | median | min | max |", "|---|---|---|---|"]
    for key, label in (
            ("transport_first_audio_ms", "through the transport: into `output()` → out of "
                                         "`input()`"),
            ("transport_floor_first_audio_ms", "its floor: one speak message to the same "
                                               "avatar, out of `input()`"),
            ("transport_added_ms", "**added by the transport**"),
            ("first_audio_ms", "session: `speak_audio` → the avatar's track"),
            ("floor_first_audio_ms", "its floor: one speak message → that avatar's track"),
            ("added_ms", "added by the session")):
        s = lip[key]
        out.append(f"| {label} | {_f(s['median'])} ms | {_f(s['min'])} ms | "
                   f"{_f(s['max'])} ms |")
    return [*out, "",
            f"Ratio through the transport ÷ its floor: **{lip['transport_ratio']:.2f}** "
            f"(session ÷ its floor: {lip['ratio']:.2f}); target: the floor plus at most "
            f"{lip['target_added_ms']} ms.\n"]

def render(data: dict[str, Any], source: str = "docs/performance.json") -> str:
    m, cfg = data["machine"], data["config"]
    load = ", ".join(f"{x:.2f}" for x in m["load_average_at_start"])
    out = [
        "# Performance: sessions against the emulator, as last measured\n",
        f"Generated by `scripts/performance-report` on {data['generated']} from `{source}` "
        f"(the run took {data['elapsed_s']:.0f} s); nothing here is typed by hand.\n",
        f"**Machine**: {m['cpu']}, {m['cores']} cores, {m['memory_gb']} GB, {m['system']}, "
        f"Python {m['python']}, LiveKit rtc {m['livekit_rtc']}; load average at the start "
        f"{load}. The machine is shared and noisy: every figure stands beside a baseline "
        "timed in the same run, and ratios (ours ÷ baseline; below 1 is faster) say more "
        "than the milliseconds.\n",
        f"**Set-up**: the emulator (`heygen-agent emulate`) in its own process with its own "
        f"`livekit-server --dev` on 127.0.0.1, **{cfg['latency_ms']:g} ms added to every REST "
        "answer and WebSocket handshake** (HeyGen across an ocean). LiveKit itself is local: "
        "its signalling and media get no added delay, so a real deployment's LiveKit round "
        "trips come on top.\n",
    ]
    start = data["start"]
    out += [
        "## 1. Start → first avatar frame\n",
        f"From `session.start()` to the first frame of the avatar's video and audio tracks; "
        f"{start['rounds']} rounds after one uncounted warm-up start, the variants "
        "alternating within each round; medians (min-max), ratios are medians of per-round "
        "ratios against the sequential baseline.\n",
        *_start_table(start),
    ]
    out += [
        "",
        "What was changed and what it bought: the session connects LiveKit and the "
        "voice-chat socket concurrently (the default since before this benchmark); the "
        "`concurrent` row against `sequential` is what that buys. When both of the "
        "avatar's tracks are wanted, LiveKit now subscribes to them as the room is joined "
        "(as HeyGen's official client lets it); before, the session asked for each track "
        "once joined, which costs a renegotiation per track: `track_by_track` against "
        "`concurrent` is what that buys (a session that leaves a track unsubscribed still "
        "asks track by track). `livekit_during_start` "
        "(`SessionOptions(livekit_during_start=True)`, **off by default**) also joins the "
        "room while `streaming.start` is in flight, since its URL and token come with "
        "`streaming.new`; it is proven only against the emulator — HeyGen's official client "
        "joins after `start`, and whether the real service accepts an early join (the room "
        "may not exist yet) is untested — so it stays opt-in. Other steps cannot overlap: "
        "`new` needs the token, the sockets need a started session. The first video frame "
        "waits for LiveKit alone, in every row but `livekit_during_start`: connecting the "
        "socket alongside shortens `start()` (the avatar ready to hear the user), not the "
        "wait for the first frame.\n",
    ]
    if "start_liveavatar" in data:  # runs written before LiveAvatar's section have none
        out += [
            "### LiveAvatar (LITE, sandbox)\n",
            "The same, for HeyGen's successor API: `sessions/token`, `sessions/start` (whose "
            "answer carries both the LiveKit room and the LITE socket), then the two "
            "connections: one after the other as LiveAvatar's web SDK makes them, or at "
            "once (ours). Nothing else can overlap: the start needs the token, the "
            "connections need the start's answer.\n",
            *_start_table(data["start_liveavatar"]),
            "",
        ]
    command = data["command"]
    out += [
        "### The command: `heygen-agent run` → first avatar frame\n",
        f"From spawning `heygen-agent run` (a silent WAV as the microphone, Silero VAD, the "
        f"avatar's video received, no output) to its log line for the avatar's first video "
        f"frame: the interpreter's start, Pipecat's imports, the file's checks, the "
        f"pipeline's build and the session's start, as a user of the command waits for "
        f"them. {command['rounds']} rounds after one uncounted warm-up run, alternating; "
        "ratios are medians of per-round ratios.\n",
        "| variant | session created | first video frame | ratio |",
        "|---|---|---|---|",
    ]
    for name, row in command["variants"].items():
        out.append(f"| **{name}**: {row['description']} | "
                   f"{_f(row['created_ms']['median'])} ms | {_spread(row['video_ms'])} | "
                   f"{row['ratio']:.2f} |")
    out += [
        "",
        "What was changed and what it bought: `run` checks the whole file and builds the "
        "user's processors first (nothing is billed for a file that fails), then starts the "
        "session while the rest of the pipeline is built (the builder's imports in a thread, "
        "the VAD's model); the pipeline's start then waits for that session "
        "(`HeyGenTransport.start_early`). Nothing on the wire changes, so it is on by "
        "default. What is left before the session's start is the file's checks, which load "
        "Pipecat (about a second).\n",
    ]
    turn = data["turn"]
    out += [
        "## 2. Agent-side turn latency\n",
        f"{turn['rounds']} rounds of 0.5 s silence, 1 s of speech-like audio, then silence, "
        "streamed in real time in 20 ms frames through `session.send_audio`, one session per "
        "path the user's audio can take; from the moment the last speech frame left the "
        "microphone to the `user_stop` event back at the agent. The agent side is that "
        "minus the detector's stop delay; p90 beside the median.\n",
        "| path | user_stops seen | end of speech → `user_stop` | agent side | min-max | p90 |",
        "|---|---|---|---|---|---|",
    ]
    for name, v in turn["variants"].items():
        total, side = v["end_to_user_stop_ms"], v["agent_side_ms"]
        out.append(f"| **{name}**: {v['label']} | {v['user_stops']} | "
                   f"{_f(total['median'])} ms | **{_f(side['median'])} ms** | "
                   f"{_f(side['min'])}-{_f(side['max'])} ms | {_f(side['p90'])} ms |")
    out += [
        "",
        f"The emulator's detector stop delay (its hangover: quiet this long ends a turn) is "
        f"**{_f(turn['vad_stop_delay_ms'])} ms**, the baseline; target: agent side at most "
        f"{turn['target_agent_side_ms']} ms. On the socket, the agent side is mostly the wait "
        "for the piece that holds the end of the hangover to fill (up to 32 ms with 512-sample "
        "pieces, none with one piece per 20 ms frame), then the event's way back. A room track "
        "adds WebRTC's own path (Opus packets, the emulator's jitter buffer) and the "
        "detector's 20 ms windows, which no longer line up with the frames. 512-sample "
        "pieces stay the default because HeyGen's official client sends them; smaller "
        "ones (`voice_chat_chunk_samples`) are proven only against the emulator.\n",
    ]
    lip = data["lipsync"]
    drift = lip["drift"]
    out += [
        "## 3. Lip-sync latency and drift\n",
        f"{lip['rounds']} rounds, alternating: 1 s of TTS audio (24 kHz, 20 ms frames, all at "
        "once as a TTS service delivers it), Interactive's realtime socket. **Through the "
        "transport**, as a bot embeds it: `TTSAudioRawFrame`s queued into a running "
        "pipeline `[output(), input(), probe]` (lip-sync mode) until the first non-silent "
        "`OutputAudioRawFrame` reaches the probe after `input()`. **Session**: the same audio "
        "into `session.speak_audio` (chunker, `SpeechPacer`, socket) until the first "
        "non-silent frame of the avatar's audio track. Each against its **floor**, on the "
        "same avatar and measured at the same place: the same audio sent straight to the "
        "socket in one `agent.speak` (the emulator's own delay and LiveKit's; one emulated "
        "avatar's delay differs from another's by tens of milliseconds, where its audio "
        "frames fall, so no path is compared with another avatar's floor). The transport's "
        "floor is read out of `input()` too, so what it adds is its output side (pipeline "
        "hop, chunker, `SpeechPacer`); its input side is in both figures.\n",
    ]
    out += _lipsync_table(lip)
    if "lipsync_liveavatar" in data:
        out += ["The same with LiveAvatar LITE (its WebSocket's `agent.speak`; the floor is "
                "one `agent.speak` of the whole second):\n",
                *_lipsync_table(data["lipsync_liveavatar"])]
    out += [
        f"**Drift** over one {drift['utterance_s']:g} s utterance pushed at once: the pacer "
        f"released its chunks at most {_f(drift['pacer_max_lead_ms'])} ms ahead of real time "
        f"(the rule allows 1 s of lead plus one chunk), at most "
        f"{_f(drift['pacer_max_lag_ms'])} ms behind, and the last one "
        f"{_f(drift['pacer_final_lead_ms'])} ms ahead. The avatar's audio track brought "
        f"{drift['avatar_audio_s']:g} s of speech and fell **{_f(drift['avatar_behind_ms'])} "
        f"ms** behind real time from its start to its end "
        f"(**{_f(drift['avatar_behind_ms_per_min'])} ms per minute**; negative: ahead; "
        f"target under {drift['target_ms_per_min']} ms per minute), measured as arrival "
        "time minus audio received, median of the last frames against the first.\n",
    ]
    sessions = data["sessions"]
    out += [
        "## 4. Sessions per machine\n",
        f"`agent.soak`: N sessions in one process (a fresh one for each run) against one "
        "emulator process, each "
        f"streaming audio in real time and receiving the avatar's video for "
        f"{sessions['seconds']:g} s. CPU is a percentage of one core over the streaming "
        "stretch; memory is resident (RSS) at the end. `i420`: frames kept as LiveKit "
        "decodes them; `rgb`: converted to RGB24 by LiveKit (what RGB video outputs cost); "
        "both also receive the avatar's audio, as a session that plays it does. "
        "`i420, video only`: the avatar's audio track left unsubscribed, as when nothing "
        "takes it (`HeyGenParams(audio_enabled=False)`): LiveKit neither receives, decodes "
        "nor plays it out. "
        "Frames missed come from the counters stamped on each frame; the event-loop lag is "
        "how late a 10 ms ticker woke.\n",
        "| video | N | started | agent CPU | emulator CPU | agent RSS (before the run) | "
        "emulator RSS | frames / missed | longest gap | loop lag p99 (max) | problems |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in sessions["runs"]:
        out.append(
            f"| {soak_variant(r)} | {r['sessions']} | {r['started']} | "
            f"{r['agent_cpu_percent']:.0f} % | {r['emulator_cpu_percent']:.0f} % | "
            f"{r['agent_rss_mb']:.0f} MB ({r['agent_rss_before_mb']:.0f}) | "
            f"{r['emulator_rss_mb']:.0f} MB | {r['video_frames']} / "
            f"{r['video_frames_missed']} | {r['longest_video_gap_s']:.2f} s | "
            f"{r['loop_lag_p99_ms']:.1f} ms ({r['loop_lag_max_ms']:.0f}) | "
            f"{len(r['problems'])} |")
    per_added = per_added_session(sessions["runs"])
    if per_added:
        out += ["", "Per added session: the difference between the two smallest counts that "
                "ran without problems, over the sessions added (larger counts saturate this "
                "machine: CPU stops growing with N while frames are dropped, so they would "
                "understate the cost); agent memory is what each run added.\n",
                "| video | between | agent CPU | agent RSS | emulator CPU | emulator RSS |",
                "|---|---|---|---|---|---|"]
        for decode, per in per_added.items():
            out.append(f"| {decode} | N={per['from']:g}→{per['to']:g} | "
                       f"{per['agent_cpu_percent']:.1f} % | "
                       f"{per['agent_rss_mb']:.1f} MB | {per['emulator_cpu_percent']:.1f} % | "
                       f"{per['emulator_rss_mb']:.1f} MB |")
    out += _threads(per_added, sessions["runs"])
    if any(r["problems"] for r in sessions["runs"]):
        out += ["", "Problems the runs reported (the soak's own checks):\n"]
        for r in sessions["runs"]:
            counts: dict[str, int] = {}
            for p in r["problems"]:
                kind = p.split(":")[0] if "stalled" not in p else "video stalled over 1 s"
                counts[kind] = counts.get(kind, 0) + 1
            if counts:
                what = "; ".join(f"{k} ({v})" for k, v in counts.items())
                out.append(f"- {soak_variant(r)}, N={r['sessions']}: {what}")
    out += [
        "",
        "On a 2-core machine the emulator (an encoder per avatar) and the agent compete for "
        "the same cores, so beyond a few sessions CPU saturates and both figures bend; the "
        "per-session slopes are most telling where the runs are not saturated.\n",
        "## How to run\n",
        "- `scripts/performance-report`: the full run, then this document "
        "(`docs/performance.json` beside it).",
        "- `heygen-agent bench --sessions [--latency-ms 50] [--rounds 10] "
        "[--utterance-s 60] [--counts 1,5,10,20] [--soak-s 10] [--decode both] "
        "[--json FILE]`: the same run, printing a table.",
        "- `python -m agent.performance_report FILE.json`: this document from a run's JSON.",
    ]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m agent.performance_report",
                                     description=__doc__)
    parser.add_argument("json", help="the session benchmark's JSON")
    parser.add_argument("--source", help="the JSON's name as the document cites it")
    args = parser.parse_args(argv)
    with open(args.json, encoding="utf-8") as f:
        data = json.load(f)
    sys.stdout.write(render(data, args.source or args.json))
    return 0


if __name__ == "__main__":
    sys.exit(main())
