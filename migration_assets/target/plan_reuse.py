"""Whether a delta run can reuse the schema plan whose deploy last completed instead of re-reading the
target's metadata (issue 13: a delta's requests follow what changed in Close, not the org).

The plan is a function of its inputs (the reviewed mappings/ files and the Close configuration the plan
reads: custom activity types, their field definitions and the values their instances use) and of the
target. Its fingerprint is the hash of the mappings/ files and of the plan built from those inputs before
the target is read (`schema_planning.local_plan`): a change in Close that does not change a planned column
(a custom activity edited, a record renamed) leaves it alone; a changed mapping, a new custom field or type,
a longer value that needs a wider column change it.

State in the warehouse (schema `schema`): `schema.plan` holds the saved plan with its fingerprint and the run
that planned it; `schema.deploy_steps` one row per deploy step (DEPLOY_STEPS) that completed that plan, with
the number of schema components rolled back at that time. A plan is *deployed* when every step completed it
and no schema component has been rolled back since (a rollback may have removed what it created). Only a
`delta` run reuses a deployed plan with the same fingerprint; every other case plans in full.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import duckdb

from migration_assets.resources.warehouse import table_exists
from migration_assets.target.schema_plan import SchemaPlan

SCHEMA = "schema"
LEDGER_COMPONENTS = ("ledger", "schema_components")
# The schema/* assets that deploy a plan; all must have completed it before a delta may skip them.
DEPLOY_STEPS = ("solution", "deployed", "custom_activity_tables", "custom_activity_columns")
_STEPS_DDL = (
    f"CREATE TABLE IF NOT EXISTS {SCHEMA}.deploy_steps (planned_by_run VARCHAR NOT NULL, step VARCHAR NOT NULL, "
    "run_id VARCHAR NOT NULL, removed_components BIGINT NOT NULL, completed_at TIMESTAMPTZ NOT NULL)"
)


def mapping_files_digest(root: Path) -> str:
    """sha256 over every file of the mappings root (relative path and content), in path order."""
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        h.update(path.relative_to(root).as_posix().encode())
        h.update(b"\0")
        h.update(hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()


def plan_fingerprint(mappings_root: Path, local_plan: SchemaPlan) -> str:
    """The fingerprint of a plan's inputs: the mappings/ files and the plan built from them and the Close
    configuration before the target was read (a function of every Close input the plan uses)."""
    h = hashlib.sha256()
    h.update(mapping_files_digest(mappings_root).encode())
    h.update(b"\0")
    h.update(local_plan.to_json().encode())
    return h.hexdigest()[:16]


@dataclass(frozen=True)
class StoredPlan:
    fingerprint: str | None  # None: saved before plans had fingerprints
    planned_by_run: str | None
    reused_by_run: str | None  # the last delta run that reused it


@dataclass(frozen=True)
class Decision:
    reuse: bool
    reason: str  # why (not), for the asset's metadata
    deployed_by_run: str | None = None


def _columns(con: duckdb.DuckDBPyConnection, table: str) -> set[str]:
    rows = con.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = ? AND table_name = ?",
        [SCHEMA, table],
    ).fetchall()
    return {r[0] for r in rows}


def reset_deploy(con: duckdb.DuckDBPyConnection) -> None:
    """A freshly saved plan starts a new deploy: no step has completed it yet."""
    con.execute(_STEPS_DDL)
    con.execute(f"DELETE FROM {SCHEMA}.deploy_steps")


def stored_plan(con: duckdb.DuckDBPyConnection) -> StoredPlan | None:
    if not table_exists(con, SCHEMA, "plan") or not {"fingerprint", "planned_by_run"} <= _columns(
        con, "plan"
    ):
        return None
    rows = con.execute(f"SELECT fingerprint, planned_by_run, reused_by_run FROM {SCHEMA}.plan").fetchall()
    return StoredPlan(*rows[0]) if rows else None


def removed_components(con: duckdb.DuckDBPyConnection) -> int:
    """Schema components any rollback removed so far (the ledger's `removed_by`)."""
    if not table_exists(con, *LEDGER_COMPONENTS):
        return 0
    row = con.execute("SELECT count(*) FROM ledger.schema_components WHERE removed_by IS NOT NULL").fetchall()
    return int(row[0][0])


def step_started(con: duckdb.DuckDBPyConnection, step: str) -> None:
    """A deploy step of the saved plan starts: until it completes, the plan does not count as deployed."""
    _check_step(step)
    if table_exists(con, SCHEMA, "deploy_steps"):
        con.execute(f"DELETE FROM {SCHEMA}.deploy_steps WHERE step = ?", [step])


def step_completed(con: duckdb.DuckDBPyConnection, step: str, run_id: str) -> None:
    _check_step(step)
    plan = stored_plan(con)
    if plan is None or plan.planned_by_run is None:
        return  # a plan saved without its run: it can never be reused
    con.execute(_STEPS_DDL)
    con.execute(f"DELETE FROM {SCHEMA}.deploy_steps WHERE step = ?", [step])
    con.execute(
        f"INSERT INTO {SCHEMA}.deploy_steps VALUES (?, ?, ?, ?, now())",
        [plan.planned_by_run, step, run_id, removed_components(con)],
    )


def _check_step(step: str) -> None:
    if step not in DEPLOY_STEPS:
        raise ValueError(f"unknown schema deploy step {step!r} (known: {', '.join(DEPLOY_STEPS)})")


def deployed_by(con: duckdb.DuckDBPyConnection, plan: StoredPlan) -> tuple[str | None, str]:
    """(the run that completed the saved plan's deploy, '') or (None, why it does not count as deployed)."""
    if not table_exists(con, SCHEMA, "deploy_steps"):
        return None, "no deploy of the saved plan has completed"
    rows = con.execute(
        f"SELECT step, run_id, removed_components FROM {SCHEMA}.deploy_steps WHERE planned_by_run = ? "
        "ORDER BY completed_at",
        [plan.planned_by_run],
    ).fetchall()
    done = {step for step, _, _ in rows}
    missing = [s for s in DEPLOY_STEPS if s not in done]
    if missing:
        return None, f"the saved plan's deploy did not complete (missing: {', '.join(missing)})"
    if any(int(n) != removed_components(con) for _, _, n in rows):
        return None, "a rollback removed schema components since the saved plan was deployed"
    return str(rows[-1][1]), ""


def decide(con: duckdb.DuckDBPyConnection, fingerprint: str, delta_run: bool) -> Decision:
    """Reuse the saved plan only in a delta run, when its fingerprint is this one and its deploy completed."""
    if not delta_run:
        return Decision(False, "not a delta run: the plan is read from the target")
    plan = stored_plan(con)
    if plan is None or plan.fingerprint is None:
        return Decision(False, "no saved plan with a fingerprint")
    if plan.fingerprint != fingerprint:
        return Decision(False, f"the inputs changed (fingerprint {plan.fingerprint} -> {fingerprint})")
    run, why = deployed_by(con, plan)
    if run is None:
        return Decision(False, why)
    return Decision(True, f"reused, fingerprint {fingerprint}, deployed by run {run}", run)


def mark_reused(con: duckdb.DuckDBPyConnection, run_id: str) -> None:
    con.execute(f"UPDATE {SCHEMA}.plan SET reused_by_run = ?", [run_id])


def reused_in_run(con: duckdb.DuckDBPyConnection, run_id: str) -> Decision | None:
    """The reuse this run's schema/plan decided (for the deploy steps and the preflight), else None."""
    plan = stored_plan(con)
    if plan is None or plan.reused_by_run != run_id or plan.fingerprint is None:
        return None
    run, _ = deployed_by(con, plan)
    if run is None:
        return None
    return Decision(True, f"plan reused, fingerprint {plan.fingerprint}, deployed by run {run}", run)
