"""Binds by alternate key (a currency by ISO code) resolved to ids: every distinct value of a table in one
In-query, the referenced key taken from the relationship (no metadata read), unknown values as None."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from migration_assets.load import diff as ld
from migration_assets.load.lookups import prefetch_key_binds, resolve_key_bind

CURRENCIES = {"EUR": "AAAAAAAA-0000-0000-0000-000000000001", "GBP": "aaaaaaaa-0000-0000-0000-000000000002"}
LOOKUP = ld.Lookup(
    "transactioncurrencyid",
    "transactioncurrencyid",
    "transactioncurrency",
    "transactioncurrencies",
    "transactioncurrencyid",
)


class FakeClient:
    def __init__(self) -> None:
        self.queries: list[str] = []

    def metadata(self, table: str) -> Any:
        raise AssertionError("the relationship names the key: no metadata read")

    def query(
        self, table: str, select: list[str], filter: str, top: int | None = None
    ) -> Iterator[dict[str, Any]]:
        self.queries.append(filter)
        wanted = re.findall(r"'([A-Z]{3})'", filter)
        for iso in wanted:
            if iso in CURRENCIES:
                yield {"transactioncurrencyid": CURRENCIES[iso], "isocurrencycode": iso}


def test_every_currency_of_a_table_is_resolved_with_one_query() -> None:
    client = FakeClient()
    cache: dict[tuple[str, str, str], str | None] = {}
    values = [f"/transactioncurrencies(isocurrencycode='{c}')" for c in ("EUR", "GBP", "EUR", "XXX")]
    prefetch_key_binds(client, LOOKUP, [*values, None, "/transactioncurrencies(abc)"], cache)  # type: ignore[arg-type]
    assert len(client.queries) == 1
    assert "PropertyName='isocurrencycode'" in client.queries[0]
    assert resolve_key_bind(client, LOOKUP, values[0], cache) == (  # type: ignore[arg-type]
        "/transactioncurrencies(aaaaaaaa-0000-0000-0000-000000000001)"
    )
    assert resolve_key_bind(client, LOOKUP, values[3], cache) is None  # type: ignore[arg-type]
    assert (
        resolve_key_bind(client, LOOKUP, "/transactioncurrencies(abc)", cache)
        == "/transactioncurrencies(abc)"
    )  # type: ignore[arg-type]
    prefetch_key_binds(client, LOOKUP, values, cache)  # type: ignore[arg-type]
    assert len(client.queries) == 1, "values already resolved are not asked again"
