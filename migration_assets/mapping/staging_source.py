"""Build the source frame a field map needs from a `close.<table>` (typed key columns + `raw` JSON).

The extraction keeps every Close object whole in `raw`; staging needs only the fields its field map
names. DuckDB pulls exactly those out of the JSON (scalars as text, known nested shapes such as
`emails`/`addresses`/`envelope` as typed lists and structs), which is much faster and lighter than
decoding whole objects in Python, and keeps the result typed for the mapping engine's navigation
(`contacts[0].emails`, `envelope.message_id`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence

import duckdb
import polars as pl

from migration_assets.resources.warehouse import WHOLE_TABLE_READS, fetch_polars, quote, table_exists

_ADDR = '{"email":"VARCHAR","name":"VARCHAR"}'
# DuckDB json_transform structures of the nested Close fields the field maps navigate into.
STRUCTURES: dict[str, str] = {
    "emails": '[{"email":"VARCHAR","type":"VARCHAR"}]',
    "phones": '[{"phone":"VARCHAR","type":"VARCHAR"}]',
    "urls": '[{"url":"VARCHAR","type":"VARCHAR"}]',
    "addresses": '[{"label":"VARCHAR","address_1":"VARCHAR","address_2":"VARCHAR","city":"VARCHAR",'
    '"state":"VARCHAR","zipcode":"VARCHAR","country":"VARCHAR"}]',
    "attendees": '[{"name":"VARCHAR","email":"VARCHAR","contact_id":"VARCHAR","user_id":"VARCHAR",'
    '"status":"VARCHAR","is_organizer":"BOOLEAN"}]',
    "envelope": f'{{"message_id":"VARCHAR","from":[{_ADDR}],"sender":[{_ADDR}],"to":[{_ADDR}],'
    f'"cc":[{_ADDR}],"bcc":[{_ADDR}]}}',
    "to": '["VARCHAR"]',
    "cc": '["VARCHAR"]',
    "bcc": '["VARCHAR"]',
}
_ROOT = re.compile(r"^([^.\[\]]+)")


class SourceFrameError(ValueError):
    """The close table a staging asset needs is missing (extraction has not run)."""


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def json_path(key: str) -> str:
    """A JSONPath selecting one top-level key, quoted so that keys like `custom.cf_x` work."""
    return "$." + '"' + key.replace('"', '\\"') + '"'


def root_of(path: str, exact: Iterable[str] = ()) -> str:
    """The top-level source column a field-map path reads (`contacts[0].emails` -> `contacts`)."""
    if path in exact or path.startswith("custom."):
        return path
    m = _ROOT.match(path)
    return m.group(1) if m else path


def select_sql(
    table: str,
    typed: Mapping[str, pl.DataType],
    columns: Sequence[str],
    aliases: Mapping[str, str] | None = None,
    where: str | None = None,
    list_columns: Iterable[str] = (),
) -> str:
    """SELECT of `columns` from close.<table>: typed columns as they are, the rest out of `raw`.

    aliases: output column -> typed column of another name (e.g. attachments' `activity_type` is the
    extraction's `source_type`)."""
    aliases = dict(aliases or {})
    parts: list[str] = []
    for name in dict.fromkeys(columns):
        if name in aliases:
            parts.append(f"{quote(aliases[name])} AS {quote(name)}")
        elif name in typed and name != "raw":
            parts.append(quote(name))
        elif "raw" not in typed:
            parts.append(f"CAST(NULL AS VARCHAR) AS {quote(name)}")
        elif name in set(list_columns):
            parts.append(
                f"json_transform(json_extract(raw, {_lit(json_path(name))}), '[\"VARCHAR\"]') AS {quote(name)}"
            )
        elif name in STRUCTURES:
            parts.append(
                f"json_transform(json_extract(raw, {_lit(json_path(name))}), {_lit(STRUCTURES[name])}) AS {quote(name)}"
            )
        else:
            parts.append(f"json_extract_string(raw, {_lit(json_path(name))}) AS {quote(name)}")
    sql = f"SELECT {', '.join(parts) or '1 AS __none'} FROM close.{quote(table)}"
    return sql + (f" WHERE {where}" if where else "")


def read_source(
    con: duckdb.DuckDBPyConnection,
    table: str,
    typed: Mapping[str, pl.DataType],
    columns: Sequence[str],
    aliases: Mapping[str, str] | None = None,
    where: str | None = None,
    list_columns: Iterable[str] = (),
) -> pl.DataFrame:
    if not table_exists(con, "close", table):
        raise SourceFrameError(
            f"close.{table} does not exist: materialize the close/{table} extraction asset first"
        )
    sql = select_sql(table, typed, columns, aliases, where, list_columns)
    if where is not None:  # a few rows (an incremental staging)
        return fetch_polars(con, sql)
    with WHOLE_TABLE_READS:
        return fetch_polars(con, sql)


def lead_contacts(con: duckdb.DuckDBPyConnection, lead_ids: pl.Series | None = None) -> pl.DataFrame:
    """lead_id -> `contacts`: the lead's contacts (oldest first, as Close lists them) with the fields the
    lead map reads (name, title, emails, phones). The extraction stores contacts in their own table.
    lead_ids: only the contacts of these leads (an incremental staging reads a few)."""
    where = ""
    if lead_ids is not None:
        con.register("__contact_leads", pl.DataFrame({"id": lead_ids.cast(pl.String)}).to_arrow())
        where = " WHERE lead_id IN (SELECT id FROM __contact_leads)"
    sql = (
        "SELECT lead_id, list(struct_pack(name := name, title := title, "
        f"emails := json_transform(json_extract(raw, '$.emails'), {_lit(STRUCTURES['emails'])}), "
        f"phones := json_transform(json_extract(raw, '$.phones'), {_lit(STRUCTURES['phones'])})) "
        f"ORDER BY date_created NULLS LAST, id) AS contacts FROM close.contacts{where} GROUP BY lead_id"
    )
    return fetch_polars(con, sql)
