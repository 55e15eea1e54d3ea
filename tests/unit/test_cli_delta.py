"""`close2d365 delta`: refuses without credentials (one line, exit 2) and runs the `delta` job the way `run`
runs `migrate`; the job loads and removes records, reading Close in delta mode unless its run config says
otherwise."""

from __future__ import annotations

import pytest

from migration_assets import runtime, startup_checks
from migration_assets.cli import main
from migration_assets.definitions import build_definitions
from migration_assets.defs.jobs import DELTA_JOB, DELTA_RUN_CONFIG, DELTA_SELECTION, all_jobs
from migration_assets.resources import env


def test_delta_without_credentials_says_what_to_set(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for var in env.REAL_RUN:
        monkeypatch.delenv(var, raising=False)
    assert main(["delta"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("close2d365: set ") and env.CLOSE_API_KEY in err and err.count("\n") == 1


def test_delta_runs_the_delta_job_after_the_startup_checks(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in env.REAL_RUN:
        monkeypatch.setenv(var, "x")
    calls: list[object] = []
    monkeypatch.setattr(startup_checks, "check_before_run", lambda: calls.append("checked"))
    monkeypatch.setattr(runtime, "run_delta", lambda tags: calls.append(tags) or 0)
    assert main(["delta"]) == 0
    assert calls == ["checked", {"close2d365/mode": "delta"}]


def test_the_delta_job_loads_and_removes_with_close_read_in_delta_mode() -> None:
    job = next(j for j in all_jobs() if j.name == DELTA_JOB)
    assert job.selection == DELTA_SELECTION
    assert DELTA_RUN_CONFIG == {"ops": {"close__source_tables": {"config": {"mode": "delta"}}}}
    keys = build_definitions().resolve_job_def(DELTA_JOB).asset_layer.executable_asset_keys
    loaded = {k.path[-1] for k in keys if k.path[0] == "loaded"}
    assert {"account", "contact", "annotation", "deleted_records"} <= loaded
