"""The repository's mappings applied to the generated `tiny` Close org: every record maps or is rejected
for a reason the generator planted (truth.edge_cases), ids are unique, and nothing is dropped."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import polars as pl
import pytest

from emulators.orgdata import generate
from migration_assets.mapping import ids
from migration_assets.mapping.config import MappingConfig, load_mapping_config
from migration_assets.mapping.engine import MappingResult, apply_field_map, dedupe_rows, join_sources

SOURCE_TYPES = {
    "calls": ("Call",),
    "emails": ("Email",),
    "sms": ("SMS",),
    "meetings": ("Meeting",),
    "notes": ("Note",),
    "status_changes": ("LeadStatusChange", "OpportunityStatusChange"),
}


@pytest.fixture(scope="module")
def org() -> Any:
    return generate("tiny", 1)


@pytest.fixture(scope="module")
def cfg() -> MappingConfig:
    return load_mapping_config()


def _objects(org: Any) -> dict[str, list[dict[str, Any]]]:
    by_lead: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for c in sorted(org.contacts, key=lambda c: c["date_created"]):
        by_lead[c["lead_id"]].append({k: c.get(k) for k in ("name", "title", "emails", "phones")})
    out = {
        "leads": [{**lead, "contacts": by_lead.get(lead["id"], [])} for lead in org.leads],
        "contacts": org.contacts,
        "opportunities": org.opportunities,
        "tasks": org.tasks,
    }
    for table, types in SOURCE_TYPES.items():
        out[table] = [a for a in org.activities if a["_type"] in types]
    out["attachments"] = [
        {
            "activity_id": a["id"],
            "lead_id": a["lead_id"],
            "source_type": a["_type"],
            **f,
            "activity_date_created": a["date_created"],
        }
        for a in org.activities
        if a["_type"] in ("Email", "Note")
        for f in a.get("attachments") or []
    ]
    out["call_recordings"] = [
        {
            "activity_id": a["id"],
            "lead_id": a["lead_id"],
            "url": a["recording_url"],
            "activity_date_created": a["date_created"],
        }
        for a in org.activities
        if a["_type"] == "Call" and a.get("recording_url")
    ]
    return out


def _frame(rows: list[dict[str, Any]], columns: tuple[str, ...]) -> pl.DataFrame:
    return pl.DataFrame({c: pl.Series(c, [r.get(c) for r in rows], strict=False) for c in columns})


@pytest.fixture(scope="module")
def mapped(org: Any, cfg: MappingConfig) -> dict[str, MappingResult]:
    data = _objects(org)
    owners = {u["id"]: ids.id_for_key(f"user:{u['id']}") for u in [*org.users, *org.inactive_users]}
    out = {}
    for obj in cfg.objects:
        frame = _frame(data[obj.source], cfg.source_columns(obj.name))
        others = {j.source: _frame(data[j.source], (j.right_on, *j.columns)) for j in obj.joins}
        fmap = cfg.field_map(obj.name)
        policy = {f.target: cfg.settings.truncation_policy(fmap.table, f.target) for f in fmap.fields}
        out[obj.name] = apply_field_map(
            join_sources(frame, others, obj.joins),
            fmap,
            cfg.context(owners=owners),
            key=obj.key,
            truncation=policy,
            missing_columns="null",
        )
    return out


def test_every_record_maps_or_is_rejected_for_a_planted_reason(org: Any, cfg: MappingConfig, mapped) -> None:
    data, edges = _objects(org), org.truth["edge_cases"]
    overlong = defaultdict(set)
    for item in edges["overlong_values"]:
        overlong[item["object"]].add(item["id"])
    expected = {
        "account": overlong["lead"],
        "lead": overlong["lead"],
        "opportunity": overlong["opportunity"],
        "contact": overlong["contact"] | set(edges["invalid_email_contact_ids"]),
        "call": overlong["call"],
    }
    for obj in cfg.objects:
        result = mapped[obj.name]
        assert result.frame.height == len(data[obj.source]), obj.name  # nothing dropped
        pk = result.frame[obj.primary_key]
        if obj.name != "account":
            assert pk.null_count() == 0 and pk.n_unique() == pk.len(), obj.name
        assert set(result.rejected_ids.to_list()) <= expected.get(obj.name, set()), (
            obj.name,
            result.problems,
        )
    assert set(mapped["contact"].rejected_ids.to_list()) >= set(edges["invalid_email_contact_ids"])


def test_accounts_one_per_normalised_name_plus_placeholder(org: Any, mapped) -> None:
    accounts = dedupe_rows(
        mapped["account"].frame, "accountid", "overriddencreatedon", merged_column="c2d_closeleadids"
    )
    assert accounts.height == org.truth["distinct_normalised_lead_names"] + 1
    assert accounts.filter(pl.col("c2d_isplaceholder")).height == 1
    for group in org.truth["edge_cases"]["duplicate_name_groups"]:
        ids_ = mapped["account"].frame.filter(pl.col("close_id").is_in(group))["accountid"].unique()
        assert ids_.len() == 1
    unnamed = set(org.truth["edge_cases"]["unnamed_lead_ids"])
    contacts = mapped["contact"].frame.join(
        pl.DataFrame(
            {"close_id": [c["id"] for c in org.contacts], "lead_id": [c["lead_id"] for c in org.contacts]}
        ),
        on="close_id",
    )
    placeholder = (
        contacts.filter(pl.col("lead_id").is_in(list(unnamed)))["parentcustomerid_account"].unique().to_list()
    )
    assert placeholder == [ids.placeholder_account_id()]


def test_opportunity_states_and_lead_statuses(org: Any, mapped) -> None:
    opp = mapped["opportunity"].frame
    edges = org.truth["edge_cases"]
    assert set(opp.filter(pl.col("close_id").is_in(edges["won_opportunity_ids"]))["statecode"].to_list()) == {
        1
    }
    assert set(
        opp.filter(pl.col("close_id").is_in(edges["lost_opportunity_ids"]))["statecode"].to_list()
    ) == {2}
    lead = mapped["lead"].frame
    assert lead["statecode"].null_count() == 0 and set(lead["c2d_closeoriginalstatus"]) <= set(
        s["label"] for s in org.lead_statuses
    )
    non_latin = lead.filter(pl.col("close_id").is_in(edges["non_latin_lead_ids"]))
    assert non_latin["subject"].null_count() == 0


def test_multi_email_contacts_keep_every_address(org: Any, mapped) -> None:
    contacts = {c["id"]: c for c in org.contacts}
    frame = mapped["contact"].frame.filter(
        pl.col("close_id").is_in(org.truth["edge_cases"]["multi_email_phone_contact_ids"])
    )
    for row in frame.to_dicts():
        source = [e["email"] for e in contacts[row["close_id"]]["emails"]]
        kept = [
            row["emailaddress1"],
            row["emailaddress2"],
            row["emailaddress3"],
            *(row["c2d_closeotheremails"] or "").split("; "),
        ]
        assert [k for k in kept if k] == [
            s.strip()[: s.index("@")] + s.strip()[s.index("@") :].lower() for s in source
        ]
        assert (
            row["c2d_closephones"]
            and row["c2d_closephones"].count(";") == len(contacts[row["close_id"]]["phones"]) - 1
        )
