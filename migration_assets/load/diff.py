"""Staged row vs the record already in Dataverse: what to send, and the before-image of what it replaces
(pure). Used by the loader before every batch, so that a re-run writes nothing that is already right.

A staged row holds attribute columns (wire values), `<nav>@odata.bind` lookups and `_`-prefixed meta
columns (STAGED_SPEC). A record read back holds attributes and lookups as `_<attr>_value` + the
`lookuplogicalname` annotation. Both are brought to the staged (payload) form before comparing.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

LOGICAL_ANN = "@Microsoft.Dynamics.CRM.lookuplogicalname"
BIND = "@odata.bind"
# Never compared: create-only or derived by the server from what we send (reference §7.11, §7.12).
NOT_COMPARED = frozenset({"overriddencreatedon", "documentbody", "filesize"})


@dataclass(frozen=True)
class Lookup:
    """How one `<nav>@odata.bind` column reads back: `_<attribute>_value` on table `target`."""

    nav: str
    attribute: str
    target: str
    entity_set: str
    target_key: str = ""  # the target table's primary id ("" = unknown: read its metadata)


# Attribute types whose empty value is "no value" (a column emptied in Close is cleared in Dataverse on a
# re-run). Not Boolean (always has a value), not standard choices (they may carry a form default the
# target filled in at create), not lookups (unbinding is its own request), not SystemRequired columns (the
# only level the API enforces: an empty ApplicationRequired column is what a create leaves too).
CLEARABLE_TYPES = frozenset({"String", "Memo", "Integer", "BigInt", "Decimal", "Double", "Money", "DateTime"})


def clearable(attribute_type: str, type_name: str, is_custom: bool, required_level: str) -> bool:
    """Whether a mapped column left empty by the staged row is cleared on a record that has a value."""
    if required_level == "SystemRequired":
        return False
    if attribute_type in CLEARABLE_TYPES:
        return True
    return is_custom and (attribute_type == "Picklist" or type_name == "MultiSelectPicklistType")


@dataclass
class SplitRow:
    payload: dict[str, Any]  # what a create sends (nulls dropped: NULL = do not send)
    meta: dict[str, Any]  # `_`-prefixed columns
    nulls: frozenset[str] = frozenset()  # mapped attribute columns the staged row leaves empty


def _is_null(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def split_row(row: Mapping[str, Any]) -> SplitRow:
    payload: dict[str, Any] = {}
    meta: dict[str, Any] = {}
    nulls: set[str] = set()
    for k, v in row.items():
        if k.startswith("_"):
            meta[k] = v
        elif not _is_null(v):
            payload[k] = v
        elif not k.endswith(BIND):
            nulls.add(k)
    return SplitRow(payload, meta, frozenset(nulls))


def desired_state(meta: Mapping[str, Any], table: str) -> tuple[int, int] | None:
    """(statecode, statuscode) the record must end in, or None when the row leaves state alone."""
    if table == "opportunity":
        action = meta.get("_close_action")
        if action in ("win", "lose"):
            default = 3 if action == "win" else 4
            status = meta.get("_close_statuscode")
            return (1 if action == "win" else 2, int(status) if status is not None else default)
    state, status = meta.get("_statecode"), meta.get("_statuscode")
    if state is None:
        return None
    return int(state), int(status) if status is not None else -1


def current_payload(
    record: Mapping[str, Any], lookups: Mapping[str, Lookup], sets: Mapping[str, str]
) -> dict[str, Any]:
    """A record read back, in payload form: `_x_value` -> `<nav>@odata.bind: /set(id)` (None when empty).
    `sets` maps table logical name -> entity set, for multi-table lookups."""
    out: dict[str, Any] = {}
    for k, v in record.items():
        if "@" in k or k.startswith("_"):
            continue
        out[k] = v
    for nav, lk in lookups.items():
        value = record.get(f"_{lk.attribute}_value")
        if value is None:
            out[nav + BIND] = None
            continue
        logical = record.get(f"_{lk.attribute}_value{LOGICAL_ANN}") or lk.target
        if logical != lk.target:
            out[nav + BIND] = f"/{sets.get(logical, logical)}({value})"  # points at another table: differs
        else:
            out[nav + BIND] = f"/{lk.entity_set}({str(value).lower()})"
    return out


def _as_dt(text: str) -> datetime | None:
    if len(text) < 10 or text[4:5] != "-":
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def same_value(wanted: Any, current: Any) -> bool:
    if wanted is None or current is None:
        return wanted is None and current is None
    if isinstance(wanted, bool) or isinstance(current, bool):
        return bool(wanted) == bool(current) and type(wanted) is type(current)
    if isinstance(wanted, int | float) and isinstance(current, int | float):
        return math.isclose(float(wanted), float(current), rel_tol=1e-9, abs_tol=1e-6)
    if isinstance(wanted, str) and isinstance(current, str):
        if wanted == current:
            return True
        if wanted.endswith(")") and current.endswith(")") and wanted.startswith("/"):
            return wanted.lower() == current.lower()  # binds: GUID case does not matter
        a, b = _as_dt(wanted), _as_dt(current)
        if a is not None and b is not None:
            if len(wanted) == 10 or len(current) == 10:  # DateOnly vs a date-time rendering of it
                return a.date() == b.date()
            return a == b
        if "," in wanted or wanted.isdigit():  # multi-select choices: order does not matter
            return sorted(wanted.split(",")) == sorted(current.split(","))
        return False
    return str(wanted) == str(current)


@dataclass
class RowPlan:
    changes: dict[str, Any] = field(default_factory=dict)  # columns to update (payload form)
    before: dict[str, Any] = field(default_factory=dict)  # their current values (+ state when it changes)
    state: tuple[int, int] | None = None  # state to apply after the write, None = already right

    @property
    def unchanged(self) -> bool:
        return not self.changes and self.state is None


def plan_existing(
    payload: Mapping[str, Any],
    current: Mapping[str, Any],
    want_state: tuple[int, int] | None,
    updatable: frozenset[str] | set[str],
    cleared: frozenset[str] | set[str] = frozenset(),
) -> RowPlan:
    """What to change on an existing record. Only columns valid for update are considered. `cleared` are
    the clearable columns the staged row leaves empty: a value the target still holds there is set to
    null (the source emptied it), with its before-image so that rollback restores it."""
    out = RowPlan()
    for k, v in payload.items():
        if k in NOT_COMPARED or k not in updatable:
            continue
        cur = current.get(k)
        if not same_value(v, cur):
            out.changes[k] = v
            out.before[k] = cur
    for k in cleared:
        if k in NOT_COMPARED or k not in updatable or k in payload:
            continue
        cur = current.get(k)
        if cur is not None and cur != "":
            out.changes[k] = None
            out.before[k] = cur
    if want_state is not None:
        cur_state = (current.get("statecode"), current.get("statuscode"))
        state_ok = cur_state[0] == want_state[0] and (want_state[1] == -1 or cur_state[1] == want_state[1])
        if not state_ok:
            out.state = want_state
        if out.state is not None:
            out.before["statecode"], out.before["statuscode"] = cur_state
    return out


def party_key(party: Mapping[str, Any]) -> tuple[int, str, str]:
    """What identifies an activity party: its role, and the record it resolves to (table, id) or, for an
    unresolved one, the address. (Dataverse fills `addressused` of resolved parties too: not compared.)"""
    mask = int(party.get("participationtypemask") or 0)
    for key, value in party.items():
        if key.startswith("partyid_") and key.endswith(BIND) and value:
            return mask, key[len("partyid_") : -len(BIND)], str(value).rsplit("(", 1)[-1].rstrip(")").lower()
    return mask, "address", str(party.get("addressused") or "").strip().lower()


def current_party(record: Mapping[str, Any], sets: Mapping[str, str]) -> dict[str, Any]:
    """An activityparty read back, in the payload form a write sends (and a rollback restores)."""
    mask = record.get("participationtypemask")
    party_id, logical = record.get("_partyid_value"), record.get(f"_partyid_value{LOGICAL_ANN}")
    if party_id and logical:
        return {
            "participationtypemask": mask,
            f"partyid_{logical}{BIND}": f"/{sets.get(logical, logical + 's')}({party_id})",
        }
    return {"participationtypemask": mask, "addressused": record.get("addressused")}


def same_parties(wanted: list[Mapping[str, Any]], current: list[Mapping[str, Any]]) -> bool:
    return sorted(map(party_key, wanted)) == sorted(map(party_key, current))


def parties(meta: Mapping[str, Any]) -> list[dict[str, Any]] | None:
    raw = meta.get("_parties")
    if raw in (None, ""):
        return None
    value = json.loads(raw) if isinstance(raw, str) else raw
    if not isinstance(value, list):
        raise ValueError(f"_parties must be a JSON list of activity parties, got {type(value).__name__}")
    return value
