"""Deactivate or delete, through the ledger, the records whose Close source is gone (the plan of
`load.deletions`; `mappings/settings.yaml` `delta.deleted_records`).

- deactivate: the record is set to its table's inactive state (account/contact Inactive, lead Disqualified,
  activities Canceled, each with the state's default status reason; an open opportunity is closed as Lost
  through LoseOpportunity, as Dataverse allows no other way). The ledger row (`deactivated`) holds the state
  before, which a rollback puts back. A record already in that state (a lost deal) is ledgered with an empty
  before-image: nothing to undo, and it is not planned again. A table without a state (annotation) cannot be
  deactivated: its records are deleted as with `delete`.
- delete: the record is read back first (every column the load writes, its lookups, its activity parties,
  its file body) and that full image is ledgered (`deleted`) before the DELETE is sent, so that a rollback
  re-creates it under its original id with its original values.
Intents are durable before anything is sent (the ledger's write-ahead rule); a refused write is recorded
in `ledger.rejected` with the server's message.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import groupby
from typing import Any

from migration_assets.clients.dataverse.batch import BatchRequest
from migration_assets.clients.dataverse.client import DataverseClient
from migration_assets.clients.dataverse.errors import DataverseError
from migration_assets.clients.dataverse.metadata import EntityMeta
from migration_assets.load import diff as ld
from migration_assets.load.deletions import Candidate, DeletionPlan
from migration_assets.load.engine import CLOSE_ACTION_COLUMNS, TableLoader
from migration_assets.load.ledger import Intent, Ledger, Rejection
from migration_assets.load.lookups import READ_CHUNK
from migration_assets.mapping.ids import id_for_key

MODES = ("deactivate", "delete")
# Written at create only, never compared by the loader, yet part of what a re-created record must carry
# (overriddencreatedon: taken from createdon, see `_images`).
CREATE_ONLY = ("documentbody",)
LOST_CANCELED = 4  # opportunity statuscode "Canceled" (Lost): the source deal no longer exists


@dataclass
class DeletionReport:
    mode: str
    deactivated: int = 0
    deleted: int = 0
    already_inactive: int = 0
    already_gone: int = 0
    failed: list[str] = field(default_factory=list)
    per_table: dict[str, dict[str, int]] = field(default_factory=dict)

    def count(self, table: str, what: str, n: int = 1) -> None:
        counts = self.per_table.setdefault(table, {"deactivated": 0, "deleted": 0, "unchanged": 0})
        counts[what] += n

    def render(self) -> str:
        return (
            f"deleted records ({self.mode}): deactivated {self.deactivated}, deleted {self.deleted}, "
            f"already inactive {self.already_inactive}, already gone {self.already_gone}, "
            f"failed {len(self.failed)}"
        )


def deletion_close_id(opportunity_id: str) -> str:
    """The opportunityclose a Lose of a deleted opportunity creates (another id than a Win/Lose of the load)."""
    return id_for_key(f"opportunityclose:deleted:{opportunity_id.lower()}")


def inactive_state(meta: EntityMeta) -> tuple[int, int] | None:
    """(statecode, statuscode) a record of this table is deactivated to; None when the table has no state
    (its records are deleted instead)."""
    state_attr = meta.attributes.get("statecode")
    if state_attr is None:
        return None
    if meta.logical_name in ("lead", "opportunity") or meta.primary_id == "activityid":
        wanted = 2  # Disqualified, Lost, Canceled
    else:
        wanted = 1  # Inactive
    option = next((o for o in state_attr.options if o.value == wanted), None)
    if option is None:
        return None
    if meta.logical_name == "opportunity":
        return wanted, LOST_CANCELED
    return wanted, int(option.default_status) if option.default_status is not None else -1


def _in_filter(pk: str, ids: Sequence[str]) -> str:
    values = ",".join(f"'{i}'" for i in ids)
    return f"Microsoft.Dynamics.CRM.In(PropertyName='{pk}',PropertyValues=[{values}])"


def _state_columns(meta: EntityMeta) -> list[str]:
    """State, with what a Lose overwrites on an opportunity: the before-image of a deactivation."""
    columns = ["statecode", "statuscode"]
    if meta.logical_name == "opportunity":
        columns += [c for c in CLOSE_ACTION_COLUMNS if c in meta.attributes]
    return columns


def _state_queries(meta: EntityMeta, ids: list[str]) -> list[tuple[list[str], str]]:
    """($select, $filter) of the reads of these records' states."""
    select = [meta.primary_id, *_state_columns(meta)]
    return [
        (select, _in_filter(meta.primary_id, ids[start : start + READ_CHUNK]))
        for start in range(0, len(ids), READ_CHUNK)
    ]


def _states(client: DataverseClient, meta: EntityMeta, ids: list[str]) -> dict[str, dict[str, Any]]:
    """State of each existing record (the before-image)."""
    columns = _state_columns(meta)
    found: dict[str, dict[str, Any]] = {}
    for select, flt in _state_queries(meta, ids):
        for rec in client.query(meta.logical_name, select=select, filter=flt):
            found[str(rec[meta.primary_id]).lower()] = {c: rec.get(c) for c in columns}
    return found


def _error(part: Any) -> tuple[int | None, str, str]:
    if part is None:
        return None, "", "no answer in $batch"
    code, message = part.error or ("", part.reason)
    return part.status, code, message


@dataclass
class _Writes:
    """One table's planned writes, sent with the other tables' in as few `$batch`es as they fit in;
    `after` counts what landed (given the refused record ids)."""

    requests: list[BatchRequest]
    todo: list[Candidate]
    seqs: list[int]
    operation: str
    after: Callable[[set[str]], None]
    gone_ok: bool = False


class DeletionApplier:
    def __init__(
        self,
        client: DataverseClient,
        ledger: Ledger,
        mode: str,
        staged_columns: Mapping[str, Sequence[str]],
        log: Callable[[str], None] = lambda _m: None,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"delta.deleted_records must be one of {', '.join(MODES)}, got {mode!r}")
        self.client, self.ledger, self.mode, self.log = client, ledger, mode, log
        self.staged_columns = staged_columns
        self.report = DeletionReport(mode)

    def apply(self, plan: DeletionPlan) -> DeletionReport:
        """Every planned record, table by table in the plan's order (children before parents). The states
        of all tables are read in one round trip and the writes of all tables sent together, in that order
        (a `$batch` runs its parts in order), so a delta's few deletions cost a few requests, not a few per
        table."""
        groups = [(table, list(group)) for table, group in groupby(plan.gone, key=lambda c: c.table)]
        metas = {table: self.client.metadata(table) for table, _ in groups}
        states = {
            table: inactive_state(meta) if self.mode == "deactivate" else None
            for table, meta in metas.items()
        }
        self.client.read_together(
            [
                self.client.query_request(table, select=select, filter=flt)
                for table, candidates in groups
                if states[table] is not None
                for select, flt in _state_queries(metas[table], [c.record_id for c in candidates])
            ]
        )
        writes: list[_Writes] = []
        try:
            for table, candidates in groups:
                state = states[table]
                if state is None:
                    writes += self._delete(metas[table], candidates)
                else:
                    writes += self._deactivate(metas[table], candidates, state)
        finally:
            self.client.drop_read_ahead()
        self._send(writes)
        for table, _ in groups:
            self.log(f"{table}: {self.report.per_table.get(table)}")
        return self.report

    # -- deactivate -------------------------------------------------------------------------------------
    def _deactivate(
        self, meta: EntityMeta, candidates: list[Candidate], state: tuple[int, int]
    ) -> list[_Writes]:
        table = meta.logical_name
        current = _states(self.client, meta, [c.record_id for c in candidates])
        self.report.already_gone += sum(1 for c in candidates if c.record_id not in current)
        present = [c for c in candidates if c.record_id in current]
        is_opportunity = table == "opportunity"

        def inactive(c: Candidate) -> bool:
            code = current[c.record_id]["statecode"]
            return code in (1, 2) if is_opportunity else code == state[0]

        settled = [c for c in present if inactive(c)]
        if settled:  # nothing to change or undo; ledgered so that no later run plans it again
            self.ledger.record_done(
                [Intent(table, c.record_id, c.close_id, "deactivated", {}) for c in settled]
            )
            self.report.already_inactive += len(settled)
            self.report.count(table, "unchanged", len(settled))
        todo = [c for c in present if not inactive(c)]
        if not todo:
            return []
        intents = [
            Intent(
                table,
                c.record_id,
                c.close_id,
                "deactivated",
                current[c.record_id],
            )
            for c in todo
        ]
        seqs = self.ledger.begin(intents)
        close_seqs = (
            self.ledger.begin(
                [
                    Intent("opportunityclose", deletion_close_id(c.record_id), c.close_id, "created")
                    for c in todo
                ]
            )
            if is_opportunity
            else []
        )
        requests = [self._state_request(meta, c.record_id, state) for c in todo]

        def after(failed: set[str]) -> None:
            if (
                close_seqs
            ):  # a refused Lose created nothing: its intent stays pending (rollback finds it gone)
                self.ledger.finish(
                    [s for c, s in zip(todo, close_seqs, strict=True) if c.record_id not in failed]
                )
            done = len(todo) - len(failed)
            self.report.deactivated += done
            self.report.count(table, "deactivated", done)

        return [_Writes(requests, todo, seqs, "deactivate", after)]

    def _state_request(self, meta: EntityMeta, record_id: str, state: tuple[int, int]) -> BatchRequest:
        headers = dict(self.client.write_headers)
        if meta.logical_name == "opportunity":
            close = {
                "activityid": deletion_close_id(record_id),
                "subject": "Deleted in Close",
                "opportunityid@odata.bind": f"/{meta.entity_set_name}({record_id})",
            }
            return BatchRequest(
                "POST", "LoseOpportunity", {"Status": state[1], "OpportunityClose": close}, headers
            )
        body = {"statecode": state[0]} if state[1] == -1 else {"statecode": state[0], "statuscode": state[1]}
        return BatchRequest(
            "PATCH", f"{meta.entity_set_name}({record_id})", body, {**headers, "If-Match": "*"}
        )

    # -- delete -----------------------------------------------------------------------------------------
    def _images(self, meta: EntityMeta, ids: list[str]) -> dict[str, dict[str, Any]]:
        """The full before-image of each existing record, in the payload form a create sends."""
        table = meta.logical_name
        columns = list(self.staged_columns.get(table, ()))
        reader = TableLoader(self.client, self.ledger, table, columns, READ_CHUNK)
        created = "overriddencreatedon" in meta.attributes
        select = sorted(
            set(reader.select)
            | {c for c in CREATE_ONLY if c in meta.attributes}
            | ({"createdon"} if created else set())
        )
        images: dict[str, dict[str, Any]] = {}
        for start in range(0, len(ids), READ_CHUNK):
            flt = _in_filter(meta.primary_id, ids[start : start + READ_CHUNK])
            for rec in self.client.query(table, select=select, filter=flt, annotations=True):
                image = ld.current_payload(rec, reader.lookups, reader.sets)
                if created:
                    # After a create with overriddencreatedon, createdon holds the historical date and
                    # overriddencreatedon the import time (reference §7.12): a re-create sends the former.
                    image["overriddencreatedon"] = image.pop("createdon", None)
                self._bind_to_target_tables(meta, reader, rec, image)
                images[str(rec[meta.primary_id]).lower()] = image
        if "_parties" in columns and images:
            parties = reader.read_parties(sorted(images))
            for rid, image in images.items():
                image[f"{table}_activity_parties"] = parties.get(rid, [])
        return images

    def _bind_to_target_tables(
        self, meta: EntityMeta, reader: TableLoader, record: Mapping[str, Any], image: dict[str, Any]
    ) -> None:
        """A polymorphic lookup (an annotation's objectid: lead, email, opportunity...) reads back once per
        navigation property of the staged columns, each with the same record: a create must send it under
        the navigation property of the table it points at, and only there."""
        for nav, lk in reader.lookups.items():
            logical = record.get(f"_{lk.attribute}_value{ld.LOGICAL_ANN}")
            if not logical or logical == lk.target or image.get(nav + ld.BIND) is None:
                continue
            image.pop(nav + ld.BIND)
            try:
                right = meta.bind_name(lk.attribute, logical)
            except DataverseError:
                continue  # no navigation property of ours points there: nothing a create could send
            value = str(record[f"_{lk.attribute}_value"]).lower()
            image[right + ld.BIND] = f"/{self.client.entity_set(logical)}({value})"

    def _delete(self, meta: EntityMeta, candidates: list[Candidate]) -> list[_Writes]:
        table = meta.logical_name
        images = self._images(meta, [c.record_id for c in candidates])
        self.report.already_gone += sum(1 for c in candidates if c.record_id not in images)
        todo = [c for c in candidates if c.record_id in images]
        if not todo:
            return []
        seqs = self.ledger.begin(
            [Intent(table, c.record_id, c.close_id, "deleted", images[c.record_id]) for c in todo]
        )
        headers = dict(self.client.write_headers)
        requests = [
            BatchRequest("DELETE", f"{meta.entity_set_name}({c.record_id})", None, headers) for c in todo
        ]

        def after(failed: set[str]) -> None:
            done = len(todo) - len(failed)
            self.report.deleted += done
            self.report.count(table, "deleted", done)

        return [_Writes(requests, todo, seqs, "delete", after, gone_ok=True)]

    # -- both ---------------------------------------------------------------------------------------------
    def _send(self, writes: list[_Writes]) -> None:
        """`$batch`es (continue-on-error) of every table's requests, in order; finishes the ledger rows and
        records each refusal in `ledger.rejected` with the server's message."""
        flat = [(w, i) for w in writes for i in range(len(w.requests))]
        failed: dict[int, set[str]] = {id(w): set() for w in writes}
        size = self.client.batch_request_size
        for start in range(0, len(flat), size):
            chunk = flat[start : start + size]
            parts = self.client.execute_batch([w.requests[i] for w, i in chunk])  # type: ignore[misc]
            done: list[int] = []
            refused: list[tuple[int, Rejection]] = []
            for (w, i), part in zip(chunk, parts, strict=True):
                c, seq = w.todo[i], w.seqs[i]
                if part is not None and (part.ok or (w.gone_ok and part.status == 404)):
                    done.append(seq)
                    continue
                status, code, message = _error(part)
                failed[id(w)].add(c.record_id)
                self.report.failed.append(f"{w.operation} {c.table}({c.record_id}): {message}")
                refused.append(
                    (seq, Rejection(c.table, c.record_id, c.close_id, w.operation, status, code, message))
                )
            self.ledger.finish(done, refused)
        for w in writes:
            w.after(failed[id(w)])
