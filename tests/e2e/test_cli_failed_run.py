"""A failed `close2d365 run` prints its own outcome, never the reports an earlier run left (the newest
reconciliation by file time once described a successful earlier run: "ok, loaded 484" although nothing
loaded)."""

from __future__ import annotations

import csv
import os
import time
from pathlib import Path

import pytest

from emulators.dataverse.config import DataverseEmulatorConfig
from emulators.dataverse.server import EmulatorServer
from migration_assets.audit.reconciliation import RECON_COLUMNS
from migration_assets.cli import main
from migration_assets.demo import demo_dataverse_env
from migration_assets.runtime import instance

pytestmark = pytest.mark.e2e

EARLIER_RUN = "earlier-successful-run"
EARLIER_STATUS = "ok, loaded 484"


def _earlier_reports(home: Path) -> Path:
    """The reconciliation an earlier successful run left, newer by file time than anything this run writes."""
    folder = home / "reports" / EARLIER_RUN
    folder.mkdir(parents=True)
    path = folder / "reconciliation.csv"
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, RECON_COLUMNS)
        writer.writeheader()
        for table in ("account", "contact"):
            writer.writerow({c: "484" for c in RECON_COLUMNS} | {"table": table, "status": EARLIER_STATUS})
    future = time.time() + 3600
    os.utime(path, (future, future))
    return path


def test_a_failed_run_prints_only_its_own_outcome(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], isolated_home: Path
) -> None:
    earlier = _earlier_reports(isolated_home)
    export = tmp_path / "close_export.json"
    export.write_text("[]\n", encoding="utf-8")
    # A warehouse that is not a DuckDB file passes the start-up checks and fails the run as it starts.
    warehouse = tmp_path / "warehouse.duckdb"
    warehouse.write_text("this is not a DuckDB database\n", encoding="utf-8")
    with EmulatorServer(DataverseEmulatorConfig()) as dv:
        for key, value in {
            **demo_dataverse_env(dv),
            "CLOSE_API_KEY": "api_unused_by_the_file_source",
            "CLOSE2D365_CLOSE_SOURCE": "file",
            "CLOSE2D365_EXPORT_FILE": str(export),
            "CLOSE2D365_WAREHOUSE": str(warehouse),
        }.items():
            monkeypatch.setenv(key, value)
        status = main(["run"])
    out, err = capsys.readouterr()
    assert status == 2, out + err
    (record,) = instance().get_run_records()
    run_id = record.dagster_run.run_id
    assert f"run {run_id}: FAILED" in err and str(warehouse) in err, err
    assert f"run {run_id} wrote no reconciliation report" in out, out
    printed = out + err
    assert EARLIER_RUN not in printed and str(earlier.parent) not in printed
    assert EARLIER_STATUS not in printed
