"""The mapping engine on small frames shaped like the close/* tables, with the repository's mappings."""

from __future__ import annotations

from decimal import Decimal

import polars as pl
import pytest

from migration_assets.mapping import ids
from migration_assets.mapping.config import load_mapping_config
from migration_assets.mapping.engine import (
    SourceError,
    apply_field_map,
    dedupe_rows,
    join_sources,
    resolve_source,
)


@pytest.fixture(scope="module")
def cfg():
    return load_mapping_config()


def contacts() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "id": ["cont_1", "cont_2", "cont_3"],
            "lead_id": ["lead_1", "lead_2", "lead_1"],
            "name": ["Wayne, Bruce", "Cher", None],
            "title": ["CEO", None, "x" * 150],
            "emails": [
                [
                    {"email": "B@Wayne.COM", "type": "office"},
                    {"email": "b2@x.com", "type": "home"},
                    {"email": "b3@x.com", "type": "other"},
                    {"email": "b4@x.com", "type": "other"},
                ],
                [{"email": "not-an-email", "type": "office"}],
                [],
            ],
            "phones": [
                [{"phone": "+1 650-333-4444", "type": "office"}, {"phone": "+16505550000", "type": "mobile"}],
                [],
                None,
            ],
            "urls": [[], [{"url": "linkedin.com/in/cher", "type": "url"}], None],
            "date_created": [
                "2021-07-13T11:39:05.012000+00:00",
                "2021-07-13T11:39:05+00:00",
                "2021-07-13T11:39:05",
            ],
        }
    )


def leads() -> pl.DataFrame:
    return pl.DataFrame({"id": ["lead_1", "lead_2"], "name": ["Wayne Enterprises", None]})


def test_contact_mapping(cfg) -> None:
    obj = cfg.object("contact")
    source = join_sources(contacts(), {"leads": leads()}, obj.joins)
    result = apply_field_map(source, cfg.field_map("contact"), cfg.context())
    frame = result.frame
    assert frame.height == 3  # nothing dropped, rejected rows included
    row = frame.row(0, named=True)
    assert row["contactid"] == ids.record_id("contact", "cont_1")
    assert (row["firstname"], row["lastname"]) == ("Bruce", "Wayne")
    assert (row["emailaddress1"], row["emailaddress3"], row["c2d_closeotheremails"]) == (
        "B@wayne.com",
        "b3@x.com",
        "b4@x.com",
    )
    assert (row["telephone1"], row["mobilephone"]) == ("+16503334444", "+16505550000")
    assert row["parentcustomerid_account"] == ids.account_id("wayne enterprises")
    assert row["overriddencreatedon"] == "2021-07-13T11:39:05Z"
    cher = frame.row(1, named=True)
    assert cher["parentcustomerid_account"] == ids.placeholder_account_id()
    assert cher["websiteurl"] == "https://linkedin.com/in/cher" and cher["lastname"] == "Cher"

    problems = result.problems.sort("close_id").to_dicts()
    assert problems == [
        {
            "close_id": "cont_2",
            "column": "emailaddress1",
            "value": "[{'email': 'not-an-email', 'type': 'office'}]",
            "reason": "must contain exactly one '@'",
            "action": "rejected",
        },
        {
            "close_id": "cont_3",
            "column": "jobtitle",
            "value": "x" * 150,
            "reason": "longer than MaxLength 100 (150 characters)",
            "action": "rejected",
        },
    ]
    assert result.accepted()["close_id"].to_list() == ["cont_1"]
    rejected = result.rejected()
    assert rejected["close_id"].to_list() == ["cont_2", "cont_3"]
    assert rejected["reason"][0].startswith("emailaddress1: must contain exactly one '@'")
    assert frame.row(1, named=True)["emailaddress1"] is None  # the bad value is never written


def test_truncate_policy_reports_the_cut_text(cfg) -> None:
    tasks = pl.DataFrame(
        {
            "id": ["task_1"],
            "text": ["t" * 250],
            "due_date": ["2021-07-16"],
            "date": [None],
            "is_complete": [True],
            "lead_id": ["lead_1"],
            "assigned_to": ["user_1"],
            "_type": ["lead"],
            "date_created": ["2021-07-13T11:39:05.012000+00:00"],
        }
    )
    policy = {"subject": cfg.settings.truncation_policy("task", "subject")}
    result = apply_field_map(
        tasks, cfg.field_map("task"), cfg.context(owners={"user_1": "u-guid"}), truncation=policy
    )
    row = result.frame.row(0, named=True)
    assert len(row["subject"]) == 200 and len(row["description"]) == 250
    assert (row["statecode"], row["statuscode"], row["ownerid"]) == (1, 5, "u-guid")
    assert row["scheduledend"] == "2021-07-16T00:00:00Z"
    assert result.problems.to_dicts() == [
        {
            "close_id": "task_1",
            "column": "subject",
            "value": "t" * 50,
            "reason": "truncated to MaxLength; cut text in value",
            "action": "truncated",
        }
    ]
    assert result.rejected().height == 0


def test_opportunity_money_pipeline_and_state(cfg) -> None:
    opps = pl.DataFrame(
        {
            "id": ["oppo_1", "oppo_2"],
            "lead_id": ["lead_1", "lead_1"],
            "contact_id": [None, "cont_1"],
            "value": [50000, 123],
            "value_currency": ["USD", "EUR"],
            "value_period": ["one_time", "monthly"],
            "date_won": ["2021-07-16", None],
            "date_lost": [None, "2021-08-01"],
            "confidence": [100, 0],
            "pipeline_name": ["Sales", "Renewals"],
            "status_label": ["Won", "Churned"],
            "note": ["n", None],
            "user_id": ["user_1", "user_1"],
            "date_created": ["2021-07-13T11:39:05.012000+00:00"] * 2,
        }
    )
    source = join_sources(opps, {"leads": leads()}, cfg.object("opportunity").joins)
    result = apply_field_map(source, cfg.field_map("opportunity"), cfg.context())
    assert result.problems.height == 0
    won, lost = result.frame.to_dicts()
    assert won["estimatedvalue"] == Decimal("500") and lost["estimatedvalue"] == Decimal("1.23")
    assert (won["statecode"], won["statuscode"], won["salesstage"]) == (1, 3, 3)
    assert (lost["statecode"], lost["statuscode"]) == (2, 4)
    assert won["c2d_closepipeline"] == 727000000 and lost["c2d_closestatus"] == 727000008
    assert won["name"] == "Wayne Enterprises – Won" and won["estimatedclosedate"] == "2021-07-16"
    assert lost["parentcontactid"] == ids.record_id("contact", "cont_1") and won["parentcontactid"] is None


def test_unknown_lead_status_is_rejected_with_reason(cfg) -> None:
    frame = pl.DataFrame(
        {
            "id": ["lead_1"],
            "name": ["A"],
            "display_name": ["A"],
            "status_label": ["Zombie"],
            "date_created": ["2021-07-13T11:39:05+00:00"],
        }
    )
    result = apply_field_map(frame, cfg.field_map("lead"), cfg.context(), missing_columns="null")
    reasons = result.problems.filter(pl.col("column") == "statecode")["reason"].to_list()
    assert reasons and reasons[0].startswith(
        "unknown choice 'Zombie' for lead status (statecode) (known: 'Potential'"
    )


def test_missing_columns_fail_loudly_by_default(cfg) -> None:
    frame = pl.DataFrame({"id": ["lead_1"], "name": ["A"]})
    with pytest.raises(
        SourceError, match=r"fields/lead.yaml line \d+: source 'display_name'.*is not a column"
    ):
        apply_field_map(frame, cfg.field_map("lead"), cfg.context())


def test_status_change_unless_and_attachment_when(cfg) -> None:
    changes = pl.DataFrame(
        {
            "id": ["acti_1", "acti_2"],
            "_type": ["LeadStatusChange", "OpportunityStatusChange"],
            "lead_id": ["lead_1", "lead_1"],
            "opportunity_id": [None, "oppo_1"],
            "old_status_label": ["A", "B"],
            "new_status_label": ["C", "D"],
            "user_name": ["Ann", None],
            "activity_at": ["2021-08-25T21:15:35.163000+00:00"] * 2,
        }
    )
    rows = apply_field_map(changes, cfg.field_map("status_change"), cfg.context()).frame.to_dicts()
    assert (
        rows[0]["objectid_lead"] == ids.record_id("lead", "lead_1")
        and rows[0]["objectid_opportunity"] is None
    )
    assert rows[1]["objectid_lead"] is None and rows[1]["objectid_opportunity"] == ids.record_id(
        "opportunity", "oppo_1"
    )
    assert rows[1]["notetext"].startswith("OpportunityStatusChange: status changed from 'B' to 'D' by  at")
    atts = pl.DataFrame(
        {
            "activity_id": ["acti_e", "acti_n"],
            "source_type": ["Email", "Note"],
            "lead_id": ["lead_1"] * 2,
            "url": ["https://app.close.com/go/file/a.pdf", "https://app.close.com/go/file/b.png"],
            "filename": ["a.pdf", "b.png"],
            "size": [10, 20],
            "content_type": ["application/pdf", "image/png"],
            "activity_date_created": ["2021-08-25T21:15:35+00:00"] * 2,
        }
    )
    a = apply_field_map(atts, cfg.field_map("attachment"), cfg.context(), key="activity_id").frame.to_dicts()
    assert a[0]["objectid_email"] == ids.record_id("email", "acti_e") and a[0]["objectid_lead"] is None
    assert a[1]["objectid_email"] is None and a[1]["objectid_lead"] == ids.record_id("lead", "lead_1")
    assert a[0]["annotationid"] == ids.annotation_id(
        "attachment", "acti_e", "https://app.close.com/go/file/a.pdf"
    )
    # The Polars key equals ids.annotation_key for any URL form: the host and query never count.
    moved = atts.with_columns(pl.Series("url", ["http://127.0.0.1:9/go/file/a.pdf?sig=1", "/go/file/b.png"]))
    b = apply_field_map(moved, cfg.field_map("attachment"), cfg.context(), key="activity_id").frame.to_dicts()
    assert [r["annotationid"] for r in b] == [r["annotationid"] for r in a]


def test_account_dedupe_keeps_oldest_and_lists_merged_leads(cfg) -> None:
    frame = pl.DataFrame(
        {
            "id": ["lead_2", "lead_1", "lead_3"],
            "name": ["ACME  corp", "Acme Corp", None],
            "url": ["b.com", "a.com", None],
            "description": [None] * 3,
            "addresses": [None] * 3,
            "date_created": ["2022-01-01T00:00:00+00:00", "2021-01-01T00:00:00+00:00", None],
        }
    )
    frame = frame.with_columns(
        pl.col("addresses").cast(
            pl.List(
                pl.Struct(
                    {
                        "address_1": pl.String,
                        "address_2": pl.String,
                        "city": pl.String,
                        "state": pl.String,
                        "zipcode": pl.String,
                        "country": pl.String,
                    }
                )
            )
        )
    )
    mapped = apply_field_map(frame, cfg.field_map("account"), cfg.context()).frame
    accounts = dedupe_rows(mapped, "accountid", "overriddencreatedon", merged_column="c2d_closeleadids").sort(
        "name"
    )
    assert accounts["c2d_closeleadids"].to_list() == ["lead_1; lead_2", "lead_3"]
    assert accounts["websiteurl"].to_list() == ["https://a.com", None]
    assert accounts["c2d_isplaceholder"].to_list() == [False, True]


def test_resolve_source_paths() -> None:
    schema = pl.Schema(
        {
            "contacts": pl.List(
                pl.Struct({"name": pl.String, "emails": pl.List(pl.Struct({"email": pl.String}))})
            ),
            "custom.cf_x": pl.String,
        }
    )
    assert resolve_source("custom.cf_x", schema).dtype == pl.String
    assert resolve_source("contacts[0].emails[1].email", schema).dtype == pl.String
    with pytest.raises(SourceError, match="cannot read field 'nope'"):
        resolve_source("contacts[0].nope", schema)
    with pytest.raises(SourceError, match="cannot index"):
        resolve_source("contacts[0].name[0]", schema)


def test_large_activity_frame_maps_vectorised(cfg) -> None:
    n = 20_000
    calls = pl.DataFrame(
        {
            "id": [f"acti_{i}" for i in range(n)],
            "lead_id": [f"lead_{i % 500}" for i in range(n)],
            "direction": ["outbound", "inbound"] * (n // 2),
            "remote_phone": ["+14156236785"] * n,
            "phone": [None] * n,
            "duration": list(range(n)),
            "disposition": ["answered"] * n,
            "recording_url": [None] * n,
            "note": ["hi"] * n,
            "activity_at": ["2022-11-09T13:57:14.751000+00:00"] * n,
            "user_id": ["user_1"] * n,
            "date_created": ["2022-11-09T13:57:14.751000+00:00"] * n,
        },
        schema_overrides={"phone": pl.String, "recording_url": pl.String},
    )
    result = apply_field_map(calls, cfg.field_map("call"), cfg.context(owners={"user_1": "g"}))
    assert result.frame.height == n and result.problems.height == 0
    assert result.frame["statuscode"].to_list()[:2] == [2, 4]
    assert result.frame["actualdurationminutes"][61] == 2


def test_keep_row_nulls_the_value_and_reports_it(cfg) -> None:
    contact = {
        "name": "Wolfeschlegelsteinhausenbergerdorff-Wolfeschlegelsteinhausenbergerdorff Jr",
        "title": None,
        "emails": [{"email": "broken@", "type": "office"}],
        "phones": [],
    }
    frame = pl.DataFrame(
        {
            "id": ["lead_1"],
            "name": ["Acme"],
            "display_name": ["Acme"],
            "status_label": ["Potential"],
            "contacts": [[contact]],
            "date_created": ["2021-07-13T11:39:05+00:00"],
        }
    )
    result = apply_field_map(frame, cfg.field_map("lead"), cfg.context(), missing_columns="null")
    assert result.rejected().height == 0 and result.accepted().height == 1
    actions = {(p["column"], p["action"]) for p in result.problems.to_dicts()}
    assert actions == {("firstname", "nulled"), ("emailaddress1", "nulled")}
    row = result.frame.row(0, named=True)
    assert row["firstname"] is None and row["emailaddress1"] is None and row["lastname"] == "Jr"


def test_all_null_and_empty_frames_map_for_every_object(cfg) -> None:
    """A column no record had a value for arrives as dtype Null; an empty extraction has no rows."""
    for obj in cfg.objects:
        frame = pl.DataFrame({c: [None, None] for c in cfg.source_columns(obj.name)})
        frame = frame.with_columns(pl.Series(obj.key, ["x1", "x2"]))
        for j in obj.joins:
            frame = frame.with_columns(*(pl.lit(None).alias(f"{j.prefix}{c}") for c in j.columns))
        result = apply_field_map(frame, cfg.field_map(obj.name), cfg.context(owners={}), key=obj.key)
        assert result.frame.height == 2
        reasons = set(result.problems["reason"].to_list())
        assert reasons <= {
            "required value is missing",
            "missing Close id",
            "missing id part for the annotation key",
        }, (
            obj.name,
            reasons,
        )
        assert (
            apply_field_map(frame.head(0), cfg.field_map(obj.name), cfg.context(), key=obj.key).frame.height
            == 0
        )


def test_control_characters_are_removed_and_reported(cfg) -> None:
    hostile = contacts().with_columns(
        pl.Series("name", ["Wayne,\x00 Bruce\x07", "Ch\x1b[31mer\x08", "\x00\x01"]),
        pl.Series("title", ["C\tE\nO", None, None]),  # tab and newline are text, kept
    )
    source = join_sources(hostile, {"leads": leads()}, cfg.object("contact").joins)
    result = apply_field_map(source, cfg.field_map("contact"), cfg.context())
    rows = result.frame.to_dicts()
    assert (rows[0]["firstname"], rows[0]["lastname"]) == ("Bruce", "Wayne")
    assert rows[1]["lastname"] == "Ch[31mer" and rows[0]["jobtitle"] == "C\tE\nO"
    assert not any(
        isinstance(v, str) and any(ord(ch) < 32 and ch not in "\t\n\r" for ch in v)
        for r in rows
        for v in r.values()
    )
    cleaned = result.problems.filter(pl.col("action") == "cleaned")
    assert set(cleaned["close_id"]) == {"cont_1", "cont_2", "cont_3"}  # cont_3 had nothing else: empty
    assert cleaned["reason"][0].startswith("control characters removed")
    assert result.rejected().filter(pl.col("close_id") == "cont_1").height == 0  # reported, still loaded
