"""The schema plan's fingerprint and the reuse decision of a delta run (target/plan_reuse.py), the preflight's
carried-over metadata reads (target/preflight_state.py) and the refresh of the staging metadata cache after a
deploy (target/metadata_cache.py `refresh_tables`)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import duckdb
import pytest

from migration_assets.clients.dataverse.metadata import AttributeMeta, EntityMeta
from migration_assets.load.ledger import SchemaLedger
from migration_assets.target import preflight as pf
from migration_assets.target.deploy import load_plan, save_plan
from migration_assets.target.metadata_cache import cache_fresh, refresh_tables
from migration_assets.target.plan_reuse import (
    DEPLOY_STEPS,
    decide,
    mark_reused,
    plan_fingerprint,
    reused_in_run,
    step_completed,
    step_started,
)
from migration_assets.target.preflight_state import KnownTarget, load_known, save_known
from migration_assets.target.schema_plan import ColumnSpec, SchemaPlan


def _plan(max_length: int = 100) -> SchemaPlan:
    column = ColumnSpec("lead", "c2d_note", "c2d_Note", "String", "Note", "Note", max_length)
    return SchemaPlan([], [column], [])


@pytest.fixture
def mappings(tmp_path: Path) -> Path:
    root = tmp_path / "mappings"
    (root / "fields").mkdir(parents=True)
    (root / "settings.yaml").write_text("solution: a\n")
    (root / "fields" / "lead.yaml").write_text("name: x\n")
    return root


def test_the_fingerprint_follows_the_mapping_files_and_the_local_plan(mappings: Path) -> None:
    first = plan_fingerprint(mappings, _plan())
    assert plan_fingerprint(mappings, _plan()) == first  # deterministic
    assert plan_fingerprint(mappings, _plan(200)) != first  # a wider column (a longer Close value)
    (mappings / "fields" / "lead.yaml").write_text("name: y\n")
    changed = plan_fingerprint(mappings, _plan())
    assert changed != first
    (mappings / "fields" / "contact.yaml").write_text("name: y\n")  # a new mapping file
    assert plan_fingerprint(mappings, _plan()) != changed


def _deployed(con: duckdb.DuckDBPyConnection, fingerprint: str, run: str = "run-1") -> None:
    save_plan(con, _plan(), fingerprint, run)
    for step in DEPLOY_STEPS:
        step_started(con, step)
        step_completed(con, step, run)


def test_a_delta_reuses_the_completely_deployed_plan_of_the_same_fingerprint() -> None:
    con = duckdb.connect()
    _deployed(con, "f1")
    decision = decide(con, "f1", delta_run=True)
    assert decision.reuse and decision.deployed_by_run == "run-1"
    assert decision.reason == "reused, fingerprint f1, deployed by run run-1"
    assert reused_in_run(con, "delta-1") is None  # not until the plan marks it
    mark_reused(con, "delta-1")
    assert reused_in_run(con, "delta-1") is not None
    assert reused_in_run(con, "delta-2") is None  # another run planned on its own
    assert load_plan(con) == _plan()


def test_other_jobs_always_plan_in_full() -> None:
    con = duckdb.connect()
    _deployed(con, "f1")
    decision = decide(con, "f1", delta_run=False)
    assert not decision.reuse and "not a delta run" in decision.reason


def test_a_changed_fingerprint_or_no_plan_means_a_full_plan() -> None:
    con = duckdb.connect()
    assert not decide(con, "f1", delta_run=True).reuse  # nothing saved yet
    _deployed(con, "f1")
    decision = decide(con, "f2", delta_run=True)
    assert not decision.reuse and "f1 -> f2" in decision.reason
    # A plan saved without its fingerprint (as before fingerprints existed) is never reused.
    save_plan(con, _plan())
    assert not decide(con, "f1", delta_run=True).reuse


def test_an_unfinished_or_failed_deploy_is_not_reused() -> None:
    con = duckdb.connect()
    save_plan(con, _plan(), "f1", "run-1")
    for step in DEPLOY_STEPS[:-1]:
        step_started(con, step)
        step_completed(con, step, "run-1")
    decision = decide(con, "f1", delta_run=True)
    assert not decision.reuse and "custom_activity_columns" in decision.reason
    step_started(con, DEPLOY_STEPS[-1])
    step_completed(con, DEPLOY_STEPS[-1], "run-2")
    assert decide(con, "f1", delta_run=True).deployed_by_run == "run-2"
    # A later run of one step that fails (started, never completed) withdraws the plan from reuse.
    step_started(con, "deployed")
    assert not decide(con, "f1", delta_run=True).reuse
    # A freshly saved plan (a full plan) starts a new deploy even with the same fingerprint.
    _deployed(con, "f1")
    save_plan(con, _plan(), "f1", "run-3")
    assert not decide(con, "f1", delta_run=True).reuse


def test_a_rollback_of_schema_components_withdraws_the_plan_from_reuse() -> None:
    con = duckdb.connect()
    ledger = SchemaLedger(con, "run-1")
    seq = ledger.begin("column", "lead", "c2d_note")
    ledger.done(seq, None)
    _deployed(con, "f1")
    assert decide(con, "f1", delta_run=True).reuse
    con.execute("UPDATE ledger.schema_components SET removed_by = 'rollback-1'")
    decision = decide(con, "f1", delta_run=True)
    assert not decision.reuse and "rollback" in decision.reason
    assert reused_in_run(con, "any") is None


def test_unknown_deploy_steps_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown schema deploy step"):
        step_started(duckdb.connect(), "loaded")


def test_the_preflight_reads_are_kept_per_fingerprint() -> None:
    con = duckdb.connect()
    blocker = pf.Finding(pf.WARNING, "required column", "lead.x is required", "map it")
    known = KnownTarget({"lead": {"Create": "prvCreateLead"}}, [blocker], [], [], 3)
    assert load_known(con, "f1") is None
    save_known(con, "f1", "run-1", known)
    again = load_known(con, "f1")
    assert again is not None and again.run_id == "run-1"
    assert again.table_privileges == known.table_privileges and again.required == [blocker]
    assert again.custom_tables_in_target == 3
    assert load_known(con, "f2") is None


class _Client:
    """Answers `metadata` with a lead whose column has grown, counting the reads."""

    def __init__(self) -> None:
        self.reads: list[str] = []

    def metadata(self, table: str, refresh: bool = False) -> EntityMeta:
        self.reads.append(table)
        meta = EntityMeta(table, table.title(), f"{table}s", f"{table}id", "name", 1, False)
        meta.attributes["c2d_note"] = AttributeMeta(
            "c2d_note", "c2d_Note", "String", "StringType", max_length=77
        )
        return meta


def test_a_deploy_refreshes_only_the_cached_tables_it_touched() -> None:
    con = duckdb.connect()
    assert refresh_tables(con, _Client(), ["lead"]) == []  # no cache yet: nothing to refresh
    con.execute("CREATE SCHEMA staged")
    con.execute(
        "CREATE TABLE staged.target_metadata (table_name VARCHAR, entity_set VARCHAR, rules VARCHAR, "
        "fetched_at DOUBLE)"
    )
    con.execute(
        "CREATE TABLE staged.target_entity_sets (table_name VARCHAR, entity_set VARCHAR, primary_id VARCHAR)"
    )
    con.execute("CREATE TABLE staged.target_organization (maxuploadfilesize BIGINT)")
    old = time.time() - 120
    for table in ("lead", "contact"):
        con.execute("INSERT INTO staged.target_metadata VALUES (?, ?, '{}', ?)", [table, f"{table}s", old])
        con.execute(
            "INSERT INTO staged.target_entity_sets VALUES (?, ?, ?)", [table, f"{table}s", f"{table}id"]
        )
    client = _Client()
    # A custom activity table the cache does not hold is not read.
    assert refresh_tables(con, client, ["lead", "c2d_visit"]) == ["lead"]
    assert client.reads == ["lead"]
    rows = dict(con.execute("SELECT table_name, rules FROM staged.target_metadata").fetchall())
    assert json.loads(rows["lead"])["columns"]["c2d_note"]["max_length"] == 77
    assert rows["contact"] == "{}"  # untouched
    stamps = dict(con.execute("SELECT table_name, fetched_at FROM staged.target_metadata").fetchall())
    assert stamps["lead"] > old and stamps["contact"] == old
    assert cache_fresh(con, 60)  # still as fresh as its oldest row
