"""Every close/* asset materialized through Dagster against the Close emulator, API path and export path.

Row counts must equal the generated org's truth, every source check must pass, and the two paths must
produce identical tables (same rows, same values, same order).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl
import pytest

from emulators.close.server import CloseEmulatorServer
from emulators.orgdata import CloseOrg, generate
from migration_assets.defs import close as close_defs
from migration_assets.extract.tables import TABLES
from migration_assets.resources.close import CloseResource
from migration_assets.resources.warehouse import WarehouseResource

pytestmark = pytest.mark.e2e

ASSETS = dg.load_assets_from_package_module(close_defs)
CHECKS = dg.load_asset_checks_from_package_module(close_defs)


@pytest.fixture(scope="module")
def tiny() -> Iterator[tuple[CloseOrg, CloseEmulatorServer]]:
    org = generate("tiny")
    with CloseEmulatorServer(org) as server:
        yield org, server


def extract(
    org: CloseOrg, server: CloseEmulatorServer, path: Path, source: str, **kw: Any
) -> dg.ExecuteInProcessResult:
    close = CloseResource(api_key=org.api_key, base_url=server.base_url, source=source, **kw)  # type: ignore[arg-type]
    return dg.materialize(
        [*ASSETS, *CHECKS],
        resources={"close": close, "warehouse": WarehouseResource(path=str(path))},
        raise_on_error=False,
    )


def tables(path: Path, names: Sequence[str] = tuple(TABLES)) -> dict[str, pl.DataFrame]:
    """The tables' contents in one order (a delta's merge appends the rows it re-read: the physical order
    of a table is not part of its content)."""
    wh = WarehouseResource(path=str(path))
    return {t: wh.read(f"SELECT * FROM close.{t} ORDER BY ALL") for t in names}


def assert_counts_and_checks(result: dg.ExecuteInProcessResult, org: CloseOrg, path: Path) -> None:
    assert result.success
    counts = {t: df.height for t, df in tables(path).items()}
    assert counts == org.truth["counts"]
    evaluations = result.get_asset_check_evaluations()
    assert len(evaluations) == sum(len(list(c.check_keys)) for c in CHECKS)
    failed = [
        (e.asset_key.to_user_string(), e.check_name, e.description) for e in evaluations if not e.passed
    ]
    assert failed == []
    meta = {
        m.asset_key.to_user_string(): m.metadata
        for m in (e.event_specific_data.materialization for e in result.get_asset_materialization_events())
    }
    assert meta["close/leads"]["dagster/row_count"].value == org.truth["counts"]["leads"]
    assert meta["close/calls"]["watermark"].value


def test_api_and_export_paths_produce_identical_tables(
    tiny: tuple[CloseOrg, CloseEmulatorServer], tmp_path: Path
) -> None:
    org, server = tiny
    api = extract(org, server, tmp_path / "api.duckdb", "api")
    assert_counts_and_checks(api, org, tmp_path / "api.duckdb")
    export = extract(org, server, tmp_path / "export.duckdb", "export")
    assert_counts_and_checks(export, org, tmp_path / "export.duckdb")
    a, b = tables(tmp_path / "api.duckdb"), tables(tmp_path / "export.duckdb")
    for name in TABLES:
        assert a[name].equals(b[name]), name
        # DuckDB hands TIMESTAMPTZ back as Etc/UTC; same instant type as the declared UTC.
        read_back = {
            c: (pl.Datetime("us", "UTC") if isinstance(t, pl.Datetime) else t)
            for c, t in a[name].schema.items()
        }
        assert read_back == TABLES[name].schema, name
    # Ids are exactly the org's: nothing lost, nothing invented.
    assert set(a["leads"]["id"]) == {lead["id"] for lead in org.leads}
    assert set(a["calls"]["id"]) == {x["id"] for x in org.activities if x["_type"] == "Call"}
    assert set(a["tasks"]["id"]) == {t["id"] for t in org.tasks}


def test_file_source_reads_an_export_on_disk(
    tiny: tuple[CloseOrg, CloseEmulatorServer], tmp_path: Path
) -> None:
    org, server = tiny
    client = CloseResource(api_key=org.api_key, base_url=server.base_url).get_client()
    export_file = client.download_export(tmp_path / "leads.json.gz")
    result = extract(org, server, tmp_path / "file.duckdb", "file", export_file=str(export_file))
    assert_counts_and_checks(result, org, tmp_path / "file.duckdb")


def test_wrong_key_fails_with_clear_message(
    tiny: tuple[CloseOrg, CloseEmulatorServer], tmp_path: Path
) -> None:
    org, server = tiny
    close = CloseResource(api_key="api_wrongkey", base_url=server.base_url)
    result = dg.materialize(
        ASSETS,
        selection=["close/users"],
        resources={"close": close, "warehouse": WarehouseResource(path=str(tmp_path / "w.duckdb"))},
        raise_on_error=False,
    )
    assert not result.success
    failure = result.get_step_failure_events()[0].step_failure_data.error
    assert failure is not None and "Close rejected the API key (401)" in failure.message
    assert "api_wrongkey" not in failure.message


def test_demo_size_counts(tmp_path: Path) -> None:
    org = generate("demo")
    started = time.monotonic()
    with CloseEmulatorServer(org) as server:
        result = extract(org, server, tmp_path / "demo.duckdb", "api")
    assert_counts_and_checks(result, org, tmp_path / "demo.duckdb")
    print(f"demo extraction: {time.monotonic() - started:.1f} s")


def test_delta_rereads_changes_and_applies_deletions(
    tiny: tuple[CloseOrg, CloseEmulatorServer], tmp_path: Path
) -> None:
    org, server = tiny
    path = tmp_path / "delta.duckdb"
    # Three tables of the one close/* multi_asset (a subset of its step).
    selected = [f"close/{t}" for t in ("leads", "notes", "tasks")]
    resources = {
        "close": CloseResource(api_key=org.api_key, base_url=server.base_url),
        "warehouse": WarehouseResource(path=str(path)),
    }
    assert dg.materialize(ASSETS, resources=resources, selection=selected).success
    full = tables(path, ("leads", "notes", "tasks"))
    # Rows Close has deleted since the last extraction (the event log says so): plant them.
    deleted_lead = next(
        e["object_id"] for e in org.events if e["object_type"] == "lead" and e["action"] == "deleted"
    )
    deleted_note = next(
        e["object_id"] for e in org.events if e["object_type"] == "activity.note" and e["action"] == "deleted"
    )
    wh = WarehouseResource(path=str(path))
    with wh.connect() as con:
        con.execute("INSERT INTO close.leads (id, raw) VALUES (?, '{}')", [deleted_lead])
        con.execute(
            "INSERT INTO close.notes (id, lead_id, raw) VALUES (?, ?, '{}')",
            [deleted_note, org.leads[0]["id"]],
        )
        con.execute(
            "INSERT INTO close.tasks (id, lead_id, raw) VALUES ('task_orphan', ?, '{}')", [deleted_lead]
        )
    since = sorted(x["date_updated"] for x in org.leads)[len(org.leads) // 2]
    run_config = {"ops": {"close__source_tables": {"config": {"mode": "delta", "since": since}}}}
    result = dg.materialize(ASSETS, resources=resources, selection=selected, run_config=run_config)
    assert result.success
    after = tables(path, ("leads", "notes", "tasks"))
    for name in ("leads", "notes", "tasks"):
        assert after[name].equals(full[name]), (
            name
        )  # changes re-read, deletions (and a deleted lead's children) gone
    meta = {
        e.event_specific_data.materialization.asset_key.path[
            -1
        ]: e.event_specific_data.materialization.metadata
        for e in result.get_asset_materialization_events()
    }
    assert meta["leads"]["mode"].value == "delta"
    assert 0 < meta["leads"]["delta_rows"].value < len(org.leads)
    assert meta["leads"]["rows_removed"].value >= 1 and meta["tasks"]["rows_removed"].value >= 1


@pytest.mark.parametrize("workers", [0, 2])
def test_an_export_line_that_is_not_text_is_quarantined_not_the_whole_file(
    tiny: tuple[CloseOrg, CloseEmulatorServer], tmp_path: Path, workers: int
) -> None:
    """One lead line with a byte that is not UTF-8 and one with a lone surrogate escape: every other lead
    is extracted, and close/leads' records_readable lists both lines (with their lead ids) and fails."""
    import gzip

    org, server = tiny
    client = CloseResource(api_key=org.api_key, base_url=server.base_url).get_client()
    lines = gzip.decompress(client.download_export(tmp_path / "leads.json.gz").read_bytes()).splitlines()
    broken = {
        0: lines[0].replace(b'"name":"', b'"name":"\xff', 1),
        1: lines[1].replace(b'"name":"', b'"name":"\\ud800', 1),
    }
    assert all(broken[i] != lines[i] for i in broken)
    export = tmp_path / "broken.jsonl"
    export.write_bytes(b"\n".join(broken.get(i, line) for i, line in enumerate(lines)) + b"\n")
    path = tmp_path / f"q{workers}.duckdb"
    result = extract(org, server, path, "file", export_file=str(export), export_split_workers=workers)
    leads = tables(path, ["leads"])["leads"]
    assert leads.height == len(lines) - 2  # the rest of the export is read
    failed = {
        (e.asset_key.path[1], e.check_name): e for e in result.get_asset_check_evaluations() if not e.passed
    }
    assert set(failed) == {("leads", "records_readable")}, set(failed)
    listed = WarehouseResource(path=str(path)).read(
        "SELECT id, line, reason FROM close_quality.export_quarantine ORDER BY line"
    )
    assert listed["line"].to_list() == ["line 1", "line 2"]
    assert listed["id"].to_list() == [
        lines[0].split(b'"id":"')[1].split(b'"')[0].decode(),
        lines[1].split(b'"id":"')[1].split(b'"')[0].decode(),
    ]
    assert "not valid UTF-8" in listed["reason"][0] and "surrogate" in listed["reason"][1]
