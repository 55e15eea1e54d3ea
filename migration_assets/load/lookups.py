"""Lookups of a staged table: which column binds to which target table, and binds by alternate key (a
currency by ISO code) resolved to ids with as few reads as possible."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from migration_assets.clients.dataverse.client import DataverseClient
from migration_assets.clients.dataverse.metadata import EntityMeta
from migration_assets.load import diff as ld

READ_CHUNK = 250  # ids per existence query: ~10 KB of URL, well under the ~32 KB Dataverse accepts
# "/transactioncurrencies(isocurrencycode='EUR')": a bind by alternate key.
KEY_BIND = re.compile(r"^/?[A-Za-z0-9_]+\(([A-Za-z0-9_]+)='((?:[^']|'')*)'\)$")


class LoadError(RuntimeError):
    """The load cannot continue (bad staged data shape, missing metadata)."""


def lookups_of(
    meta: EntityMeta, columns: Sequence[str], entity_set_of: Callable[[str], str]
) -> dict[str, ld.Lookup]:
    out: dict[str, ld.Lookup] = {}
    for col in columns:
        if not col.endswith(ld.BIND):
            continue
        nav = col[: -len(ld.BIND)]
        rel = next((r for r in meta.many_to_one if r.navigation_property == nav), None)
        if rel is None:
            raise LoadError(
                f"staged.{meta.logical_name} column {col!r}: '{nav}' is not a navigation property of "
                f"'{meta.logical_name}' in the target (known: "
                f"{sorted({r.navigation_property for r in meta.many_to_one})[:20]}...)"
            )
        out[nav] = ld.Lookup(
            nav,
            rel.referencing_attribute,
            rel.referenced_entity,
            entity_set_of(rel.referenced_entity),
            rel.referenced_attribute,
        )
    return out


def prefetch_key_binds(
    client: DataverseClient,
    lk: ld.Lookup,
    values: Iterator[Any] | Sequence[Any],
    cache: dict[tuple[str, str, str], str | None],
) -> None:
    """Resolve every distinct key bind of one lookup column with one In-query per key column (a table's
    few currencies cost one request, not one each); values no record has are cached as None."""
    wanted: dict[str, set[str]] = {}
    for value in values:
        m = KEY_BIND.match(value) if isinstance(value, str) else None
        if m is not None and (lk.target, m.group(1), m.group(2).replace("''", "'")) not in cache:
            wanted.setdefault(m.group(1), set()).add(m.group(2).replace("''", "'"))
    if not wanted:
        return
    pk = lk.target_key or client.metadata(lk.target).primary_id
    for column, texts in wanted.items():
        ordered = sorted(texts)
        for start in range(0, len(ordered), READ_CHUNK):
            chunk = ordered[start : start + READ_CHUNK]
            listed = ",".join("'" + t.replace("'", "''") + "'" for t in chunk)
            flt = f"Microsoft.Dynamics.CRM.In(PropertyName='{column}',PropertyValues=[{listed}])"
            found = {
                str(r.get(column)): r[pk] for r in client.query(lk.target, select=[pk, column], filter=flt)
            }
            for text in chunk:
                rid = found.get(text)
                cache[(lk.target, column, text)] = f"/{lk.entity_set}({str(rid).lower()})" if rid else None


def resolve_key_bind(
    client: DataverseClient, lk: ld.Lookup, value: str, cache: dict[tuple[str, str, str], str | None]
) -> str | None:
    """A bind by alternate key (e.g. a currency by ISO code) as a bind by id, whether or not the target
    declares that key; None when no record has that value. Other values are returned unchanged."""
    m = KEY_BIND.match(value)
    if m is None:
        return value
    column, text = m.group(1), m.group(2).replace("''", "'")
    cache_key = (lk.target, column, text)
    if cache_key not in cache:
        # The relationship names the referenced key: no metadata read of the target table for its pk.
        pk = lk.target_key or client.metadata(lk.target).primary_id
        quoted = text.replace("'", "''")
        found = list(client.query(lk.target, select=[pk], filter=f"{column} eq '{quoted}'", top=1))
        cache[cache_key] = f"/{lk.entity_set}({str(found[0][pk]).lower()})" if found else None
    return cache[cache_key]
