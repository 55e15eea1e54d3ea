"""POST /BulkDelete (reference §4.2): delete the records matched by QueryExpressions, as a system job.

The real service runs the job asynchronously; the emulator runs it at once (in one transaction) and records
an `asyncoperation` row in state Completed / status Succeeded, so clients polling the job see it finished.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from emulators.dataverse.errors import DataverseError
from emulators.dataverse.file_store import plain
from emulators.dataverse.metadata import LOOKUP_KINDS, Entity
from emulators.dataverse.records import Writer
from emulators.dataverse.state import Caller
from emulators.dataverse.store import Row
from emulators.dataverse.values import now_iso

Predicate = Callable[[Row], bool]


def invalid(message: str) -> DataverseError:
    return DataverseError(400, "0x80040203", message)


def _value(row: Row, ent: Entity, name: str) -> Any:
    attr = ent.attributes.get(name)
    if attr is None:
        raise invalid(f"The attribute '{name}' does not exist on '{ent.logical_name}' (BulkDelete QuerySet).")
    value = plain(row.get(name))
    if attr.kind in LOOKUP_KINDS and isinstance(value, list):
        return value[1]
    return value.lower() if isinstance(value, str) else value


def _condition(ent: Entity, cond: dict) -> Predicate:
    name, op = str(cond.get("AttributeName") or ""), str(cond.get("Operator") or "")
    values = []
    for item in cond.get("Values") or []:
        raw = item.get("Value") if isinstance(item, dict) else item
        values.append(raw.lower() if isinstance(raw, str) else raw)
    _value({}, ent, name)  # validate the attribute name up front
    wanted = set(values)
    tests: dict[str, Predicate] = {
        "Equal": lambda r: _value(r, ent, name) in wanted,
        "In": lambda r: _value(r, ent, name) in wanted,
        "NotEqual": lambda r: _value(r, ent, name) not in wanted,
        "NotIn": lambda r: _value(r, ent, name) not in wanted,
        "Null": lambda r: _value(r, ent, name) is None,
        "NotNull": lambda r: _value(r, ent, name) is not None,
    }
    if op not in tests:
        raise invalid(
            f"BulkDelete condition operator '{op}' is not supported by the emulator; use {', '.join(tests)}."
        )
    return tests[op]


def _filter(ent: Entity, criteria: Any) -> Predicate:
    if not isinstance(criteria, dict):
        return lambda r: True
    parts = [_condition(ent, c) for c in criteria.get("Conditions") or [] if isinstance(c, dict)]
    parts += [_filter(ent, f) for f in criteria.get("Filters") or [] if isinstance(f, dict)]
    if not parts:
        return lambda r: True
    if str(criteria.get("FilterOperator") or "And") == "Or":
        return lambda r: any(p(r) for p in parts)
    return lambda r: all(p(r) for p in parts)


def bulk_delete(writer: Writer, body: Any, caller: Caller) -> str:
    env = writer.env
    queries = body.get("QuerySet") if isinstance(body, dict) else None
    if not isinstance(queries, list) or not queries:
        raise invalid("BulkDelete needs a QuerySet: a list of QueryExpression objects.")
    plans: list[tuple[Entity, Predicate]] = []
    for query in queries:
        ent = env.metadata.tables.get(str(query.get("EntityName") if isinstance(query, dict) else ""))
        if ent is None or ent.is_pointer:
            raise invalid(
                f"BulkDelete QueryExpression EntityName {query.get('EntityName') if isinstance(query, dict) else query!r} is not a table."
            )
        plans.append((ent, _filter(ent, query.get("Criteria"))))
    job_id = str(uuid.uuid4())
    deleted = 0
    with env.store.lock, env.store.transaction():
        for ent, predicate in plans:
            for record_id in [
                rid for rid, row in env.store.table(ent.logical_name).items() if predicate(row)
            ]:
                writer.delete(ent, record_id, caller)
                deleted += 1
        now = now_iso()
        job_ent = env.metadata.tables["asyncoperation"]
        env.store.put(
            job_ent,
            job_id,
            {
                "asyncoperationid": job_id,
                "name": str(body.get("JobName") or "Bulk Delete"),
                "operationtype": 13,
                "message": f"{deleted} records deleted.",
                "statecode": 3,
                "statuscode": 30,
                "createdon": now,
                "modifiedon": now,
                "completedon": now,
                "createdby": ["systemuser", caller.systemuserid],
                "modifiedby": ["systemuser", caller.systemuserid],
                "ownerid": ["systemuser", caller.systemuserid],
                "versionnumber": env.store.next_version(),
            },
        )
    return job_id
