"""A rejected record takes its dependants only through required relationships; an optional lookup to it is
left empty and reported as a notice."""

from __future__ import annotations

from pathlib import Path

import duckdb
import polars as pl

from migration_assets.mapping.ids import record_id
from migration_assets.mapping.staging import validate_and_write
from migration_assets.resources.warehouse import WarehouseResource
from migration_assets.target.checks import REJECTION_SCHEMA, empty_optional_lookups, with_cascade
from migration_assets.target.rules import TableRules, add_planned_column, required_relationship

LEAD_OK, LEAD_BAD = record_id("lead", "lead_ok"), record_id("lead", "lead_bad")
CONTACT_OK, CONTACT_BAD = record_id("contact", "cont_ok"), record_id("contact", "cont_bad")


def lead_rules() -> TableRules:
    rules = TableRules.from_json(
        {
            "table": "lead",
            "entity_set": "leads",
            "primary_id": "leadid",
            "columns": {
                "leadid": {"name": "leadid", "attribute_type": "Uniqueidentifier"},
                "parentaccountid": {
                    "name": "parentaccountid",
                    "attribute_type": "Lookup",
                    "targets": ["account"],
                },
                "ownerid": {"name": "ownerid", "attribute_type": "Owner", "targets": ["systemuser", "team"]},
            },
        }
    )
    add_planned_column(rules, "c2d_contact", "Lookup", lookup_target="contact")
    return rules


def phonecall_rules() -> TableRules:
    return TableRules.from_json(
        {
            "table": "phonecall",
            "entity_set": "phonecalls",
            "primary_id": "activityid",
            "columns": {"activityid": {"name": "activityid", "attribute_type": "Uniqueidentifier"}},
            "navigation": {"regardingobjectid_lead_phonecall": ["lead"]},
        }
    )


def test_required_relationships_are_the_ones_a_record_cannot_exist_without() -> None:
    lead, call = lead_rules(), phonecall_rules()
    assert required_relationship(call, "regardingobjectid_lead_phonecall")
    contact = TableRules(
        "contact", "contacts", "contactid", navigation={"parentcustomerid_account": ["account"]}
    )
    assert required_relationship(contact, "parentcustomerid_account")
    note = TableRules("annotation", "annotations", "annotationid", navigation={"objectid_lead": ["lead"]})
    assert required_relationship(note, "objectid_lead")
    assert required_relationship(lead, "ownerid")  # an unresolved owner is the row's own problem
    assert not required_relationship(lead, "c2d_contact") and not required_relationship(
        lead, "parentaccountid"
    )
    assert required_relationship(lead, "c2d_contact", required={"c2d_contact"})  # field map `required: true`


def test_an_optional_lookup_to_a_rejected_record_is_emptied_and_reported() -> None:
    frame = pl.DataFrame(
        {
            "_close_id": ["lead_1", "lead_2", "lead_3"],
            "c2d_contact@odata.bind": [f"/contacts({CONTACT_OK})", f"/contacts({CONTACT_BAD})", None],
        }
    )
    known = {"contact": {f"/contacts({CONTACT_OK})"}}
    rejected = {f"/contacts({CONTACT_BAD})": "contact cont_bad"}
    out, notices = empty_optional_lookups(frame, lead_rules(), known, {"contact": "contacts"}, rejected)
    assert out["c2d_contact@odata.bind"].to_list() == [f"/contacts({CONTACT_OK})", None, None]
    assert notices.select("_close_id", "column", "reason", "action").rows() == [
        ("lead_2", "c2d_contact@odata.bind", "contact cont_bad was rejected: lookup left empty", "nulled")
    ]
    # The same lookup marked required is left for validation to reject (a cascade).
    same, none = empty_optional_lookups(frame, lead_rules(), known, {}, rejected, required={"c2d_contact"})
    assert same.equals(frame) and none.height == 0


def test_a_cascade_names_the_rejected_parent() -> None:
    rej = pl.DataFrame(
        {
            "_close_id": ["call_1", "call_2"],
            "column": ["regardingobjectid_lead_phonecall@odata.bind", "x"],
            "value": [f"/leads({LEAD_BAD})", "y"],
            "reason": ["refers to a lead that is neither staged", "bad"],
            "check_name": ["lookup_resolves", "max_length"],
        },
        schema=REJECTION_SCHEMA,
    )
    out = with_cascade(rej, {f"/leads({LEAD_BAD})": "lead lead_bad"})
    assert out["cascade"].to_list() == ["because lead lead_bad was rejected", None]
    assert out["reason"][0].endswith("(because lead lead_bad was rejected)") and out["reason"][1] == "bad"


def _warehouse(tmp_path: Path) -> tuple[WarehouseResource, duckdb.DuckDBPyConnection]:
    wh = WarehouseResource(path=str(tmp_path / "w.duckdb"))
    con = duckdb.connect(wh.path)
    con.execute("CREATE SCHEMA staged")
    con.execute(
        "CREATE TABLE staged.target_entity_sets (table_name VARCHAR, entity_set VARCHAR, primary_id VARCHAR)"
    )
    con.execute(
        "INSERT INTO staged.target_entity_sets VALUES ('lead', 'leads', 'leadid'), "
        "('contact', 'contacts', 'contactid'), ('phonecall', 'phonecalls', 'activityid')"
    )
    con.execute(f"CREATE TABLE staged.contact AS SELECT '{CONTACT_OK}' AS contactid")
    con.execute(
        f"CREATE TABLE staged.contact_rejected AS SELECT 'cont_bad' AS _close_id, '{CONTACT_BAD}' AS contactid"
    )
    return wh, con


def test_staging_keeps_the_lead_and_cascades_only_through_regarding(tmp_path: Path) -> None:
    wh, con = _warehouse(tmp_path)
    leads = pl.DataFrame(
        {
            "_close_id": ["lead_ok", "lead_bad"],
            "_close_object": ["lead", "lead"],
            "leadid": [LEAD_OK, LEAD_BAD],
            "c2d_contact@odata.bind": [f"/contacts({CONTACT_BAD})", f"/contacts({CONTACT_OK})"],
        }
    )
    own = pl.DataFrame(
        {
            "_close_id": ["lead_bad"],
            "column": ["subject"],
            "value": ["x"],
            "reason": ["too long"],
            "check_name": ["mapping"],
        },
        schema=REJECTION_SCHEMA,
    )
    result = validate_and_write(wh, con, "lead", lead_rules(), leads, [own], [], required_lookups_of=())
    assert (result.staged, result.rejected, result.notices) == (1, 1, 1)
    staged = con.execute('SELECT leadid, "c2d_contact@odata.bind" FROM staged.lead').fetchall()
    assert staged == [(LEAD_OK, None)]
    (notice,) = con.execute("SELECT _close_id, reason FROM staged.lead_notices").fetchall()
    assert notice == ("lead_ok", "contact cont_bad was rejected: lookup left empty")

    calls = pl.DataFrame(
        {
            "_close_id": ["call_1", "call_2"],
            "_close_object": ["call", "call"],
            "activityid": [record_id("phonecall", "call_1"), record_id("phonecall", "call_2")],
            "regardingobjectid_lead_phonecall@odata.bind": [f"/leads({LEAD_OK})", f"/leads({LEAD_BAD})"],
        }
    )
    result = validate_and_write(
        wh, con, "phonecall", phonecall_rules(), calls, [], [], required_lookups_of=()
    )
    assert (result.staged, result.rejected) == (1, 1)
    (rej,) = con.execute("SELECT _close_id, cascade, reason FROM staged.phonecall_rejected").fetchall()
    assert rej[:2] == ("call_2", "because lead lead_bad was rejected") and rej[1] in rej[2]


def test_rejections_of_records_already_in_the_target_are_kept_and_not_counted() -> None:
    from migration_assets.mapping.staging import kept_in_target
    from migration_assets.target.checks import EXCLUSIONS, KEPT_IN_TARGET

    rejected = pl.DataFrame(
        {
            "_close_id": ["cont_ok", "cont_bad", "cont_big"],
            "contactid": [CONTACT_OK.upper(), CONTACT_BAD, None],
            "column": ["jobtitle", "emailaddress1", "_file_size"],
            "reason": ["longer than MaxLength 100", "not an email address", "above the upload limit"],
            "check_name": ["max_length", "email_format", "max_upload_size"],
        }
    )
    asked: list[tuple[str, list[str]]] = []

    def lookup(table: str, ids: list[str]) -> set[str]:
        asked.append((table, ids))
        return {CONTACT_OK.lower()}  # cont_ok was loaded by an earlier run; cont_bad never was

    out = kept_in_target(rejected, "contact", "contactid", lookup)
    (table, ids), *more = asked  # one question, for the counted rejections only
    assert not more and table == "contact" and sorted(ids) == sorted([CONTACT_OK.upper(), CONTACT_BAD])
    rows = {r["_close_id"]: r for r in out.iter_rows(named=True)}
    assert rows["cont_ok"]["check_name"] == KEPT_IN_TARGET and KEPT_IN_TARGET in EXCLUSIONS
    assert (
        rows["cont_ok"]["reason"]
        == "already in the target, keeps its previous values: longer than MaxLength 100"
    )
    assert rows["cont_bad"]["check_name"] == "email_format"  # a new record: an ordinary, counted rejection
    assert rows["cont_big"]["check_name"] == "max_upload_size"
    # Without a target to ask (an extraction-only run), nothing changes.
    assert kept_in_target(rejected, "contact", "contactid", None).equals(rejected)
