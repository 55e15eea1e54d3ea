"""Progress lines: figures (done of total, rate, ETA), the console's TTY and plain modes, the heartbeat
when nothing was shown for the interval, and the step's log lines. A fake clock: no test waits."""

from __future__ import annotations

import io

import pytest

from migration_assets.resources import progress as p


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def test_figures_give_share_rate_and_eta() -> None:
    f = p.Figures("loaded/contact", 3000, 12000, "records", 10.0)
    assert f.line() == "loaded/contact: 3,000 of 12,000 records (25%), 300/s, ETA 0:30"
    assert p.Figures("close/leads", 500, None, "records", 2.0).line() == "close/leads: 500 records, 250/s"
    done = p.Figures("loaded/contact", 12000, 12000, "records", 3725.0)
    assert done.line(finished=True) == "loaded/contact: 12,000 of 12,000 records in 1:02:05, 3/s"


def test_plain_console_shows_a_line_per_interval_and_every_finish(clock: Clock) -> None:
    out = io.StringIO()
    console = p.ConsoleProgress(out, tty=False, clock=clock)
    step = p.StepProgress("loaded/lead", 100, clock=clock)
    p._console = console
    try:
        step.advance(10)
        assert out.getvalue() == "", "a plain console stays quiet within its interval"
        clock.now += p.PLAIN_INTERVAL
        step.advance(10)
        assert out.getvalue().splitlines() == ["  loaded/lead: 20 of 100 records (20%), 1/s, ETA 2:00"]
        step.advance(80)
        step.finish()
        assert out.getvalue().splitlines()[-1] == "  loaded/lead: 100 of 100 records in 0:30, 3/s"
    finally:
        p._console = None


def test_heartbeat_names_the_running_step_when_nothing_was_shown(clock: Clock) -> None:
    out = io.StringIO()
    console = p.ConsoleProgress(out, tty=False, clock=clock)
    console.tick()
    assert out.getvalue() == ""
    clock.now += p.PLAIN_INTERVAL
    console.tick()
    assert out.getvalue().strip() == "… still running (0:30 elapsed)"
    console.update(p.Figures("staged/email", 5, 10, "records", 1.0))
    clock.now += p.PLAIN_INTERVAL - 0.1
    console.tick()
    assert len(out.getvalue().splitlines()) == 1, "within the interval of the last line: nothing shown"
    clock.now += 0.1
    console.tick()
    assert out.getvalue().splitlines()[-1].startswith("  … staged/email: 5 of 10 records (50%)")


def test_tty_console_rewrites_one_line_and_beats_every_five_seconds(clock: Clock) -> None:
    out = io.StringIO()
    console = p.ConsoleProgress(out, tty=True, clock=clock)
    assert console.interval == p.TTY_INTERVAL == 5.0
    clock.now += 1
    console.update(p.Figures("close/leads", 200, 1000, "records", 1.0))
    assert out.getvalue() == "\r\x1b[2K  close/leads: 200 of 1,000 records (20%), 200/s, ETA 0:04"
    clock.now += p.TTY_INTERVAL
    console.tick()
    assert out.getvalue().endswith("(0:06 elapsed)") and "\n" not in out.getvalue()
    console.update(p.Figures("close/leads", 1000, 1000, "records", 5.0), finished=True)
    assert out.getvalue().endswith("close/leads: 1,000 of 1,000 records in 0:05, 200/s\n")


def test_step_logs_at_most_every_few_seconds_and_returns_its_figures(clock: Clock) -> None:
    logged: list[str] = []
    step = p.StepProgress("staged/lead", 50, log=logged.append, clock=clock)
    step.advance(10)
    assert logged == []
    clock.now += p.LOG_EVERY_SECONDS
    step.advance(10)
    assert logged == ["staged/lead: 20 of 50 records (40%), 4/s, ETA 0:08"]
    clock.now += 1
    meta = step.finish()
    assert logged[-1] == "staged/lead: 20 of 50 records in 0:06, 3/s"
    assert meta == {"records_done": 20, "duration_seconds": 6.0, "records_per_second": 3.3}


def test_console_progress_installs_and_removes_the_console() -> None:
    out = io.StringIO()
    with p.console_progress(out, tty=False):
        assert p._console is not None
        p.StepProgress("close/users", 3).finish()
    assert p._console is None
    assert "close/users: 0 of 3 records in 0:00" in out.getvalue()


def test_a_one_pass_step_shows_its_final_count_without_a_duration() -> None:
    out = io.StringIO()
    with p.console_progress(out, tty=False):
        p.show_finished("staged/lead", 48, 50, unit="rows staged")
    assert out.getvalue() == "  staged/lead: 48 of 50 rows staged\n"
    p.show_finished("staged/lead", 1, 1)  # no console installed: nothing to show, nothing raised
