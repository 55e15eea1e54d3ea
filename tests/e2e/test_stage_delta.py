"""Incremental staging (issue 13, mapping/delta_staging.py): after a delta extraction, re-staging only the
affected rows leaves the staged tables IDENTICAL (rows, values, rejected rows, notices) to a full re-staging
of the same close.* tables. On two org shapes (`tiny`), after updates, inserts, deletions and a merge-like
change (a lead's children moved to another lead, the lead deleted); annotation (notes, status changes, an
attachment added and a recording removed through their activities) and the custom activity tables too.

close._changes / close._extractions are written here in the shape the delta extraction writes them.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import duckdb
import polars as pl
import pytest
from run_graph import reviewed_mappings  # tests/ is on sys.path
from test_stage import TABLES, Env, extract, run_dry  # tests/e2e is on sys.path

from emulators.dataverse.config import DataverseEmulatorConfig
from emulators.dataverse.server import EmulatorServer
from emulators.orgdata import generate
from emulators.orgdata.shapes import DEFAULT_SHAPE, ORG_SHAPES
from migration_assets.demo import first_enabled_user
from migration_assets.mapping.delta_staging import DERIVED, STATE_TABLES
from migration_assets.resources.warehouse import WarehouseResource, fetch_polars

pytestmark = pytest.mark.e2e
SHAPES = [DEFAULT_SHAPE, next(s for s in ORG_SHAPES if s != DEFAULT_SHAPE)]
RECORD_TABLES = (
    "leads",
    "contacts",
    "opportunities",
    "calls",
    "emails",
    "email_threads",
    "tasks",
    "sms",
    "meetings",
    "notes",
    "status_changes",
    "custom_activities",
    "attachments",
    "call_recordings",
)
CHILD_TABLES = RECORD_TABLES[1:]
INCREMENTAL = TABLES  # every registry table, annotation included (the custom activity tables besides)


@pytest.fixture(scope="module", params=SHAPES)
def shape_env(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    org = generate("tiny", org=request.param)
    path = tmp_path_factory.mktemp(f"extract_{request.param}") / "extracted.duckdb"
    extract(org, path)
    with EmulatorServer(DataverseEmulatorConfig(seed_users=org.dynamics_users)) as dv:
        yield Env(org, path, dv)


def record_extractions(con: duckdb.DuckDBPyConnection, mode: str, run_id: str) -> None:
    """An extraction of every close table (full), or of the record tables (delta), after any before it."""
    con.execute(
        "CREATE TABLE IF NOT EXISTS close._extractions "
        "(table_name VARCHAR, mode VARCHAR, run_id VARCHAR, extracted_at TIMESTAMPTZ)"
    )
    con.execute(
        "CREATE TABLE IF NOT EXISTS close._changes (table_name VARCHAR, id VARCHAR, change VARCHAR, run_id VARCHAR)"
    )
    tables = con.execute("SELECT table_name FROM duckdb_tables() WHERE schema_name = 'close'").fetchall()
    # Derived tables (close/attachments, call_recordings) in full, after the activities they come from.
    for table in sorted((t for (t,) in tables), key=lambda t: t in DERIVED):
        if table.startswith("_") or (mode == "delta" and table not in RECORD_TABLES):
            continue
        con.execute(
            "INSERT INTO close._extractions (table_name, mode, run_id, extracted_at) SELECT ?, ?, ?, "
            "(SELECT coalesce(max(extracted_at), TIMESTAMPTZ '2026-01-01 00:00:00+00') + INTERVAL 1 HOUR "
            "FROM close._extractions)",
            [table, "full" if table in DERIVED else mode, run_id],
        )


def mappings_dir(tmp: Path, env: Env) -> Path:
    """The scripted review (test_stage's decisions, with this org's fallback owner)."""
    decisions = {
        "settings.yaml": {
            "truncation": {"columns": {"contact.jobtitle": "truncate"}},
            "rejection_thresholds": {"default": {"max_rows": None, "max_fraction": 0.5}},
        },
        "owners.yaml": {
            "fallback_owner": first_enabled_user(env.org.dynamics_users),
            "disabled_users": "fallback",
        },
    }
    return reviewed_mappings(tmp / "mappings", decisions, WarehouseResource(path=str(env.extracted)))


class Edits:
    """Changes made to close.* as a delta extraction would leave them, with close._changes filled in."""

    def __init__(self, con: duckdb.DuckDBPyConnection, run_id: str) -> None:
        self.con, self.run_id = con, run_id

    def ids(self, sql: str, *params: object) -> list[str]:
        return [str(r[0]) for r in self.con.execute(sql, list(params)).fetchall()]

    def changed(self, table: str, ids: list[str], change: str = "upserted") -> None:
        for i in ids:
            self.con.execute(
                "INSERT INTO close._changes VALUES (?, ?, ?, ?)", [table, i, change, self.run_id]
            )

    def patch(self, table: str, ids: list[str], values: dict[str, object]) -> None:
        """Set typed columns (when the table has them) and the same keys of `raw`."""
        cols = {r[0] for r in self.con.execute(f'DESCRIBE close."{table}"').fetchall()}
        for i in ids:
            for k, v in values.items():
                if k in cols:
                    self.con.execute(f'UPDATE close."{table}" SET "{k}" = ? WHERE id = ?', [v, i])
            if "raw" in cols:
                self.con.execute(
                    f'UPDATE close."{table}" SET raw = CAST(json_merge_patch(raw, ?) AS VARCHAR) WHERE id = ?',
                    [json.dumps(values), i],
                )
        key = "activity_id" if table in ("attachments", "call_recordings") else "id"
        if key == "id":
            self.changed(table, ids)

    def copy(self, table: str, source_id: str, new_id: str, values: dict[str, object]) -> None:
        self.con.execute(
            f'INSERT INTO close."{table}" SELECT * FROM close."{table}" WHERE id = ?', [source_id]
        )
        self.con.execute(
            f'UPDATE close."{table}" SET id = ? WHERE rowid = (SELECT max(rowid) FROM close."{table}")',
            [new_id],
        )
        self.patch(table, [new_id], {"id": new_id, **values})

    def delete(self, table: str, ids: list[str]) -> None:
        for i in ids:
            self.con.execute(f'DELETE FROM close."{table}" WHERE id = ?', [i])
        self.changed(table, ids, "deleted")


def mutate(db: Path) -> dict[str, list[str]]:
    """Updates, inserts, deletions and a merge of two leads (children moved, source lead deleted)."""
    con = duckdb.connect(str(db))
    try:
        record_extractions(con, "delta", "r1")
        e = Edits(con, "r1")
        leads = e.ids("SELECT id FROM close.leads WHERE name IS NOT NULL ORDER BY id")
        named = e.ids("SELECT name FROM close.leads WHERE name IS NOT NULL ORDER BY id")
        # Updates: a lead renamed to another lead's name (their Accounts merge); a contact's email changed to an
        # address an email of another lead was sent to (that email's party becomes the contact).
        e.patch("leads", [leads[0]], {"name": named[1], "display_name": named[1]})
        contact = e.ids("SELECT id FROM close.contacts WHERE lead_id = ? ORDER BY id", leads[2])[0]
        address = e.ids(
            "SELECT lower(json_extract_string(raw, '$.envelope.to[0].email')) FROM close.emails "
            "WHERE lead_id <> ? AND json_extract_string(raw, '$.envelope.to[0].email') IS NOT NULL ORDER BY id",
            leads[2],
        )[0]
        e.patch(
            "contacts", [contact], {"title": "Delta title", "emails": [{"email": address, "type": "office"}]}
        )
        # Inserts: a contact that becomes its lead's first contact, and a call.
        other = e.ids("SELECT id FROM close.contacts WHERE lead_id <> ? ORDER BY id", leads[3])[0]
        e.copy(
            "contacts",
            other,
            "cont_deltanew0001",
            {"lead_id": leads[3], "date_created": "2001-01-01T00:00:00+00:00"},
        )
        call = e.ids("SELECT id FROM close.calls ORDER BY id")[0]
        e.copy("calls", call, "acti_deltanewcall01", {"lead_id": leads[3], "note": "inserted by the delta"})
        annotation_and_custom_activity_edits(e, leads)
        # Deletions.
        e.delete("opportunities", e.ids("SELECT id FROM close.opportunities ORDER BY id DESC LIMIT 1"))
        e.delete("emails", e.ids("SELECT id FROM close.emails ORDER BY id DESC LIMIT 1"))
        e.delete(
            "contacts",
            e.ids("SELECT id FROM close.contacts WHERE lead_id = ? ORDER BY id DESC LIMIT 1", leads[4]),
        )
        # Merge-like: every child of one lead moved to another, the source lead deleted.
        source, destination = leads[5], leads[6]
        for table in CHILD_TABLES:
            cols = {r[0] for r in con.execute(f'DESCRIBE close."{table}"').fetchall()}
            if "lead_id" not in cols:
                continue
            key = "activity_id" if table in ("attachments", "call_recordings") else "id"
            moved = e.ids(f'SELECT DISTINCT "{key}" FROM close."{table}" WHERE lead_id = ?', source)
            con.execute(f'UPDATE close."{table}" SET lead_id = ? WHERE lead_id = ?', [destination, source])
            if "raw" in cols:
                con.execute(
                    f'UPDATE close."{table}" SET raw = CAST(json_merge_patch(raw, ?) AS VARCHAR) '
                    f'WHERE "{key}" IN (SELECT UNNEST(?))',
                    [json.dumps({"lead_id": destination}), moved],
                )
            if key == "id":
                e.changed(table, moved)
        e.delete("leads", [source])
        return {"leads": [leads[0], source, destination], "contact": [contact]}
    finally:
        con.close()


def annotation_and_custom_activity_edits(e: Edits, leads: list[str]) -> None:
    """A note edited, a status change deleted, a file attached to an email and a call's recording removed (their
    derived rows changed as the extraction re-derives them); a custom activity edited, one copied, one deleted."""
    e.patch(
        "notes", e.ids("SELECT id FROM close.notes ORDER BY id LIMIT 1"), {"note_html": "<p>Delta note</p>"}
    )
    e.delete("status_changes", e.ids("SELECT id FROM close.status_changes ORDER BY id LIMIT 1"))
    email, lead = e.con.execute("SELECT id, lead_id FROM close.emails ORDER BY id LIMIT 1").fetchone()
    file = {"url": "https://files.example/delta.pdf", "filename": "delta.pdf", "size": 1234}
    e.con.execute(
        "INSERT INTO close.attachments BY NAME SELECT ? AS activity_id, ? AS lead_id, 'Email' AS source_type, "
        "? AS url, ? AS filename, ? AS size, 'application/pdf' AS content_type, date_created AS "
        "activity_date_created FROM close.emails WHERE id = ?",
        [email, lead, file["url"], file["filename"], file["size"], email],
    )
    e.patch("emails", [email], {"subject": "Delta attachment"})
    recorded = e.ids("SELECT activity_id FROM close.call_recordings ORDER BY activity_id LIMIT 1")
    e.con.execute("DELETE FROM close.call_recordings WHERE activity_id IN (SELECT UNNEST(?))", [recorded])
    e.patch("calls", recorded, {"recording_url": ""})
    instances = e.ids("SELECT id FROM close.custom_activities ORDER BY id")
    if len(instances) >= 3:
        e.patch("custom_activities", [instances[0]], {"status": "draft"})
        e.copy("custom_activities", instances[1], "acti_deltanewcustom1", {"lead_id": leads[3]})
        e.delete("custom_activities", [instances[2]])


def staged_tables(db: Path) -> list[str]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        rows = con.execute("SELECT table_name FROM duckdb_tables() WHERE schema_name = 'staged'").fetchall()
    finally:
        con.close()
    return sorted(r[0] for r in rows if r[0] not in STATE_TABLES)


def read_sorted(db: Path, table: str) -> pl.DataFrame:
    con = duckdb.connect(str(db), read_only=True)
    try:
        frame = fetch_polars(con, f'SELECT * FROM staged."{table}"')
    finally:
        con.close()
    frame = frame.select(sorted(frame.columns))
    return frame.sort(pl.all().cast(pl.String), nulls_last=True) if frame.height else frame


def modes(result: dg.ExecuteInProcessResult) -> dict[str, tuple[str, int | None, str]]:
    out = {}
    for event in result.get_asset_materialization_events():
        mat = event.event_specific_data.materialization  # type: ignore[union-attr]
        meta = mat.metadata
        if "staging_mode" in meta:
            restaged = meta.get("restaged_rows")
            out[mat.asset_key.path[-1]] = (
                meta["staging_mode"].value,
                restaged.value if restaged else None,
                meta["full_restage_reason"].value,
            )
    return out


def test_incremental_staging_equals_full_restaging(
    shape_env: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = shape_env
    root = mappings_dir(tmp_path, env)
    incremental_db, full_db = tmp_path / "incremental.duckdb", tmp_path / "full.duckdb"
    shutil.copy(env.extracted, incremental_db)
    con = duckdb.connect(str(incremental_db))
    record_extractions(con, "full", "r0")  # as the extraction records it (the emulator's extraction may too)
    con.close()
    first = run_dry(env, incremental_db, root, monkeypatch)
    assert all(mode == "full" for mode, _, _ in modes(first).values()), modes(first)

    mutate(incremental_db)
    shutil.copy(incremental_db, full_db)
    con = duckdb.connect(str(full_db))
    for table in STATE_TABLES:  # no staging state: every table re-staged in full from the same close.*
        con.execute(f"DROP TABLE staged.{table}")
    con.close()

    delta = run_dry(env, incremental_db, root, monkeypatch)
    full = run_dry(env, full_db, root, monkeypatch)
    delta_modes, full_modes = modes(delta), modes(full)
    custom = [t for t in delta_modes if t.startswith("custom_activity_")]
    assert custom, delta_modes  # both shapes have custom activity types
    for table in (*INCREMENTAL, *custom):
        mode, restaged, _ = delta_modes[table]
        assert mode == "incremental", (table, delta_modes[table])
        assert full_modes[table][0] == "full"
        # Fewer than its rows, staged or rejected (a halted custom activity type stages none; a type may have
        # no instance in a tiny org).
        rows = read_sorted(incremental_db, table).height
        rows += read_sorted(incremental_db, f"{table}_rejected")["_close_id"].n_unique()
        assert restaged is not None and (restaged < rows or restaged == rows == 0), (table, restaged, rows)
    assert delta_modes["lead"][1] and delta_modes["account"][1] and delta_modes["phonecall"][1], delta_modes
    assert delta_modes["annotation"][1], delta_modes
    assert {c.check_name: c.passed for c in delta.get_asset_check_evaluations()} == {
        c.check_name: c.passed for c in full.get_asset_check_evaluations()
    }

    tables = staged_tables(full_db)
    assert staged_tables(incremental_db) == tables
    for table in tables:
        got, want = read_sorted(incremental_db, table), read_sorted(full_db, table)
        assert got.columns == want.columns, table
        assert got.height == want.height, (table, got.height, want.height)
        assert got.equals(want), table
