"""Alternate-key takeovers: a staged row whose alternate-key value another target record still holds.

An account's `c2d_closeid` (the "Close id key") holds a lead id of its name group. When a lead is renamed,
its new name makes a new account (a new id) that carries the same lead id, while the old account still
holds it: until `loaded/deleted_records` removes the old account (after its children moved), or, when
the old name group keeps other leads, until the old account's own update moves its key to another lead.
Dataverse refuses the write with 412 `0x80060892` (reference §2.6).

The loader writes optimistically and, only for the rows refused for a key clash, finds the holders of the
wanted key values (one query), releases each holder's key (its key columns set to null, ledgered as
`released` with the values before) and writes those rows again. A holder is released only when the staged
table does not want it to keep that value (it is superseded, or its own staged row moves its key):
otherwise the clash is a real duplicate and the row stays rejected with the server's message.

A released key column is empty, not a placeholder. Neither the reference (dataverse_api.md §6.4) nor
Microsoft's define-alternate-keys-entity.md says how a key treats empty columns; we infer [INFERENCE] that
uniqueness is enforced only over records whose key columns all have values, as keys on optional columns
(the docs' own example: `accountnumber` on account) could otherwise never become Active in an org with
two accounts lacking one. The emulator behaves so. A rollback puts the values back after it has deleted
the records the run created (load/rollback_plan.py: `rekey` steps), when the value is free again.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from migration_assets.clients.dataverse.client import DataverseClient
from migration_assets.clients.dataverse.metadata import EntityMeta
from migration_assets.clients.dataverse.odata import odata_string

DUPLICATE_KEY = "0x80060892"  # DuplicateRecordEntityKey (reference §2.6)
KeyValue = tuple[str, tuple[Any, ...]]  # (key schema name, values of its columns in key order)


@dataclass(frozen=True)
class Release:
    """A target record whose alternate-key columns are emptied so that another record can take them."""

    record_id: str
    before: dict[str, Any]  # key column -> value it held (the ledger's before-image)


def plain_keys(meta: EntityMeta) -> list[tuple[str, tuple[str, ...]]]:
    """(schema name, columns) of the table's alternate keys over plain columns (a key over a lookup is
    addressed by `_x_value` and never staged by this project: left to the server's message)."""
    out = []
    for key in meta.keys:
        columns = tuple(key.key_attributes)
        if columns and all(
            c in meta.attributes and meta.attributes[c].attribute_type != "Lookup" for c in columns
        ):
            out.append((key.schema_name, columns))
    return out


def key_values(row: Mapping[str, Any], keys: Sequence[tuple[str, tuple[str, ...]]]) -> list[KeyValue]:
    """The complete key values a row carries (a key with an empty column constrains nothing)."""
    out = []
    for name, columns in keys:
        values = tuple(row.get(c) for c in columns)
        if all(v is not None and v != "" for v in values):
            out.append((name, values))
    return out


def plan_releases(
    wanted: Mapping[str, Mapping[str, Any]],
    holders: Mapping[str, Mapping[str, Any]],
    keys: Sequence[tuple[str, tuple[str, ...]]],
    staged: Mapping[str, Mapping[str, Any]] | None = None,
) -> tuple[list[Release], dict[str, str]]:
    """(records to release, record id -> why its clash stays) for the rows `wanted` (record id -> key
    columns it is written with) refused for a key clash, given the target records holding those values
    (`holders`: record id -> its current key columns) and the whole staged table (`staged`: record id ->
    its staged key columns; None: only `wanted` is known). A holder that staging still wants with that
    value is a real duplicate: nothing is released for it."""
    claims: dict[KeyValue, str] = {}
    for rid, row in wanted.items():
        for kv in key_values(row, keys):
            claims[kv] = rid
    known = wanted if staged is None else staged
    releases: dict[str, dict[str, Any]] = {}
    blocked: dict[str, str] = {}
    columns_of = dict(keys)
    for holder, current in sorted(holders.items()):
        for kv in key_values(current, keys):
            taker = claims.get(kv)
            if taker is None or taker == holder:
                continue
            if _wants_same(known.get(holder), kv, keys):
                blocked[taker] = f"{holder} keeps {dict(zip(columns_of[kv[0]], kv[1], strict=True))}"
                continue
            releases.setdefault(holder, {}).update(zip(columns_of[kv[0]], kv[1], strict=True))
    return [Release(rid, before) for rid, before in releases.items()], blocked


def _wants_same(
    row: Mapping[str, Any] | None, kv: KeyValue, keys: Sequence[tuple[str, tuple[str, ...]]]
) -> bool:
    return row is not None and kv in key_values(row, keys)


def _literal(value: Any) -> str:
    return odata_string(value) if isinstance(value, str) else str(value).lower()


def read_holders(
    client: DataverseClient,
    meta: EntityMeta,
    keys: Sequence[tuple[str, tuple[str, ...]]],
    wanted: Iterable[Mapping[str, Any]],
) -> dict[str, dict[str, Any]]:
    """Target records holding any of the key values of `wanted` rows: record id -> its key columns (one
    query per key; a refused batch is small: a few renamed leads)."""
    rows = list(wanted)
    found: dict[str, dict[str, Any]] = {}
    for name, columns in keys:
        values = {kv[1] for row in rows for kv in key_values(row, [(name, columns)])}
        if not values:
            continue
        clauses = [
            "(" + " and ".join(f"{c} eq {_literal(v)}" for c, v in zip(columns, tup, strict=True)) + ")"
            for tup in sorted(values, key=repr)
        ]
        select = [meta.primary_id, *columns]
        for start in range(0, len(clauses), 50):  # the URL stays a few KB
            flt = " or ".join(clauses[start : start + 50])
            for rec in client.query(meta.logical_name, select=select, filter=flt):
                rid = str(rec[meta.primary_id]).lower()
                found.setdefault(rid, {}).update({c: rec.get(c) for c in columns})
    return found
