from __future__ import annotations

import uuid

import pytest

from migration_assets.mapping import ids


def test_namespace_is_derived_from_the_documented_seed() -> None:
    assert uuid.uuid5(uuid.NAMESPACE_URL, ids.NAMESPACE_SEED) == ids.PROJECT_NAMESPACE


def test_record_ids_are_deterministic_and_distinct_per_kind() -> None:
    a = ids.record_id("contact", "cont_abc")
    assert a == ids.record_id("contact", "cont_abc")
    assert a == str(uuid.uuid5(ids.PROJECT_NAMESPACE, "contact:cont_abc"))
    assert a != ids.record_id("lead", "cont_abc")


def test_account_id_uses_the_normalised_name_and_placeholder_for_blank() -> None:
    assert ids.account_id("ACME  Corp ") == ids.account_id("acme corp")
    assert ids.account_key("｡ｃｍｅ") == ids.account_key("｡cme")  # NFKC folds full-width letters
    assert ids.account_id("") == ids.account_id(None) == ids.placeholder_account_id()
    assert ids.account_id("  ") == ids.placeholder_account_id()


def test_annotation_ids_and_errors() -> None:
    assert (
        ids.annotation_key("attachment", "acti_1", "https://x/a.pdf") == "annotation:attachment:acti_1:/a.pdf"
    )
    # The same file under another host, port or signed query keeps its id (no duplicate on re-run).
    same = {
        ids.annotation_id("attachment", "acti_1", url)
        for url in (
            "https://app.close.com/go/file/persisted/orga_1/acti_1/tok/a.pdf",
            "http://127.0.0.1:8123/go/file/persisted/orga_1/acti_1/tok/a.pdf",
            "https://app.close.com/go/file/persisted/orga_1/acti_1/tok/a.pdf?sig=abc#x",
        )
    }
    assert len(same) == 1
    assert ids.annotation_id("attachment", "acti_1", "https://app.close.com/go/file/b.pdf") not in same
    assert ids.annotation_id("note", "acti_1") != ids.annotation_id("status_change", "acti_1")
    with pytest.raises(ids.IdError):
        ids.annotation_id("note", "")
    with pytest.raises(ids.IdError, match="unknown record kind"):
        ids.record_id("company", "x")
    with pytest.raises(ids.IdError, match="missing Close id"):
        ids.record_id("lead", " ")


def test_vector_helper_keeps_none_and_equals_uuid5() -> None:
    keys = ["lead:a", None, "account:straße ümlaut", "annotation:attachment:acti_1:https://x/é.pdf"]
    assert ids.ids_for_keys(keys) == [
        None if k is None else str(uuid.uuid5(ids.PROJECT_NAMESPACE, k)) for k in keys
    ]
