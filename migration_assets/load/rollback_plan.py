"""What a rollback must do, computed from ledger rows and the table registry's order (no API calls; the
executor lives in `migration_assets.load.rollback`).

Per record touched by the selected runs:
- created by one of them (done, or pending: the batch may have landed before the run died) -> delete it;
  later updates of it by the same runs do not matter;
- only updated by them (or deactivated by a delta run: its state is its before-image) -> restore, column
  by column, the value it had before the FIRST selected write (the earliest before-image wins), so rolling
  back several runs returns to the state before all of them;
- deleted by a delta run (its source was deleted in Close) and not created by them -> re-create it under
  its id from the ledgered image (with earlier before-images winning column by column, as above).

Re-creates run first, parents before children (a restored lookup may point at a re-created record), then
restores (so a restored lookup no longer points at a record about to be deleted), then deletes, children
before parents (the reverse of the load order of mapping/tables.py): annotations, activities,
opportunities, leads, contacts, accounts. Last, `rekey` steps put back the alternate-key values a load
released (ledger action `released`, load/key_release.py): the record the runs created with that value is
deleted by then, so the value is free again; re-creates and restores leave those columns to them.

Then the schema components the runs created (`plan_schema_rollback`): option values, alternate keys,
lookups, columns, tables, the solution, the publisher; schema that records or components of other runs
still use stays, with the reason.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from migration_assets.load.ledger import Entry, SchemaComponent
from migration_assets.mapping.tables import TableRegistry, table_registry

STATE_COLUMNS = ("statecode", "statuscode")


def delete_ranks(registry: TableRegistry | None = None) -> tuple[dict[str, int], int]:
    """(table -> rank, the rank of tables not in the registry): parents after children, a lower rank is
    deleted first; the reverse of the registry's load order. Unknown tables (custom activity tables) are
    activities: they hang off leads/contacts/opportunities and may carry annotations."""
    registry = registry or table_registry()
    return registry.delete_ranks(), registry.activity_rank()


@dataclass(frozen=True)
class Step:
    kind: str  # recreate | restore | delete | rekey
    table: str
    record_id: str
    close_id: str | None
    values: dict[str, Any] = field(default_factory=dict)  # restore: column -> value to put back
    sources: tuple[tuple[str, int], ...] = ()  # the ledger rows (run_id, seq) this step undoes

    @property
    def state(self) -> dict[str, Any]:
        """statecode/statuscode to restore (applied after the other columns)."""
        return {k: self.values[k] for k in STATE_COLUMNS if k in self.values}

    @property
    def columns(self) -> dict[str, Any]:
        return {k: v for k, v in self.values.items() if k not in STATE_COLUMNS}


@dataclass
class _Acc:
    table: str
    record_id: str
    close_id: str | None
    created: bool = False
    deleted: bool = False
    values: dict[str, Any] = field(default_factory=dict)
    sources: list[tuple[str, int]] = field(default_factory=list)
    first_seen: int = 0
    released: set[str] = field(default_factory=set)  # alternate-key columns a load emptied

    def without_keys(self) -> dict[str, Any]:
        return {k: v for k, v in self.values.items() if k not in self.released}

    def keys(self) -> dict[str, Any]:
        return {k: v for k, v in self.values.items() if k in self.released}


def plan_rollback(entries: Sequence[Entry], registry: TableRegistry | None = None) -> list[Step]:
    """Steps undoing `entries` (ledger rows of the runs to roll back, oldest first); deletes in the
    rollback order of `registry` (default: the mappings root in effect)."""
    ranks, activity_rank = delete_ranks(registry)
    acc: dict[tuple[str, str], _Acc] = {}
    for n, e in enumerate(entries):
        if e.status == "rejected" or e.rolled_back_by:
            continue  # the server refused it (nothing to undo) or an earlier rollback undid it
        key = (e.table, e.record_id.lower())
        a = acc.get(key)
        if a is None:
            a = acc[key] = _Acc(e.table, e.record_id.lower(), e.close_id, first_seen=n)
        a.sources.append((e.run_id, e.seq))
        if e.action == "created":
            a.created = True
        elif e.action in ("updated", "deactivated", "deleted", "released"):
            a.deleted = a.deleted or e.action == "deleted"
            if e.action == "released":
                a.released |= set(e.before_image or {})
            for column, value in (e.before_image or {}).items():
                a.values.setdefault(column, value)  # earliest before-image wins
    recreates = [a for a in acc.values() if a.deleted and not a.created]
    restores = [a for a in acc.values() if not a.created and not a.deleted and a.values]
    deletes = [a for a in acc.values() if a.created]
    # Nothing to restore when an update recorded no before-image columns: the record is only "touched".
    untouched = [a for a in acc.values() if not a.created and not a.deleted and not a.values]
    recreates.sort(key=lambda a: (-ranks.get(a.table, activity_rank), a.first_seen))  # parents first
    restores.sort(key=lambda a: -a.first_seen)  # newest first: undo in reverse order
    deletes.sort(key=lambda a: (ranks.get(a.table, activity_rank), -a.first_seen))
    steps = [
        Step("recreate", a.table, a.record_id, a.close_id, a.without_keys(), tuple(a.sources))
        for a in recreates
    ]
    steps += [
        Step("restore", a.table, a.record_id, a.close_id, a.without_keys(), tuple(a.sources))
        for a in restores
    ]
    steps += [Step("delete", a.table, a.record_id, a.close_id, {}, tuple(a.sources)) for a in deletes]
    # The ledger rows are marked rolled back by the record's re-create or restore step above.
    steps += [
        Step("rekey", a.table, a.record_id, a.close_id, a.keys()) for a in (*recreates, *restores) if a.keys()
    ]
    # Ledger rows with nothing to undo are still marked rolled back, through a no-op restore.
    steps += [Step("restore", a.table, a.record_id, a.close_id, {}, tuple(a.sources)) for a in untouched]
    return steps


def summarize(steps: Sequence[Step]) -> dict[str, dict[str, int]]:
    """{table: {"delete": n, "restore": n}} for reports (+ "recreate": n where records are re-created)."""
    out: dict[str, dict[str, int]] = {}
    for s in steps:
        counts = out.setdefault(s.table, {"delete": 0, "restore": 0})
        counts[s.kind] = counts.get(s.kind, 0) + 1
    return out


# -- schema components -------------------------------------------------------------------------------------
# Removal order: what depends on a component goes before it (an alternate key before its column, lookups and
# columns before their tables), then the solution, then its publisher (a publisher with a solution cannot go).
SCHEMA_ORDER = ("option", "key", "relationship", "column", "table", "solution", "publisher")


@dataclass(frozen=True)
class SchemaStep:
    kind: str  # one of SCHEMA_ORDER
    table: str | None
    name: str
    component_id: str | None
    detail: dict[str, Any]
    sources: tuple[tuple[str, int], ...]  # schema ledger rows (run_id, seq) this step removes

    @property
    def label(self) -> str:
        if self.kind == "option":
            return f"option {self.detail.get('value')} of column {self.table}.{self.name}"
        if self.kind == "relationship":
            return f"lookup {self.table}.{self.detail.get('lookup')} (relationship {self.name})"
        if self.kind in ("column", "key"):
            return f"{'alternate key' if self.kind == 'key' else 'column'} {self.table}.{self.name}"
        return f"{self.kind} {self.name}"


@dataclass(frozen=True)
class SchemaRollback:
    steps: list[SchemaStep]  # in removal order
    kept: list[tuple[SchemaStep, str]]  # (component, why it stays)


def _runs(names: set[str]) -> str:
    return f"run{'s' if len(names) > 1 else ''} {', '.join(sorted(names))}"


def _merge(components: Sequence[SchemaComponent]) -> list[SchemaStep]:
    """One step per component, whichever runs ledgered it (a re-run after a crash may list it twice)."""
    acc: dict[tuple[Any, ...], SchemaStep] = {}
    for c in components:
        key = (c.kind, c.table, c.name.lower(), c.detail.get("value"))
        prior = acc.get(key)
        acc[key] = SchemaStep(
            c.kind,
            c.table,
            c.name,
            c.component_id or (prior.component_id if prior else None),
            c.detail,
            ((prior.sources if prior else ()) + ((c.run_id, c.seq),)),
        )
    return sorted(acc.values(), key=lambda s: (SCHEMA_ORDER.index(s.kind), s.table or "", s.name))


def _why_kept(
    step: SchemaStep, live: Mapping[str, set[str]], others: Sequence[SchemaComponent]
) -> str | None:
    """Why a table component must stay although the rolled-back runs created it (None: it can go)."""
    if step.table and live.get(step.table):
        return (
            f"{_runs(live[step.table])} still {'has' if len(live[step.table]) == 1 else 'have'} records in "
            f"{step.table} that this rollback does not remove"
        )
    if step.kind == "column":
        for o in others:
            if o.kind == "key" and o.table == step.table and step.name in o.detail.get("columns", []):
                return f"the alternate key {o.name} created by run {o.run_id} (not rolled back) uses it"
    if step.kind == "table":
        users = {o.run_id for o in others if o.table == step.table}
        if users:
            return f"{_runs(users)} (not rolled back) created components on it"
        refs = [o for o in others if o.kind == "relationship" and o.detail.get("referenced") == step.name]
        if refs:
            return f"the lookup {refs[0].table}.{refs[0].detail.get('lookup')} of run {refs[0].run_id} refers to it"
    return None


def plan_schema_rollback(
    components: Sequence[SchemaComponent],
    live: Mapping[str, set[str]],
    others: Sequence[SchemaComponent] = (),
) -> SchemaRollback:
    """Steps removing the schema components the rolled-back runs created (`components`), and what stays.

    `live`: table -> runs that still have ledgered records in it after the records were rolled back;
    `others`: schema components of runs that are not rolled back. Schema their records or components use
    stays. Components of a table that is removed go with it (one request, not one per column)."""
    kept: list[tuple[SchemaStep, str]] = []
    removable: list[SchemaStep] = []
    for step in _merge(components):
        if step.kind in ("solution", "publisher"):
            removable.append(step)
            continue
        why = _why_kept(step, live, others)
        if why is None and step.kind == "table":
            refs = [
                k for k, _ in kept if k.kind == "relationship" and k.detail.get("referenced") == step.name
            ]
            why = f"the kept {refs[0].label} refers to it" if refs else None
        if why is None:
            removable.append(step)
        else:
            kept.append((step, why))
    dropped_tables = {s.name for s in removable if s.kind == "table"}
    steps: list[SchemaStep] = []
    for step in removable:
        if step.kind not in ("table", "solution", "publisher") and step.table in dropped_tables:
            continue  # removed with its table; its ledger rows are stamped with the table's
        steps.append(step)
    steps = [_with_subsumed(s, removable) if s.kind == "table" else s for s in steps]
    held = [s for s, _ in kept] + [
        SchemaStep(o.kind, o.table, o.name, o.component_id, o.detail, ())
        for o in others
        if o.kind not in ("solution", "publisher")
    ]
    containers = _keep_containers(steps, held, others)
    stays = {id(step) for step, _ in containers}
    return SchemaRollback([s for s in steps if id(s) not in stays], kept + containers)


def _with_subsumed(table: SchemaStep, removable: Sequence[SchemaStep]) -> SchemaStep:
    extra = tuple(
        src
        for s in removable
        if s.kind not in ("table", "solution", "publisher") and s.table == table.name
        for src in s.sources
    )
    return SchemaStep(
        table.kind, table.table, table.name, table.component_id, table.detail, table.sources + extra
    )


def _keep_containers(
    steps: Sequence[SchemaStep], held: Sequence[SchemaStep], others: Sequence[SchemaComponent]
) -> list[tuple[SchemaStep, str]]:
    """The solution stays while it holds components that stay; the publisher while its solution stays or
    other runs still use it."""
    out: list[tuple[SchemaStep, str]] = []
    other_runs = {o.run_id for o in others}
    solution = next((s for s in steps if s.kind == "solution"), None)
    if solution is not None and held:
        why = f"it still holds {len(held)} component(s) that stay (e.g. {held[0].label})"
        out.append((solution, why))
    publisher = next((s for s in steps if s.kind == "publisher"), None)
    if publisher is not None:
        if out:
            out.append((publisher, f"its solution {out[0][0].name} stays"))
        elif held or other_runs:
            out.append(
                (
                    publisher,
                    f"{_runs(other_runs)} (not rolled back) still use it"
                    if other_runs
                    else "components created under it stay",
                )
            )
    return out
