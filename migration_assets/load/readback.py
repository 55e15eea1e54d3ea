"""Staged rows read back from Dataverse, column by column (staged vs loaded): the end-to-end tests'
exactness check of the loader. It cannot see a mapping error; the spot check against Close can."""

from __future__ import annotations

import random
from typing import Any

import duckdb

from migration_assets.clients.dataverse.client import DataverseClient
from migration_assets.load import diff as ld
from migration_assets.load.lookups import READ_CHUNK, resolve_key_bind
from migration_assets.resources.warehouse import fetch_polars, quote, table_exists


def readback_table(
    con: duckdb.DuckDBPyConnection, client: DataverseClient, table: str, staged: str, sample: int, seed: int
) -> tuple[int, list[dict[str, Any]]]:
    """Compare `sample` random staged rows with what Dataverse returns, column by column (staged vs loaded:
    the end-to-end tests' exactness check; it cannot see a mapping error, reports/spot_check can)."""
    if not table_exists(con, "staged", staged):
        return 0, []
    ref = f"staged.{quote(staged)}"
    total = int(con.execute(f"SELECT count(*) FROM {ref}").fetchall()[0][0])
    if total == 0:
        return 0, []
    picked = random.Random(f"{seed}:{table}").sample(range(total), min(sample, total))
    # Only the sampled rows are read (by position in the stored order), not the whole staged table.
    frame = fetch_polars(
        con,
        f"SELECT * EXCLUDE (__position) FROM (SELECT *, row_number() OVER () - 1 AS __position FROM {ref}) "
        "WHERE __position IN (SELECT UNNEST(?)) ORDER BY __position",
        [sorted(picked)],
    )
    rows = list(frame.iter_rows(named=True))
    meta = client.metadata(table)
    lookups_nav = {c[: -len(ld.BIND)] for c in frame.columns if c.endswith(ld.BIND)}
    lookups = {}
    for nav in lookups_nav:
        rel = next((r for r in meta.many_to_one if r.navigation_property == nav), None)
        if rel is not None:
            lookups[nav] = ld.Lookup(
                nav,
                rel.referencing_attribute,
                rel.referenced_entity,
                client.entity_set(rel.referenced_entity),
            )
    plain = [
        c
        for c in frame.columns
        if not c.startswith("_")
        and not c.endswith(ld.BIND)
        and c in meta.attributes
        and c not in ld.NOT_COMPARED
    ]
    select = sorted(
        {meta.primary_id, *plain, *(f"_{lk.attribute}_value" for lk in lookups.values())}
        | ({"statecode", "statuscode"} & set(meta.attributes))
    )
    ids = [str(r[meta.primary_id]).lower() for r in rows]
    sets = {lk.target: lk.entity_set for lk in lookups.values()}
    found: dict[str, dict[str, Any]] = {}
    for start in range(0, len(ids), READ_CHUNK):
        values = ",".join(f"'{i}'" for i in ids[start : start + READ_CHUNK])
        flt = f"Microsoft.Dynamics.CRM.In(PropertyName='{meta.primary_id}',PropertyValues=[{values}])"
        for r in client.query(table, select=select, filter=flt, annotations=True):
            found[str(r[meta.primary_id]).lower()] = ld.current_payload(r, lookups, sets)
    mismatches: list[dict[str, Any]] = []
    key_cache: dict[tuple[str, str, str], str | None] = {}
    for row, rid in zip(rows, ids, strict=True):
        split = ld.split_row(row)
        base = {"table": table, "close_id": split.meta.get("_close_id"), "record_id": rid}
        current = found.get(rid)
        if current is None:
            mismatches.append({**base, "column": "(record)", "staged": "present", "dataverse": "missing"})
            continue
        for col, want in split.payload.items():
            nav = col[: -len(ld.BIND)] if col.endswith(ld.BIND) else None
            if nav in lookups and isinstance(want, str):
                want = resolve_key_bind(client, lookups[nav], want, key_cache) or want
            if (
                col in ld.NOT_COMPARED
                or (col not in meta.attributes and not col.endswith(ld.BIND))
                or col == meta.primary_id
            ):
                continue
            if not ld.same_value(want, current.get(col)):
                mismatches.append({**base, "column": col, "staged": want, "dataverse": current.get(col)})
        for col in sorted(split.nulls):  # emptied in Close: the loader clears these, so they must read empty
            attr = meta.attributes.get(col)
            if (
                attr is None
                or not attr.valid_for_update
                or col in ld.NOT_COMPARED
                or not ld.clearable(attr.attribute_type, attr.type_name, attr.is_custom, attr.required_level)
            ):
                continue
            if current.get(col) not in (None, ""):
                mismatches.append({**base, "column": col, "staged": None, "dataverse": current.get(col)})
        state = ld.desired_state(split.meta, table)
        if (
            state is not None
            and (current.get("statecode"), current.get("statuscode") if state[1] != -1 else -1) != state
        ):
            mismatches.append(
                {
                    **base,
                    "column": "statecode/statuscode",
                    "staged": str(state),
                    "dataverse": str((current.get("statecode"), current.get("statuscode"))),
                }
            )
    return len(rows), mismatches
