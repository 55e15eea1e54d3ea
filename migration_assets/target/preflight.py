"""The preflight's findings (pure): what the target says, turned into blockers and warnings, each with the
exact setting, mapping file or admin action that fixes it.

Inputs are plain data read from the target by `defs/schema/preflight.py`: the privileges each application
user holds (`RetrieveUserPrivileges`), the privilege names each written table declares
(`EntityMetadata.Privileges`), the columns of each written table, the custom tables, the organization's
upload limit and currencies, the owners the owner map assigns records to. Reference §5.2 (entitlement),
§6 (required levels: only SystemRequired is enforced by the API, yet an empty business-required column
breaks the forms and the business rules that rely on it, so an unmapped one stops the run here), §7.5 (roles),
§7.12 (prvOverrideCreatedOnCreatedBy), §8 (bypass headers), §11 (edition limits).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from migration_assets.load.estimate import table_limit
from migration_assets.target.rules import PLATFORM_DEFAULTED

BLOCKER, WARNING = "blocker", "warning"
FINDING_COLUMNS = ("severity", "topic", "finding", "fix")
GLOBAL = "Global"  # PrivilegeDepth: Organization level in the role editor
ROLES_PAGE = (
    "Power Platform admin center > Environments > <environment> > Settings > Users + permissions > "
    "Security roles"
)
APP_USERS_PAGE = (
    "Power Platform admin center > Environments > <environment> > Settings > Users + permissions > "
    "Application users"
)
# What the loader does with each privilege type of a written table; Delete only serves rollback.
TABLE_NEEDS = {
    "Create": "create its rows",
    "Read": "read back and reconcile its rows",
    "Write": "set states and update rows on a re-run",
    "Append": "set its lookups",
    "AppendTo": "be the target of other rows' lookups",
}
ROLLBACK_NEED = ("Delete", "remove its rows on rollback")
ASSIGN_NEED = ("Assign", "give its rows their Close owner")
# Privileges that are not about one table: where the role editor shows them.
MISC_PLACES = {
    "prvOverrideCreatedOnCreatedBy": "Miscellaneous privileges > Override Created on or Created by for Records "
    "during Data Import",
    "prvBypassCustomBusinessLogic": "Miscellaneous privileges > Bypass custom business logic",
}
# Columns a create may omit although required: the platform fills them, or they are read-only by design.
SKIPPED_TYPES = frozenset({"Virtual", "EntityName", "State", "Status", "CalendarRules", "ManagedProperty"})


@dataclass(frozen=True)
class Finding:
    severity: str  # BLOCKER | WARNING
    topic: str
    finding: str
    fix: str

    def row(self) -> dict[str, str]:
        return {"severity": self.severity, "topic": self.topic, "finding": self.finding, "fix": self.fix}


@dataclass(frozen=True)
class AppUserAccess:
    """One configured application user: its systemuser (None when the environment has none for the client
    id) and the privileges it holds through its roles, name -> deepest Depth."""

    client_id: str
    systemuserid: str | None
    privileges: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Column:
    logical_name: str
    required_level: str  # None | Recommended | ApplicationRequired | SystemRequired
    valid_for_create: bool = True
    attribute_type: str = "String"
    is_primary_id: bool = False
    attribute_of: str | None = None  # set on columns derived from another one (name, yomi, ...)
    has_default: bool = False  # the platform fills it on create (Boolean DefaultValue, choice default)


def blockers(findings: Sequence[Finding]) -> list[Finding]:
    return [f for f in findings if f.severity == BLOCKER]


# ---- privileges -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Need:
    """A privilege the load needs: why, whether its absence blocks, and where the role editor shows it."""

    reason: str
    blocking: bool
    place: str


def needed_privileges(
    tables: Mapping[str, Mapping[str, str]],
    assigns_owner: Collection[str] = (),
    override_created_on: bool = False,
    bypass_custom_logic: bool = False,
) -> dict[str, Need]:
    """privilege name -> Need, for the tables the plan writes. `tables` maps each table to its privileges
    by type (EntityMetadata.Privileges: PrivilegeType -> Name); activity tables share one set
    (prvCreateActivity), so such a privilege is listed once with every table that needs it."""
    why: dict[str, list[str]] = {}
    blocking: dict[str, bool] = {}
    places: dict[str, str] = {}

    def need(name: str | None, reason: str, place: str, block: bool = True) -> None:
        if name:
            why.setdefault(name, []).append(reason)
            blocking[name] = blocking.get(name, False) or block
            places.setdefault(name, place)

    for table, by_type in sorted(tables.items()):
        wanted = [*TABLE_NEEDS.items(), *([ASSIGN_NEED] if table in assigns_owner else [])]
        for kind, reason in wanted:
            need(by_type.get(kind), f"{kind} on {table} ({reason})", f"the {table} table's {kind} column")
        kind, reason = ROLLBACK_NEED
        need(by_type.get(kind), f"{kind} on {table} ({reason})", f"the {table} table's {kind} column", False)
    if override_created_on:
        need(
            "prvOverrideCreatedOnCreatedBy",
            "keep each record's Close creation date (overriddencreatedon)",
            MISC_PLACES["prvOverrideCreatedOnCreatedBy"],
        )
    if bypass_custom_logic:
        need(
            "prvBypassCustomBusinessLogic",
            "send the bypass headers (DataverseResource bypass_custom_logic)",
            MISC_PLACES["prvBypassCustomBusinessLogic"],
        )
    return {name: Need("; ".join(reasons), blocking[name], places[name]) for name, reasons in why.items()}


def privilege_findings(users: Sequence[AppUserAccess], needed: Mapping[str, Need]) -> list[Finding]:
    """Each privilege a configured application user lacks, or holds below Organization (Global) depth
    (records of every owner in every business unit are written)."""
    out: list[Finding] = []
    for user in users:
        if user.systemuserid is None:
            out.append(
                Finding(
                    BLOCKER,
                    "application user",
                    f"the environment has no application user for the client id {user.client_id}",
                    f"create it in {APP_USERS_PAGE} > New app user "
                    "(that app registration, the root business unit) and give it a security role "
                    "with the privileges listed here (or System Administrator)",
                )
            )
            continue
        for name, need in sorted(needed.items()):
            depth = user.privileges.get(name)
            if depth == GLOBAL:
                continue
            held = "lacks" if depth is None else f"holds only at {depth} depth"
            out.append(
                Finding(
                    BLOCKER if need.blocking else WARNING,
                    "privilege",
                    f"application user {user.client_id} ({user.systemuserid}) {held} {name}, needed to {need.reason}",
                    f"in {ROLES_PAGE}, open the application user's security role and set {name} ({need.place}) to "
                    "Organization; or assign the System Administrator role to the application user",
                )
            )
    return out


# ---- business-required columns --------------------------------------------------------------------------
def unfilled_required(columns: Sequence[Column], filled: Collection[str]) -> list[Column]:
    """Business-required columns (ApplicationRequired or SystemRequired) a create can set, that neither the
    mapping (`filled`) nor the platform (a default, the owner, the state) fills."""
    out = []
    for col in columns:
        if col.required_level not in ("ApplicationRequired", "SystemRequired") or not col.valid_for_create:
            continue
        if col.is_primary_id or col.attribute_of or col.has_default or col.attribute_type in SKIPPED_TYPES:
            continue
        if col.logical_name in PLATFORM_DEFAULTED or col.logical_name in filled:
            continue
        out.append(col)
    return out


def required_column_findings(table: str, columns: Sequence[Column], filled: Collection[str]) -> list[Finding]:
    return [
        Finding(
            BLOCKER,
            "required column",
            f"{table}.{c.logical_name} is {c.required_level} in the target and the mapping does not fill it",
            f"map a source to it in mappings/fields/{table}.yaml (target: {c.logical_name}), or have the "
            f"target's admin set it back to Optional (make.powerapps.com > Tables > {table} > Columns > "
            f"{c.logical_name} > Required)",
        )
        for c in unfilled_required(columns, filled)
    ]


# ---- custom tables, entitlement -------------------------------------------------------------------------
def custom_table_findings(existing: Collection[str], planned: Collection[str], edition: str) -> list[Finding]:
    """The target's unmanaged custom tables plus the ones the plan creates, against the edition's limit."""
    limit = table_limit(edition)
    total = sorted(set(existing) | set(planned))
    if limit is None or len(total) <= limit:
        return []
    new = sorted(set(planned) - set(existing))
    return [
        Finding(
            BLOCKER,
            "custom tables",
            f"{len(total)} custom tables after this plan ({len(set(existing))} in the target, {len(new)} new: "
            f"{', '.join(new) or 'none'}) exceed the {edition} limit of {limit}",
            "route fewer Close custom activity types to tables (mappings/custom_activities.yaml), route SMS to "
            "task (mappings/activities.yaml sms.table), or set target.edition in mappings/settings.yaml to the "
            "edition the tenant is licensed for (sales_enterprise / sales_premium have no such limit)",
        )
    ]


def entitlement_findings(requests: int, daily_pool: int) -> list[Finding]:
    if daily_pool <= 0 or requests <= daily_pool:
        return []
    days = math.ceil(requests / daily_pool)
    return [
        Finding(
            WARNING,
            "request entitlement",
            f"the load needs about {requests:,} Power Platform requests; the tenant's daily entitlement is "
            f"{daily_pool:,} (about {days} days of it)",
            "spread the load (a first run, then delta runs), license more users, or add Power Platform request "
            "capacity; schema/load_plan shows the figures (its licences / app_users config)",
        )
    ]


# ---- files, currencies, owners ----------------------------------------------------------------------------
def upload_findings(sizes: Sequence[int], max_upload: int | None) -> list[Finding]:
    """Close attachments whose base64 size exceeds organization.maxuploadfilesize (staging lists them)."""
    if not max_upload:
        return []
    over = [s for s in sizes if 4 * math.ceil(s / 3) > max_upload]
    if not over:
        return []
    return [
        Finding(
            WARNING,
            "file size",
            f"{len(over)} Close attachments are larger than the target's maxuploadfilesize ({max_upload:,} bytes, "
            f"base64); the largest is {max(over):,} bytes: they will not be loaded (listed in the review)",
            "raise the organization's maximum file size (Power Platform admin center > Settings > Email > "
            "Maximum file size, up to 131,072 KB), or set attachments.max_size_bytes in mappings/settings.yaml",
        )
    ]


def currency_findings(base: str | None, enabled: Collection[str], seen: Mapping[str, int]) -> list[Finding]:
    """Close currencies (ISO code -> records) the target has not enabled: those records are rejected."""
    known = {c.upper() for c in enabled}
    out = []
    for code, n in sorted(seen.items()):
        if code and code.upper() not in known:
            out.append(
                Finding(
                    WARNING,
                    "currency",
                    f"{n} Close records are in {code.upper()}, which the target does not have enabled (base "
                    f"currency {base or 'unknown'}): staging rejects them",
                    f"add {code.upper()} in the target (Power Platform admin center > Settings > Business > "
                    "Currencies > New), then run again",
                )
            )
    return out


def disabled_owner_findings(owners: Sequence[Mapping[str, Any]]) -> list[Finding]:
    """Owners the owner map assigns records to whose systemuser is disabled in the target now (rows:
    close_user_id, email, systemuserid, fullname, records_owned)."""
    return [
        Finding(
            BLOCKER,
            "owner",
            f"{o.get('records_owned') or 0} records go to {o.get('fullname') or o.get('systemuserid')} "
            f"(Close user {o.get('email') or o.get('close_user_id')}), whose Dataverse user is disabled",
            "enable the user in the target, or map the Close user elsewhere: mappings/owners.yaml overrides, "
            "or disabled_users: fallback with a fallback_owner",
        )
        for o in owners
    ]


def solution_findings(conflicts: Sequence[str]) -> list[Finding]:
    """Each conflict of the publisher/solution settings with the target (its text names its fix)."""
    return [
        Finding(
            BLOCKER,
            "publisher and solution",
            text,
            "mappings/settings.yaml publisher_prefix / publisher / solution_unique_name (see the finding)",
        )
        for text in conflicts
    ]
