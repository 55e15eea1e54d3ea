"""Progress of the long steps (extraction per object, staging per table, load per table, attachment
transfer): records done of total, rate and ETA.

A step reports through `StepProgress`: Dagster log lines (the run's log in the UI) at most every
LOG_EVERY_SECONDS and one at the end, and the step's figures for its materialization metadata. When the
command line runs the job in this process it installs a `ConsoleProgress`, which shows the same figures on
the terminal: one line rewritten in place on a TTY, plain lines otherwise; a heartbeat names the running
step and its last figures whenever nothing was shown for `interval` seconds (5 on a TTY, 30 otherwise), so
a quiet terminal always means a stuck process, never a busy one.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TextIO

from dagster._core.errors import DagsterExecutionInterruptedError
from dagster._utils.interrupts import check_captured_interrupt

LOG_EVERY_SECONDS = 5.0
TTY_INTERVAL, PLAIN_INTERVAL = 5.0, 30.0
TTY_REFRESH = 0.2  # a TTY line is rewritten at most this often (a loop of small batches would flicker)
Clock = Callable[[], float]


def _duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


@dataclass(frozen=True)
class Figures:
    """Where one step stands."""

    step: str
    done: int
    total: int | None
    unit: str
    elapsed: float

    @property
    def rate(self) -> float:
        return self.done / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def eta(self) -> float | None:
        if not self.total or self.done >= self.total or self.rate <= 0:
            return None
        return (self.total - self.done) / self.rate

    def line(self, finished: bool = False) -> str:
        of = (
            f"{self.done:,} of {self.total:,} {self.unit}"
            if self.total is not None
            else f"{self.done:,} {self.unit}"
        )
        share = f" ({self.done / self.total:.0%})" if self.total else ""
        rate = f", {self.rate:,.0f}/s" if self.elapsed > 0 and self.done else ""
        if finished:
            took = f" in {_duration(self.elapsed)}" if self.elapsed > 0 else ""
            return f"{self.step}: {of}{took}{rate}"
        eta = f", ETA {_duration(self.eta)}" if self.eta is not None else ""
        return f"{self.step}: {of}{share}{rate}{eta}"


class ConsoleProgress:
    """The terminal side: shows each step's figures and a heartbeat when nothing else was shown."""

    def __init__(self, stream: TextIO, tty: bool | None = None, clock: Clock = time.monotonic) -> None:
        self.stream = stream
        self.tty = stream.isatty() if tty is None else tty
        self.interval = TTY_INTERVAL if self.tty else PLAIN_INTERVAL
        self.clock = clock
        self._lock = threading.Lock()
        self._last_shown = clock()
        self._started = clock()
        self._current: Figures | None = None
        self._open_line = False  # a TTY line waiting to be rewritten

    def _write(self, text: str, final: bool) -> None:
        if self.tty:
            # Rewrite the line in place; a finished step keeps its line and the next starts below it.
            self.stream.write("\r\x1b[2K" + text + ("\n" if final else ""))
            self._open_line = not final
        else:
            self.stream.write(text + "\n")
        self.stream.flush()
        self._last_shown = self.clock()

    def update(self, figures: Figures, finished: bool = False) -> None:
        with self._lock:
            self._current = None if finished else figures
            quiet_for = self.clock() - self._last_shown
            if finished or quiet_for >= (TTY_REFRESH if self.tty else self.interval):
                self._write("  " + figures.line(finished), final=finished)

    def tick(self) -> None:
        """The heartbeat: called often by the ticker thread; shows a line when `interval` passed silently."""
        with self._lock:
            now = self.clock()
            if now - self._last_shown < self.interval:
                return
            running = f"{_duration(now - self._started)} elapsed"
            text = (
                f"  … {self._current.line()} ({running})"
                if self._current
                else f"  … still running ({running})"
            )
            self._write(text, final=not self.tty)

    def close(self) -> None:
        with self._lock:
            if self._open_line:
                self.stream.write("\n")
                self.stream.flush()
                self._open_line = False


_console: ConsoleProgress | None = None


@contextmanager
def console_progress(stream: TextIO, tty: bool | None = None) -> Iterator[ConsoleProgress]:
    """Show the progress of the steps run in this process on `stream` until the block ends."""
    global _console
    console = ConsoleProgress(stream, tty)
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(0.5):
            console.tick()

    ticker = threading.Thread(target=beat, name="close2d365-progress", daemon=True)
    previous, _console = _console, console
    ticker.start()
    try:
        yield console
    finally:
        stop.set()
        ticker.join()
        _console = previous
        console.close()


def show_finished(step: str, done: int, total: int | None, unit: str = "records") -> None:
    """A step that works in one pass (no running count): its final figures on the console, if one is shown
    (its materialization metadata carries the same counts to the UI)."""
    if _console is not None:
        _console.update(Figures(step, done, total, unit, 0.0), finished=True)


@dataclass
class StepProgress:
    """Records done of `total` in one step (None: unknown until the end); `log` is the step's
    `context.log.info` (or any callable taking a line)."""

    step: str
    total: int | None
    log: Callable[[str], Any] | None = None
    unit: str = "records"
    clock: Clock = time.monotonic
    done: int = 0
    _started: float = field(init=False)
    _last_logged: float = field(init=False)

    def __post_init__(self) -> None:
        self._started = self._last_logged = self.clock()

    def figures(self) -> Figures:
        return Figures(self.step, self.done, self.total, self.unit, self.clock() - self._started)

    def advance(self, records: int) -> None:
        self.advance_to(self.done + records)

    def advance_to(self, done: int) -> None:
        """The running total, for callers that count it themselves. Raises DagsterExecutionInterruptedError
        once the run was interrupted (Ctrl-C, SIGTERM): the signal reaches the run's thread, and a step
        running in another (step_threads.py) stops here, between two chunks of its work, which the ledger
        and the staging state leave resumable."""
        if check_captured_interrupt():
            raise DagsterExecutionInterruptedError(f"{self.step}: interrupted after {done:,} {self.unit}")
        self.done = done
        figures = self.figures()
        if self.log is not None and self.clock() - self._last_logged >= LOG_EVERY_SECONDS:
            self.log(figures.line())
            self._last_logged = self.clock()
        if _console is not None:
            _console.update(figures)

    def finish(self) -> dict[str, Any]:
        """The last line, and the figures for the step's materialization metadata."""
        figures = self.figures()
        if self.log is not None:
            self.log(figures.line(finished=True))
        if _console is not None:
            _console.update(figures, finished=True)
        return {
            f"{self.unit}_done": figures.done,
            "duration_seconds": round(figures.elapsed, 2),
            f"{self.unit}_per_second": round(figures.rate, 1),
        }
