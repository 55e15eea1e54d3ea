"""Business process flows (BPF): the shipped "Opportunity Sales Process", its instances and functions (§9.1).

Sources: power-automate-docs articles/developer/business-process-flows-code.md ("Work with business process
flows using code"), the opportunitysalesprocess entity reference (dynamics-365-customer-engagement
ce/developer/reference/entities/opportunitysalesprocess.md and progref/webapireference/entitytypes/
opportunitysalesprocess.md), workflow.md and processstage.md. The fixed ids of the shipped process and
its stages are the ones real orgs carry [3P: scripts that create opportunities at a stage use them].

What is served (the shapes other code relies on)
-------------------------------------------------
Definition, `GET workflows?$filter=category eq 4 and primaryentity eq 'opportunity'`:
    {"workflowid": "3e8ebee6-a2bc-4451-9c5f-b146b085413a", "name": "Opportunity Sales Process",
     "uniquename": "opportunitysalesprocess", "category": 4 (Business Process Flow),
     "primaryentity": "opportunity", "type": 1 (Definition), "businessprocesstype": 0 (Business Flow),
     "statecode": 1 (Activated), "statuscode": 2 (Activated), "processorder": 1, "description": ...}
Stages, `GET processstages?$select=stagename,stagecategory&$filter=_processid_value eq <workflowid>`
(the navigation form `processid/workflowid eq <id>` of the docs is not supported by the emulator's filter
engine; `_processid_value` is), answered in process order:
    processstageid                          stagename  stagecategory  primaryentitytypecode
    6b9ce798-221a-4260-90b2-2a95ed51a5bc    Qualify    0              opportunity
    650e06b4-789b-46c1-822b-0da76bedb1ed    Develop    1              opportunity
    d3ca8878-8d7b-47b9-852d-fcd838790cfd    Propose    2              opportunity
    bb7e830a-61bd-441b-b1fd-6bb104ffa027    Close      3              opportunity
    plus "_processid_value": <workflowid>. A real processstage has no order column: the order is the one
    RetrieveActivePath answers (and, for this process, stagecategory).
Instances, entity set `opportunitysalesprocesses` (OrganizationOwned, PK `businessprocessflowinstanceid`,
primary name `name`), read as `_opportunityid_value`, `_processid_value`, `_activestageid_value`,
`traversedpath` (comma-separated stage ids, no spaces), `activestagestartedon`, `completedon`, `name`,
`statecode` (0 Active, 1 Inactive), `statuscode` (1 Active [state 0], 2 Finished [state 1], 3 Aborted
[state 1]). Written with `opportunityid@odata.bind` (/opportunities(<id>)), `processid@odata.bind`
(/workflows(<id>)), `activestageid@odata.bind` (/processstages(<id>)), `traversedpath`, `statecode`,
`statuscode`.
    * Creating an opportunity (POST, upsert, CreateMultiple, $batch alike) applies the process (docs: "Apply
      business process flow while creating an entity record"): an instance at Qualify, traversedpath = the
      Qualify id, named "Opportunity Sales Process", unless the opportunity is created with
      `"processid": "00000000-0000-0000-0000-000000000000"` (Guid.Empty: no process applied); a `processid`
      that is not a BPF of opportunity is refused (404 0x80040217 unknown id, 400 0x80040203 otherwise).
      Deactivating the workflow (statecode 0) stops applying it.
    * Rules on create/update (400 0x80040203 InvalidArgument unless said) [INFERENCE for the codes and
      texts; the rules are the docs']: `activestageid` must be a stage of the instance's process (defaults:
      processid = the shipped process, stage = its first stage); `traversedpath` is required when the stage is
      not the first, and must list the process's stages in order from the first up to the active stage;
      a PATCH that changes the stage moves only to the next or the previous stage ("you must only move to the
      next or previous stage while updating a business process flow instance"); statuscode 2 (Finished) only
      at the last stage; at most one Active instance per opportunity and process (412 0x80040237
      DuplicateRecord). `activestagestartedon` is set when the stage changes, `completedon` when finished.
      Deleting an instance is allowed; deleting an opportunity does not delete its instances (the
      relationship lk_opportunitysalesprocess_opportunityid has Delete: NoCascade).
Functions:
    GET RetrieveProcessInstances(EntityLogicalName='opportunity',EntityId=<id>) ->
        {"@odata.context": ".../$metadata#businessprocessflowinstances", "value": [
          {"@odata.type": "#Microsoft.Dynamics.CRM.businessprocessflowinstance",
           "businessprocessflowinstanceid": <id>, "processid": <workflowid>, "processstageid": <active stage>,
           "name": ..., "statecode": ..., "statuscode": ..., "traversedpath": ..., "modifiedon": ...}, ...]}
        every instance of the record, most recently modified first (the docs' order; the attribute set
        beyond processstageid, the active stage the docs name, is [INFERENCE]).
    GET RetrieveActivePath(ProcessInstanceId=<id>) ->
        {"@odata.context": ".../$metadata#processstages", "value": [<processstage rows, in order>]}
        (a collection of processstage, as 3P clients read it; 404 0x80040217 for an unknown instance).
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from emulators.dataverse.errors import DataverseError, bad_request, not_found
from emulators.dataverse.odata import parse_literal
from emulators.dataverse.values import now_iso

if TYPE_CHECKING:
    from emulators.dataverse.metadata import Entity
    from emulators.dataverse.query import Reader
    from emulators.dataverse.state import Environment
    from emulators.dataverse.store import Row

PROCESS_ID = "3e8ebee6-a2bc-4451-9c5f-b146b085413a"
PROCESS_NAME = "Opportunity Sales Process"
PROCESS_UNIQUE_NAME = "opportunitysalesprocess"
# (processstageid, stagename, stagecategory), in process order.
STAGES = (
    ("6b9ce798-221a-4260-90b2-2a95ed51a5bc", "Qualify", 0),
    ("650e06b4-789b-46c1-822b-0da76bedb1ed", "Develop", 1),
    ("d3ca8878-8d7b-47b9-852d-fcd838790cfd", "Propose", 2),
    ("bb7e830a-61bd-441b-b1fd-6bb104ffa027", "Close", 3),
)
EMPTY_GUID = "00000000-0000-0000-0000-000000000000"
BPF_CATEGORY = 4
# Each activated BPF definition stores its instances in its own table: id -> (instance table, record lookup).
INSTANCE_TABLES = {PROCESS_ID: ("opportunitysalesprocess", "opportunityid")}
# Tables whose new records get a BPF applied (the primary entities of the BPFs above).
APPLIES_TO = frozenset({"opportunity"})
FUNCTIONS = ("RetrieveProcessInstances", "RetrieveActivePath")


def seed(env: Environment) -> None:
    """The shipped, activated Opportunity Sales Process and its stages (Sales solution rows)."""
    store, now = env.store, now_iso()
    admin = env.config.app_users[0].systemuserid if env.config.app_users else env.team_id
    audit = {
        "createdon": now,
        "modifiedon": now,
        "createdby": ["systemuser", admin],
        "modifiedby": ["systemuser", admin],
    }
    store.table("workflow")[PROCESS_ID] = {
        "workflowid": PROCESS_ID,
        "name": PROCESS_NAME,
        "uniquename": PROCESS_UNIQUE_NAME,
        "category": BPF_CATEGORY,
        "primaryentity": "opportunity",
        "type": 1,
        "businessprocesstype": 0,
        "processorder": 1,
        "description": "Business process flow of the Sales solution: Qualify, Develop, Propose, Close.",
        "statecode": 1,
        "statuscode": 2,
        "ownerid": ["systemuser", admin],
        "owninguser": ["systemuser", admin],
        "owningbusinessunit": ["businessunit", env.businessunit_id],
        "versionnumber": store.next_version(),
        **audit,
    }
    for stage_id, name, category in STAGES:
        store.table("processstage")[stage_id] = {
            "processstageid": stage_id,
            "stagename": name,
            "stagecategory": category,
            "processid": ["workflow", PROCESS_ID],
            "primaryentitytypecode": "opportunity",
            "versionnumber": store.next_version(),
        }


def stages_of(env: Environment, process_id: str) -> list[str]:
    """The stage ids of a process, in process order (the order they were stored in)."""
    wanted = ["workflow", process_id]
    return [sid for sid, row in env.store.table("processstage").items() if row.get("processid") == wanted]


def _bpf(env: Environment, process_id: str) -> Row:
    row = env.store.get("workflow", process_id)
    if row is None:
        raise not_found("workflow", process_id)
    if row.get("category") != BPF_CATEGORY:
        raise bad_request(f"The process with Id = {process_id} is not a business process flow.")
    return row


# ---- the opportunity side: applying the default process on create --------------------------------------
def default_process(env: Environment, entity: str) -> str | None:
    """The activated BPF of `entity` with the lowest process order (business-process-flows-code.md, steps 1-3)."""
    candidates = [
        row
        for wid, row in env.store.table("workflow").items()
        if row.get("category") == BPF_CATEGORY
        and row.get("primaryentity") == entity
        and row.get("statecode") == 1
        and row.get("type") == 1
        and wid in INSTANCE_TABLES
    ]
    candidates.sort(key=lambda r: (r.get("processorder") is None, r.get("processorder") or 0))
    return candidates[0]["workflowid"] if candidates else None


def _requested_process(env: Environment, ent: Entity, row: Row) -> str | None:
    """The BPF a new record gets: none for Guid.Empty, the one named by `processid`, else the default."""
    requested = row.get("processid")
    if requested is None:
        return default_process(env, ent.logical_name)
    requested = str(requested).lower()
    if requested == EMPTY_GUID:
        return None
    workflow = _bpf(env, requested)
    if workflow.get("primaryentity") != ent.logical_name or requested not in INSTANCE_TABLES:
        raise bad_request(
            f"The business process flow with Id = {requested} is not a process of the {ent.logical_name} entity."
        )
    return requested


def check_write(env: Environment, ent: Entity, record_id: str, row: Row, before: Row | None) -> None:
    """Service rules of a create (before None) or update of a BPF instance, or of a record a BPF applies to."""
    if before is None and ent.logical_name in APPLIES_TO:
        _requested_process(env, ent, row)  # refuse an unknown or foreign processid before anything is written
        return
    if ent.logical_name in _instance_tables():
        _check_instance(env, ent, record_id, row, before)


def after_create(env: Environment, ent: Entity, record_id: str, row: Row) -> None:
    """Apply the record's business process flow: an instance at the first stage (written with the record)."""
    if ent.logical_name not in APPLIES_TO:
        return
    process_id = _requested_process(env, ent, row)
    if process_id is None:
        return
    table, lookup = INSTANCE_TABLES[process_id]
    stages = stages_of(env, process_id)
    if not stages:
        return
    instance_ent = env.metadata.tables[table]
    now, instance_id = now_iso(), str(uuid.uuid4())
    instance: Row = {
        instance_ent.primary_id: instance_id,
        "name": _bpf(env, process_id).get("name"),
        lookup: [ent.logical_name, record_id],
        "processid": ["workflow", process_id],
        "activestageid": ["processstage", stages[0]],
        "traversedpath": stages[0],
        "activestagestartedon": now,
        "organizationid": ["organization", env.organization_id],
        "statecode": 0,
        "statuscode": 1,
        "createdon": now,
        "modifiedon": now,
        "createdby": row.get("createdby"),
        "modifiedby": row.get("createdby"),
        "versionnumber": env.store.next_version(),
    }
    env.store.put(instance_ent, instance_id, instance)


def _instance_tables() -> set[str]:
    return {table for table, _ in INSTANCE_TABLES.values()}


# ---- the instance rules ----------------------------------------------------------------------------------
def _ref_id(value: Any) -> str | None:
    return str(value[1]).lower() if isinstance(value, list) and value else None


def _check_instance(env: Environment, ent: Entity, record_id: str, row: Row, before: Row | None) -> None:
    process_id = _ref_id(row.get("processid")) or next(
        (p for p, (table, _) in INSTANCE_TABLES.items() if table == ent.logical_name), PROCESS_ID
    )
    workflow = _bpf(env, process_id)
    if INSTANCE_TABLES.get(process_id, ("",))[0] != ent.logical_name:
        raise bad_request(
            f"The process '{workflow.get('name')}' ({process_id}) does not keep its instances in "
            f"{ent.entity_set}; set processid to a business process flow of this table."
        )
    row["processid"] = ["workflow", process_id]
    stages = stages_of(env, process_id)
    if not stages:
        raise bad_request(f"The process '{workflow.get('name')}' ({process_id}) has no stages.")
    stage_id = _ref_id(row.get("activestageid")) or stages[0]
    if stage_id not in stages:
        raise bad_request(
            f"The stage with Id = {stage_id} is not a stage of the process '{workflow.get('name')}' "
            f"({process_id}): set activestageid to one of {', '.join(stages)}."
        )
    row["activestageid"] = ["processstage", stage_id]
    index = stages.index(stage_id)
    old_stage = _ref_id((before or {}).get("activestageid"))
    moved = before is None or old_stage != stage_id
    same_process = before is not None and _ref_id(before.get("processid")) == process_id
    if before is not None and moved and same_process and old_stage in stages:
        if abs(index - stages.index(old_stage)) > 1:
            raise bad_request(
                "A business process flow instance moves only to the next or the previous stage: from "
                f"'{_stage_name(env, old_stage)}' it cannot move to '{_stage_name(env, stage_id)}'."
            )
    path = row.get("traversedpath")
    expected = stages[: index + 1]
    unchanged = before is not None and moved and path == before.get("traversedpath")
    if path is None or unchanged:
        if index:
            raise bad_request(
                f"traversedpath is required when the active stage ('{_stage_name(env, stage_id)}') is not the "
                f"first stage: send the stage ids visited, in order, comma-separated: {','.join(expected)}."
            )
    elif [p.strip().lower() for p in str(path).split(",") if p.strip()] != expected:
        raise bad_request(
            f"The traversedpath '{path}' does not lead to the active stage '{_stage_name(env, stage_id)}': it must "
            f"list the process's stages in order up to it: {','.join(expected)}."
        )
    row["traversedpath"] = ",".join(expected)
    status = row.get("statuscode")
    if status == 2 and index != len(stages) - 1:
        raise bad_request(
            "A business process flow instance can be Finished (statuscode 2) only at its last stage "
            f"('{_stage_name(env, stages[-1])}'); it is at '{_stage_name(env, stage_id)}'."
        )
    now = now_iso()
    if moved:
        row["activestagestartedon"] = now
    if status == 2 and (before is None or before.get("statuscode") != 2):
        row["completedon"] = now
    if not row.get("name"):
        row["name"] = workflow.get("name")
    row["organizationid"] = ["organization", env.organization_id]
    if row.get("statecode", 0) == 0:
        _check_single_active(env, ent, record_id, row, process_id)


def _check_single_active(env: Environment, ent: Entity, record_id: str, row: Row, process_id: str) -> None:
    lookup = INSTANCE_TABLES.get(process_id, (ent.logical_name, ""))[1]
    target = row.get(lookup)
    if not target:
        return
    for other_id, other in env.store.table(ent.logical_name).items():
        if (
            other_id != record_id
            and other.get("statecode") == 0
            and other.get(lookup) == target
            and _ref_id(other.get("processid")) == process_id
        ):
            # [INFERENCE] DuplicateRecord: the service keeps one active instance of a process per record.
            raise DataverseError(
                412,
                "0x80040237",
                f"The {target[0]} with Id = {target[1]} already has an active instance ({other_id}) of this "
                "business process flow: update that instance, or abort it (statecode 1, statuscode 3) first.",
            )


def _stage_name(env: Environment, stage_id: str) -> str:
    return str((env.store.get("processstage", stage_id) or {}).get("stagename") or stage_id)


# ---- functions -----------------------------------------------------------------------------------------
def function_parameters(text: str, aliases: dict[str, str]) -> dict[str, Any]:
    """`Name=value,...` of a function call; a value `@p` is read from the query string (parameter alias)."""
    params: dict[str, Any] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.partition("=")
        if not sep:
            raise DataverseError(
                400,
                "0x80060888",
                f"Bad Request - Error in query syntax: invalid function parameter '{part}'.",
            )
        value = value.strip()
        if value.startswith("@"):
            if value not in aliases:
                raise DataverseError(400, "0x80060888", f"The parameter alias '{value}' has no value.")
            value = aliases[value]
        params[name.strip()] = parse_literal(value)
    return params


def _required(params: dict[str, Any], name: str, function: str) -> str:
    value = params.get(name)
    if not isinstance(value, str) or not value:
        raise bad_request(f"{function} needs the parameter {name}.")
    return value.lower() if name != "EntityLogicalName" else value


def process_instances(env: Environment, params: dict[str, Any]) -> list[dict[str, Any]]:
    """RetrieveProcessInstances: every BPF instance of one record, the most recently modified first."""
    entity = _required(params, "EntityLogicalName", "RetrieveProcessInstances")
    record_id = _required(params, "EntityId", "RetrieveProcessInstances")
    if entity not in env.metadata.tables:
        raise DataverseError(404, "0x80040217", f"The entity with a name = '{entity}' was not found.")
    if env.store.get(entity, record_id) is None:
        raise not_found(entity, record_id)
    found: list[Row] = []
    for table, lookup in INSTANCE_TABLES.values():
        found += [r for r in env.store.table(table).values() if r.get(lookup) == [entity, record_id]]
    found.sort(key=lambda r: (r.get("modifiedon") or "", r.get("versionnumber") or 0), reverse=True)
    return [
        {
            "@odata.type": "#Microsoft.Dynamics.CRM.businessprocessflowinstance",
            "businessprocessflowinstanceid": r["businessprocessflowinstanceid"],
            "processid": _ref_id(r.get("processid")),
            "processstageid": _ref_id(r.get("activestageid")),
            "name": r.get("name"),
            "statecode": r.get("statecode"),
            "statuscode": r.get("statuscode"),
            "traversedpath": r.get("traversedpath"),
            "modifiedon": r.get("modifiedon"),
        }
        for r in found
    ]


def active_path(env: Environment, params: dict[str, Any]) -> list[Row]:
    """RetrieveActivePath: the stage rows of an instance's process, in order."""
    instance_id = _required(params, "ProcessInstanceId", "RetrieveActivePath")
    for table, _ in INSTANCE_TABLES.values():
        instance = env.store.get(table, instance_id)
        if instance is not None:
            process_id = _ref_id(instance.get("processid")) or PROCESS_ID
            stages = env.store.table("processstage")
            return [stages[s] for s in stages_of(env, process_id)]
    raise DataverseError(
        404, "0x80040217", f"Entity 'businessprocessflowinstance' With Id = {instance_id} Does Not Exist"
    )


def function_body(
    env: Environment, reader: Reader, name: str, key: str, query: dict[str, str], root: str
) -> dict[str, Any]:
    """The JSON answer of GET <name>(<parameters>) for one of FUNCTIONS."""
    params = function_parameters(key, query)
    if name == "RetrieveActivePath":
        stage = env.metadata.tables["processstage"]
        plan = reader.select_plan(stage, None)
        value = [reader.format_row(stage, r, plan, False) for r in active_path(env, params)]
        return {"@odata.context": f"{root}/$metadata#processstages", "value": value}
    return {
        "@odata.context": f"{root}/$metadata#businessprocessflowinstances",
        "value": process_instances(env, params),
    }
