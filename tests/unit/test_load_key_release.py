"""Alternate-key takeovers (a renamed lead's new account takes the lead id its old account holds): which
holders are released, and how a rollback puts their keys back after deleting the new records."""

from __future__ import annotations

from datetime import UTC, datetime

from migration_assets.clients.dataverse.metadata import AttributeMeta, EntityMeta, KeyMeta
from migration_assets.load.key_release import Release, key_values, plain_keys, plan_releases
from migration_assets.load.ledger import Entry
from migration_assets.load.rollback_plan import plan_rollback

KEYS = [("c2d_account_closeid_key", ("c2d_closeid",))]
T = datetime(2026, 1, 1, tzinfo=UTC)


def test_a_superseded_holder_is_released_for_the_new_record() -> None:
    # The old account (old name) is no longer staged; the new one (new name) wants its lead id.
    wanted = {"new": {"accountid": "new", "name": "Sapphire (renamed)", "c2d_closeid": "lead_1"}}
    holders = {"old": {"c2d_closeid": "lead_1"}}
    staged = {"new": {"c2d_closeid": "lead_1"}, "other": {"c2d_closeid": "lead_9"}}
    releases, blocked = plan_releases(wanted, holders, KEYS, staged)
    assert releases == [Release("old", {"c2d_closeid": "lead_1"})]
    assert blocked == {}


def test_a_holder_whose_own_staged_row_moves_its_key_is_released() -> None:
    # The old name group keeps another lead: the old account stays, its key moves to lead_2.
    wanted = {"new": {"c2d_closeid": "lead_1"}}
    holders = {"old": {"c2d_closeid": "lead_1"}}
    staged = {"new": {"c2d_closeid": "lead_1"}, "old": {"c2d_closeid": "lead_2"}}
    releases, blocked = plan_releases(wanted, holders, KEYS, staged)
    assert releases == [Release("old", {"c2d_closeid": "lead_1"})]
    assert blocked == {}


def test_a_holder_staging_still_wants_with_the_value_is_a_real_duplicate() -> None:
    wanted = {"new": {"c2d_closeid": "lead_1"}}
    holders = {"old": {"c2d_closeid": "lead_1"}}
    staged = {"new": {"c2d_closeid": "lead_1"}, "old": {"c2d_closeid": "lead_1"}}
    releases, blocked = plan_releases(wanted, holders, KEYS, staged)
    assert releases == []
    assert set(blocked) == {"new"} and "old keeps" in blocked["new"]


def test_the_row_itself_and_unrelated_values_are_never_released() -> None:
    wanted = {"new": {"c2d_closeid": "lead_1"}}
    holders = {"new": {"c2d_closeid": "lead_1"}, "x": {"c2d_closeid": "lead_7"}, "y": {"c2d_closeid": None}}
    assert plan_releases(wanted, holders, KEYS, None) == ([], {})


def test_empty_key_columns_constrain_nothing_and_lookup_keys_are_left_to_the_server() -> None:
    assert key_values({"c2d_closeid": None}, KEYS) == []
    assert key_values({"c2d_closeid": ""}, KEYS) == []
    meta = EntityMeta("account", "Account", "accounts", "accountid", "name", 1, False)
    meta.attributes["c2d_closeid"] = AttributeMeta("c2d_closeid", "c2d_CloseId", "String", "StringType")
    meta.attributes["parentaccountid"] = AttributeMeta(
        "parentaccountid", "ParentAccountId", "Lookup", "LookupType"
    )
    meta.keys += [
        KeyMeta("c2d_account_closeid_key", ("c2d_closeid",), "Active"),
        KeyMeta("by_parent", ("parentaccountid", "c2d_closeid"), "Active"),
    ]
    assert plain_keys(meta) == KEYS


def e(seq: int, table: str, rid: str, action: str, before: dict | None = None) -> Entry:
    return Entry("delta", seq, table, rid, None, action, "done", before, T, None)


def test_rollback_puts_a_released_key_back_after_deleting_the_record_that_took_it() -> None:
    # deactivate mode: old account released, new created, contact moved to it, old deactivated.
    steps = plan_rollback(
        [
            e(1, "account", "old", "released", {"c2d_closeid": "lead_1"}),
            e(2, "account", "new", "created"),
            e(3, "contact", "c1", "updated", {"parentcustomerid_account@odata.bind": "/accounts(old)"}),
            e(4, "account", "old", "deactivated", {"statecode": 0, "statuscode": 1}),
        ]
    )
    assert [(s.kind, s.record_id) for s in steps] == [
        ("restore", "c1"),
        ("restore", "old"),
        ("delete", "new"),
        ("rekey", "old"),
    ]
    assert "c2d_closeid" not in steps[1].values and steps[1].values["statecode"] == 0
    assert steps[-1].values == {"c2d_closeid": "lead_1"}
    assert steps[1].sources == (("delta", 1), ("delta", 4))


def test_a_re_created_record_gets_its_released_key_back_last() -> None:
    # delete mode: the image ledgered at deletion has the key already emptied; the release holds it.
    steps = plan_rollback(
        [
            e(1, "account", "old", "released", {"c2d_closeid": "lead_1"}),
            e(2, "account", "new", "created"),
            e(3, "account", "old", "deleted", {"name": "Sapphire", "c2d_closeid": None}),
        ]
    )
    assert [(s.kind, s.record_id) for s in steps] == [
        ("recreate", "old"),
        ("delete", "new"),
        ("rekey", "old"),
    ]
    assert steps[0].values == {"name": "Sapphire"}
    assert steps[2].values == {"c2d_closeid": "lead_1"}


def test_records_the_runs_created_need_no_key_back() -> None:
    steps = plan_rollback(
        [e(1, "account", "a", "created"), e(2, "account", "a", "released", {"c2d_closeid": "lead_1"})]
    )
    assert [(s.kind, s.record_id) for s in steps] == [("delete", "a")]
