"""The signal watchdog of ``run`` (agent/commands/supervisor.py), by itself: it must end a
process whose event loop does not take a signal, and nothing else. Its way out is
``os._exit``, so here its ending is recorded instead."""

from __future__ import annotations

import threading
import time

import pytest

from agent.commands import supervisor
from agent.commands.supervisor import Watchdog


class Ended(Watchdog):
    def __init__(self) -> None:
        super().__init__(lambda: [])
        self.ended = threading.Event()
        self.why = ""

    def _end(self, why: str, name: str) -> None:
        self.why = why
        self.ended.set()


@pytest.fixture(autouse=True)
def short_waits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(supervisor, "ACK_S", 0.3)
    monkeypatch.setattr(supervisor, "SECOND_SIGNAL_S", 0.3)


def test_a_loop_that_takes_no_signal_is_ended() -> None:
    dog = Ended()
    dog.signalled("SIGTERM")
    assert dog.ended.wait(10), "the watchdog never ended a loop that took no signal"
    assert "did not answer SIGTERM" in dog.why


def test_two_signals_at_once_are_not_taken_for_a_blocked_loop() -> None:
    """A double Ctrl-C (or a signal to the whole process group) brings both signals before
    the loop has run at all: that is no blocked loop (it ended pytest's worker, as
    ``os._exit``, when the watchdog took it for one)."""
    dog = Ended()
    dog.signalled("SIGINT")
    dog.signalled("SIGINT")
    time.sleep(0.1)  # the loop gets to its callbacks a moment later
    dog.acknowledged()
    dog.acknowledged()
    # A bounded window in which nothing may happen (no event to wait for).
    assert not dog.ended.wait(1.0), dog.why


def test_a_second_signal_to_a_blocked_loop_ends_it_soon(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A second signal ends it well before the first one's wait is over."""
    monkeypatch.setattr(supervisor, "ACK_S", 30.0)
    dog = Ended()
    dog.signalled("SIGINT")
    dog.signalled("SIGINT")
    assert dog.ended.wait(10)
    assert "a second SIGINT" in dog.why


def test_a_disarmed_watchdog_ends_nothing() -> None:
    """Once ``run`` is out of its supervision (the loop done), a signal whose callback the
    loop never ran is no reason to end the process."""
    dog = Ended()
    dog.signalled("SIGTERM")
    dog.disarm()
    assert not dog.ended.wait(1.0), dog.why
