"""The local record of sessions, written by two real processes at once.

Two ``heygen-agent run`` on one machine (the usual way to hit an account's concurrency
limit) record, forget and read the same directory at the same moments: the ledger must
lose nothing, keep nothing it was told to forget, and never read another process's file
half-written or mistake a file removed under it for an unreadable one.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from agent.heygen.ledger import SessionLedger
from tests.waiting import within

ROUNDS = 150

WRITER = """
import sys
from pathlib import Path
from loguru import logger
from agent.heygen.ledger import SessionLedger

logger.remove()
logger.add(sys.stderr, level="WARNING", format="{message}")
directory, name, rounds = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
ledger = SessionLedger(directory)
go = directory / "go"
while not go.exists():  # both start together
    pass
for i in range(rounds):
    ledger.add(f"{name}-{i}", "http://127.0.0.1:9", "fingerprint", stop_token=f"t{i}")
    if i % 2:
        ledger.remove(f"{name}-{i}")
    for record in ledger.records():  # reads what the other process is writing
        assert record.session_id.split("-")[0] in ("a", "b"), record
print("done")
"""


async def test_two_processes_record_and_forget_at_once(tmp_path: Path) -> None:
    writers = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-c", WRITER, str(tmp_path), name, str(ROUNDS),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        for name in ("a", "b")
    ]
    (tmp_path / "go").touch()
    results = [await within(w.communicate(), "a writer ended", 60) for w in writers]
    for writer, (out, err) in zip(writers, results, strict=True):
        assert writer.returncode == 0 and out.decode().strip() == "done", err.decode()[-2000:]
        assert err.decode() == "", "a record was misread:\n" + err.decode()[-2000:]
    kept = sorted(r.session_id for r in SessionLedger(tmp_path).records())
    assert kept == sorted(f"{name}-{i}" for name in ("a", "b") for i in range(0, ROUNDS, 2))
    files = list((tmp_path / "sessions").iterdir())
    assert all(f.suffix == ".json" for f in files), "a temporary file was left behind"
    for path in files:
        assert json.loads(path.read_text())["stop_token"].startswith("t")
