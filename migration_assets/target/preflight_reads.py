"""The preflight's reads of the target: what the target says about this migration, before anything is
written to it. Read-only; each read turns into findings (target/preflight.py), and a read the application
user is not allowed to make is itself a blocker.

It reads who the application users are (WhoAmI, and each configured client id's systemuser) and the
privileges their roles give them (RetrieveUserPrivileges), against what the plan writes
(EntityMetadata.Privileges of each table, prvOverrideCreatedOnCreatedBy, the bypass privilege when bypass
headers are sent); business-required columns of each existing target table that the mapping does not fill;
the custom tables (IsCustomEntity, unmanaged) plus the planned ones against `target.edition`;
maxuploadfilesize against the Close attachments; the base and enabled currencies against the Close
currencies; owners mapped to users disabled since; the publisher/solution conflicts (`inspect_solution`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import duckdb

from migration_assets.clients.dataverse.client import DataverseClient
from migration_assets.clients.dataverse.errors import DataverseApiError
from migration_assets.clients.dataverse.schema import rows_url
from migration_assets.mapping.config import MappingConfig
from migration_assets.resources.markdown import markdown_table
from migration_assets.resources.warehouse import table_exists
from migration_assets.target import preflight as pf
from migration_assets.target.deploy import load_plan
from migration_assets.target.preflight_state import KnownTarget
from migration_assets.target.solution import SolutionTarget
from migration_assets.target.solution_deploy import inspect_solution

FUNCTION = "Microsoft.Dynamics.CRM."
# The fixed reads of every preflight, fetched together in one `$batch` (client.read_together): a delta's
# preflight costs two round trips (these, then the application users' privileges), not one per read.
ORGANIZATION = ("organizations", ["maxuploadfilesize", "_basecurrencyid_value"], None)
CURRENCIES = ("transactioncurrencies", ["transactioncurrencyid", "isocurrencycode", "statecode"], None)
DISABLED_USERS = ("systemusers", ["systemuserid", "fullname"], "isdisabled eq true")
ENTITIES = ("EntityDefinitions", ["LogicalName", "IsCustomEntity", "IsManaged", "IsActivity"], None)


def _app_user(client_id: str) -> tuple[str, list[str], str]:
    return "systemusers", ["systemuserid"], f"applicationid eq {client_id}"


def _privileges_url(user_id: str) -> str:
    return f"systemusers({user_id})/{FUNCTION}RetrieveUserPrivileges()"


def _entity(table: str, query: str = "") -> str:
    return f"EntityDefinitions(LogicalName='{table}'){query}"


def app_users(client: DataverseClient, client_ids: Iterable[str]) -> list[pf.AppUserAccess]:
    """Each configured application user's systemuser and its privileges (name -> deepest depth)."""
    out = []
    found = {c: client.rows(*_app_user(c)) for c in client_ids}
    user_ids = {c: str(rows[0]["systemuserid"]) for c, rows in found.items() if rows}
    if len(user_ids) > 1:
        client.read_together([_privileges_url(u) for u in user_ids.values()])
    for client_id in client_ids:
        if client_id not in user_ids:
            out.append(pf.AppUserAccess(client_id, None))
            continue
        user_id = user_ids[client_id]
        body = client.get_json(_privileges_url(user_id))
        depth_order = ["Basic", "Local", "Deep", "Global"]
        held: dict[str, str] = {}
        for p in body.get("RolePrivileges") or []:
            name, depth = str(p.get("PrivilegeName") or ""), str(p.get("Depth") or "")
            rank = depth_order.index(depth) if depth in depth_order else -1
            if name and (name not in held or depth_order.index(held[name]) < rank):
                held[name] = depth
        out.append(pf.AppUserAccess(client_id, user_id, held))
    return out


def table_privileges(client: DataverseClient, table: str) -> dict[str, str]:
    """PrivilegeType -> privilege name, as the table's metadata declares them."""
    body = client.get_json(_entity(table, "?$select=LogicalName,Privileges"))
    return {str(p["PrivilegeType"]): str(p["Name"]) for p in body.get("Privileges") or []}


def columns(client: DataverseClient, table: str) -> list[pf.Column]:
    select = "LogicalName,RequiredLevel,IsValidForCreate,IsPrimaryId,AttributeType,AttributeOf"
    raw = client.get_json(_entity(table, f"/Attributes?$select={select}")).get("value") or []
    picklists = (
        client.get_json(
            _entity(
                table, f"/Attributes/{FUNCTION}PicklistAttributeMetadata?$select=LogicalName,DefaultFormValue"
            )
        ).get("value")
        or []
    )
    defaulted = {p["LogicalName"] for p in picklists if p.get("DefaultFormValue") not in (None, -1)}
    return [
        pf.Column(
            logical_name=a["LogicalName"],
            required_level=(a.get("RequiredLevel") or {}).get("Value") or "None",
            valid_for_create=a.get("IsValidForCreate") is not False,
            attribute_type=a.get("AttributeType") or "",
            is_primary_id=bool(a.get("IsPrimaryId")),
            attribute_of=a.get("AttributeOf"),
            # A two-option column always has a value: the platform applies its DefaultValue on create.
            has_default=a.get("AttributeType") == "Boolean" or a["LogicalName"] in defaulted,
        )
        for a in raw
    ]


def filled_columns(client: DataverseClient, cfg: MappingConfig, table: str) -> set[str]:
    """Columns of `table` the field maps write (lookup targets are navigation properties: their column)."""
    nav = {r.navigation_property: r.referencing_attribute for r in client.metadata(table).many_to_one}
    targets = {t for f in cfg.field_maps.values() if f.table == table for t in f.targets}
    return {nav.get(t, t) for t in targets}


def _rows(con: duckdb.DuckDBPyConnection, sql: str) -> list[tuple[Any, ...]]:
    return con.execute(sql).fetchall()


def close_facts(con: duckdb.DuckDBPyConnection, cfg: MappingConfig) -> tuple[list[int], dict[str, int]]:
    """(attachment sizes when attachments are migrated, Close currency -> opportunities)."""
    sizes: list[int] = []
    if any(o.source == "attachments" for o in cfg.objects) and table_exists(con, "close", "attachments"):
        sizes = [int(r[0]) for r in _rows(con, "SELECT size FROM close.attachments WHERE size IS NOT NULL")]
    seen: dict[str, int] = {}
    if table_exists(con, "close", "opportunities"):
        rows = _rows(
            con,
            "SELECT upper(value_currency), count(*) FROM close.opportunities "
            "WHERE value_currency IS NOT NULL GROUP BY 1",
        )
        seen = {str(code): int(n) for code, n in rows}
    return sizes, seen


def mapped_owners(con: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    if not table_exists(con, "staged", "owner_map"):
        return []
    cur = con.execute(
        "SELECT close_user_id, close_email AS email, systemuserid, records_owned FROM staged.owner_map "
        "WHERE systemuserid IS NOT NULL AND records_owned > 0"
    )
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]


def guarded(
    topic: str, read: Callable[[], list[pf.Finding]], refused: list[str] | None = None
) -> list[pf.Finding]:
    """A read the application user is not allowed to make is itself a blocker (with the service's words);
    its topic is added to `refused`."""
    try:
        return read()
    except DataverseApiError as exc:
        if refused is not None:
            refused.append(topic)
        return [
            pf.Finding(
                pf.BLOCKER,
                topic,
                f"the target refused the preflight's read: {exc}",
                f"give the application user's security role read access for this ({pf.ROLES_PAGE})",
            )
        ]


def collect(
    client: DataverseClient,
    cfg: MappingConfig,
    con: duckdb.DuckDBPyConnection,
    entitlement: tuple[int, int] | None,
    app_client_ids: Sequence[str],
    bypass_custom_logic: bool,
    known: KnownTarget | None = None,
) -> tuple[list[pf.Finding], dict[str, Any], KnownTarget | None]:
    """Every finding, facts for the asset's metadata, and what was read of the target's metadata (None when
    a read failed). `app_client_ids`: the application users the load runs as; `bypass_custom_logic`: whether
    it sends the bypass headers (which need their own privilege). `known`: the metadata reads of an earlier
    full preflight of the same plan (a delta run reusing it): the metadata is not read again and the
    findings of the checks that read it are carried over."""
    fixed = [ORGANIZATION, CURRENCIES, DISABLED_USERS, *(_app_user(c) for c in app_client_ids)]
    if known is None:
        fixed.append(ENTITIES)
    client.read_together(["WhoAmI", *(rows_url(*r) for r in fixed)])
    try:
        return _collect(client, cfg, con, entitlement, app_client_ids, bypass_custom_logic, known)
    finally:
        client.drop_read_ahead()


def _collect(
    client: DataverseClient,
    cfg: MappingConfig,
    con: duckdb.DuckDBPyConnection,
    entitlement: tuple[int, int] | None,
    app_client_ids: Sequence[str],
    bypass_custom_logic: bool,
    known: KnownTarget | None = None,
) -> tuple[list[pf.Finding], dict[str, Any], KnownTarget | None]:
    """`collect`, its fixed reads already fetched ahead."""
    plan = load_plan(con)
    planned = sorted(t.logical_name for t in plan.tables)
    written = sorted({o.table for o in cfg.objects} | set(planned))
    if known is not None and not set(written) <= set(known.table_privileges):
        known = None  # the tables written changed: read their metadata
    facts: dict[str, Any] = {"tables_written": ", ".join(written)}
    present: set[str] = set()
    custom: list[str] = []
    if known is None:
        entities = client.rows(*ENTITIES)
        present = {str(e["LogicalName"]) for e in entities}
        # Microsoft's own solutions ship managed custom tables (msdyn_*): the edition's limit counts the others.
        custom = sorted(
            str(e["LogicalName"]) for e in entities if e.get("IsCustomEntity") and not e.get("IsManaged")
        )
    facts["custom_tables_in_target"] = len(custom) if known is None else known.custom_tables_in_target
    by_table: dict[str, dict[str, str]] = {}

    def privileges() -> list[pf.Finding]:
        if known is not None:
            by_table.update({t: known.table_privileges[t] for t in written})
        else:
            shared = table_privileges(client, "activitypointer")  # what a new custom activity table will use
            by_table.update({t: table_privileges(client, t) if t in present else shared for t in written})
        targets = {f.table: set(f.targets) for f in cfg.field_maps.values()}
        needed = pf.needed_privileges(
            by_table,
            assigns_owner={t for t, cols in targets.items() if "ownerid" in cols} | set(planned),
            override_created_on=any("overriddencreatedon" in cols for cols in targets.values())
            or bool(planned),
            bypass_custom_logic=bypass_custom_logic,
        )
        facts["whoami"] = client.whoami().get("UserId")
        return pf.privilege_findings(app_users(client, app_client_ids), needed)

    def required() -> list[pf.Finding]:
        out = []
        for table in sorted({o.table for o in cfg.objects} & present):
            out += pf.required_column_findings(
                table, columns(client, table), filled_columns(client, cfg, table)
            )
        return out

    def organization() -> list[pf.Finding]:
        # System tables whose entity set names Dataverse fixes: asked for directly, not looked up first.
        org = next(iter(client.rows(*ORGANIZATION)), {})
        currencies = client.rows(*CURRENCIES)
        base = next(
            (
                c["isocurrencycode"]
                for c in currencies
                if c["transactioncurrencyid"] == org.get("_basecurrencyid_value")
            ),
            None,
        )
        enabled = [str(c["isocurrencycode"]) for c in currencies if c.get("statecode") in (0, None)]
        facts.update(base_currency=base, maxuploadfilesize=org.get("maxuploadfilesize"))
        sizes, seen = close_facts(con, cfg)
        return pf.upload_findings(sizes, org.get("maxuploadfilesize")) + pf.currency_findings(
            base, enabled, seen
        )

    def owners() -> list[pf.Finding]:
        disabled = {str(u["systemuserid"]): u for u in client.rows(*DISABLED_USERS)}
        hit = [
            {**o, "fullname": disabled[str(o["systemuserid"])].get("fullname")}
            for o in mapped_owners(con)
            if str(o["systemuserid"]) in disabled
        ]
        return pf.disabled_owner_findings(hit)

    def solution() -> list[pf.Finding]:
        return pf.solution_findings(
            inspect_solution(client, SolutionTarget.from_settings(cfg.settings)).conflicts
        )

    refused: list[str] = []  # a refused read is a blocker now, not a finding to carry over
    privilege_found = guarded("privilege", privileges, refused)
    if known is None:
        metadata_read = KnownTarget(
            dict(by_table),
            guarded("required column", required, refused),
            pf.custom_table_findings(custom, planned, cfg.settings.edition),
            guarded("publisher and solution", solution, refused),
            len(custom),
        )
    else:
        metadata_read = known
        facts["metadata_reads"] = (
            "skipped (the schema plan was reused): table privileges, required columns, custom tables and "
            f"publisher/solution as read by run {known.run_id}"
        )
    findings = privilege_found + metadata_read.required + metadata_read.custom_tables
    if entitlement is not None:
        findings += pf.entitlement_findings(*entitlement)
    findings += guarded("organization", organization)
    findings += guarded("owner", owners)
    findings += metadata_read.solution
    complete = set(written) <= set(by_table) and not refused
    return findings, facts, metadata_read if complete else None


def render(findings: list[pf.Finding], facts: dict[str, Any]) -> str:
    blockers = pf.blockers(findings)
    verdict = (
        f"**{len(blockers)} blockers**: nothing is written to the target until each is fixed."
        if blockers
        else "**The target is ready** for this migration."
    )
    lines = ["# Preflight of the target", "", verdict, ""]
    lines += [f"- {k}: {v}" for k, v in facts.items()]
    lines += ["", markdown_table([f.row() for f in findings], pf.FINDING_COLUMNS)]
    return "\n".join(lines)
