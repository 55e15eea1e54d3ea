"""The in-memory record store: one dict per table keyed by id, alternate-key indexes, undo-log transactions.

Thread safety: every read-modify-write section runs under `lock` (an RLock), and is never held across an
`await`. Transactions are tracked per logical caller with a ContextVar holding a stack of undo journals, so a
`$batch` changeset (DV-EDGE) or a bulk message rolls back only its own writes when an exception escapes.

File bodies (file_store.py) are written to disk as a row is put and the row keeps a `StoredBody`. A body a
write replaces or deletes is released when nothing can bring it back: at once outside a transaction, when
the outermost transaction commits inside one (its undo journal still holds the old row); a rollback instead
releases the bodies its undone writes had stored.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from emulators.dataverse.errors import DataverseError
from emulators.dataverse.file_store import BODY_COLUMNS, BodyStore, StoredBody, bodies_in
from emulators.dataverse.metadata import Entity, Key, Metadata

Row = dict[str, Any]
_JOURNALS: contextvars.ContextVar[tuple[list, ...]] = contextvars.ContextVar("dv_journals", default=())


def key_value(row: Row, attr: str) -> Any:
    """The comparable value of a key column (lookups are stored as [table, id])."""
    value = row.get(attr)
    if isinstance(value, list):
        return value[1]
    if isinstance(value, str):
        return value.lower()  # SQL Server's default collation compares keys case-insensitively
    return value


class Store:
    def __init__(self, metadata: Metadata):
        self.metadata = metadata
        self.lock = threading.RLock()
        self.rows: dict[str, dict[str, Row]] = {name: {} for name in metadata.tables}
        self.key_index: dict[tuple[str, str], dict[tuple, str]] = {}
        self._version = 1_000_000
        self.write_count = 0  # bumped on every change; persistence saves when it moved
        # activity id -> activityparty ids, so replacing or reading an activity's parties is not a table scan
        self.parties_by_activity: dict[str, set[str]] = {}
        self.bodies = BodyStore()
        # Bodies replaced inside a transaction, by its outermost journal: released when that one commits.
        self._replaced: dict[int, list[StoredBody]] = {}
        metadata.key_checker = self.activate_key

    # ---- basics ---------------------------------------------------------------------------------------
    def table(self, name: str) -> dict[str, Row]:
        rows = self.rows.get(name)
        if rows is None:
            rows = self.rows[name] = {}
        return rows

    def get(self, table: str, record_id: str) -> Row | None:
        return self.table(table).get(record_id)

    def next_version(self) -> int:
        with self.lock:
            self._version += 1
            return self._version

    # ---- writes ---------------------------------------------------------------------------------------
    def put(self, ent: Entity, record_id: str, row: Row | None) -> None:
        """Insert/replace (row) or delete (None) one record, enforcing active alternate keys, journaled."""
        with self.lock:
            rows = self.table(ent.logical_name)
            old = rows.get(record_id)
            keys = self.metadata.active_keys(ent) if ent.keys else []
            if row is not None:
                for key in keys:
                    self._check_unique(ent, key, record_id, row)
                self._store_bodies(ent.logical_name, row)
            journals = _JOURNALS.get()
            for journal in journals:
                journal.append((ent, record_id, old))
            self._raw_put(ent, record_id, old, row, keys)
            if ent.logical_name in BODY_COLUMNS:
                gone = self._replaced_bodies(ent.logical_name, old, row)
                if gone and journals:
                    self._replaced.setdefault(id(journals[0]), []).extend(gone)
                elif gone:
                    self.bodies.release(gone)

    def _store_bodies(self, table: str, row: Row) -> None:
        """Write the row's new file bodies to disk; the row keeps their references."""
        for column in BODY_COLUMNS.get(table, ()):
            value = row.get(column)
            if isinstance(value, str) and value:
                row[column] = self.bodies.save(value)

    @staticmethod
    def _replaced_bodies(table: str, old: Row | None, row: Row | None) -> list[StoredBody]:
        kept = {id(b) for b in bodies_in(row, table)}
        return [b for b in bodies_in(old, table) if id(b) not in kept]

    def _raw_put(
        self, ent: Entity, record_id: str, old: Row | None, row: Row | None, keys: list[Key]
    ) -> None:
        rows = self.table(ent.logical_name)
        for key in keys:
            index = self.key_index.setdefault((ent.logical_name, key.schema_name), {})
            if old is not None:
                values = self._key_tuple(key, old)
                if values is not None and index.get(values) == record_id:
                    del index[values]
            if row is not None:
                values = self._key_tuple(key, row)
                if values is not None:
                    index[values] = record_id
        if ent.logical_name == "activityparty":
            if old is not None and isinstance(old.get("activityid"), list):
                self.parties_by_activity.get(old["activityid"][1], set()).discard(record_id)
            if row is not None and isinstance(row.get("activityid"), list):
                self.parties_by_activity.setdefault(row["activityid"][1], set()).add(record_id)
        if row is None:
            rows.pop(record_id, None)
        else:
            rows[record_id] = row
        self.write_count += 1

    @staticmethod
    def _key_tuple(key: Key, row: Row) -> tuple | None:
        values = tuple(key_value(row, a) for a in key.key_attributes)
        return None if any(v is None for v in values) else values

    def _check_unique(self, ent: Entity, key: Key, record_id: str, row: Row) -> None:
        values = self._key_tuple(key, row)
        if values is None:
            return
        holder = self.key_index.get((ent.logical_name, key.schema_name), {}).get(values)
        if holder is not None and holder != record_id:
            shown = ", ".join(
                str(row.get(a) if not isinstance(row.get(a), list) else row[a][1]) for a in key.key_attributes
            )
            raise DataverseError(
                412,
                "0x80060892",
                f"A record that has the attribute values {shown} already exists. The entity key "
                f"{key.display_name or key.schema_name} requires that this set of attributes contains unique "
                "values. Select unique values and try again.",
            )

    def find_by_key(self, ent: Entity, key: Key, values: dict[str, Any]) -> str | None:
        probe = {a: values.get(a) for a in key.key_attributes}
        tup = self._key_tuple(key, probe)
        if tup is None:
            return None
        return self.key_index.get((ent.logical_name, key.schema_name), {}).get(tup)

    def activate_key(self, ent: Entity, key: Key) -> bool:
        """Build the unique index of a key; False (index Failed) when existing rows hold duplicates."""
        with self.lock:
            index: dict[tuple, str] = {}
            for record_id, row in self.table(ent.logical_name).items():
                values = self._key_tuple(key, row)
                if values is None:
                    continue
                if values in index:
                    return False
                index[values] = record_id
            self.key_index[(ent.logical_name, key.schema_name)] = index
            return True

    # ---- transactions ----------------------------------------------------------------------------------
    @contextmanager
    def transaction(self) -> Iterator[None]:
        """All writes inside roll back if an exception escapes (nestable; per async task / thread)."""
        journal: list = []
        outer = _JOURNALS.get()
        outermost = outer[0] if outer else journal
        token = _JOURNALS.set((*outer, journal))
        try:
            yield
        except BaseException:
            self._rollback(journal, id(outermost))
            raise
        finally:
            _JOURNALS.reset(token)
            if not outer:
                with self.lock:
                    replaced = self._replaced.pop(id(journal), [])
                self.bodies.release(replaced)  # after a rollback: what its restored rows did not take back

    def _rollback(self, journal: list, outermost: int) -> None:
        with self.lock:
            undone: list[StoredBody] = []
            for ent, record_id, old in reversed(journal):
                current = self.table(ent.logical_name).get(record_id)
                keys = self.metadata.active_keys(ent) if ent.keys else []
                self._raw_put(ent, record_id, current, old, keys)
                undone.extend(self._replaced_bodies(ent.logical_name, current, old))
            restored = {id(b) for e, _, old in journal for b in bodies_in(old, e.logical_name)}
            replaced = self._replaced.get(outermost, [])
            replaced[:] = [b for b in replaced if id(b) not in restored]
        self.bodies.release(undone)

    # ---- persistence support ---------------------------------------------------------------------------
    def body_names(self) -> set[str]:
        """The file names of every body a row refers to."""
        with self.lock:
            return {
                body.path.name
                for table in BODY_COLUMNS
                for row in self.table(table).values()
                for body in bodies_in(row, table)
            }

    def snapshot(self) -> dict:
        with self.lock:
            return {"version": self._version, "rows": {t: dict(r) for t, r in self.rows.items() if r}}

    def restore(self, data: dict) -> None:
        with self.lock:
            self._version = max(self._version, int(data.get("version", 0)))
            for table, rows in data.get("rows", {}).items():
                for column in BODY_COLUMNS.get(table, ()):
                    for row in rows.values():
                        if column in row:
                            row[column] = self.bodies.from_json(row[column])
                if table in BODY_COLUMNS:  # a state saved before bodies went to disk names none
                    for row in rows.values():
                        self._store_bodies(table, row)
                self.table(table).update(rows)
                if table == "activityparty":
                    for pid, row in rows.items():
                        if isinstance(row.get("activityid"), list):
                            self.parties_by_activity.setdefault(row["activityid"][1], set()).add(pid)
            for ent in self.metadata.tables.values():
                for key in ent.keys:
                    if key.status == "Active" and not self.activate_key(ent, key):
                        key.status = "Failed"
