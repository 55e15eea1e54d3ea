"""What a rollback must do, computed from ledger rows alone (pure; the executor lives in
`migration_assets.rollback`).

Per record touched by the selected runs:
- created by one of them (done, or pending: the batch may have landed before the run died) -> delete it;
  later updates of it by the same runs do not matter;
- only updated by them -> restore, column by column, the value it had before the FIRST selected write
  (the earliest before-image wins), so rolling back several runs returns to the state before all of them.

Restores run first (so a restored lookup no longer points at a record about to be deleted), then deletes,
children before parents: annotations, activities, opportunities, leads, contacts, accounts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from migration_assets.lib.ledger import Entry

# Parents after children: a lower rank is deleted first. Unknown tables (custom activity tables) are
# activities: they hang off leads/contacts/opportunities and may carry annotations.
DELETE_RANK = {
    "annotation": 0,
    "phonecall": 1,
    "email": 1,
    "task": 1,
    "appointment": 1,
    "opportunity": 2,
    "lead": 3,
    "contact": 4,
    "account": 5,
}
ACTIVITY_RANK = 1
STATE_COLUMNS = ("statecode", "statuscode")


def delete_rank(table: str) -> int:
    return DELETE_RANK.get(table, ACTIVITY_RANK)


@dataclass(frozen=True)
class Step:
    kind: str  # delete | restore
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
    values: dict[str, Any] = field(default_factory=dict)
    sources: list[tuple[str, int]] = field(default_factory=list)
    first_seen: int = 0


def plan_rollback(entries: Sequence[Entry]) -> list[Step]:
    """Steps undoing `entries` (ledger rows of the runs to roll back, oldest first)."""
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
        elif e.action == "updated":
            for column, value in (e.before_image or {}).items():
                a.values.setdefault(column, value)  # earliest before-image wins
    restores = [a for a in acc.values() if not a.created and a.values]
    deletes = [a for a in acc.values() if a.created]
    # Nothing to restore when an update recorded no before-image columns: the record is only "touched".
    untouched = [a for a in acc.values() if not a.created and not a.values]
    restores.sort(key=lambda a: -a.first_seen)  # newest first: undo in reverse order
    deletes.sort(key=lambda a: (delete_rank(a.table), -a.first_seen))
    steps = [
        Step("restore", a.table, a.record_id, a.close_id, dict(a.values), tuple(a.sources)) for a in restores
    ]
    steps += [Step("delete", a.table, a.record_id, a.close_id, {}, tuple(a.sources)) for a in deletes]
    # Ledger rows with nothing to undo are still marked rolled back, through a no-op restore.
    steps += [Step("restore", a.table, a.record_id, a.close_id, {}, tuple(a.sources)) for a in untouched]
    return steps


def summarize(steps: Sequence[Step]) -> dict[str, dict[str, int]]:
    """{table: {"delete": n, "restore": n}} for reports."""
    out: dict[str, dict[str, int]] = {}
    for s in steps:
        counts = out.setdefault(s.table, {"delete": 0, "restore": 0})
        counts[s.kind] += 1
    return out
