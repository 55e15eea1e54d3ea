"""Bulk messages CreateMultiple / UpdateMultiple / UpsertMultiple and the sdkmessagefilters probe (§4).

Standard tables are all-or-nothing: every target runs inside one store transaction, and the first failing
target's error is the response (the whole request rolls back).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from emulators.dataverse.config import deterministic_id
from emulators.dataverse.errors import DataverseError
from emulators.dataverse.metadata import Entity
from emulators.dataverse.odata import parse_filter, parse_key, parse_select, split_segment
from emulators.dataverse.records import API_PREFIX, Writer
from emulators.dataverse.state import Caller, Environment

BULK_MESSAGES = ("CreateMultiple", "UpdateMultiple", "UpsertMultiple")
_DONE: dict = {}  # what a handed-out target's slot holds
STANDARD_MESSAGES = ("Create", "Update", "Delete", "Retrieve", "RetrieveMultiple", "Assign", "SetState")


def supports_bulk(env: Environment, ent: Entity) -> bool:
    if env.config.bulk_message_tables is not None:
        return ent.logical_name in env.config.bulk_message_tables
    return ent.bulk


def _targets(body: Any, ent: Entity) -> list[dict]:
    targets = body.get("Targets") if isinstance(body, dict) else None
    if not isinstance(targets, list):
        raise DataverseError(
            400, "0x80040203", 'The request body must be {"Targets": [ ... ]} (an array of entities).'
        )
    expected = ent.odata_type
    for index, item in enumerate(targets):
        if not isinstance(item, dict):
            raise DataverseError(400, "0x80040203", f"Targets[{index}] is not an entity object.")
        declared = str(item.get("@odata.type") or "").lstrip("#")
        if declared != expected:
            raise DataverseError(
                400,
                "0x80040203",
                f"Targets[{index}] has @odata.type '{declared or '(missing)'}'; every target of a bulk message on "
                f'\'{ent.entity_set}\' must carry "@odata.type": "{expected}".',
            )
    return targets


def run_bulk(
    env: Environment, writer: Writer, ent: Entity, message: str, body: Any, caller: Caller
) -> list[str] | None:
    """Execute one bulk message; returns the Ids for CreateMultiple, None for the 204 messages."""
    if message not in BULK_MESSAGES:
        raise DataverseError(
            404, "0x8006088a", f"Resource not found for the segment 'Microsoft.Dynamics.CRM.{message}'."
        )
    if not supports_bulk(env, ent):
        raise DataverseError(
            400,
            "0x80040203",
            f"The '{message}' message is not enabled for the '{ent.logical_name}' table. Query sdkmessagefilters to "
            "find the tables that support it and use $batch for the others.",
        )
    targets = _targets(body, ent)
    ids: list[str] = []
    with env.store.lock, env.store.transaction():
        if message == "CreateMultiple":
            for item in _consumed(targets):
                ids.append(writer.create(ent, item, caller)[0])
            return ids
        if message == "UpdateMultiple":
            seen: set[str] = set()
            for item in _consumed(targets):
                record_id = item.get(ent.primary_id)
                if not isinstance(record_id, str):
                    raise DataverseError(
                        400,
                        "0x80040203",
                        f"Each UpdateMultiple target must carry its primary key '{ent.primary_id}'.",
                    )
                record_id = record_id.lower()
                if record_id in seen:
                    continue  # only the first occurrence of a record is applied (reference §4.2)
                seen.add(record_id)
                writer.update(ent, record_id, item, caller)
            return None
        seen_keys: set[str] = set()
        for item in _consumed(targets):
            key = _upsert_key(ent, item)
            marker = key if isinstance(key, str) else repr(sorted(key.items()))
            if key is not None:
                if marker in seen_keys:
                    raise DataverseError(
                        400,
                        "0x80040203",
                        f"Duplicate key {marker} in the UpsertMultiple request: each record may appear once.",
                    )
                seen_keys.add(marker)
            payload = {k: v for k, v in item.items() if k != "@odata.id"}
            if key is None:
                writer.create(ent, payload, caller)
            else:
                writer.upsert(ent, key, payload, caller)
        return None


def _consumed(targets: list[dict]) -> Iterator[dict]:
    """The targets in order, each dropped from the list once handed out: a target's values (a file body of
    megabytes) are freed as soon as its record holds what it keeps, not when the whole message is done."""
    for index, item in enumerate(targets):
        targets[index] = _DONE
        yield item


def _upsert_key(ent: Entity, item: dict) -> str | dict[str, Any] | None:
    ref = item.get("@odata.id")
    if isinstance(ref, str) and ref:
        set_name, key = split_segment(ref.split(API_PREFIX, 1)[-1].lstrip("/"))
        if set_name != ent.entity_set or key is None:
            raise DataverseError(
                400, "0x80040203", f"@odata.id '{ref}' does not address a record of '{ent.entity_set}'."
            )
        return parse_key(key)
    pk = item.get(ent.primary_id)
    return pk.lower() if isinstance(pk, str) else None


# ---- sdkmessagefilters ---------------------------------------------------------------------------------
def message_filter_rows(env: Environment) -> list[dict]:
    rows = []
    for ent in env.metadata.tables.values():
        messages = list(STANDARD_MESSAGES) + (list(BULK_MESSAGES) if supports_bulk(env, ent) else [])
        for message in messages:
            rows.append(
                {
                    "sdkmessagefilterid": deterministic_id("sdkmessagefilter", message, ent.logical_name),
                    "primaryobjecttypecode": ent.logical_name,
                    "secondaryobjecttypecode": "none",
                    "sdkmessageid/name": message,
                    "_sdkmessageid_value": deterministic_id("sdkmessage", message),
                    "iscustomprocessingstepallowed": True,
                    "isvisible": True,
                }
            )
    return rows


def query_message_filters(env: Environment, params: dict[str, str]) -> list[dict]:
    aliases = {k: v for k, v in params.items() if k.startswith("@")}
    node = parse_filter(params.get("$filter"), aliases)
    rows = [r for r in message_filter_rows(env) if _matches(node, r)]
    select = parse_select(params.get("$select"))
    out = []
    for r in rows:
        item = {k: v for k, v in r.items() if "/" not in k}
        if select:
            for name in select:
                if name not in item:
                    raise DataverseError(
                        400,
                        "0x0",
                        f"Could not find a property named '{name}' on type 'Microsoft.Dynamics.CRM.sdkmessagefilter'.",
                    )
            item = {k: item[k] for k in ["sdkmessagefilterid", *select]}
        out.append(item)
    return out


def _matches(node: tuple | None, row: dict) -> bool:
    if node is None:
        return True
    op = node[0]
    if op == "and":
        return _matches(node[1], row) and _matches(node[2], row)
    if op == "or":
        return _matches(node[1], row) or _matches(node[2], row)
    if op == "not":
        return not _matches(node[1], row)
    if op == "cmp" and node[1] in ("eq", "ne"):
        prop = node[2]
        if prop not in row:
            raise DataverseError(
                400,
                "0x0",
                f"Could not find a property named '{prop}' on type 'Microsoft.Dynamics.CRM.sdkmessagefilter'.",
            )
        equal = str(row[prop]).lower() == str(node[3]).lower()
        return equal if node[1] == "eq" else not equal
    raise DataverseError(
        400, "0x0", "Only eq/ne comparisons combined with and/or are supported on sdkmessagefilters."
    )
