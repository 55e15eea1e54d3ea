"""`close2d365 propose-mapping`: every org-specific mapping file, proposed for the extracted Close org.

Reads the close.* tables (and the target's columns and users when DATAVERSE_URL is configured, else the
cached target metadata) and writes into the mappings root in use (CLOSE2D365_MAPPINGS, default the
repository's mappings/): lead_status.yaml, pipelines.yaml, custom_fields.yaml, custom_activities.yaml and
owners.yaml. Each file's header says what it was generated from and how many decisions are open; every
entry that needs one carries `review:` (custom fields: `confirmed: false`).

Re-running it after the org changed updates the files in place without losing reviewed decisions: an entry
already in a file keeps what it says, new Close entries are added (with their review items), entries gone
from Close are dropped with a note. It prints every file it wrote or changed and names the unchanged ones.
Delete an entry (or a file) to have it proposed afresh.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import yaml

from migration_assets.audit.security_roles import CloseRole, read_close
from migration_assets.mapping.config import load_settings, mappings_root
from migration_assets.mapping.files import Settings
from migration_assets.mapping.owners import OWNER_COLUMNS, OwnerConfigError
from migration_assets.mapping.review_markers import open_decisions_in
from migration_assets.resources import env
from migration_assets.resources.warehouse import WarehouseResource, table_exists
from migration_assets.target.close_fields import close_custom_fields, samples, target_attributes
from migration_assets.target.proposal import FieldProposal, parse_proposal, propose, render_proposal
from migration_assets.target.proposal_activities import TYPES_HELP, merge_types, propose_types
from migration_assets.target.proposal_owners import OWNERS_HELP, propose_owners
from migration_assets.target.proposal_statuses import (
    LEAD_STATUS_HELP,
    PIPELINES_HELP,
    merge_lead_status,
    merge_pipelines,
    propose_lead_statuses,
)

BODY_MARK = "# ---"  # the generated header ends here; the body below decides whether a file changed


class ProposalInputError(RuntimeError):
    """The proposal cannot be made from what has been extracted (or from the files as edited)."""


@dataclass
class OrgSnapshot:
    """What propose-mapping reads from one extraction of a Close org."""

    organization_id: str | None
    extracted_at: str | None
    lead_statuses: list[dict[str, Any]]  # display order
    pipelines: list[dict[str, Any]]  # display order, statuses embedded in display order
    custom_fields: dict[str, list[dict[str, Any]]]  # by object type (lead, contact, opportunity, activity)
    samples: dict[str, list[Any]]  # cf id -> values seen on leads/contacts/opportunities
    activity_types: list[dict[str, Any]]
    activity_fields: dict[str, dict[str, int]] = field(default_factory=dict)  # type id -> cf id -> instances
    activity_counts: dict[str, int] = field(default_factory=dict)  # type id -> instances
    users: list[dict[str, Any]] = field(default_factory=list)  # id, email, names, is_active, role_id
    records_owned: dict[str, int] = field(default_factory=dict)  # Close user id -> records
    roles: dict[str, CloseRole] | None = None  # close.roles by id; None: not extracted
    lead_field_names: dict[str, str] = field(default_factory=dict)  # lead custom field id -> name


@dataclass(frozen=True)
class FileOutcome:
    path: Path
    status: str  # written (new) | updated | unchanged
    open_decisions: int


@dataclass
class ProposalResult:
    files: list[FileOutcome] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def report(self) -> list[str]:
        """What the CLI prints: each file and what happened to it, then the notes."""
        lines = []
        for f in self.files:
            todo = f"  ({f.open_decisions} open decision(s))" if f.open_decisions else ""
            lines.append(f"{f.status:9} {f.path}{todo}")
        return lines + [f"note: {n}" for n in self.notes]

    @property
    def open_decisions(self) -> int:
        return sum(f.open_decisions for f in self.files)


# --- reading the extraction -------------------------------------------------------------------------------


def _require(con: duckdb.DuckDBPyConnection, table: str) -> None:
    if not table_exists(con, "close", table):
        raise ProposalInputError(
            f"close.{table} has not been extracted yet: run `close2d365 extract` (or the extract job) first"
        )


def _raw(con: duckdb.DuckDBPyConnection, table: str, order: str = "id") -> list[dict[str, Any]]:
    _require(con, table)
    return [
        json.loads(r[0]) for r in con.execute(f'SELECT raw FROM close."{table}" ORDER BY {order}').fetchall()
    ]


def _columns(con: duckdb.DuckDBPyConnection, table: str) -> set[str]:
    rows = con.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = 'close' AND table_name = ?",
        [table],
    ).fetchall()
    return {r[0] for r in rows}


def _display_order(con: duckdb.DuckDBPyConnection, table: str) -> list[dict[str, Any]]:
    # close.* tables are stored sorted by id; `position` is where the object came in Close's list, which
    # is the display order (close_api.md §4.4/4.5).
    order = "position NULLS LAST, id" if "position" in _columns(con, table) else "id"
    return _raw(con, table, order)


def _activity_usage(con: duckdb.DuckDBPyConnection) -> tuple[dict[str, dict[str, int]], dict[str, int]]:
    if not table_exists(con, "close", "custom_activities"):
        return {}, {}
    rows = con.execute(
        "SELECT custom_activity_type_id, k, count(*) FROM (SELECT custom_activity_type_id, unnest(json_keys(raw)) "
        "AS k, raw FROM close.custom_activities) WHERE k LIKE 'custom.%' AND json_extract(raw, '$.\"' || k || '\"') "
        "IS NOT NULL AND json_extract(raw, '$.\"' || k || '\"')::VARCHAR NOT IN ('null', '[]', '\"\"') GROUP BY ALL"
    ).fetchall()
    used: dict[str, dict[str, int]] = {}
    for type_id, key, n in rows:
        used.setdefault(str(type_id), {})[str(key).removeprefix("custom.")] = int(n)
    counts = dict(
        con.execute(
            "SELECT custom_activity_type_id, count(*) FROM close.custom_activities GROUP BY ALL"
        ).fetchall()
    )
    return used, {str(k): int(v) for k, v in counts.items()}


def _records_owned(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    parts = [
        f'SELECT "{c}" AS uid FROM close."{t}"'
        for t, c in OWNER_COLUMNS.items()
        if table_exists(con, "close", t)
    ]
    if not parts:
        return {}
    rows = con.execute(
        f"SELECT uid, count(*) FROM ({' UNION ALL '.join(parts)}) WHERE uid IS NOT NULL GROUP BY uid"
    )
    return {str(u): int(n) for u, n in rows.fetchall()}


def read_snapshot(con: duckdb.DuckDBPyConnection, extracted_at: str | None = None) -> OrgSnapshot:
    """The extracted org as a proposal needs it; `extracted_at` only annotates the files' header."""
    lead_statuses = _display_order(con, "lead_statuses")
    pipelines = _display_order(con, "pipelines")
    fields = close_custom_fields(con) if table_exists(con, "close", "custom_fields") else {}
    used, counts = _activity_usage(con)
    _require(con, "users")
    users, roles, lead_field_names = read_close(con)
    org_id = next(
        (str(o["organization_id"]) for o in lead_statuses + pipelines if o.get("organization_id")), None
    )
    return OrgSnapshot(
        org_id,
        extracted_at,
        lead_statuses,
        pipelines,
        fields,
        samples(con, fields),
        _raw(con, "custom_activity_types"),
        used,
        counts,
        users,
        _records_owned(con),
        roles if table_exists(con, "close", "roles") else None,
        lead_field_names,
    )


def _systemusers(con: duckdb.DuckDBPyConnection, dataverse: Any | None) -> list[dict[str, Any]] | None:
    if dataverse is not None:
        select = [
            "systemuserid",
            "internalemailaddress",
            "domainname",
            "fullname",
            "isdisabled",
            "applicationid",
        ]
        return list(dataverse.query("systemuser", select=select))
    if table_exists(con, "staged", "target_systemusers"):
        cur = con.execute("SELECT * FROM staged.target_systemusers")
        cols = [d[0] for d in cur.description]
        return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]
    return None


# --- the files --------------------------------------------------------------------------------------------


def _dump(body: Any) -> str:
    return yaml.safe_dump(body, sort_keys=False, allow_unicode=True, width=110, default_flow_style=None)


def _header(name: str, snap: OrgSnapshot, help_text: str, open_count: int, target: str | None) -> str:
    source = f"Close organization {snap.organization_id or '(id unknown)'}"
    when = f"extracted {snap.extracted_at}" if snap.extracted_at else "extraction time unknown"
    lines = [
        f"# {name}: generated by `close2d365 propose-mapping`",
        f"# from {source} ({when})" + (f" and {target}." if target else "."),
    ]
    if open_count:
        lines.append(
            f"# {open_count} entr{'y needs' if open_count == 1 else 'ies need'} a decision: each `review:` says what "
            "to decide; decide, then delete the review line"
        )
        lines.append("# (custom fields: set `confirmed: true`). Loading is blocked until none is left.")
    else:
        lines.append("# No entry needs a decision.")
    lines.append(
        "# Re-running propose-mapping keeps what this file says and adds/drops what changed in Close."
    )
    return "\n".join(lines) + "\n" + help_text + BODY_MARK + "\n"


def _body_of(text: str) -> str:
    return text.split(BODY_MARK + "\n", 1)[1] if BODY_MARK + "\n" in text else text


def _load_plain(path: Path) -> Any:
    if not path.is_file():
        return None
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ProposalInputError(f"{path} is not valid YAML ({exc}); fix or delete it and re-run") from exc


def _write(
    path: Path, header: Callable[[int], str], body_text: str, opened: int, result: ProposalResult
) -> None:
    old = path.read_text(encoding="utf-8") if path.is_file() else None
    # Same data = unchanged, however it is laid out (a reviewed file may have been re-dumped or re-indented).
    if old is not None and yaml.safe_load(_body_of(old)) == yaml.safe_load(body_text):
        result.files.append(FileOutcome(path, "unchanged", opened))
        return
    path.write_text(header(opened) + body_text, encoding="utf-8")
    result.files.append(FileOutcome(path, "written" if old is None else "updated", opened))


def _custom_fields(
    root: Path,
    settings: Settings,
    snap: OrgSnapshot,
    attributes: Mapping[str, Sequence[Mapping[str, Any]]],
    notes: list[str],
) -> list[FieldProposal]:
    path = root / "custom_fields.yaml"
    existing = (
        parse_proposal(path, f"{root.name}/custom_fields.yaml", settings.publisher_prefix)
        if path.is_file()
        else []
    )
    current = {str(f["id"]) for k, fs in snap.custom_fields.items() for f in fs}
    kept = [p for p in existing if p.close_field_id in current]
    notes += [
        f"custom field {p.close_name!r} ({p.close_field_id}) is no longer in Close: dropped from custom_fields.yaml"
        for p in existing
        if p.close_field_id not in current
    ]
    known = {p.close_field_id for p in kept}
    new_fields = {k: [f for f in fs if str(f["id"]) not in known] for k, fs in snap.custom_fields.items()}
    taken: dict[str, set[str]] = {}
    for p in kept:
        taken.setdefault(p.table, set()).add(p.target)
    fresh = propose(new_fields, snap.samples, attributes, settings.publisher_prefix, taken)
    # Close's order (object, then field id) for new and kept entries alike: a re-run does not reshuffle.
    order = {str(f["id"]): n for n, f in enumerate(f for fs in snap.custom_fields.values() for f in fs)}
    return sorted([*kept, *fresh], key=lambda p: order.get(p.close_field_id, len(order)))


def propose_files(
    root: Path,
    settings: Settings,
    snap: OrgSnapshot,
    attributes: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
    systemusers: Sequence[Mapping[str, Any]] | None = None,
) -> ProposalResult:
    """Write (or update) the five org files in `root` from a snapshot of the org; see the module doc."""
    result = ProposalResult()
    target = "the target's columns and users" if systemusers is not None else None

    def emit(name: str, help_text: str, body: Any, notes: list[str]) -> None:
        opened = len(open_decisions_in(body, name))
        result.notes.extend(notes)
        _write(root / name, lambda n: _header(name, snap, help_text, n, target), _dump(body), opened, result)

    lead, notes = merge_lead_status(
        _load_plain(root / "lead_status.yaml"), propose_lead_statuses(snap.lead_statuses)
    )
    emit("lead_status.yaml", LEAD_STATUS_HELP, lead, notes)
    pipes, notes = merge_pipelines(
        _load_plain(root / "pipelines.yaml"), snap.pipelines, settings.option_value_prefix
    )
    emit("pipelines.yaml", PIPELINES_HELP, pipes, notes)

    notes = []
    fields = _custom_fields(root, settings, snap, attributes or {}, notes)
    result.notes.extend(notes)
    text = render_proposal(fields)
    opened = sum(not p.confirmed for p in fields)
    _write(
        root / "custom_fields.yaml",
        lambda n: _header("custom_fields.yaml", snap, "", n, target),
        text,
        opened,
        result,
    )

    activity_defs = {str(f["id"]): f for f in snap.custom_fields.get("activity", [])}
    proposed = propose_types(
        snap.activity_types,
        settings.publisher_prefix,
        activity_defs,
        snap.activity_fields,
        snap.activity_counts,
    )
    types, notes = merge_types(_load_plain(root / "custom_activities.yaml"), proposed)
    emit("custom_activities.yaml", TYPES_HELP, types, notes)

    try:
        owners = propose_owners(
            _load_plain(root / "owners.yaml"),
            snap.users,
            systemusers,
            snap.records_owned,
            snap.roles,
            snap.lead_field_names,
        )
    except OwnerConfigError as exc:
        raise ProposalInputError(f"{root / 'owners.yaml'}: {exc}") from exc
    owner_help = (
        OWNERS_HELP
        if systemusers is not None
        else OWNERS_HELP
        + (
            "# Not matched yet: DATAVERSE_URL is not set (re-run propose-mapping with it to see each user's match).\n"
        )
    )
    emit("owners.yaml", owner_help, owners, [])
    return result


def _dataverse_client() -> Any | None:
    """The target's client when DATAVERSE_URL is configured (to propose existing columns), else None."""
    if not os.environ.get(env.DATAVERSE_URL):
        return None
    from migration_assets.resources import dataverse_resource

    return dataverse_resource(resolved=True).get_client()


def propose_all(
    mappings_root_path: Path | None = None,
    warehouse: WarehouseResource | None = None,
    dataverse: Any | None = None,
    use_env_dataverse: bool = True,
    extracted_at: str | None = None,
) -> ProposalResult:
    """`close2d365 propose-mapping` (also the demo's and the tests' way to their mappings)."""
    root = mappings_root(mappings_root_path)
    settings = load_settings(root)
    if dataverse is None and use_env_dataverse:
        dataverse = _dataverse_client()
    with (warehouse or WarehouseResource()).connect() as con:
        snap = read_snapshot(con, extracted_at)
        attributes = target_attributes(con, dataverse)
        users = _systemusers(con, dataverse)
    return propose_files(root, settings, snap, attributes, users)
