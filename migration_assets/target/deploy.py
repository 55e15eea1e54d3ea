"""Reading the target's metadata for a plan and applying a diff through the metadata API (idempotent:
only what `schema_plan.diff` reports missing is created). Every create names the migration's solution
(`MSCRM.SolutionUniqueName`, or `SolutionUniqueName` in the InsertOptionValue body) and is written ahead to
the ledger (`SchemaLedger`), so that a rollback of the run removes exactly what it created."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import duckdb

from migration_assets.clients.dataverse.client import DataverseClient, DataverseError
from migration_assets.clients.dataverse.metadata import EntityMeta
from migration_assets.clients.dataverse.odata import odata_string
from migration_assets.load.ledger import SchemaLedger
from migration_assets.target.plan_reuse import SCHEMA as PLAN_SCHEMA
from migration_assets.target.plan_reuse import reset_deploy
from migration_assets.target.schema_plan import SchemaDiff, SchemaPlan, diff
from migration_assets.target.solution import managed_solution_error


class SchemaDeployError(RuntimeError):
    """The target cannot take the plan (conflicting columns, a missing earlier phase)."""


def read_existing(
    client: DataverseClient, tables: Sequence[str], refresh: bool = True
) -> dict[str, EntityMeta | None]:
    """Metadata of each table (None when it does not exist). `refresh` False reuses what this client
    already read (every schema write of this client drops its cache entry)."""
    out: dict[str, EntityMeta | None] = {}
    for table in tables:
        try:
            out[table] = client.metadata(table, refresh=refresh)
        except DataverseError as exc:
            if "does not exist" not in str(exc):
                raise
            out[table] = None
    return out


def save_plan(
    con: duckdb.DuckDBPyConnection,
    plan: SchemaPlan,
    fingerprint: str | None = None,
    run_id: str | None = None,
) -> None:
    """Save a freshly made plan with the fingerprint of its inputs and the run that made it
    (target/plan_reuse.py); no deploy step has completed it yet."""
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {PLAN_SCHEMA}")
    con.execute(
        f"CREATE OR REPLACE TABLE {PLAN_SCHEMA}.plan (plan_json VARCHAR, fingerprint VARCHAR, "
        "planned_by_run VARCHAR, reused_by_run VARCHAR)"
    )
    con.execute(
        f"INSERT INTO {PLAN_SCHEMA}.plan VALUES (?, ?, ?, NULL)", [plan.to_json(), fingerprint, run_id]
    )
    reset_deploy(con)


def load_plan(con: duckdb.DuckDBPyConnection) -> SchemaPlan:
    try:
        row = con.execute(f"SELECT plan_json FROM {PLAN_SCHEMA}.plan").fetchall()
    except duckdb.CatalogException:
        row = []
    if not row:
        raise SchemaDeployError("schema.plan is missing: materialize schema/plan first")
    return SchemaPlan.from_json(row[0][0])


def subset(plan: SchemaPlan, custom_tables: bool) -> SchemaPlan:
    """The part of the plan on custom activity tables (phases 1–2) or on standard tables (schema/deployed)."""
    names = {t.logical_name for t in plan.tables}
    keep = (lambda t: t in names) if custom_tables else (lambda t: t not in names)
    return SchemaPlan(
        list(plan.tables) if custom_tables else [],
        [c for c in plan.columns if keep(c.table)],
        [k for k in plan.keys if keep(k.table)],
    )


def _tolerant(
    client: DataverseClient,
    table: str,
    create: Callable[[], object],
    landed: Callable[[EntityMeta | None], bool],
) -> object:
    """A metadata write is not idempotent: when it fails (e.g. the retry of a create whose first attempt
    landed before the connection dropped), it counts as done if the target now has what we asked for."""
    try:
        return create()
    except DataverseError:
        if not landed(read_existing(client, [table])[table]):
            raise
    return None


def _ledgered(
    ledger: SchemaLedger | None,
    what: tuple[str, str, str, dict[str, Any]],
    client: DataverseClient,
    create: Callable[[], object],
    landed: Callable[[EntityMeta | None], bool],
) -> None:
    """`_tolerant` create of one component (kind, table, name, detail), written ahead to the ledger."""
    kind, table, name, detail = what
    seq = ledger.begin(kind, table, name, detail) if ledger is not None else 0
    try:
        new_id = _tolerant(client, table, create, landed)
    except DataverseError:
        if ledger is not None:
            ledger.rejected(seq)  # the service refused it: nothing exists to undo
        raise
    if ledger is not None:
        ledger.done(seq, new_id if isinstance(new_id, str) else None)


def apply_diff(
    client: DataverseClient,
    d: SchemaDiff,
    solution: str | None,
    log: Callable[[str], None],
    tables: bool = True,
    columns: bool = True,
    ledger: SchemaLedger | None = None,
) -> list[str]:
    """Create what `d` lists; return the tables to publish. Conflicts stop before any change."""
    if d.conflicts:
        raise SchemaDeployError(
            "the target schema conflicts with the plan; fix these in Dataverse or in mappings/ first:\n- "
            + "\n- ".join(d.conflicts)
        )
    touched: set[str] = set()
    if tables:
        for t in d.create_tables:
            log(f"creating custom activity table {t.logical_name}")
            _ledgered(
                ledger,
                ("table", t.logical_name, t.logical_name, {}),
                client,
                lambda t=t: client.create_table(t.body(), solution),
                lambda m: m is not None,
            )
            touched.add(t.logical_name)
    if columns:
        for c in d.create_columns:
            log(f"creating column {c.table}.{c.logical_name} ({c.type})")
            what: tuple[str, str, str, dict[str, Any]]
            if c.type == "Lookup":
                body = c.relationship_body()
                what = (
                    "relationship",
                    c.table,
                    body["SchemaName"],
                    {"lookup": c.logical_name, "referenced": c.lookup_target},
                )
                create = lambda body=body: client.create_relationship(body, solution)  # noqa: E731
            else:
                what = ("column", c.table, c.logical_name, {"type": c.type})
                create = lambda c=c: client.create_column(c.table, c.body(), solution)  # noqa: E731
            _ledgered(
                ledger, what, client, create, lambda m, c=c: m is not None and c.logical_name in m.attributes
            )
            touched.add(c.table)
        for c, value, text in d.add_options:
            log(f"adding option {value} '{text}' to {c.table}.{c.logical_name}")
            _ledgered(
                ledger,
                ("option", c.table, c.logical_name, {"value": value}),
                client,
                lambda c=c, value=value, text=text: client.insert_option_value(
                    c.table, c.logical_name, value, text, solution
                ),
                lambda m, c=c, value=value: (
                    m is not None and value in m.attributes[c.logical_name].option_values
                ),
            )
            touched.add(c.table)
        for k in d.create_keys:
            log(f"creating alternate key {k.schema_name} on {k.table}({', '.join(k.columns)})")
            _ledgered(
                ledger,
                ("key", k.table, k.schema_name, {"columns": list(k.columns)}),
                client,
                lambda k=k: client.create_key(
                    k.table, k.schema_name, list(k.columns), k.display_name, solution
                ),
                lambda m, k=k: m is not None and any(x.schema_name == k.schema_name for x in m.keys),
            )
            touched.add(k.table)
        for k in d.create_keys:
            client.wait_for_key(k.table, k.schema_name)
    if touched:
        client.publish_xml(sorted(touched))
    return sorted(touched)


def deploy(
    client: DataverseClient,
    plan: SchemaPlan,
    solution: str | None,
    log: Callable[[str], None],
    tables: bool = True,
    columns: bool = True,
    ledger: SchemaLedger | None = None,
) -> tuple[SchemaDiff, list[str]]:
    """Diff `plan` against the target and apply the parts asked for; returns what was applied."""
    # The metadata cached by this run's client is fresh: schema/plan refreshed it and every schema write
    # drops its table from the cache. A run that starts here reads everything anew.
    d = diff(plan, read_existing(client, plan.touched_tables(), refresh=False))
    if not tables:
        d.create_tables = []
    if not columns:  # phase 1 creates tables only; column conflicts are phase 2's to report
        d.create_columns, d.add_options, d.create_keys, d.conflicts = [], [], [], []
    if solution and not d.empty and _is_managed(client, solution):
        missing = [f"table {t.logical_name}" for t in d.create_tables]
        missing += [f"column {c.table}.{c.logical_name}" for c in d.create_columns]
        missing += [f"option {v} of {c.table}.{c.logical_name}" for c, v, _ in d.add_options]
        missing += [f"key {k.schema_name}" for k in d.create_keys]
        raise SchemaDeployError(managed_solution_error(solution, missing))
    return d, apply_diff(client, d, solution, log, tables=tables, columns=columns, ledger=ledger)


def _is_managed(client: DataverseClient, solution: str) -> bool:
    """Whether the named solution is installed managed (read only when there is something to create)."""
    rows = client.rows("solutions", ["solutionid", "ismanaged"], f"uniquename eq {odata_string(solution)}")
    return any(bool(r.get("ismanaged")) for r in rows)
