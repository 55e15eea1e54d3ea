"""Staging transforms over small hand-made frames shaped like close.* rows, and the blocking checks."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from migration_assets.defs.staged._checks import evaluate
from migration_assets.load.estimate import (
    TableLoad,
    custom_tables_used,
    daily_pool,
    estimate,
    upload_blocks,
)
from migration_assets.mapping.account_staging import dedupe_accounts
from migration_assets.mapping.annotation_staging import oversize_rejections
from migration_assets.mapping.custom_activity_frames import undefined_field_rejections
from migration_assets.mapping.ids import record_id
from migration_assets.mapping.owners import OwnerConfigError, blocking_owners, match_owners, owner_lookup
from migration_assets.mapping.parties import (
    PartyIndex,
    appointment_parties,
    email_parties,
    phonecall_parties,
)
from migration_assets.mapping.staging import warehouse_write
from migration_assets.mapping.table_staging import closing_columns
from migration_assets.resources.warehouse import WarehouseResource
from migration_assets.target.checks import REJECTION_SCHEMA
from migration_assets.target.custom_activity_plan import RoutedActivityType
from migration_assets.target.rules import TableRules

SYSTEMUSERS = [
    {
        "systemuserid": "su-1",
        "internalemailaddress": "Jane.Doe@Example.com",
        "isdisabled": False,
        "fullname": "Jane",
    },
    {
        "systemuserid": "su-2",
        "internalemailaddress": "priya@example.com",
        "isdisabled": True,
        "fullname": "Priya",
    },
    {
        "systemuserid": "su-3",
        "internalemailaddress": "app@example.com",
        "isdisabled": False,
        "applicationid": "x",
    },
    {
        "systemuserid": "su-4",
        "internalemailaddress": "boss@example.com",
        "isdisabled": False,
        "fullname": "Boss",
    },
]
CLOSE_USERS = [
    {"id": "user_jane", "email": "jane.doe@example.com", "first_name": "Jane", "last_name": "Doe"},
    {"id": "user_priya", "email": "priya@example.com", "first_name": "Priya", "last_name": "R"},
    {"id": "user_liam", "email": "liam@example.com", "first_name": "Liam", "last_name": "O"},
]
OWNED = {"user_jane": 3, "user_priya": 2, "user_liam": 1, "user_gone": 4}


def test_owners_match_by_email_case_insensitively_and_queue_the_rest() -> None:
    m = match_owners(CLOSE_USERS, SYSTEMUSERS, {}, None, "queue", OWNED)
    status = dict(zip(m["close_user_id"], m["status"], strict=True))
    assert status == {
        "user_jane": "matched",
        "user_priya": "disabled",
        "user_liam": "unmatched",
        "user_gone": "unmatched",
    }
    assert owner_lookup(m) == {"user_jane": "su-1"}
    assert set(blocking_owners(m)["close_user_id"]) == {"user_priya", "user_liam", "user_gone"}


def test_owner_overrides_and_fallback_resolve_the_queue() -> None:
    m = match_owners(
        CLOSE_USERS, SYSTEMUSERS, {"user_liam": "boss@example.com"}, "BOSS@example.com", "fallback", OWNED
    )
    status = dict(zip(m["close_user_id"], m["status"], strict=True))
    assert status == {
        "user_jane": "matched",
        "user_priya": "fallback",
        "user_liam": "override",
        "user_gone": "fallback",
    }
    assert owner_lookup(m) == {
        "user_jane": "su-1",
        "user_priya": "su-4",
        "user_liam": "su-4",
        "user_gone": "su-4",
    }
    assert blocking_owners(m).height == 0
    # disabled_users: queue keeps disabled users blocking even with a fallback owner.
    q = match_owners(CLOSE_USERS, SYSTEMUSERS, {}, "boss@example.com", "queue", OWNED)
    assert set(blocking_owners(q)["close_user_id"]) == {"user_priya"}


def test_owner_config_naming_a_disabled_user_is_refused() -> None:
    with pytest.raises(OwnerConfigError, match="disabled"):
        match_owners(CLOSE_USERS, SYSTEMUSERS, {}, "priya@example.com")
    with pytest.raises(OwnerConfigError, match="not a Dataverse user"):
        match_owners(CLOSE_USERS, SYSTEMUSERS, {"user_liam": "nobody@example.com"}, None)


def test_accounts_deduplicated_by_normalised_name_valid_leads_first() -> None:
    names = pl.Series(["ACME  Corp ", "acme corp", None, "Other"])
    frame = pl.DataFrame(
        {
            "_close_id": ["lead_a", "lead_b", "lead_c", "lead_d"],
            "accountid": ["acc-acme", "acc-acme", "acc-ph", "acc-other"],
            "overriddencreatedon": [
                "2020-01-01T00:00:00Z",
                "2021-01-01T00:00:00Z",
                "2020-01-01T00:00:00Z",
                None,
            ],
            "websiteurl": ["old.example.com", "new.example.com", None, None],
        }
    )
    # The oldest ACME lead is rejected (e.g. an over-long description): the valid one gives the Account.
    rej = pl.DataFrame(
        {
            "_close_id": ["lead_a"],
            "column": ["description"],
            "value": ["x"],
            "reason": ["too long"],
            "check_name": ["mapping"],
        }
    )
    kept, account_rej = dedupe_accounts(frame, rej, names, "oldest", "c2d_closeleadids")
    assert kept.height == 3
    acme = kept.filter(pl.col("accountid") == "acc-acme").row(0, named=True)
    assert acme["_close_id"] == "acme corp" and acme["websiteurl"] == "new.example.com"
    assert acme["c2d_closeleadids"] == "lead_a; lead_b"
    assert kept.filter(pl.col("accountid") == "acc-ph")["_close_id"].to_list() == ["__placeholder__"]
    assert account_rej.height == 0  # the rejected lead was not the one kept
    _, only_bad = dedupe_accounts(
        frame.filter(pl.col("_close_id") != "lead_b"),
        rej,
        names.gather([0, 2, 3]),
        "oldest",
        "c2d_closeleadids",
    )
    assert only_bad["_close_id"].to_list() == ["acme corp"]


def test_won_and_lost_opportunities_are_closed_by_action() -> None:
    frame = pl.DataFrame(
        {
            "statecode": [0, 1, 2],
            "statuscode": [1, 3, 4],
            "estimatedvalue": [10.0, 20.0, 30.0],
            "estimatedclosedate": [None, "2024-05-01", None],
            "c2d_closedatelost": [None, None, "2024-06-01"],
        }
    )
    out = closing_columns(frame, "c2d_closedatelost")
    assert out["_close_action"].to_list() == [None, "win", "lose"]
    assert out["_close_statuscode"].to_list() == [None, 3, 4]
    assert out["_close_date"].to_list() == [None, "2024-05-01", "2024-06-01"]
    assert out["_actual_revenue"].to_list() == [None, 20.0, None]


def test_parties_resolve_users_contacts_and_raw_addresses() -> None:
    contact = record_id("contact", "cont_1")
    idx = PartyIndex(
        {"jane@example.com": "su-1"},
        {"user_jane": "su-1"},
        {"bob@client.com": contact},
        {contact},
        {"systemuser": "systemusers", "contact": "contacts"},
    )
    env = {
        "from": [{"email": "Jane@example.com"}],
        "to": [{"email": "bob@client.com"}],
        "cc": [{"email": "x@y.org"}],
        "bcc": [],
    }
    parties = json.loads(email_parties(pl.Series([env]), idx)[0])
    assert parties == [
        {"participationtypemask": 1, "partyid_systemuser@odata.bind": "/systemusers(su-1)"},
        {"participationtypemask": 2, "partyid_contact@odata.bind": f"/contacts({contact})"},
        {"participationtypemask": 3, "addressused": "x@y.org"},
    ]
    att = [{"user_id": "user_jane", "is_organizer": True}, {"contact_id": "cont_1"}, {"email": "z@z.org"}]
    masks = [p["participationtypemask"] for p in json.loads(appointment_parties(pl.Series([att]), idx)[0])]
    assert masks == [7, 5, 5]
    inbound = json.loads(
        phonecall_parties(pl.Series(["inbound"]), pl.Series(["user_jane"]), pl.Series(["cont_1"]), idx)[0]
    )
    assert [(p["participationtypemask"], "partyid_contact@odata.bind" in p) for p in inbound] == [
        (2, False),
        (1, True),
    ]


def test_oversize_files_are_listed_not_loaded() -> None:
    frame = pl.DataFrame({"_close_id": ["small", "big", "recording"], "_file_size": [1000, 6_295_777, None]})
    rej = oversize_rejections(frame, 5_242_880)
    assert rej["_close_id"].to_list() == ["big"] and rej["check_name"].to_list() == ["max_upload_size"]
    assert "8394372 as base64" in rej["reason"][0]
    assert oversize_rejections(frame, 131_072_000).height == 0


def test_custom_activity_using_an_undefined_field_is_rejected() -> None:
    frame = pl.DataFrame(
        {
            "id": ["a1", "a2"],
            "custom.cf_ok": ["x", None],
            "custom.cf_ok[]": [None, None],
            "custom.cf_bad": [None, "Yes"],
            "custom.cf_bad[]": [None, None],
        },
        schema_overrides={"custom.cf_ok[]": pl.List(pl.String), "custom.cf_bad[]": pl.List(pl.String)},
    )
    rej = undefined_field_rejections(
        frame, ["custom.cf_bad", "custom.cf_ok"], {"cf_ok"}, RoutedActivityType("Visit", "c2d_visit")
    )
    assert rej["_close_id"].to_list() == ["a2"] and rej["check_name"].to_list() == ["column_exists"]
    assert "cf_bad" in rej["reason"][0] and "Visit" in rej["reason"][0]


def test_load_estimate_counts_entitlement_and_table_limit() -> None:
    loads = [
        TableLoad("account", 1000),
        TableLoad("phonecall", 500, state_changes=500),
        TableLoad("opportunity", 10, close_actions=4),
    ]
    est = estimate(loads, licences=10, batch_size=250, batch_request_size=100)
    assert est.entitlement_requests == 1000 + 1000 + 14
    assert est.http_requests == 4 + 2 + 5 + 1 + 1
    assert est.daily_pool == daily_pool(10) == 550_000 and est.days == 1
    assert upload_blocks([1000, 6_000_000]) == 1 + 2
    assert custom_tables_used(16, 0, "sales_professional")["within_limit"] is False
    assert custom_tables_used(16, 0, "sales_enterprise")["within_limit"] is True


def _staged_env(tmp_path: Path, rejected_rows: int, monkeypatch: pytest.MonkeyPatch) -> WarehouseResource:
    wh = WarehouseResource(path=str(tmp_path / "w.duckdb"))
    r = TableRules.from_json(
        {
            "table": "account",
            "entity_set": "accounts",
            "primary_id": "accountid",
            "columns": {
                "accountid": {"name": "accountid", "attribute_type": "Uniqueidentifier"},
                "name": {"name": "name", "attribute_type": "String", "max_length": 160},
            },
        }
    )
    staged = pl.DataFrame(
        {
            "_close_id": ["acme"],
            "_close_object": ["lead"],
            "accountid": ["11111111-2222-3333-4444-555555555555"],
            "name": ["ACME"],
        }
    )
    rej = pl.DataFrame(
        {
            "_close_id": [f"bad{i}" for i in range(rejected_rows)],
            "_close_object": ["lead"] * rejected_rows,
            "accountid": [None] * rejected_rows,
            "column": ["name"] * rejected_rows,
            "value": ["x" * 200] * rejected_rows,
            "reason": ["longer than MaxLength 160"] * rejected_rows,
            "check_name": ["mapping"] * rejected_rows,
        },
        schema={
            "_close_id": pl.String,
            "_close_object": pl.String,
            "accountid": pl.String,
            **{k: v for k, v in REJECTION_SCHEMA.items() if k != "_close_id"},
        },
    )
    with wh.connect() as con:
        warehouse_write(
            con,
            "target_metadata",
            pl.DataFrame(
                {
                    "table_name": ["account"],
                    "entity_set": ["accounts"],
                    "rules": [json.dumps(r.to_json())],
                    "fetched_at": [0.0],
                }
            ),
        )
        warehouse_write(
            con,
            "target_entity_sets",
            pl.DataFrame(
                {"table_name": ["account"], "entity_set": ["accounts"], "primary_id": ["accountid"]}
            ),
        )
        warehouse_write(con, "account", staged)
        warehouse_write(con, "account_rejected", rej)
    return wh


def test_blocking_check_passes_clean_table_and_fails_with_rejections(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ok = evaluate(_staged_env(tmp_path / "a", 0, monkeypatch), "account")
    assert ok.passed
    bad = evaluate(_staged_env(tmp_path / "b", 2, monkeypatch), "account")
    assert not bad.passed and "2 of 3 rows rejected" in (bad.description or "")
    table = str(bad.metadata["rejected"].value)
    assert table.startswith("| _close_id |") and "longer than MaxLength 160" in table


def test_staged_values_in_a_column_the_target_no_longer_has_are_a_mapping_error_not_a_bug(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 11 #4: staged.account holds values of websiteurl (fields/account.yaml) but the target's metadata,
    refreshed since staging, no longer has that column: the check names the field map's line and halts the
    table as a mapping problem, never "problems in the written staged.account (a bug: please report)"."""
    wh = _staged_env(tmp_path, 0, monkeypatch)
    with wh.connect() as con:
        staged = pl.DataFrame(
            {
                "_close_id": ["acme"],
                "_close_object": ["lead"],
                "websiteurl": ["https://acme.io"],
                "accountid": ["11111111-2222-3333-4444-555555555555"],
                "name": ["ACME"],
            }
        )
        warehouse_write(con, "account", staged)
    result = evaluate(wh, "account")
    description = str(result.description)
    assert not result.passed and "a bug" not in description
    assert "/fields/account.yaml line " in description and "key 'target': column 'websiteurl'" in description
    assert (
        description.endswith("(this table is halted)")
        and result.metadata["invalid_after_write"].value == "none"
    )


def test_source_frame_reads_only_the_fields_a_map_names(tmp_path: Path) -> None:
    import duckdb

    from migration_assets.extract.tables import TABLES
    from migration_assets.mapping.staging_source import lead_contacts, read_source

    contact = {
        "id": "cont_1",
        "lead_id": "lead_1",
        "name": "Ann Lee",
        "title": "CTO",
        "date_created": "2024-01-02T00:00:00.000000+00:00",
        "emails": [{"email": "ann@x.com", "type": "office", "is_unsubscribed": False}],
        "phones": [],
        "custom.cf_a": "v",
        "custom.cf_multi": ["a", "b"],
    }
    frame = TABLES["contacts"].frame([contact])
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    con.execute("CREATE SCHEMA close")
    con.register("f", frame.to_arrow())
    con.execute("CREATE TABLE close.contacts AS SELECT * FROM f")
    src = read_source(
        con,
        "contacts",
        TABLES["contacts"].schema,
        ["id", "emails", "custom.cf_a", "custom.cf_multi", "missing"],
        list_columns=["custom.cf_multi"],
    )
    row = src.row(0, named=True)
    assert row["emails"] == [{"email": "ann@x.com", "type": "office"}]
    assert row["custom.cf_a"] == "v" and row["custom.cf_multi"] == ["a", "b"] and row["missing"] is None
    grouped = lead_contacts(con).row(0, named=True)
    assert grouped["lead_id"] == "lead_1" and grouped["contacts"][0]["name"] == "Ann Lee"
