"""OData URL pieces for record addressing and queries."""

from __future__ import annotations

import pytest

from migration_assets.clients.dataverse.odata import InvalidKeyError, key_segment, odata_bind, query_string


def test_key_segment_by_id_and_alternate_key() -> None:
    assert key_segment("accounts", "7eb682f1-ca75-e511-80d4-00155d2a68d1") == (
        "accounts(7eb682f1-ca75-e511-80d4-00155d2a68d1)"
    )
    assert key_segment("contacts", {"firstname": "Joe", "emailaddress1": "abc@example.com"}) == (
        "contacts(firstname='Joe',emailaddress1='abc@example.com')"
    )
    assert key_segment("accounts", {"c2d_closeid": "o'brien"}) == "accounts(c2d_closeid='o''brien')"
    assert (
        key_segment("accounts", {"c2d_number": 12, "c2d_flag": True})
        == "accounts(c2d_number=12,c2d_flag=true)"
    )


@pytest.mark.parametrize("value", ["a/b", "50%", "x&y", "a:b", "q?", "1+1", "<tag>", "a*", "back\\slash"])
def test_key_values_that_break_key_urls_are_refused(value: str) -> None:
    with pytest.raises(InvalidKeyError, match="address the record by its id"):
        key_segment("accounts", {"c2d_closeid": value})
    with pytest.raises(InvalidKeyError):
        key_segment("accounts", {})


def test_bind_and_query_string() -> None:
    assert odata_bind("accounts", "abc") == "/accounts(abc)"
    qs = query_string({"$filter": "name eq 'A&B' and x eq 1+1", "@message": "'CreateMultiple'"})
    assert qs == "$filter=name%20eq%20'A%26B'%20and%20x%20eq%201%2B1&@message='CreateMultiple'"
