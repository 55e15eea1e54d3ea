"""`close2d365 rollback` argument handling: clear errors for an unknown run or an ambiguous selection."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from migration_assets.load.ledger import Intent, Ledger
from migration_assets.load.rollback import RollbackError, RollbackReport, _select_runs, dataverse_from_env


def test_run_selection(tmp_path: Path) -> None:
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    led = Ledger(con, "run-a")
    led.finish(led.begin([Intent("account", "x", None, "created")]))
    Ledger(con, "run-b")
    assert _select_runs(con, "run-a", False) == ["run-a"]
    assert _select_runs(con, None, True) == ["run-a", "run-b"]
    with pytest.raises(RollbackError, match="exactly one"):
        _select_runs(con, "run-a", True)
    with pytest.raises(RollbackError, match="exactly one"):
        _select_runs(con, None, False)
    with pytest.raises(RollbackError, match="'nope' is not in the ledger.*run-a, run-b"):
        _select_runs(con, "nope", False)


def test_missing_environment_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("DATAVERSE_URL", "DATAVERSE_TENANT_ID", "DATAVERSE_CLIENT_IDS", "DATAVERSE_CLIENT_SECRETS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("DATAVERSE_URL", "https://org.crm.dynamics.com")
    with pytest.raises(
        RollbackError, match="DATAVERSE_TENANT_ID, DATAVERSE_CLIENT_IDS, DATAVERSE_CLIENT_SECRETS"
    ):
        dataverse_from_env()


def test_report_renders_counts_and_failures() -> None:
    report = RollbackReport(
        "rb-1",
        ["run-a"],
        deleted=3,
        restored=1,
        failed=["delete account(x): boom"],
        per_table={"account": {"delete": 3, "restore": 1}},
    )
    text = report.render()
    assert "deleted 3" in text and "restored 1" in text and "FAILED: delete account(x): boom" in text
    assert not report.ok
