"""Which records earlier runs loaded have lost their Close source (DESIGN §8): the plan of
`loaded/deleted_records`, computed from the ledger, the staged tables and close.* (no API calls; the
executor is `load.deletion_apply`).

A record is a candidate when the ledger says a migrate or delta run created, updated or released it (not
rolled back, not deleted or deactivated since) and its id is no longer in its staged table. Then:
- its Close id is in none of the table's close.* sources (deleted in Close, or the source lead of a merge,
  which Close deletes; for an account, no lead bears its normalised name any more, e.g. the old account of
  a renamed lead, whose key the new account took: load/key_release.py): it is deactivated or deleted,
  children before parents;
- its Close source still exists (staging now rejects the row): it is reported and left alone, as nothing
  says Close deleted it.
Tables whose staged table or every source table is missing are not checked (reported): without them,
absence proves nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import duckdb

from migration_assets.load import ledger as lg
from migration_assets.load.rollback_plan import delete_ranks
from migration_assets.load.snapshot import SCHEMA as SNAPSHOT_SCHEMA
from migration_assets.load.snapshot import snapshot_name
from migration_assets.mapping.account_staging import account_close_id
from migration_assets.mapping.config import ObjectMap
from migration_assets.mapping.tables import ACTIVITY_KEY, TableRegistry
from migration_assets.resources.warehouse import fetch_polars, quote, table_exists

# Close tables a custom activity table's rows come from: custom activity instances, and SMS when
# activities.yaml routes them to a custom table.
CUSTOM_ACTIVITY_SOURCES = (("custom_activities", "id"), ("sms", "id"))
# The last ledger action of a record still loaded and active (a record whose key was released for its
# successor is still there, and is removed like any record whose source is gone).
LIVE_ACTIONS = ("created", "updated", "released")
GONE_ACTIONS = ("deleted", "deactivated")


@dataclass(frozen=True)
class LoadedTable:
    """Where the rows of one loaded Dataverse table come from."""

    table: str  # Dataverse logical name (ledger table_name)
    staged: str  # staged table
    primary_key: str
    sources: tuple[tuple[str, str], ...]  # (close.* table, column holding the Close id)
    # The Close id is a normalised lead name (an account): its source exists while a lead bears the name.
    by_lead_name: bool = False


@dataclass(frozen=True)
class Candidate:
    table: str
    record_id: str
    close_id: str | None


@dataclass
class DeletionPlan:
    gone: list[Candidate] = field(default_factory=list)  # source gone from Close: children first
    kept: list[tuple[Candidate, str]] = field(default_factory=list)  # vanished from staged only: why kept
    skipped: list[str] = field(default_factory=list)  # tables not checked, with the reason

    def counts(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for c in self.gone:
            out.setdefault(c.table, {"gone": 0, "kept": 0})["gone"] += 1
        for c, _ in self.kept:
            out.setdefault(c.table, {"gone": 0, "kept": 0})["kept"] += 1
        return out


def loaded_tables(
    registry: TableRegistry, objects: Sequence[ObjectMap], custom_tables: Iterable[str] = ()
) -> list[LoadedTable]:
    """The registry's tables (sources from objects.yaml: each object's source and key) and the custom
    activity tables (staged as custom_activity_<table>)."""
    out = []
    for t in registry.tables:
        mine = [o for o in objects if o.table == t.name]
        by_name = bool(mine) and all(o.natural_key.startswith("account:") for o in mine)
        sources = (
            tuple(dict.fromkeys((o.source, "name") for o in mine))
            if by_name
            else tuple(dict.fromkeys((o.source, o.key) for o in mine))
        )
        out.append(LoadedTable(t.name, t.name, t.primary_key, sources, by_name))
    known = set(registry.names)
    out += [
        LoadedTable(t, f"custom_activity_{t}", ACTIVITY_KEY, CUSTOM_ACTIVITY_SOURCES)
        for t in custom_tables
        if t not in known
    ]
    return out


def live_record_map(con: duckdb.DuckDBPyConnection) -> dict[tuple[str, str], str | None]:
    """(table, record id) -> Close id of every record whose latest ledger action (of every migrate and
    delta run, oldest first) leaves it loaded and active, computed inside DuckDB: a delta reads no
    before image and builds no ledger entry in Python, whatever the size of the ledger (same answer, same
    order: by each record's first ledger row)."""
    lg.ensure_schema(con)
    rows = con.execute(
        f"SELECT t, rid, cid FROM ({_LIVE_RECORDS}) ORDER BY pos", [list(LIVE_ACTIONS)]
    ).fetchall()
    return {(t, rid): cid for t, rid, cid in rows}


# The live records of `live_record_map` (t, rid, cid) with their first ledger row's position (pos).
_LIVE_RECORDS = f"""
    WITH o AS (
        SELECT w.table_name AS t, lower(w.record_id) AS rid, nullif(w.close_id, '') AS cid, w.action,
               row_number() OVER (ORDER BY r.started_at, w.run_id, w.seq) AS pos
        FROM {lg.SCHEMA}.writes w JOIN {lg.SCHEMA}.runs r USING (run_id)
        WHERE r.kind IN ('migrate', 'delta') AND w.status <> 'rejected' AND w.rolled_back_by IS NULL
    )
    SELECT t, rid, arg_max(cid, pos) FILTER (WHERE cid IS NOT NULL) AS cid, min(pos) AS pos
    FROM o GROUP BY t, rid
    HAVING arg_max(action, pos) IN (SELECT unnest(?))
"""


def _live_tables(con: duckdb.DuckDBPyConnection) -> list[str]:
    """The tables with live records, which `_vanished` then reads (the records of `live_record_map` in a temp
    table): compared with the staged ids inside DuckDB, a delta builds no Python object per loaded record
    (a second per delta on a typical org)."""
    lg.ensure_schema(con)
    con.execute(f"CREATE OR REPLACE TEMP TABLE __live_records AS {_LIVE_RECORDS}", [list(LIVE_ACTIONS)])
    return sorted(str(r[0]) for r in con.execute("SELECT DISTINCT t FROM __live_records").fetchall())


def _vanished(con: duckdb.DuckDBPyConnection, t: LoadedTable) -> list[Candidate]:
    """The live records of `t` whose id its staged table no longer has (in `live_record_map` order)."""
    pk = quote(t.primary_key)
    rows = con.execute(
        "SELECT rid, cid FROM __live_records WHERE t = ? AND (rid IS NULL OR rid NOT IN (SELECT "
        f"lower(CAST({pk} AS VARCHAR)) FROM staged.{quote(t.staged)} WHERE {pk} IS NOT NULL)) ORDER BY pos",
        [t.table],
    ).fetchall()
    return [Candidate(t.table, rid, cid) for rid, cid in rows]


def _ids(con: duckdb.DuckDBPyConnection, sql: str, params: list[object] | None = None) -> set[str]:
    return {str(r[0]).lower() for r in con.execute(sql, params or []).fetchall() if r[0] is not None}


def _existing_sources(
    con: duckdb.DuckDBPyConnection, t: LoadedTable, close_ids: list[str]
) -> tuple[set[str], list[str]]:
    """(Close ids among `close_ids` that some source table still holds, source tables present)."""
    found: set[str] = set()
    present: list[str] = []
    for source, key in t.sources:
        if not table_exists(con, "close", source):
            continue
        present.append(source)
        if t.by_lead_name:
            names = fetch_polars(con, f"SELECT DISTINCT {quote(key)} FROM close.{quote(source)}")
            found |= {n.lower() for n in account_close_id(names.to_series()).to_list()}
            continue
        found |= _ids(
            con,
            f"SELECT DISTINCT CAST({quote(key)} AS VARCHAR) FROM close.{quote(source)} "
            f"WHERE lower(CAST({quote(key)} AS VARCHAR)) IN (SELECT unnest(?))",
            [[c.lower() for c in close_ids]],
        )
    return found, present


def plan_deletions(
    con: duckdb.DuckDBPyConnection, tables: Sequence[LoadedTable], registry: TableRegistry | None = None
) -> DeletionPlan:
    """The records to deactivate/delete (children before parents) and those only reported."""
    ranks, activity_rank = delete_ranks(registry)
    plan = DeletionPlan()
    described: Mapping[str, LoadedTable] = {t.table: t for t in tables}
    for table in _live_tables(con):
        t = described.get(table)
        if t is None:
            continue  # written as a side effect (the opportunityclose of a Win/Lose): not a staged table
        if not table_exists(con, "staged", t.staged):
            plan.skipped.append(f"{table}: staged.{t.staged} does not exist")
            continue
        vanished = _vanished(con, t)
        if not vanished:
            continue
        with_id = [c for c in vanished if c.close_id]
        plan.kept += [(c, "the ledger has no Close id for it") for c in vanished if not c.close_id]
        existing, present = _existing_sources(con, t, [str(c.close_id) for c in with_id])
        if not present:
            names = ", ".join(f"close.{s}" for s, _ in t.sources) or "no source table"
            plan.skipped.append(f"{table}: {names} not extracted")
            continue
        for c in with_id:
            if str(c.close_id).lower() in existing:
                plan.kept.append(
                    (c, f"{c.close_id} still exists in Close; staged.{t.staged} no longer has the row")
                )
            else:
                plan.gone.append(c)
    plan.gone.sort(key=lambda c: (ranks.get(c.table, activity_rank), c.table, c.record_id))
    plan.kept.sort(key=lambda k: (k[0].table, k[0].record_id))
    return plan


def _binding_to(
    con: duckdb.DuckDBPyConnection, schema: str, table: str, primary_key: str, ids: set[str]
) -> list[tuple[str, str | None]]:
    """(record id, Close id) of the rows of `schema.table` with a lookup bind to one of `ids`."""
    if not table_exists(con, schema, table):
        return []
    columns = [
        r[0]
        for r in con.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = ? AND table_name = ?",
            [schema, table],
        ).fetchall()
    ]
    binds = [c for c in columns if c.endswith("@odata.bind")]
    if not binds or primary_key not in columns:
        return []
    # A bind reads "/entityset(<id>)": the id is what is inside the parentheses.
    refers = " OR ".join(
        f"lower(regexp_extract({quote(b)}, '\\(([^)]*)\\)', 1)) IN (SELECT unnest(?))" for b in binds
    )
    close_id = "_close_id" if "_close_id" in columns else "NULL"
    rows = con.execute(
        f"SELECT CAST({quote(primary_key)} AS VARCHAR), {close_id} FROM {schema}.{quote(table)} WHERE {refers}",
        [sorted(ids)] * len(binds),
    ).fetchall()
    return [(str(r[0]).lower(), r[1]) for r in rows]


def _rejected_binding_to(
    con: duckdb.DuckDBPyConnection, staged: str, primary_key: str, ids: set[str]
) -> list[tuple[str, str | None]]:
    """(record id, Close id) of the rows staging now rejects because a lookup names one of `ids` (a row
    rejected for its parent being gone keeps its bind in `value`)."""
    name = f"{staged}_rejected"
    if not table_exists(con, "staged", name):
        return []
    columns = {
        r[0]
        for r in con.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = 'staged' AND table_name = ?",
            [name],
        ).fetchall()
    }
    if not {primary_key, "column", "value", "_close_id"} <= columns:
        return []
    rows = con.execute(
        f"SELECT DISTINCT CAST({quote(primary_key)} AS VARCHAR), _close_id FROM staged.{quote(name)} "
        "WHERE \"column\" LIKE '%@odata.bind' AND lower(regexp_extract(value, '\\(([^)]*)\\)', 1)) "
        "IN (SELECT unnest(?))",
        [sorted(ids)],
    ).fetchall()
    return [(str(r[0]).lower(), r[1]) for r in rows if r[0] is not None]


def add_cascaded_children(
    con: duckdb.DuckDBPyConnection,
    plan: DeletionPlan,
    tables: Sequence[LoadedTable],
    registry: TableRegistry | None = None,
) -> int:
    """Add to `plan.gone` the loaded records bound to a record the plan deletes (transitively), by their
    staged row, the row last loaded (`load.snapshot`) or the rejection of a child that staging now refuses
    because its parent is gone; returns how many. Dataverse deletes such children with their parent (parental
    relationships cascade the delete), outside the ledger, so a rollback could not bring them back; and a
    fresh migration would not load them (their parent is gone). Deleting them first, through the ledger,
    keeps both true. Only for `delta.deleted_records: delete`: a deactivated parent keeps its children."""
    ranks, activity_rank = delete_ranks(registry)
    gone = {c.record_id.lower() for c in plan.gone}
    planned = {(c.table, c.record_id.lower()) for c in plan.gone}
    live = live_record_map(con)
    added = 0
    while gone:
        found: list[Candidate] = []
        for t in tables:
            bound = [
                *_binding_to(con, "staged", t.staged, t.primary_key, gone),
                *_binding_to(con, SNAPSHOT_SCHEMA, snapshot_name(t.staged), t.primary_key, gone),
                *_rejected_binding_to(con, t.staged, t.primary_key, gone),
            ]
            for record_id, close_id in bound:
                key = (t.table, record_id)
                if key not in planned and key in live:
                    planned.add(key)
                    found.append(Candidate(t.table, record_id, close_id))
        plan.gone += found
        added += len(found)
        gone = {c.record_id for c in found}
    plan.gone.sort(key=lambda c: (ranks.get(c.table, activity_rank), c.table, c.record_id))
    plan.kept = [(c, why) for c, why in plan.kept if (c.table, c.record_id.lower()) not in planned]
    return added


def gone_record_ids(con: duckdb.DuckDBPyConnection) -> set[str]:
    """Ids (lower-case) of the records earlier runs loaded whose Close source is gone: what the next
    `loaded/deleted_records` of a delta removes. Staging treats them as absent from the target, so that a
    row bound to one (a note on an opportunity deleted in Close) is rejected exactly as a fresh migration,
    which never had that parent, rejects it."""
    from migration_assets.mapping.config import load_mapping_config, mappings_root
    from migration_assets.mapping.tables import table_registry
    from migration_assets.target.custom_activity_plan import load_types

    if not table_exists(con, lg.SCHEMA, "writes"):
        return set()  # nothing was loaded yet
    config = load_mapping_config()
    registry = table_registry()
    tables = loaded_tables(registry, config.objects, [t.table for t in load_types(mappings_root())])
    return {c.record_id.lower() for c in plan_deletions(con, tables, registry).gone}
