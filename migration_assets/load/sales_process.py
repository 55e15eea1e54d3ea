"""Opportunities placed on their sales process: each migrated opportunity's business process flow instance
(`opportunitysalesprocesses` for the shipped "Opportunity Sales Process") set to the stage its Close status
maps to, through the ledger (the plan: `load/sales_process_plan.py`).

Reads (reference §9.1; power-automate-docs business-process-flows-code.md): the BPF definition
(`workflows`, category 4, by uniquename), its stages (`processstages` by `_processid_value`), their order
(`RetrieveActivePath` of an instance), the instance table's lookup to opportunity (its metadata), and the
instances already there. Creating an opportunity applies the process: Dataverse gives it an instance at the
first stage, so most opportunities need only updates. An instance already there (whoever created it, the
platform included) is ledgered `updated` with its before-image (stage, path, state), so that a rollback of
this load moves it back a stage at a time (`restore_instance`); an instance this load creates is ledgered
`created`, so that a rollback deletes it. So is the instance Dataverse gave an opportunity this same run
created, written or not: a rollback undoes whole runs, so it deletes that opportunity too, and its instance
would otherwise stay behind (deleting an opportunity does not delete its instances).

Writes: Dataverse moves an instance one stage per update, so an instance crossing three stages needs three
updates in order. All the writes of all instances go in one `$batch` (continue-on-error; at most 1000 parts,
instances never split across two), round after round: its parts run in order (reference §3.1), so a delta's
few moves cost one request, not a create and an update request per round. Every part is answered (§3.5):
the ledger records exactly what landed, and an instance whose write was refused is not placed, its reason
naming the first refused write (`sales_process_plan.settle`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import duckdb
import pyarrow as pa

from migration_assets.clients.dataverse.batch import MAX_BATCH_REQUESTS, BatchPartResponse, BatchRequest
from migration_assets.clients.dataverse.bulk_plan import DUPLICATE_ID_CODE, Failure, classify_failure
from migration_assets.clients.dataverse.client import (
    DataverseApiError,
    DataverseClient,
    DataverseError,
    odata_bind,
)
from migration_assets.clients.dataverse.odata import odata_string
from migration_assets.load.ledger import SCHEMA as LEDGER_SCHEMA
from migration_assets.load.ledger import Intent, Ledger, Rejection, ensure_schema
from migration_assets.load.sales_process_plan import (
    Instance,
    InstancePlan,
    Placement,
    Refusal,
    Stage,
    Write,
    batch_order,
    order_stages,
    pack,
    placement,
    plan_instance,
    restore_writes,
    settle,
)
from migration_assets.load.snapshot import SCHEMA as SNAPSHOT_SCHEMA
from migration_assets.mapping.ids import id_for_key
from migration_assets.resources.warehouse import quote, table_exists

BPF_CATEGORY = 4  # workflow.category: Business Process Flow
DEFINITION = 1  # workflow.type: Definition (not an Activation or Template row)
ACTIVATED = 1  # workflow.statecode: Activated (instances can only be made of an activated process)
READ_CHUNK = 50  # opportunity ids per filtered instance read (a delta's few changed opportunities)


class SalesProcessError(RuntimeError):
    """The business process flow the mapping names cannot be used (missing, no stages, no opportunity lookup)."""


@dataclass(frozen=True)
class SalesProcess:
    workflow_id: str
    uniquename: str
    table: str  # the instance table (logical name)
    primary_id: str
    opportunity_nav: str  # the lookup to opportunity: "<nav>@odata.bind" on write
    opportunity_attr: str  # ... read as "_<attr>_value"
    stages: tuple[Stage, ...]  # in process order


def _stages(rows: Iterable[Mapping[str, Any]]) -> list[Stage]:
    return [
        Stage(str(r["processstageid"]).lower(), str(r.get("stagename") or ""), r.get("stagecategory"))
        for r in rows
    ]


def resolve_process(client: DataverseClient, uniquename: str) -> SalesProcess:
    """The BPF `uniquename` as the target has it, its stages in order and its instance table's lookups."""
    found = client.rows(
        "workflows",
        ["workflowid", "uniquename", "name", "statecode"],
        f"uniquename eq {odata_string(uniquename)} and category eq {BPF_CATEGORY} and type eq {DEFINITION}",
    )
    if not found:
        raise SalesProcessError(
            f"no business process flow {uniquename!r} in the target (workflows with category 4): set "
            "`sales_process` in pipelines.yaml to the uniquename of an activated one"
        )
    if found[0].get("statecode") != ACTIVATED:
        raise SalesProcessError(
            f"the business process flow {uniquename!r} is not activated: activate it in make.powerapps.com "
            "(Solutions > the process > Activate), or name another one in pipelines.yaml `sales_process`"
        )
    workflow_id = str(found[0]["workflowid"]).lower()
    stages = _stages(
        client.rows(
            "processstages",
            ["processstageid", "stagename", "stagecategory"],
            f"_processid_value eq {workflow_id}",
        )
    )
    if not stages:
        raise SalesProcessError(f"the business process flow {uniquename!r} has no stages")
    try:
        meta = client.metadata(uniquename)
    except DataverseError as exc:
        raise SalesProcessError(
            f"the instance table of the business process flow {uniquename!r} cannot be read: {exc}"
        ) from exc
    link = next((r for r in meta.many_to_one if r.referenced_entity == "opportunity"), None)
    if link is None:
        raise SalesProcessError(
            f"the business process flow {uniquename!r} has no lookup to opportunity: it is not an "
            "opportunity process"
        )
    return SalesProcess(
        workflow_id,
        uniquename,
        meta.logical_name,
        meta.primary_id,
        link.navigation_property,
        link.referencing_attribute,
        tuple(order_stages(stages)),
    )


def in_process_order(
    client: DataverseClient, process: SalesProcess, instances: Mapping[str, Instance]
) -> SalesProcess:
    """The process with its stages in the order RetrieveActivePath gives for one of its instances (a real
    processstage has no order column); by stage category when there is no instance yet."""
    sample = next(iter(instances.values()), None)
    path = active_path(client, sample.id) if sample is not None else []
    return replace(process, stages=tuple(order_stages(process.stages, path)))


def active_path(client: DataverseClient, instance_id: str) -> list[str]:
    """Stage ids of an instance's active path, in process order (RetrieveActivePath)."""
    rows = client.get_json(f"RetrieveActivePath(ProcessInstanceId={instance_id})").get("value", [])
    return [str(r["processstageid"]).lower() for r in rows]


def _instance(row: Mapping[str, Any], primary_id: str, opportunity_attr: str) -> Instance:
    path = str(row.get("traversedpath") or "")
    stage = row.get("_activestageid_value")
    return Instance(
        str(row[primary_id]).lower(),
        str(row.get(f"_{opportunity_attr}_value") or "").lower(),
        str(stage).lower() if stage else None,
        tuple(p.strip().lower() for p in path.split(",") if p.strip()),
        row.get("statecode"),
        row.get("statuscode"),
    )


def read_instances(
    client: DataverseClient, process: SalesProcess, opportunity_ids: Sequence[str] | None = None
) -> dict[str, Instance]:
    """Opportunity id -> its instance of the process (the Active one where it has several); every instance
    of the table, or those of `opportunity_ids` only."""
    select = [
        process.primary_id,
        f"_{process.opportunity_attr}_value",
        "_activestageid_value",
        "_processid_value",
        "traversedpath",
        "statecode",
        "statuscode",
    ]
    if opportunity_ids is None:
        rows = client.query(process.table, select)
    else:
        column, ids = f"_{process.opportunity_attr}_value", list(opportunity_ids)
        filters = [
            " or ".join(f"{column} eq {i}" for i in ids[n : n + READ_CHUNK])
            for n in range(0, len(ids), READ_CHUNK)
        ]
        rows = client.query_each(process.table, filters, select=select)
    out: dict[str, Instance] = {}
    for row in rows:
        if str(row.get("_processid_value") or process.workflow_id).lower() != process.workflow_id:
            continue
        inst = _instance(row, process.primary_id, process.opportunity_attr)
        if inst.opportunity_id not in out or inst.statecode == 0:
            out[inst.opportunity_id] = inst
    return out


def created_by_run(con: duckdb.DuckDBPyConnection, run_id: str) -> frozenset[str]:
    """Ids of the opportunities run `run_id` created (ledgered, not refused)."""
    ensure_schema(con)
    rows = con.execute(
        f"SELECT DISTINCT lower(record_id) FROM {LEDGER_SCHEMA}.writes WHERE run_id = ? "
        "AND table_name = 'opportunity' AND action = 'created' AND status <> 'rejected'",
        [run_id],
    ).fetchall()
    return frozenset(r[0] for r in rows)


def instance_id(process: SalesProcess, opportunity_id: str) -> str:
    """The id of the instance this load creates for an opportunity that has none (deterministic)."""
    return id_for_key(f"{process.uniquename}:{opportunity_id.lower()}")


@dataclass(frozen=True)
class Wanted:
    """One migrated opportunity and where its Close status places it."""

    opportunity_id: str
    close_id: str | None
    status_option: int | None


@dataclass
class PlacementReport:
    placed: int = 0  # instances written
    unchanged: int = 0
    created: int = 0
    writes: int = 0
    not_loaded: int = 0  # opportunities not in the target (refused by loaded/opportunity)
    rejected: list[str] = field(default_factory=list)
    refused: set[str] = field(default_factory=set)  # opportunities not placed as wanted (retried by a delta)
    # Where the opportunities belong: stage name (+ " (finished)") -> count; opportunity -> (stage, finished)
    per_stage: dict[str, int] = field(default_factory=dict)
    placements: dict[str, tuple[str, bool]] = field(default_factory=dict)


class SalesProcessLoader:
    """Plans and writes the instances of one process for a set of opportunities, through the ledger."""

    def __init__(
        self,
        client: DataverseClient,
        ledger: Ledger,
        process: SalesProcess,
        statuses: Mapping[int, tuple[str, str, str]],
        log: Callable[[str], None] = print,
        created_by_run: frozenset[str] = frozenset(),
    ) -> None:
        self.client = client
        self.ledger = ledger
        self.process = process
        self.statuses = statuses  # status option -> (stage name, type, label)
        self.log = log
        self.created_by_run = (
            created_by_run  # opportunities this run created (their instances came with them)
        )
        self.report = PlacementReport()

    def _reject(self, item: Wanted, record_id: str | None, operation: str, message: str) -> None:
        self.report.rejected.append(f"{item.close_id or item.opportunity_id}: {message}")
        self.report.refused.add(item.opportunity_id.lower())
        self.ledger.reject(
            [Rejection(self.process.table, record_id, item.close_id, operation, None, None, message)]
        )

    def _placement(self, item: Wanted) -> Placement | str:
        if item.status_option is None:
            return "the opportunity has no Close status"
        mapped = self.statuses.get(int(item.status_option))
        if mapped is None:
            return f"its status option {item.status_option} is not in pipelines.yaml"
        stage, kind, label = mapped
        where = placement(stage, kind, self.process.stages)
        return f"status {label!r}: {where}" if isinstance(where, str) else where

    def load(self, wanted: Sequence[Wanted], instances: Mapping[str, Instance]) -> PlacementReport:
        opportunities = self.client.entity_set("opportunity")
        process_bind = odata_bind("workflows", self.process.workflow_id)
        missing = [w.opportunity_id for w in wanted if w.opportunity_id.lower() not in instances]
        loaded = self.client.existing_ids("opportunity", missing) if missing else set()
        plans: list[tuple[InstancePlan, Wanted]] = []
        came_with: list[Intent] = []  # unchanged instances of opportunities this run created
        for item in wanted:
            opp = item.opportunity_id.lower()
            current = instances.get(opp)
            if current is None and opp not in loaded:
                self.report.not_loaded += 1
                continue
            where = self._placement(item)
            if isinstance(where, str):
                self._reject(item, current.id if current else None, "update", where)
                continue
            stage = self.process.stages[where.stage].name
            create_links = {
                f"{self.process.opportunity_nav}@odata.bind": odata_bind(opportunities, opp),
                "processid@odata.bind": process_bind,
            }
            plan = plan_instance(
                opp, where, self.process.stages, current, instance_id(self.process, opp), create_links
            )
            if isinstance(plan, str):
                self._reject(item, current.id if current else None, "update", plan)
                continue
            self.report.placements[opp] = (stage, where.finished)
            key = stage + (" (finished)" if where.finished else "")
            self.report.per_stage[key] = self.report.per_stage.get(key, 0) + 1
            if plan is None:
                self.report.unchanged += 1
                if current is not None and opp in self.created_by_run:
                    came_with.append(Intent(self.process.table, current.id, item.close_id, "created"))
                continue
            plans.append((plan, item))
        self.ledger.record_done(came_with)
        item_of = {id(p): w for p, w in plans}
        written = 0
        for group in pack([p for p, _ in plans], MAX_BATCH_REQUESTS):
            self._write_group([(p, item_of[id(p)]) for p in group])
            written += len(group)
            self.log(f"{self.process.table}: {written} of {len(plans)} instances written")
        return self.report

    def _intent(self, plan: InstancePlan, item: Wanted) -> Intent:
        if plan.create or plan.opportunity_id in self.created_by_run:
            return Intent(self.process.table, plan.instance_id, item.close_id, "created")
        return Intent(self.process.table, plan.instance_id, item.close_id, "updated", plan.before)

    def _write_group(self, group: Sequence[tuple[InstancePlan, Wanted]]) -> None:
        """Ledger the group's intents, send all their writes in one `$batch`, then record each outcome:
        placed -> done; refused with nothing changed -> rejected; refused after something landed (or an
        instance that came with an opportunity of this run) -> done, so that a rollback undoes it, with the
        refusal in ledger.rejected."""
        seqs = self.ledger.begin([self._intent(p, w) for p, w in group])
        plans = [p for p, _ in group]
        order = batch_order(plans)
        entity_set = self.client.entity_set(self.process.table)
        requests = [self._request(entity_set, p, p.writes[k]) for p, k in order]
        parts = self.client.execute_batch([*requests])
        self.report.writes += len(order)
        answers: dict[int, list[Refusal | None]] = {id(p): [None] * len(p.writes) for p in plans}
        for (plan, k), part in zip(order, parts, strict=True):
            answers[id(plan)][k] = _refusal(plan.writes[k], part)
        self._count_existing_creates(plans, answers)
        reached = self._already_placed([(p, w) for p, w in group if _row_refusals_only(answers[id(p)])])
        done: list[int] = []
        refused: list[tuple[int, Rejection]] = []
        late: list[Rejection] = []
        for (plan, item), seq in zip(group, seqs, strict=True):
            settled = settle(plan, self.process.stages, answers[id(plan)])
            if settled.refusal is None or id(plan) in reached:
                done.append(seq)
                self.report.placed += 1
                self.report.created += plan.create
                continue
            err = settled.refusal
            rejection = Rejection(
                self.process.table,
                plan.instance_id,
                item.close_id,
                err.operation,
                err.status,
                err.code,
                err.message,
            )
            self.report.rejected.append(f"{item.close_id or plan.opportunity_id}: {err.message}")
            self.report.refused.add(plan.opportunity_id)
            came_with = not plan.create and plan.opportunity_id in self.created_by_run
            if settled.landed or came_with:
                done.append(seq)
                late.append(rejection)
            else:
                refused.append((seq, rejection))
        self.ledger.finish(done, refused)
        self.ledger.reject(late)
        _raise_request_level(order, requests, answers)

    def _already_placed(self, group: Sequence[tuple[InstancePlan, Wanted]]) -> set[int]:
        """The plans (by id()) whose own instance is where it should be although some of their writes were
        refused: the transport sends a `$batch` again when its answer was lost, and the second delivery
        finds the moves of the first done (a move two stages back, an update of a finished instance are
        refused). One read of those instances, only when something was refused."""
        if not group:
            return set()
        now = read_instances(self.client, self.process, [p.opportunity_id for p, _ in group])
        reached: set[int] = set()
        for plan, item in group:
            current, where = now.get(plan.opportunity_id), self._placement(item)
            if current is None or current.id != plan.instance_id or isinstance(where, str):
                continue
            if (
                plan_instance(plan.opportunity_id, where, self.process.stages, current, plan.instance_id, {})
                is None
            ):
                reached.add(id(plan))
        return reached

    def _request(self, entity_set: str, plan: InstancePlan, write: Write) -> BatchRequest:
        """One write as a `$batch` part: a create (POST), or an update only (PATCH with If-Match: *, so that
        the update of an instance that does not exist is refused instead of creating it)."""
        headers = dict(self.client.write_headers)
        if write.kind == "create":
            return BatchRequest("POST", entity_set, write.body, headers)
        return BatchRequest(
            "PATCH", f"{entity_set}({plan.instance_id})", write.body, {**headers, "If-Match": "*"}
        )

    def _count_existing_creates(
        self, plans: Sequence[InstancePlan], answers: dict[int, list[Refusal | None]]
    ) -> None:
        """A create refused as a duplicate id (412 0x80040237) landed before (the retry of a create whose
        answer was lost) when its instance is there; the same code also refuses a second active instance of an
        opportunity, which is a refusal. Told apart by one read, only when it happens."""
        dup = [p for p in plans if p.create and _is_duplicate_id(answers[id(p)][0])]
        if not dup:
            return
        there = self.client.existing_ids(self.process.table, [p.instance_id for p in dup])
        for plan in dup:
            if plan.instance_id.lower() in there:
                answers[id(plan)][0] = None


def _refusal(write: Write, part: BatchPartResponse | None) -> Refusal | None:
    """The refusal in one part's answer; None when the write landed."""
    if part is None:
        return Refusal(write.kind, None, None, "no answer in the $batch: the write was not processed")
    if part.ok:
        return None
    code, message = part.error or ("", part.reason)
    return Refusal(write.kind, part.status, code, message)


def _row_refusals_only(answers: Sequence[Refusal | None]) -> bool:
    """Some writes were refused, each for its own instance (a request-level refusal stops the load)."""
    refused = [a for a in answers if a is not None]
    return bool(refused) and all(
        a.status is not None and classify_failure(a.status, a.code or "", a.message) is not Failure.REQUEST
        for a in refused
    )


def _is_duplicate_id(refusal: Refusal | None) -> bool:
    return refusal is not None and refusal.status == 412 and (refusal.code or "").lower() == DUPLICATE_ID_CODE


def _raise_request_level(
    order: Sequence[tuple[InstancePlan, int]],
    requests: Sequence[BatchRequest],
    answers: Mapping[int, Sequence[Refusal | None]],
) -> None:
    """A refusal that no instance can cure (a column the table lacks, a missing privilege) stops the load
    with the server's error, once the group's outcomes are ledgered, as the client's bulk writes do."""
    for (plan, k), request in zip(order, requests, strict=True):
        err = answers[id(plan)][k]
        if err is None or err.status is None:
            continue
        if classify_failure(err.status, err.code or "", err.message) is Failure.REQUEST:
            raise DataverseApiError(err.status, err.code or "", err.message, request.method, request.url)


def restore_instance(client: DataverseClient, table: str, record_id: str, before: Mapping[str, Any]) -> None:
    """Put a BPF instance back where its before-image says (a rollback step), a stage at a time. A missing
    instance is a 404 DataverseApiError (the rollback counts it as already gone)."""
    meta = client.metadata(table)
    row = client.get(
        table,
        record_id,
        [
            meta.primary_id,
            "_activestageid_value",
            "_processid_value",
            "traversedpath",
            "statecode",
            "statuscode",
        ],
    )
    if row is None:
        raise DataverseApiError(404, "", f"{table} {record_id} does not exist", "GET", table)
    current = _instance(row, meta.primary_id, "")
    stage_rows = client.rows(
        "processstages",
        ["processstageid", "stagename", "stagecategory"],
        f"_processid_value eq {row.get('_processid_value')}",
    )
    stages = order_stages(_stages(stage_rows), active_path(client, record_id))
    writes = restore_writes(stages, current, before)
    if isinstance(writes, str):
        raise DataverseApiError(400, "", f"{table} {record_id}: {writes}", "PATCH", table)
    for body in writes:
        client.update(table, record_id, body)


# -- what the staged opportunities want, and what the last load placed (delta runs) -------------------------
SNAPSHOT = "_snapshot_opportunity_sales_process"  # loaded.<it>: opportunity id -> placement key, as placed


def placement_key(statuses: Mapping[int, tuple[str, str, str]], option: int | None) -> str | None:
    """What places an opportunity, from the mapping alone: its status's stage, or "finished" (won/lost)."""
    mapped = statuses.get(int(option)) if option is not None else None
    if mapped is None:
        return None
    return "finished" if mapped[1] in ("won", "lost") else f"stage:{mapped[0].casefold()}"


def staged_opportunities(
    con: duckdb.DuckDBPyConnection, status_column: str, closeid_column: str
) -> list[Wanted]:
    """Every staged opportunity with its Close id and status option."""
    cols = {r[0] for r in con.execute("DESCRIBE staged.opportunity").fetchall()}
    close_id = quote(closeid_column) if closeid_column in cols else "NULL"
    rows = con.execute(
        f"SELECT lower(CAST(opportunityid AS VARCHAR)), {close_id}, {quote(status_column)} "
        "FROM staged.opportunity ORDER BY 1"
    ).fetchall()
    return [Wanted(r[0], r[1], None if r[2] is None else int(r[2])) for r in rows]


def last_placed(con: duckdb.DuckDBPyConnection) -> dict[str, str] | None:
    """Opportunity id -> placement key as the last completed load placed it (None: no such load)."""
    if not table_exists(con, SNAPSHOT_SCHEMA, SNAPSHOT):
        return None
    return dict(con.execute(f"SELECT opportunityid, placement FROM {SNAPSHOT_SCHEMA}.{SNAPSHOT}").fetchall())


def changed_since(
    wanted: Sequence[Wanted], statuses: Mapping[int, tuple[str, str, str]], placed: Mapping[str, str]
) -> list[Wanted]:
    """The opportunities whose placement the mapping now gives differs from the one last placed."""
    return [w for w in wanted if placed.get(w.opportunity_id) != placement_key(statuses, w.status_option)]


def save_placed(
    con: duckdb.DuckDBPyConnection,
    wanted: Sequence[Wanted],
    statuses: Mapping[int, tuple[str, str, str]],
    report: PlacementReport,
    earlier: Mapping[str, str] | None,
) -> int:
    """Record what this load placed (the opportunities it refused left out, so that the next delta retries
    them), over what earlier loads placed for the opportunities it did not consider."""
    rows = dict(earlier or {})
    considered = {w.opportunity_id for w in wanted}
    rows = {k: v for k, v in rows.items() if k not in considered}
    for w in wanted:
        key = placement_key(statuses, w.status_option)
        if w.opportunity_id in report.placements and w.opportunity_id not in report.refused and key:
            rows[w.opportunity_id] = key
    frame = pa.table(
        {
            "opportunityid": pa.array(list(rows), pa.string()),
            "placement": pa.array(list(rows.values()), pa.string()),
        }
    )
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {SNAPSHOT_SCHEMA}")
    con.register("__placed", frame)
    try:
        con.execute(f"CREATE OR REPLACE TABLE {SNAPSHOT_SCHEMA}.{SNAPSHOT} AS SELECT * FROM __placed")
    finally:
        con.unregister("__placed")
    return len(rows)


DEFINITION_TABLE = "_sales_process_definition"  # loaded.<it>: the process as the last full run resolved it


def save_definition(con: duckdb.DuckDBPyConnection, process: SalesProcess) -> None:
    """Record the process as resolved (ids, instance table, stages in process order) for delta runs."""
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {SNAPSHOT_SCHEMA}")
    con.execute(
        f"CREATE OR REPLACE TABLE {SNAPSHOT_SCHEMA}.{DEFINITION_TABLE} (uniquename VARCHAR, definition VARCHAR)"
    )
    con.execute(
        f"INSERT INTO {SNAPSHOT_SCHEMA}.{DEFINITION_TABLE} VALUES (?, ?)",
        [process.uniquename, json.dumps(asdict(process))],
    )


def saved_definition(con: duckdb.DuckDBPyConnection, uniquename: str) -> SalesProcess | None:
    """The process `uniquename` as an earlier run resolved it; None when none was recorded (or another
    process was). A delta reuses it instead of reading the definition, its stages and their order again:
    a process changed since then refuses the writes, which are rejected with the server's reason, and the
    next full run reads it anew."""
    if not table_exists(con, SNAPSHOT_SCHEMA, DEFINITION_TABLE):
        return None
    rows = con.execute(
        f"SELECT definition FROM {SNAPSHOT_SCHEMA}.{DEFINITION_TABLE} WHERE uniquename = ?", [uniquename]
    ).fetchall()
    if not rows:
        return None
    raw = json.loads(rows[0][0])
    return SalesProcess(**{**raw, "stages": tuple(Stage(**s) for s in raw["stages"])})
