"""Steps of one run that overlap record what the run's shared client learnt into the same rows: neither
write is refused (resources/warehouse.py SHARED_RECORDS)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import duckdb

from migration_assets.load.bulk_support import record_bulk_support


class _Client:
    """What `record_bulk_support` reads of the run's client: every answer it got so far."""

    environment_url = "https://org.crm.dynamics.com"

    def bulk_support_asked(self) -> list[Any]:
        now = time.time()
        return [
            SimpleNamespace(message=m, table=t, supported=True, asked_at=now)
            for m in ("CreateMultiple", "UpdateMultiple")
            for t in ("account", "contact", "lead", "opportunity")
        ]


def test_two_steps_recording_the_same_answers_at_once_both_succeed(tmp_path: Path) -> None:
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def step() -> None:
        mine = con.cursor()  # each step has its own connection to the warehouse
        start.wait(timeout=10)
        try:
            for _ in range(40):
                record_bulk_support(mine, _Client(), "run-1")  # type: ignore[arg-type]
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=step) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    assert con.execute("SELECT count(*) FROM loaded.bulk_message_support").fetchall() == [(8,)]
