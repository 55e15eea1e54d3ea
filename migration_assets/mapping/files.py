"""Parsers for the small mapping files: settings, lead statuses, pipelines, owners, activities, accounts."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from migration_assets.mapping.yaml_loc import MappingError, Section

# Real Dataverse lead state/status pairs (dataverse_api.md §7.3).
LEAD_STATES: dict[int, tuple[int, ...]] = {0: (1, 2), 1: (3,), 2: (4, 5, 6, 7)}
OPPORTUNITY_WON_STATUS = (3,)
OPPORTUNITY_LOST_STATUS = (4, 5)
SALES_STAGES = (0, 1, 2, 3)  # opportunity_salesstage: Qualify, Develop, Propose, Close
# The shipped "Opportunity Sales Process" business process flow (workflows.uniquename; reference §9.1) and
# its stages by salesstage: what a pipelines.yaml written before `sales_process`/`stage` existed means.
SHIPPED_SALES_PROCESS = "opportunitysalesprocess"
SHIPPED_STAGES = ("Qualify", "Develop", "Propose", "Close")
# attachments.prefetch_max_bytes when settings.yaml does not say: what a laptop's disk spares easily.
DEFAULT_PREFETCH_BYTES = 10 * 1000**3
_PREFIX = re.compile(r"^[a-z][a-z0-9]{1,7}$")
_VERSION = re.compile(r"^\d+(\.\d+){1,3}$")
# Dynamics 365 editions the settings may name (their custom table limits: lib/load_estimate).
EDITIONS = ("sales_professional", "sales_enterprise", "sales_premium")


@dataclass(frozen=True)
class Threshold:
    max_rows: int | None = 0
    max_fraction: float | None = 0.0

    def allows(self, rejected: int, total: int) -> bool:
        """True when `rejected` of `total` rows stay within this threshold (both limits must hold)."""
        if self.max_rows is not None and rejected > self.max_rows:
            return False
        return not (self.max_fraction is not None and total and rejected / total > self.max_fraction)


@dataclass(frozen=True)
class Settings:
    publisher_prefix: str
    solution_unique_name: str
    option_value_prefix: int
    default_country_code: str | None
    truncation_default: str
    truncation_columns: Mapping[str, str]
    thresholds_default: Threshold
    thresholds: Mapping[str, Threshold]
    max_attachment_bytes: int | None
    deleted_records: str = "deactivate"  # delta runs: deactivate | delete
    publisher_unique_name: str = "close2d365"
    publisher_friendly_name: str = "close2d365 migration"
    solution_friendly_name: str = "Close CRM migration (close2d365)"
    solution_version: str = "1.0.0.0"
    edition: str = "sales_professional"  # the Dynamics 365 edition: its custom table limit
    # File bodies loaded/file_bodies fetches ahead of the annotation load, at most (raw bytes on disk).
    prefetch_max_bytes: int = DEFAULT_PREFETCH_BYTES

    def truncation_policy(self, table: str, column: str) -> str:
        return self.truncation_columns.get(f"{table}.{column}", self.truncation_default)

    def threshold(self, table: str) -> Threshold:
        return self.thresholds.get(table, self.thresholds_default)


def _threshold(s: Section) -> Threshold:
    s.only("max_rows", "max_fraction")
    rows, frac = s.get("max_rows", int), s.get("max_fraction", (int, float))
    if rows is not None and rows < 0:
        raise s.error("max_rows", "must be >= 0")
    if frac is not None and not 0 <= frac <= 1:
        raise s.error("max_fraction", "must be between 0 and 1")
    return Threshold(rows, None if frac is None else float(frac))


def parse_settings(data: Any, file: str) -> Settings:
    s = Section(data, file, "")
    s.only(
        "publisher_prefix",
        "solution_unique_name",
        "option_value_prefix",
        "default_country_code",
        "truncation",
        "rejection_thresholds",
        "attachments",
        "delta",
        "publisher",
        "solution",
        "target",
    )
    prefix = s.get("publisher_prefix", str, required=True)
    if not _PREFIX.match(prefix):
        raise s.error(
            "publisher_prefix", "must be 2-8 lower-case letters/digits starting with a letter (e.g. c2d)"
        )
    ovp = s.get("option_value_prefix", int, required=True)
    if not 10000 <= ovp <= 99999:
        raise s.error("option_value_prefix", "must be a 5-digit number (10000-99999), e.g. 72700")
    cc = s.get("default_country_code", (str, int))
    trunc = s.section("truncation")
    trunc.only("default", "columns")
    policies = ("reject", "truncate")
    default = trunc.get("default", str, "reject")
    if default not in policies:
        raise trunc.error("default", f"must be one of {policies}")
    columns: dict[str, str] = {}
    cols = trunc.sub("columns")
    for key, value in cols.data.items() if cols else []:
        if value not in policies or "." not in str(key):
            raise cols.error(str(key), f"expected '<table>.<column>: reject|truncate', got {value!r}")
        columns[str(key).replace("{prefix}", prefix)] = value
    th = s.section("rejection_thresholds")
    th.only("default", "tables")
    tables: dict[str, Threshold] = {}
    tsec = th.sub("tables")
    for key in tsec.data if tsec else []:
        tables[str(key)] = _threshold(tsec.section(str(key)))
    att = s.sub("attachments")
    max_bytes, prefetch = None, DEFAULT_PREFETCH_BYTES
    if att:
        att.only("max_size_bytes", "prefetch_max_bytes")
        max_bytes = att.get("max_size_bytes", int)
        prefetch = att.get("prefetch_max_bytes", int, DEFAULT_PREFETCH_BYTES)
        if prefetch < 0:
            raise att.error("prefetch_max_bytes", "must be >= 0 (0: nothing is fetched ahead)")
    deleted = "deactivate"
    delta = s.sub("delta")
    if delta:
        delta.only("deleted_records")
        deleted = delta.get("deleted_records", str, "deactivate")
        if deleted not in ("deactivate", "delete"):
            raise delta.error("deleted_records", "must be 'deactivate' or 'delete'")
    pub = s.sub("publisher") or Section({}, file, "publisher")
    pub.only("unique_name", "friendly_name")
    sol = s.sub("solution") or Section({}, file, "solution")
    sol.only("friendly_name", "version")
    version = str(sol.get("version", (str, int, float), "1.0.0.0"))
    if not _VERSION.match(version):
        raise sol.error("version", "must be a solution version of 2 to 4 numbers, e.g. 1.0.0.0")
    target = s.sub("target") or Section({}, file, "target")
    target.only("edition")
    edition = target.get("edition", str, "sales_professional")
    if edition not in EDITIONS:
        raise target.error("edition", f"must be one of {', '.join(EDITIONS)}")
    return Settings(
        prefix,
        s.get("solution_unique_name", str, "close2d365"),
        ovp,
        None if cc is None else str(cc).lstrip("+"),
        default,
        columns,
        _threshold(th.section("default")),
        tables,
        max_bytes,
        deleted,
        pub.get("unique_name", str, "close2d365"),
        pub.get("friendly_name", str, "close2d365 migration"),
        sol.get("friendly_name", str, "Close CRM migration (close2d365)"),
        version,
        edition,
        prefetch_max_bytes=prefetch,
    )


@dataclass(frozen=True)
class LeadStatusMap:
    original_label_column: str
    statuses: Mapping[str, tuple[int, int]]  # Close label -> (statecode, statuscode)
    unmapped: tuple[int, int] | None  # None = reject leads with an unmapped label


def _state_pair(s: Section, allowed: Mapping[int, tuple[int, ...]]) -> tuple[int, int]:
    s.only("statecode", "statuscode")
    state, status = s.get("statecode", int, required=True), s.get("statuscode", int, required=True)
    if state not in allowed:
        raise s.error("statecode", f"{state} is not a valid statecode (valid: {sorted(allowed)})")
    if status not in allowed[state]:
        raise s.error(
            "statuscode", f"{status} is not valid with statecode {state} (valid: {list(allowed[state])})"
        )
    return state, status


def parse_lead_status(data: Any, file: str, prefix: str) -> LeadStatusMap:
    s = Section(data, file, "")
    s.only("original_label_column", "statuses", "unmapped")
    col = s.get("original_label_column", str, required=True).replace("{prefix}", prefix)
    sts = s.section("statuses")
    statuses: dict[str, tuple[int, int]] = {}
    folded: set[str] = set()
    for label in sts.data:
        if str(label).strip().lower() in folded:
            raise sts.error(str(label), "label differs from another only by case or spaces")
        folded.add(str(label).strip().lower())
        statuses[str(label)] = _state_pair(sts.section(str(label)), LEAD_STATES)
    raw = s.data.get("unmapped", "reject")
    unmapped = None
    if raw != "reject":
        if not isinstance(raw, dict):
            raise s.error("unmapped", "expected 'reject' or {statecode: .., statuscode: ..}")
        unmapped = _state_pair(s.section("unmapped"), LEAD_STATES)
    return LeadStatusMap(col, statuses, unmapped)


@dataclass(frozen=True)
class PipelineStatus:
    label: str
    type: str  # active | won | lost
    option: int
    salesstage: int
    probability: int | None = None
    stage: str = ""  # the stage of the sales process (a stage name of its BPF)


@dataclass(frozen=True)
class Pipeline:
    name: str
    option: int
    statuses: tuple[PipelineStatus, ...]


@dataclass(frozen=True)
class PipelinesMap:
    pipeline_column: str
    status_column: str
    pipelines: tuple[Pipeline, ...]
    won: tuple[int, int] = (1, 3)
    lost: tuple[int, int] = (2, 4)
    sales_process: str = SHIPPED_SALES_PROCESS  # the BPF's workflow uniquename
    notes: tuple[str, ...] = ()  # what an older file left out and was defaulted


def parse_pipelines(data: Any, file: str, prefix: str, option_prefix: int) -> PipelinesMap:
    s = Section(data, file, "")
    s.only("pipeline_column", "status_column", "pipelines", "won", "lost", "sales_process")
    defaulted: list[str] = []
    lo, hi = option_prefix * 10000, option_prefix * 10000 + 9999
    pipelines: list[Pipeline] = []
    options: dict[str, set[int]] = {"pipeline": set(), "status": set()}

    def option(sec: Section, kind: str) -> int:
        value = sec.get("option", int, required=True)
        if not lo <= value <= hi:
            raise sec.error("option", f"{value} is outside the publisher's option range {lo}-{hi}")
        if value in options[kind]:
            raise sec.error("option", f"option value {value} is used twice among {kind} options")
        options[kind].add(value)
        return value

    for n, (item, line) in enumerate(s.items_of("pipelines", required=True)):
        ps = Section(item, file, f"pipelines[{n}]", line)
        ps.only("name", "option", "statuses", "close_id")  # close_id: informational (proposal merge key)
        statuses = []
        for m, (st, sline) in enumerate(ps.items_of("statuses", required=True)):
            ss = Section(st, file, f"pipelines[{n}].statuses[{m}]", sline)
            ss.only("label", "type", "option", "salesstage", "probability", "close_id", "stage")
            kind = ss.get("type", str, required=True)
            if kind not in ("active", "won", "lost"):
                raise ss.error("type", f"must be active, won or lost, got {kind!r}")
            stage = ss.get("salesstage", int, required=True)
            if stage not in SALES_STAGES:
                raise ss.error(
                    "salesstage", f"must be one of {SALES_STAGES} (Qualify, Develop, Propose, Close)"
                )
            prob = ss.get("probability", int)
            if prob is not None and not 0 <= prob <= 100:
                raise ss.error("probability", "must be 0-100")
            label = ss.get("label", str, required=True)
            bpf_stage = ss.get("stage", str)
            if bpf_stage is None:
                bpf_stage = SHIPPED_STAGES[stage]
                defaulted.append(label)
            elif not bpf_stage.strip():
                raise ss.error(
                    "stage", f"must name a stage of the sales process, e.g. {SHIPPED_STAGES[stage]}"
                )
            statuses.append(PipelineStatus(label, kind, option(ss, "status"), stage, prob, bpf_stage))
        pipelines.append(
            Pipeline(ps.get("name", str, required=True), option(ps, "pipeline"), tuple(statuses))
        )
    won = _state_pair(s.section("won"), {1: OPPORTUNITY_WON_STATUS}) if "won" in s.data else (1, 3)
    lost = _state_pair(s.section("lost"), {2: OPPORTUNITY_LOST_STATUS}) if "lost" in s.data else (2, 4)
    notes: list[str] = []
    if defaulted:
        notes.append(
            f"{file}: {len(defaulted)} status(es) have no `stage` (the file predates it): each is placed at "
            "the shipped sales process stage of its salesstage; run propose-mapping to write them for review"
        )
    if "sales_process" not in s.data:
        notes.append(f"{file}: no `sales_process`: the shipped {SHIPPED_SALES_PROCESS!r} is used")
    return PipelinesMap(
        s.get("pipeline_column", str, required=True).replace("{prefix}", prefix),
        s.get("status_column", str, required=True).replace("{prefix}", prefix),
        tuple(pipelines),
        won,
        lost,
        _sales_process(s),
        tuple(notes),
    )


def _sales_process(s: Section) -> str:
    name = s.get("sales_process", str, SHIPPED_SALES_PROCESS)
    if not name.strip():
        raise s.error(
            "sales_process", f"must be a business process flow's uniquename, e.g. {SHIPPED_SALES_PROCESS}"
        )
    return name.strip()


@dataclass(frozen=True)
class OwnersMap:
    overrides: Mapping[str, str] = field(default_factory=dict)  # Close user id or email -> Dataverse email
    fallback_owner: str | None = None  # Dataverse user email; None = the owner check blocks
    disabled_users: str = "queue"  # queue | fallback


def parse_owners(data: Any, file: str) -> OwnersMap:
    s = Section(data or {}, file, "")
    # users: the owner map propose-mapping generates (informational: matching always runs against the
    # target's users at migration time; overrides/fallback_owner/disabled_users are the decisions).
    s.only("overrides", "fallback_owner", "disabled_users", "users")
    ov = s.sub("overrides")
    overrides = {str(k).lower(): str(v).lower() for k, v in (ov.data.items() if ov else [])}
    for key, value in overrides.items():
        if "@" not in value:
            raise ov.error(key, f"override target must be a Dataverse user's email, got {value!r}")
    fallback = s.get("fallback_owner", str)
    if fallback is not None and "@" not in fallback:
        raise s.error("fallback_owner", "must be the email of an enabled Dataverse user")
    disabled = s.get("disabled_users", str, "queue")
    if disabled not in ("queue", "fallback"):
        raise s.error("disabled_users", "must be 'queue' or 'fallback'")
    return OwnersMap(overrides, fallback, disabled)


@dataclass(frozen=True)
class ActivitiesMap:
    sms_table: str  # "task" or the custom activity table's logical name
    sms_entity_set: str
    notes_parent: str  # lead | contact | account
    notes_fallback: str | None
    status_changes: str  # annotation | skip


def parse_activities(data: Any, file: str, prefix: str) -> ActivitiesMap:
    s = Section(data, file, "")
    s.only("sms", "notes", "status_changes")
    sms = s.section("sms")
    sms.only("table", "custom_table", "custom_entity_set")
    route = sms.get("table", str, "task")
    if route not in ("task", "custom"):
        raise sms.error("table", "must be 'task' or 'custom'")
    table, entity_set = "task", "tasks"
    if route == "custom":
        table = sms.get("custom_table", str, required=True).replace("{prefix}", prefix)
        if not table.startswith(prefix + "_"):
            raise sms.error(
                "custom_table", f"a custom table must start with the publisher prefix '{prefix}_'"
            )
        entity_set = sms.get("custom_entity_set", str, table + "s").replace("{prefix}", prefix)
    notes = s.section("notes")
    notes.only("parent", "fallback")
    parent, fallback = notes.get("parent", str, "lead"), notes.get("fallback", str)
    for key, value in (("parent", parent), ("fallback", fallback)):
        if value is not None and value not in ("lead", "contact", "account"):
            raise notes.error(key, "must be lead, contact or account")
    changes = s.section("status_changes")
    changes.only("table")
    target = changes.get("table", str, "annotation")
    if target not in ("annotation", "skip"):
        raise changes.error("table", "must be 'annotation' or 'skip' (skip loses the status history)")
    return ActivitiesMap(table, entity_set, parent, fallback if fallback != parent else None, target)


@dataclass(frozen=True)
class AccountsMap:
    dedupe_key: str
    keep: str  # which lead's url/address an Account takes: oldest | newest
    placeholder_name: str
    flag_column: str
    merged_ids_column: str


def parse_accounts(data: Any, file: str, prefix: str) -> AccountsMap:
    s = Section(data, file, "")
    s.only("dedupe_key", "keep", "placeholder", "merged_ids_column")
    key = s.get("dedupe_key", str, "normalised_name")
    if key != "normalised_name":
        raise s.error(
            "dedupe_key", "only 'normalised_name' is supported (NFKC, casefold, trim, collapse spaces)"
        )
    keep = s.get("keep", str, "oldest")
    if keep not in ("oldest", "newest"):
        raise s.error("keep", "must be 'oldest' or 'newest'")
    ph = s.section("placeholder")
    ph.only("name", "flag_column")
    name = ph.get("name", str, required=True).strip()
    if not name or len(name) > 160:
        raise ph.error("name", "must be 1-160 characters (account.name MaxLength)")
    return AccountsMap(
        key,
        keep,
        name,
        ph.get("flag_column", str, required=True).replace("{prefix}", prefix),
        s.get("merged_ids_column", str, required=True).replace("{prefix}", prefix),
    )


__all__ = ["MappingError"]
