"""Schemas of the `close` DuckDB tables: one table per Close object, typed key columns plus `raw`.

This is the single place later stages (staging transforms, checks) look up what a `close.*` table holds.
Every table keeps the complete Close object in `raw` (canonical JSON: keys sorted, so the API path and
the export path produce byte-identical values); the typed columns are the keys and dates that joins,
filters and watermarks need. Lead `raw` omits the embedded `contacts`, `opportunities`, `tasks` (and an
export's `activities`): those live in their own tables.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import polars as pl

try:
    import orjson
except ImportError:  # pragma: no cover - orjson is a declared dependency
    orjson = None  # type: ignore[assignment]

from migration_assets.clients.close.paging import parse_close_datetime
from migration_assets.clients.fastjson import dumps_canonical

TS = pl.Datetime("us", "UTC")
Getter = Callable[[dict[str, Any]], Any]

# Embedded lists removed from lead `raw` (each is extracted into its own table).
LEAD_EMBEDDED = ("contacts", "opportunities", "tasks", "activities")


# Extraction code annotates objects with context that is not part of the Close object (which custom
# field family a field came from, whether a user is active, display order) under keys starting with
# INJECTED; they feed typed columns and are left out of `raw`.
INJECTED = "__"
INJECTED_KEYS = ("__position", "__object_type", "__is_active")  # tested one by one in canonical_json


def canonical_json(obj: dict[str, Any]) -> str:
    """The `raw` column value: compact JSON with sorted keys, non-ASCII kept as is."""
    # Three membership tests: cheaper than scanning every key of every object (or than any()).
    if "__position" in obj or "__object_type" in obj or "__is_active" in obj:
        obj = {k: v for k, v in obj.items() if not k.startswith(INJECTED)}
    return dumps_canonical(obj)


def canonical_json_bytes(obj: dict[str, Any]) -> bytes:
    """`canonical_json(obj)` encoded as UTF-8."""
    if "__position" in obj or "__object_type" in obj or "__is_active" in obj:
        obj = {k: v for k, v in obj.items() if not k.startswith(INJECTED)}
    if orjson is not None:
        try:
            return orjson.dumps(obj, option=orjson.OPT_SORT_KEYS)
        except (TypeError, orjson.JSONEncodeError):
            pass  # e.g. an integer beyond 64 bits: `dumps_canonical` falls back to the stdlib
    return dumps_canonical(obj).encode()


def strip_lead(lead: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in lead.items() if k not in LEAD_EMBEDDED}


def _date(value: Any) -> date | None:
    dt = parse_close_datetime(value)
    return dt.date() if dt else None


INT64_RANGE = (-(2**63), 2**63 - 1)


def _int(value: Any) -> int | None:
    """An integer field as Int64; None when it is not a whole number in range (the close/* check
    `numbers_readable` then lists the record: one odd value never aborts the extraction)."""
    if value is None or value == "" or isinstance(value, bool):
        return None
    try:
        number = int(value)
    except (TypeError, ValueError, OverflowError):  # "abc", 1.5e400 -> inf
        return None
    if isinstance(value, float) and value != number:
        return None  # 12.5 is not a whole number of cents
    return number if INT64_RANGE[0] <= number <= INT64_RANGE[1] else None


def _bool(value: Any) -> bool | None:
    return None if value is None else bool(value)


def _str(value: Any) -> str | None:
    return None if value is None else str(value)


@dataclass(frozen=True)
class Column:
    name: str
    dtype: pl.DataType
    getter: Getter
    key: str | None = None  # set when the column is a plain read of obj[key]: converted vectorised

    def series(self, objs: list[dict[str, Any]]) -> pl.Series:
        if self.getter is canonical_json:
            return raw_series(self.name, objs)
        if self.key is None or self.dtype not in (pl.String, TS):
            return pl.Series(self.name, [self.getter(o) for o in objs], dtype=self.dtype)
        values = [o.get(self.key) for o in objs]
        if self.dtype == TS:
            return parse_timestamps(self.name, values)
        try:  # a strict String series refuses (TypeError) anything but str and None: the usual case
            return pl.Series(self.name, values, dtype=pl.String)
        except TypeError:
            return pl.Series(self.name, [_str(v) for v in values], dtype=pl.String)


def raw_series(name: str, objs: list[dict[str, Any]]) -> pl.Series:
    """`canonical_json` of each object as a String series, built from the UTF-8 bytes orjson writes
    (no Python str per object: the `raw` column is the biggest one of every table)."""
    data = [canonical_json_bytes(o) for o in objs]
    return pl.Series(name, data, dtype=pl.Binary).cast(pl.String)


def _with_offset(text: pl.Series) -> pl.Series:
    return text.str.to_datetime("%Y-%m-%dT%H:%M:%S%.f%:z", time_zone="UTC", strict=False).dt.cast_time_unit(
        "us"
    )


def parse_timestamps(name: str, values: list[Any]) -> pl.Series:
    """`parse_close_datetime` over a column, vectorised: offset, naive and date-only forms in Polars,
    anything Polars cannot read (rare) through the Python parser, so both give the same result."""
    # Values re-read from DuckDB (e.g. an activity's date_created carried onto its attachments) arrive as
    # datetimes: give them the API's text form rather than dropping them.
    try:  # strict: only str and None pass (the usual case), anything else takes the general path
        text = pl.Series(name, values, dtype=pl.String)
    except TypeError:
        values = [v.isoformat() if isinstance(v, datetime) else v for v in values]
        text = pl.Series(name, [v if v.__class__ is str else None for v in values], dtype=pl.String)
    # Classic resources all carry an offset: parse that form first, the rarer forms only where needed.
    out = _with_offset(text)
    if out.null_count() == text.null_count():  # every text parsed (none ends with "Z": it would not)
        return out.alias(name)
    if text.str.ends_with("Z").any():
        text = text.str.replace(r"Z$", "+00:00")
        out = _with_offset(text)
    if (text.is_not_null() & out.is_null()).any():
        frame = pl.DataFrame({"t": text, "o": out}).select(
            pl.coalesce(
                pl.col("o"),
                pl.col("t").str.to_datetime("%Y-%m-%dT%H:%M:%S%.f", time_zone="UTC", strict=False),
                pl.col("t")
                .str.to_date("%Y-%m-%d", strict=False)
                .cast(pl.Datetime("us"))
                .dt.replace_time_zone("UTC"),
            ).dt.cast_time_unit("us")
        )
        out = frame.to_series()
    out = out.alias(name)
    missing = (text.is_not_null() & out.is_null()).arg_true().to_list()
    if missing:
        fixed = [parse_close_datetime(values[i]) for i in missing]
        out = out.scatter(missing, pl.Series(fixed, dtype=TS))
    return out


def col(name: str, dtype: pl.DataType = pl.String, key: str | None = None) -> Column:
    """A column read from `obj[key or name]`, converted to `dtype` (dates parsed from Close formats)."""
    k = key or name
    if dtype == TS:
        return Column(name, dtype, lambda o: parse_close_datetime(o.get(k)), key=k)
    if dtype == pl.Date:
        return Column(name, dtype, lambda o: _date(o.get(k)))
    if dtype == pl.Int64:
        return Column(name, dtype, lambda o: _int(o.get(k)), key=k)
    if dtype == pl.Boolean:
        return Column(name, dtype, lambda o: _bool(o.get(k)))
    return Column(name, dtype, lambda o: _str(o.get(k)), key=k)


RAW = Column("raw", pl.String, canonical_json)
AUDIT = [col("date_created", TS), col("date_updated", TS)]
ACTIVITY_KEYS = [
    col("id"),
    col("type", key="_type"),
    col("lead_id"),
    col("contact_id"),
    col("user_id"),
    col("activity_at", TS),
    *AUDIT,
]


@dataclass(frozen=True)
class TableSpec:
    """One `close.<name>` table: its columns, sort order and the id format its source check expects."""

    name: str
    columns: list[Column]
    sort_by: tuple[str, ...] = ("id",)
    id_prefixes: tuple[str, ...] = ()
    id_lengths: tuple[int, ...] = (43,)
    watermark: str | None = "date_updated"
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def schema(self) -> dict[str, pl.DataType]:
        return {c.name: c.dtype for c in self.columns}

    def frame(self, objects: Iterable[dict[str, Any]]) -> pl.DataFrame:
        objs = list(objects)
        return pl.DataFrame([c.series(objs) for c in self.columns])


def _spec(name: str, cols: list[Column], **kw: Any) -> TableSpec:
    return TableSpec(name, [*cols, RAW], **kw)


def _position(o: dict[str, Any]) -> int | None:
    return _int(o.get("__position"))


_TABLES = [
    _spec(
        "users",
        [
            col("id"),
            col("email"),
            col("first_name"),
            col("last_name"),
            col("is_active", pl.Boolean, "__is_active"),
            col("role_id", key="__role_id"),
            *AUDIT,
        ],
        id_prefixes=("user_",),
    ),
    # Built-in roles have literal ids (admin, superuser, user, restricteduser) and the epoch-zero date.
    _spec("roles", [col("id"), col("name"), col("editable", pl.Boolean), *AUDIT], watermark=None),
    _spec(
        "lead_statuses",
        [col("id"), col("label"), Column("position", pl.Int64, _position)],
        id_prefixes=("stat_",),
        watermark=None,
    ),
    _spec(
        "pipelines",
        [col("id"), col("name"), Column("position", pl.Int64, _position), *AUDIT],
        id_prefixes=("pipe_",),
        id_lengths=(22,),
    ),
    _spec(
        "opportunity_statuses",
        [col("id"), col("label"), col("type"), col("pipeline_id"), Column("position", pl.Int64, _position)],
        id_prefixes=("stat_",),
        watermark=None,
    ),
    _spec(
        "custom_fields",
        [
            col("id"),
            col("object_type", key="__object_type"),
            col("name"),
            col("type"),
            col("custom_activity_type_id"),
            col("accepts_multiple_values", pl.Boolean),
            *AUDIT,
        ],
        sort_by=("object_type", "id"),
        id_prefixes=("cf_",),
    ),
    _spec(
        "custom_activity_types",
        [col("id"), col("name"), *AUDIT],
        id_prefixes=("actitype_",),
        id_lengths=(22,),
    ),
    _spec(
        "leads",
        [
            col("id"),
            col("name"),
            col("display_name"),
            col("status_id"),
            col("status_label"),
            col("created_by"),
            *AUDIT,
        ],
        id_prefixes=("lead_",),
    ),
    _spec("contacts", [col("id"), col("lead_id"), col("name"), col("title"), *AUDIT], id_prefixes=("cont_",)),
    _spec(
        "opportunities",
        [
            col("id"),
            col("lead_id"),
            col("contact_id"),
            col("user_id"),
            col("status_id"),
            col("status_type"),
            col("pipeline_id"),
            col("value", pl.Int64),
            col("value_currency"),
            col("value_period"),
            col("date_won", pl.Date),
            *AUDIT,
        ],
        id_prefixes=("oppo_",),
    ),
    _spec(
        "calls",
        [*ACTIVITY_KEYS, col("direction"), col("status"), col("duration", pl.Int64), col("recording_url")],
        id_prefixes=("acti_",),
    ),
    _spec(
        "emails",
        [*ACTIVITY_KEYS, col("thread_id"), col("direction"), col("status"), col("subject")],
        id_prefixes=("acti_",),
    ),
    _spec("email_threads", [*ACTIVITY_KEYS, col("n_emails", pl.Int64)], id_prefixes=("acti_",)),
    _spec("sms", [*ACTIVITY_KEYS, col("direction"), col("status")], id_prefixes=("acti_",)),
    _spec(
        "meetings",
        [*ACTIVITY_KEYS, col("starts_at", TS), col("ends_at", TS), col("status")],
        id_prefixes=("acti_",),
    ),
    _spec("notes", [*ACTIVITY_KEYS], id_prefixes=("acti_",)),
    _spec(
        "status_changes",
        [*ACTIVITY_KEYS, col("opportunity_id"), col("old_status_id"), col("new_status_id")],
        id_prefixes=("acti_",),
    ),
    _spec(
        "custom_activities",
        [*ACTIVITY_KEYS, col("custom_activity_type_id"), col("status")],
        id_prefixes=("acti_",),
    ),
    _spec(
        "tasks",
        [
            col("id"),
            col("type", key="_type"),
            col("lead_id"),
            col("contact_id"),
            col("assigned_to"),
            col("is_complete", pl.Boolean),
            col("date"),
            *AUDIT,
        ],
        id_prefixes=("task_", "noti_"),
    ),
    _spec(
        "sequences", [col("id"), col("name"), col("status"), *AUDIT], id_prefixes=("seq_",), id_lengths=(22,)
    ),
    _spec(
        "smart_views", [col("id"), col("name"), col("type"), col("user_id"), *AUDIT], id_prefixes=("save_",)
    ),
    # Derived metadata tables: one row per file, no Close id of their own, no `raw`.
    TableSpec(
        "attachments",
        [
            col("activity_id"),
            col("lead_id"),
            col("source_type"),
            col("url"),
            col("filename"),
            col("size", pl.Int64),
            col("content_type"),
            col("activity_date_created", TS),
        ],
        sort_by=("activity_id", "url"),
        watermark="activity_date_created",
    ),
    TableSpec(
        "call_recordings",
        [
            col("activity_id"),
            col("lead_id"),
            col("url"),
            col("duration", pl.Int64),
            col("activity_date_created", TS),
        ],
        sort_by=("activity_id",),
        watermark="activity_date_created",
    ),
]

TABLES: dict[str, TableSpec] = {t.name: t for t in _TABLES}

# Activity tables and the Close `_type` values each holds (the export is split by `_type`).
ACTIVITY_TABLE_TYPES: dict[str, tuple[str, ...]] = {
    "calls": ("Call",),
    "emails": ("Email",),
    "email_threads": ("EmailThread",),
    "sms": ("SMS",),
    "meetings": ("Meeting",),
    "notes": ("Note",),
    "status_changes": ("LeadStatusChange", "OpportunityStatusChange"),
    "custom_activities": ("CustomActivity",),
}
ACTIVITY_TYPE_TABLE = {t: table for table, types in ACTIVITY_TABLE_TYPES.items() for t in types}


def schema(table: str) -> dict[str, pl.DataType]:
    """Column name → Polars dtype of `close.<table>`."""
    return TABLES[table].schema
