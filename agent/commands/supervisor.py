"""Runs one agent's pipeline so that nothing can keep the process from ending.

A pipeline can wedge: a processor that raises on every frame also raises on the frame
that would end it, and Pipecat then never finishes cancelling (seen: ``run`` ignored
``--for``, SIGTERM and SIGINT, burnt a core and wrote hundreds of MB of log). HeyGen
bills every minute that follows, so the rules here are:

- the first SIGINT/SIGTERM stops the HeyGen session at once (even mid-start) and ends the
  pipeline gracefully; if it has not ended within :data:`GRACE_S` of the stop, or at a
  second signal, it is abandoned: its task is cancelled and the command returns; a signal
  while the pipeline is still being built (the session already starting) stops the
  session and ends the build;
- a processor failing :data:`MAX_ERRORS` times within :data:`ERROR_WINDOW_S` ends the run
  the same way, with one line naming it;
- the session is stopped on every one of these ways out, and a stop HeyGen did not
  confirm is said with the session's id and the command that ends it;
- all of this needs the event loop, which a processor can block (``time.sleep`` in
  ``process_frame``: the loop's own signal handlers never run, and only SIGKILL ended the
  run, its session left open). So the signals are taken by a plain ``signal.signal``
  handler, which runs in the main thread between bytecodes even then; it hands the signal
  to the loop and tells a :class:`Watchdog` thread, which ends the process itself (the
  sessions stopped with blocking calls, a LiveKit server it started killed) when the loop
  has not taken a signal within :data:`ACK_S`, or at a second signal the loop has not
  taken the first of.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Coroutine, Iterator
from types import FrameType
from typing import TYPE_CHECKING, Any, TypeVar

from loguru import logger

from agent.commands import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_OK, EXIT_TERMINATED

if TYPE_CHECKING:
    from pipecat.frames.frames import ErrorFrame
    from pipecat.pipeline.worker import PipelineWorker

    from agent.heygen.transport import HeyGenTransport

T = TypeVar("T")

#: After the first signal, how long the pipeline may take to end by itself.
GRACE_S = 5.0
#: A processor failing this often, this fast, is broken, not unlucky.
MAX_ERRORS = 10
ERROR_WINDOW_S = 5.0
#: How long tasks left behind at exit are given to finish after being cancelled.
LEFTOVER_TASKS_S = 3.0

EXIT_SIGNAL = {"SIGINT": EXIT_INTERRUPTED, "SIGTERM": EXIT_TERMINATED}
#: How long the event loop has to take a signal before the watchdog ends the process.
ACK_S = 3.0
#: ... and to take either of two signals, once the second has come: two can come in one
#: instant (a double Ctrl-C, a signal to the process group) before a running loop got to
#: the first, which is no sign of a blocked one.
SECOND_SIGNAL_S = 1.0
#: The watchdog's blocking stop of one session: one attempt, this long at most.
BLOCKING_STOP_S = 5.0


class Supervisor:
    """Runs the pipeline of ``transport``'s session until it ends, a signal, a broken
    processor, or ``duration``; :meth:`run` returns the exit code, having said any failure
    in one line. Signals are handled inside :meth:`signals` (around :meth:`build` and
    :meth:`run`)."""

    def __init__(self, transport: HeyGenTransport, duration: float | None = None) -> None:
        self.transport = transport
        self.duration = duration
        self._signals: list[str] = []
        #: why the run failed, first reason first (each already one line)
        self.failures: list[str] = []
        self._requested = asyncio.Event()  # end gracefully
        self._abandon = asyncio.Event()  # stop waiting for the pipeline
        self._errors: deque[float] = deque()
        self._ending_reasons: set[str] = set()
        self._forced = False  # abandoned on a signal, not on a failure
        self.watchdog = Watchdog(self._stop_blocking)
        #: the service is this process's own (``emulator: true``): its sessions end with
        #: the process, and it cannot answer while the loop is blocked
        self.service_in_process = False
        transport.add_event_handler("on_session_ended", self._on_session_ended)

    @contextlib.contextmanager
    def signals(self) -> Iterator[None]:
        """SIGINT and SIGTERM are ours (see the module) while inside."""
        loop = asyncio.get_running_loop()

        def handle(signum: int, frame: FrameType | None) -> None:
            # The main thread, between two bytecodes: whatever the loop is doing.
            name = signal.Signals(signum).name
            self.watchdog.signalled(name)
            with contextlib.suppress(RuntimeError):  # the loop has closed
                loop.call_soon_threadsafe(self._on_signal, name)

        previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self.watchdog.disarm()  # the loop's part is over; a late signal is no sign

    async def build(self, make: Coroutine[Any, Any, T]) -> T | None:
        """``make`` (the pipeline, built while the session starts), or ``None`` if a
        signal came or the session ended first: then the transport is closed (the session
        stopped, its event handlers run) and :meth:`exit_code` says how the run ended.
        ``make``'s errors are raised, the transport left to the caller to close."""
        session = self.transport.session
        building = asyncio.create_task(make, name="build")
        ended = asyncio.create_task(session.wait_stopped())
        try:
            await _first(building, ended, self._requested.wait())
        finally:
            ended.cancel()
        if building.done():
            return building.result()
        building.cancel()
        await _settle(building)
        reason = "the session ended while the pipeline was built"
        if self._signals:
            reason = f"interrupted by {self._signals[0]}"
            self._ending_reasons.add(reason)
        await self.transport.close(reason)  # bounded by the stop's deadline
        if len(self._signals) > 1 and not self.failures:
            # as a second signal while the pipeline runs: said, the session still stopped
            self.failures.append(f"stopped at once (a second {self._signals[-1]}): "
                                 "the pipeline was still being built")
            self._forced = True
        return None

    async def run(self, worker: PipelineWorker) -> int:
        from pipecat.workers.runner import WorkerRunner

        session = self.transport.session
        worker.add_event_handler("on_pipeline_error", self._on_error)

        runner = WorkerRunner(handle_sigint=False, handle_sigterm=False)
        await runner.add_workers(worker)
        running = asyncio.create_task(runner.run(), name="pipeline")
        timer = asyncio.create_task(self._end_after(worker)) if self.duration else None
        try:
            await _first(running, self._requested.wait(), self._abandon.wait())
            if self._requested.is_set() and not running.done() and not self._abandon.is_set():
                # Stop the billed session now (it cancels a start in flight), then let the
                # pipeline end: the recorder writes its trailer, outputs close.
                reason = f"interrupted by {self._signals[0]}"
                self._ending_reasons.add(reason)
                stopping = asyncio.create_task(session.stop(reason=reason))
                ending = asyncio.create_task(runner.cancel(reason=reason))
                # The stop has its own deadline; the grace starts once it is done.
                await _first(stopping, self._abandon.wait())
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(GRACE_S):
                        await _first(running, self._abandon.wait())
                await _settle(stopping, ending)
            if not running.done():
                await self._give_up(running)
        finally:
            if timer is not None:
                timer.cancel()
        if running.done() and not running.cancelled() and running.exception() is not None:
            self.failures.append(f"the pipeline failed: {running.exception()!r}")
        return self.exit_code()

    # ------------------------------------------------------------------ ways out

    def _on_signal(self, name: str) -> None:
        self.watchdog.acknowledged()
        self._signals.append(name)
        if len(self._signals) == 1:
            logger.warning(f"{name}: stopping the session and the pipeline "
                           f"(again to stop at once)")
            self._requested.set()
        else:
            logger.warning(f"{name} again: stopping at once")
            self._abandon.set()

    async def _on_error(self, worker: object, frame: ErrorFrame) -> None:
        now = asyncio.get_running_loop().time()
        self._errors.append(now)
        while now - self._errors[0] > ERROR_WINDOW_S:
            self._errors.popleft()
        if len(self._errors) >= MAX_ERRORS and not self._abandon.is_set():
            who = frame.processor.name if frame.processor is not None else "a processor"
            self.failures.append(f"{who} failed {len(self._errors)} times within "
                                 f"{ERROR_WINDOW_S:g} s (last: {frame.error}); run stopped")
            self._abandon.set()

    async def _on_session_ended(self, transport: object, reason: str) -> None:
        # Ended by the pipeline (End/CancelFrame) or by us: not a failure.
        if not reason.startswith("pipeline") and reason not in self._ending_reasons:
            self.failures.append(f"the HeyGen session ended: {reason}")

    async def _end_after(self, worker: PipelineWorker) -> None:
        from pipecat.frames.frames import EndFrame

        assert self.duration is not None
        await asyncio.sleep(self.duration)
        await worker.queue_frame(EndFrame())

    async def _give_up(self, running: asyncio.Task[Any]) -> None:
        """The pipeline did not end: stop the session ourselves and leave the rest."""
        session = self.transport.session
        why = "abandoned: the pipeline did not end"
        if self._signals and not self.failures:
            count = "a second" if len(self._signals) > 1 else f"{GRACE_S:g} s after the"
            self.failures.append(f"stopped at once ({count} {self._signals[-1]}): "
                                 f"the pipeline did not end")
            self._forced = True
        self._ending_reasons.add(why)
        await _settle(asyncio.create_task(session.stop(reason=why)))
        running.cancel()
        with contextlib.suppress(TimeoutError, asyncio.CancelledError, Exception):
            async with asyncio.timeout(LEFTOVER_TASKS_S):
                await running

    def _stop_blocking(self) -> list[str]:
        """From the watchdog's thread, the loop blocked: stop this process's open sessions
        with blocking calls (the ledger knows them; the client still holds the key).
        Returns a line for each that may still be open."""
        from agent.heygen.api import HeyGenError, SessionStateError
        from agent.heygen.backend import SessionState
        from agent.heygen.ledger import Record, SessionLedger

        if self.service_in_process:
            return []
        client, session = self.transport.client, self.transport.session
        records = {r.session_id: r for r in SessionLedger().records()
                   if r.pid == os.getpid() and r.key == client.key_fingerprint}
        if session.session_id is not None and session.session_id not in records \
                and session.state is not SessionState.STOPPED:
            # not recorded (records turned off): the id and the key are enough
            records[session.session_id] = Record(session.session_id, client.base_url,
                                                 client.key_fingerprint, os.getpid(), "", 0.0)
        left = []
        for record in records.values():
            try:
                client.stop_blocking(record, BLOCKING_STOP_S)
            except SessionStateError:
                pass  # it had ended
            except HeyGenError as exc:
                left.append(f"HeyGen session {record.session_id} may still be open (billed): "
                            f"{exc}; end it with: {session.end_command}")
                continue
            SessionLedger().remove(record.session_id)
            logger.info(f"HeyGen session {record.session_id} stopped (by the watchdog)")
        return left

    def exit_code(self) -> int:
        """Say why the run failed (its first cause, and a session left open, each one
        line) and return the exit code."""
        session = self.transport.session
        said = self.failures[:1]  # the first cause; what followed came of it
        if session.stop_error is not None:
            said.append(f"HeyGen session {session.session_id} may still be open (billed): "
                        f"{session.stop_error}; end it with: {session.end_command}")
        elif session.session_id is None and not self._signals and not said:
            said.append("the HeyGen session ended: not started")
        for line in said:
            print(f"heygen-agent: {line}", file=sys.stderr)
        if not said:
            return EXIT_OK
        if self._forced and len(self.failures) == 1 and session.stop_error is None:
            return EXIT_SIGNAL.get(self._signals[-1], EXIT_ERROR)
        return EXIT_ERROR


class Watchdog:
    """Ends the process when its event loop does not take a signal (see the module).

    :meth:`signalled` is called by the signal handler, :meth:`acknowledged` by the loop
    once it has the signal. The thread starts at the first signal; when the loop has not
    taken a signal within :data:`ACK_S` (or either of two signals within
    :data:`SECOND_SIGNAL_S` of the second), it calls ``stop_sessions``, then each of
    :meth:`at_exit`'s callables (a child process that would outlive us), says why in one
    line and leaves with the signal's exit code (1 if a session may still be open)."""

    def __init__(self, stop_sessions: Callable[[], list[str]]) -> None:
        self._stop_sessions = stop_sessions
        self._cleanups: list[Callable[[], None]] = []
        self._condition = threading.Condition()
        self._signals: list[tuple[str, float]] = []
        self._acknowledged = 0
        self._disarmed = False
        self._thread: threading.Thread | None = None

    def at_exit(self, cleanup: Callable[[], None]) -> None:
        self._cleanups.append(cleanup)

    def signalled(self, name: str) -> None:
        with self._condition:
            self._signals.append((name, time.monotonic()))
            self._condition.notify()
        if self._thread is None:
            self._thread = threading.Thread(target=self._watch, name="signal-watchdog",
                                            daemon=True)
            self._thread.start()

    def acknowledged(self) -> None:
        with self._condition:
            self._acknowledged += 1
            self._condition.notify()

    def disarm(self) -> None:
        """The supervised part of the run is over: end nothing from now on."""
        with self._condition:
            self._disarmed = True
            self._condition.notify()

    def _watch(self) -> None:
        with self._condition:
            while not self._disarmed:
                pending = self._signals[self._acknowledged:]
                if not pending:
                    self._condition.wait()
                    continue
                name, at = pending[0]
                now = time.monotonic()
                if self._acknowledged == 0 and len(pending) > 1:
                    second, second_at = pending[1]
                    if now >= second_at + SECOND_SIGNAL_S:
                        why = f"a second {second} and the event loop had not taken the first"
                        name = second
                        break
                    left = min(at + ACK_S, second_at + SECOND_SIGNAL_S) - now
                else:
                    left = at + ACK_S - now
                if left <= 0:
                    why = f"the event loop did not answer {name} within {ACK_S:g} s"
                    break
                self._condition.wait(left)
            else:
                return
        self._end(why, name)

    def _end(self, why: str, name: str) -> None:
        print(f"heygen-agent: {why} (something blocks it: a processor's blocking call?); "
              "stopping the session without it", file=sys.stderr, flush=True)
        try:
            left = self._stop_sessions()
        except Exception as exc:  # the process ends whatever happens here
            left = [f"the session could not be stopped: {exc!r}"]
        for cleanup in self._cleanups:
            with contextlib.suppress(Exception):
                cleanup()
        print(f"heygen-agent: stopped at once: {why}", file=sys.stderr)
        for line in left:
            print(f"heygen-agent: {line}", file=sys.stderr)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(EXIT_ERROR if left else EXIT_SIGNAL.get(name, EXIT_ERROR))


async def _first(*waits: Coroutine[Any, Any, Any] | asyncio.Task[Any]) -> None:
    """Wait until the first of ``waits`` is done; the others (coroutines made here) are
    cancelled, tasks given are left running."""
    tasks = [w if isinstance(w, asyncio.Task) else asyncio.ensure_future(w) for w in waits]
    made = [t for t, w in zip(tasks, waits, strict=True) if t is not w]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in made:
            task.cancel()


async def _settle(*tasks: asyncio.Task[Any]) -> None:
    """Wait for ``tasks`` (session stops are bounded by their own deadline); their errors
    were logged where they happened."""
    await asyncio.gather(*tasks, return_exceptions=True)


def run_bounded(main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """``asyncio.run``, except that tasks left behind get :data:`LEFTOVER_TASKS_S` to
    finish after being cancelled, instead of as long as they like (a task that swallows
    its cancellation would otherwise keep the process alive for ever)."""
    loop = asyncio.new_event_loop()
    try:
        result = loop.run_until_complete(main())
        leftovers = asyncio.all_tasks(loop)
        for task in leftovers:
            task.cancel()
        if leftovers:
            loop.run_until_complete(asyncio.wait(leftovers, timeout=LEFTOVER_TASKS_S))
        loop.run_until_complete(
            asyncio.wait_for(loop.shutdown_asyncgens(), LEFTOVER_TASKS_S))
        return result
    finally:
        loop.close()

