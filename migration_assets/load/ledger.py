"""The write ledger (DuckDB schema `ledger`): every record a run writes to Dataverse, durable before the
next batch is sent (DESIGN §5).

The loader uses it as a write-ahead log. Before a batch goes out it commits one `pending` row per record it
is about to write (created | updated, with the before-image of what it updates); after the server answered
it commits the outcome (`done`, or `rejected` with the server's message in `ledger.rejected`). A run killed
at any moment therefore leaves, for every record the server may have touched, a ledger row saying so: a
re-run reads the target again and converges, and a rollback deletes/restores everything the run may have
written, including the batch that was in flight when it died.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import duckdb
import pyarrow as pa

SCHEMA = "ledger"
# deleted / deactivated: a delta run removed a record whose Close source is gone (before-image: the whole
# record, or its state); released: a load emptied a superseded record's alternate-key columns so that another
# record could take the value (before-image: those columns; load/key_release.py); a rollback run's deleted /
# restored: what it undid.
ACTIONS = ("created", "updated", "deleted", "deactivated", "restored", "released")
STATUSES = ("pending", "done", "rejected")

_DDL = [
    f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}",
    f"""CREATE TABLE IF NOT EXISTS {SCHEMA}.runs (
        run_id VARCHAR PRIMARY KEY, kind VARCHAR NOT NULL, started_at TIMESTAMPTZ NOT NULL,
        finished_at TIMESTAMPTZ, status VARCHAR NOT NULL, note VARCHAR)""",
    f"""CREATE TABLE IF NOT EXISTS {SCHEMA}.writes (
        run_id VARCHAR NOT NULL, seq BIGINT NOT NULL, table_name VARCHAR NOT NULL, record_id VARCHAR NOT NULL,
        close_id VARCHAR, action VARCHAR NOT NULL, status VARCHAR NOT NULL, before_image VARCHAR,
        written_at TIMESTAMPTZ NOT NULL, rolled_back_by VARCHAR)""",
    f"""CREATE TABLE IF NOT EXISTS {SCHEMA}.rejected (
        run_id VARCHAR NOT NULL, table_name VARCHAR NOT NULL, record_id VARCHAR, close_id VARCHAR,
        operation VARCHAR NOT NULL, status INTEGER, code VARCHAR, message VARCHAR NOT NULL,
        rejected_at TIMESTAMPTZ NOT NULL)""",
    # Schema components a run created (publisher, solution, tables, columns, relationships, keys, option
    # values added to columns that existed), so that its rollback removes exactly those. `detail` is JSON.
    f"""CREATE TABLE IF NOT EXISTS {SCHEMA}.schema_components (
        run_id VARCHAR NOT NULL, seq BIGINT NOT NULL, kind VARCHAR NOT NULL, table_name VARCHAR,
        name VARCHAR NOT NULL, component_id VARCHAR, detail VARCHAR, status VARCHAR NOT NULL,
        created_at TIMESTAMPTZ NOT NULL, removed_by VARCHAR)""",
]
SCHEMA_KINDS = ("publisher", "solution", "table", "column", "relationship", "key", "option")


class _RunSequences:
    """Sequence numbers of a run's rows in a ledger table, each handed out once in this process. The steps of
    one run may write at the same time, each through its own ledger: a number taken from the table's max
    when each ledger opened would be taken twice, and a rollback's order and `done`'s update would mix the
    two steps' rows. Only one process writes the warehouse (DuckDB), so the highest number this process
    handed out, with the table's max when the ledger opened, gives the next free one. `lock` also orders
    the writes of the run's one row in `runs` (DuckDB refuses the second of two overlapping updates)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self._high: dict[tuple[str, str, str], int] = {}

    def take(self, key: tuple[str, str, str] | None, in_table: int, n: int) -> list[int]:
        """`n` numbers after `in_table` (the table's max when the ledger opened, or its last number) and
        after every number handed out for `key`. None: an in-memory database, which one connection owns
        (its numbers are not remembered: a later database could reuse the connection's identity)."""
        with self.lock:
            start = max(in_table, self._high.get(key, 0) if key else 0) + 1
            if n and key:
                self._high[key] = start + n - 1
            return list(range(start, start + n))


SEQUENCES = _RunSequences()


def _sequence_key(con: duckdb.DuckDBPyConnection, table: str, run_id: str) -> tuple[str, str, str] | None:
    """(database file, ledger table, run) of a ledger's numbers; None for an in-memory database."""
    row = con.execute(
        "SELECT path FROM duckdb_databases() WHERE database_name = current_database()"
    ).fetchall()
    return (str(row[0][0]), table, run_id) if row and row[0][0] else None


# Column order and Arrow types of the tables above, for columnar inserts.
_TEXT, _STAMP = pa.string(), pa.timestamp("us", tz="UTC")
WRITES_COLUMNS = [
    ("run_id", _TEXT),
    ("seq", pa.int64()),
    ("table_name", _TEXT),
    ("record_id", _TEXT),
    ("close_id", _TEXT),
    ("action", _TEXT),
    ("status", _TEXT),
    ("before_image", _TEXT),
    ("written_at", _STAMP),
    ("rolled_back_by", _TEXT),
]
REJECTED_COLUMNS = [
    ("run_id", _TEXT),
    ("table_name", _TEXT),
    ("record_id", _TEXT),
    ("close_id", _TEXT),
    ("operation", _TEXT),
    ("status", pa.int32()),
    ("code", _TEXT),
    ("message", _TEXT),
    ("rejected_at", _STAMP),
]


class LedgerError(RuntimeError):
    """The ledger cannot record or answer as asked (unknown run, bad action)."""


@dataclass(frozen=True)
class Intent:
    """One record the loader is about to write."""

    table: str
    record_id: str
    close_id: str | None
    action: str  # created | updated | deleted | deactivated | restored | released
    before_image: dict[str, Any] | None = None


@dataclass(frozen=True)
class Rejection:
    table: str
    record_id: str | None
    close_id: str | None
    operation: (
        str  # create | update | state | win | lose | delete | deactivate | restore | recreate | download
    )
    status: int | None
    code: str | None
    message: str


@dataclass(frozen=True)
class Entry:
    run_id: str
    seq: int
    table: str
    record_id: str
    close_id: str | None
    action: str
    status: str
    before_image: dict[str, Any] | None
    written_at: datetime
    rolled_back_by: str | None


def run_kind(job_name: str | None) -> str:
    """The ledger kind of a run of this job: delta runs and every other writing run are both undone by a
    rollback."""
    return "delta" if job_name == "delta" else "migrate"


def _now() -> datetime:
    return datetime.now(UTC)


def ensure_schema(con: duckdb.DuckDBPyConnection) -> None:
    for ddl in _DDL:
        con.execute(ddl)


class Ledger:
    """Ledger rows of one run on an open DuckDB connection. Every method commits before it returns."""

    def __init__(self, con: duckdb.DuckDBPyConnection, run_id: str, kind: str = "migrate") -> None:
        if not run_id:
            raise LedgerError("a ledger needs a run id")
        self.con = con
        self.run_id = run_id
        ensure_schema(con)
        with SEQUENCES.lock:  # two steps of one run open their ledgers at once: one run row
            row = con.execute(f"SELECT kind FROM {SCHEMA}.runs WHERE run_id = ?", [run_id]).fetchall()
            if not row:
                con.execute(
                    f"INSERT INTO {SCHEMA}.runs VALUES (?, ?, ?, NULL, 'running', NULL)",
                    [run_id, kind, _now()],
                )
        nxt = con.execute(
            f"SELECT coalesce(max(seq), 0) FROM {SCHEMA}.writes WHERE run_id = ?", [run_id]
        ).fetchall()
        self._seq = int(nxt[0][0]) if nxt else 0
        self._key = _sequence_key(con, "writes", run_id)

    # -- writes ---------------------------------------------------------------------------------------
    def begin(self, intents: Sequence[Intent]) -> list[int]:
        """Record intents as `pending` (committed) and return their sequence numbers."""
        for it in intents:
            if it.action not in ACTIONS:
                raise LedgerError(f"unknown ledger action {it.action!r} (known: {', '.join(ACTIONS)})")
        seqs = SEQUENCES.take(self._key, self._seq, len(intents))
        if not intents:
            return seqs
        now = _now()
        rows = [
            (
                self.run_id,
                s,
                it.table,
                it.record_id.lower(),
                it.close_id,
                it.action,
                "pending",
                None if it.before_image is None else json.dumps(it.before_image, sort_keys=True, default=str),
                now,
                None,
            )
            for s, it in zip(seqs, intents, strict=True)
        ]
        self._insert_writes(rows)
        self._seq = seqs[-1]
        return seqs

    def _insert_writes(self, rows: list[tuple[Any, ...]]) -> None:
        self.con.execute("BEGIN TRANSACTION")
        try:
            self._insert_rows("writes", WRITES_COLUMNS, rows)
            self.con.execute("COMMIT")
        except Exception:
            self.con.execute("ROLLBACK")
            raise

    def finish(self, done: Iterable[int], rejected: Sequence[tuple[int, Rejection]] = ()) -> None:
        """Mark intents done or rejected (one transaction) once the server has answered."""
        done_list = list(done)
        self.con.execute("BEGIN TRANSACTION")
        try:
            if done_list:
                self._set_status(done_list, "done")
            if rejected:
                self._set_status([s for s, _ in rejected], "rejected")
                self._insert_rejections([r for _, r in rejected])
            self.con.execute("COMMIT")
        except Exception:
            self.con.execute("ROLLBACK")
            raise

    def _set_status(self, seqs: list[int], status: str) -> None:
        self.con.register("__seqs", _seq_table(seqs))
        try:
            self.con.execute(
                f"UPDATE {SCHEMA}.writes SET status = ?, written_at = ? "
                f"WHERE run_id = ? AND seq IN (SELECT seq FROM __seqs)",
                [status, _now(), self.run_id],
            )
        finally:
            self.con.unregister("__seqs")

    def _insert_rejections(self, rejections: Sequence[Rejection]) -> None:
        now = _now()
        self._insert_rows(
            "rejected",
            REJECTED_COLUMNS,
            [
                (self.run_id, r.table, r.record_id, r.close_id, r.operation, r.status, r.code, r.message, now)
                for r in rejections
            ],
        )

    def _insert_rows(
        self, table: str, columns: Sequence[tuple[str, pa.DataType]], rows: list[tuple[Any, ...]]
    ) -> None:
        """One columnar INSERT: DuckDB's `executemany` runs a statement per row (seconds per 1,000 rows,
        which made the ledger the loader's slowest step); an Arrow table inserts them in milliseconds."""
        values = list(zip(*rows, strict=True)) if rows else [() for _ in columns]
        batch = pa.table(
            {name: pa.array(list(col), type=kind) for (name, kind), col in zip(columns, values, strict=True)}
        )
        self.con.register("__ledger_rows", batch)
        try:
            self.con.execute(f"INSERT INTO {SCHEMA}.{table} SELECT * FROM __ledger_rows")
        finally:
            self.con.unregister("__ledger_rows")

    def reject(self, rejections: Sequence[Rejection]) -> None:
        """Rows refused without an intent (e.g. a file that could not be downloaded)."""
        if not rejections:
            return
        self.con.execute("BEGIN TRANSACTION")
        try:
            self._insert_rejections(rejections)
            self.con.execute("COMMIT")
        except Exception:
            self.con.execute("ROLLBACK")
            raise

    def record_done(self, intents: Sequence[Intent]) -> list[int]:
        """Intents that are already complete (used by rollbacks, which act one record at a time)."""
        seqs = self.begin(intents)
        self.finish(seqs)
        return seqs

    def mark_rolled_back(self, keys: Iterable[tuple[str, int]]) -> None:
        """Stamp original ledger rows (run_id, seq) as undone by this (rollback) run."""
        pairs = list(keys)
        if not pairs:
            return
        import pyarrow as pa

        self.con.register(
            "__undone", pa.table({"run_id": [p[0] for p in pairs], "seq": [p[1] for p in pairs]})
        )
        try:
            self.con.execute("BEGIN TRANSACTION")
            self.con.execute(
                f"UPDATE {SCHEMA}.writes w SET rolled_back_by = ? FROM __undone u "
                f"WHERE w.run_id = u.run_id AND w.seq = u.seq",
                [self.run_id],
            )
            self.con.execute("COMMIT")
        except Exception:
            self.con.execute("ROLLBACK")
            raise
        finally:
            self.con.unregister("__undone")

    def close_run(self, status: str, note: str | None = None) -> None:
        with SEQUENCES.lock:  # steps of one run that end at once update its one row one after the other
            self.con.execute(
                f"UPDATE {SCHEMA}.runs SET finished_at = ?, status = ?, note = ? WHERE run_id = ?",
                [_now(), status, note, self.run_id],
            )

    # -- reads ----------------------------------------------------------------------------------------
    def rejected_count(self, table: str) -> int:
        row = self.con.execute(
            f"SELECT count(*) FROM {SCHEMA}.rejected WHERE run_id = ? AND table_name = ?",
            [self.run_id, table],
        ).fetchall()
        return int(row[0][0]) if row else 0


def _seq_table(seqs: list[int]) -> Any:
    return pa.table({"seq": pa.array(seqs, pa.int64())})


def _entry(row: tuple[Any, ...]) -> Entry:
    return Entry(
        run_id=row[0],
        seq=int(row[1]),
        table=row[2],
        record_id=row[3],
        close_id=row[4],
        action=row[5],
        status=row[6],
        before_image=None if row[7] is None else json.loads(row[7]),
        written_at=row[8],
        rolled_back_by=row[9],
    )


def entries(
    con: duckdb.DuckDBPyConnection,
    run_ids: Sequence[str] | None = None,
    include_rolled_back: bool = False,
    kinds: Sequence[str] = ("migrate", "delta"),
) -> list[Entry]:
    """Ledger rows of the given runs (None: every run of `kinds`), oldest first."""
    ensure_schema(con)
    sql = (
        f"SELECT w.* FROM {SCHEMA}.writes w JOIN {SCHEMA}.runs r USING (run_id) "
        f"WHERE r.kind IN (SELECT unnest(?)) AND w.status <> 'rejected'"
    )
    sql, params = _of_runs(
        sql, [list(kinds)], "w", run_ids, None if include_rolled_back else "rolled_back_by"
    )
    return [_entry(r) for r in con.execute(sql, params).fetchall()]


def _of_runs(
    sql: str, params: list[Any], alias: str, run_ids: Sequence[str] | None, not_undone: str | None
) -> tuple[str, list[Any]]:
    """`sql` limited to the given runs (None: all) and, with `not_undone`, to rows that column leaves NULL
    (not rolled back / not removed), oldest run first."""
    if run_ids is not None:
        sql += f" AND {alias}.run_id IN (SELECT unnest(?))"
        params = [*params, list(run_ids)]
    if not_undone:
        sql += f" AND {alias}.{not_undone} IS NULL"
    return sql + f" ORDER BY r.started_at, {alias}.run_id, {alias}.seq", params


def run_ids(con: duckdb.DuckDBPyConnection, kinds: Sequence[str] = ("migrate", "delta")) -> list[str]:
    ensure_schema(con)
    rows = con.execute(
        f"SELECT run_id FROM {SCHEMA}.runs WHERE kind IN (SELECT unnest(?)) ORDER BY started_at",
        [list(kinds)],
    ).fetchall()
    return [r[0] for r in rows]


def run_exists(con: duckdb.DuckDBPyConnection, run_id: str) -> bool:
    ensure_schema(con)
    return bool(con.execute(f"SELECT 1 FROM {SCHEMA}.runs WHERE run_id = ?", [run_id]).fetchall())


# -- schema components ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class SchemaComponent:
    """One schema component a run created (or was about to create: `pending`)."""

    run_id: str
    seq: int
    kind: str  # publisher | solution | table | column | relationship | key | option
    table: str | None
    name: str  # unique name, logical name, relationship or key SchemaName; option: the column
    component_id: str | None  # MetadataId, or the publisher/solution record id
    detail: dict[str, Any]  # option: {"value": n}; relationship: {"lookup": col, "referenced": table}
    status: str  # pending | done | rejected
    removed_by: str | None = None


class SchemaLedger:
    """Write-ahead rows of the schema components one run creates: `begin` commits a pending row before the
    request goes out, `done` records its id, `rejected` says the service refused it (nothing to undo). A run
    killed between the two leaves a pending row, which a rollback treats as "may exist"."""

    def __init__(self, con: duckdb.DuckDBPyConnection, run_id: str, kind: str = "migrate") -> None:
        if not run_id:
            raise LedgerError("a ledger needs a run id")
        ensure_schema(con)
        self.con = con
        self.run_id = run_id
        self.kind = kind
        self._registered = False
        row = con.execute(
            f"SELECT coalesce(max(seq), 0) FROM {SCHEMA}.schema_components WHERE run_id = ?", [run_id]
        ).fetchall()
        self._seq = int(row[0][0]) if row else 0
        self._key = _sequence_key(con, "schema_components", run_id)

    def begin(self, kind: str, table: str | None, name: str, detail: dict[str, Any] | None = None) -> int:
        if kind not in SCHEMA_KINDS:
            raise LedgerError(f"unknown schema component kind {kind!r} (known: {', '.join(SCHEMA_KINDS)})")
        if not self._registered:  # a run that creates no schema leaves no run row of its own
            Ledger(self.con, self.run_id, self.kind)  # so that `rollback --run` and `--all` find it
            self._registered = True
        self._seq = SEQUENCES.take(self._key, self._seq, 1)[0]
        self.con.execute(
            f"INSERT INTO {SCHEMA}.schema_components VALUES (?, ?, ?, ?, ?, NULL, ?, 'pending', ?, NULL)",
            [self.run_id, self._seq, kind, table, name, json.dumps(detail or {}, sort_keys=True), _now()],
        )
        return self._seq

    def done(self, seq: int, component_id: str | None) -> None:
        self.con.execute(
            f"UPDATE {SCHEMA}.schema_components SET status = 'done', component_id = ? "
            f"WHERE run_id = ? AND seq = ?",
            [component_id.lower() if component_id else None, self.run_id, seq],
        )

    def rejected(self, seq: int) -> None:
        self.con.execute(
            f"UPDATE {SCHEMA}.schema_components SET status = 'rejected' WHERE run_id = ? AND seq = ?",
            [self.run_id, seq],
        )


def schema_components(
    con: duckdb.DuckDBPyConnection, run_ids: Sequence[str] | None = None, include_removed: bool = False
) -> list[SchemaComponent]:
    """Schema components of the given runs (None: every run), oldest first; refused creates left out."""
    ensure_schema(con)
    sql = (
        f"SELECT c.run_id, c.seq, c.kind, c.table_name, c.name, c.component_id, c.detail, c.status, "
        f"c.removed_by FROM {SCHEMA}.schema_components c JOIN {SCHEMA}.runs r USING (run_id) "
        f"WHERE c.status <> 'rejected'"
    )
    sql, params = _of_runs(sql, [], "c", run_ids, None if include_removed else "removed_by")
    return [
        SchemaComponent(r[0], int(r[1]), r[2], r[3], r[4], r[5], json.loads(r[6] or "{}"), r[7], r[8])
        for r in con.execute(sql, params).fetchall()
    ]


def mark_schema_removed(con: duckdb.DuckDBPyConnection, keys: Iterable[tuple[str, int]], by: str) -> None:
    """Stamp schema component rows (run_id, seq) as removed by this rollback run."""
    for run_id, seq in keys:
        con.execute(
            f"UPDATE {SCHEMA}.schema_components SET removed_by = ? WHERE run_id = ? AND seq = ?",
            [by, run_id, seq],
        )
