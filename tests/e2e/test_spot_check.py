"""The spot check verifies against Close, the source (issue 9): on a clean `tiny` migration it finds no
difference, and when a choice label is stored under another label's option value -- the defect staging
once had -- it fails, naming the Close label and the label Dataverse shows. The reconciliation of the
same run says which tables are ok, partial or halted. Last, a re-run after Close changed (the cutover path)
on the same org."""

from __future__ import annotations

import copy
import csv
import os
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import _migrate_support as s  # noqa: E402 - tests/e2e is on sys.path (rootdir conftest)
import dagster as dg
import duckdb
import pytest
from run_graph import materialize_migration  # tests/ is on sys.path (rootdir conftest)

from emulators.orgdata import CloseOrg, generate
from migration_assets.audit import spot_compare as sc
from migration_assets.audit.spot_check import run_spot_check
from migration_assets.defs.reports.spot_check import CHECK
from migration_assets.load import diff as ld
from migration_assets.load.rollback import rollback
from migration_assets.mapping.ids import record_id
from migration_assets.resources.close import CloseResource
from migration_assets.target.deploy import load_plan
from migration_assets.target.proposal import FieldProposal, parse_proposal, render_proposal

pytestmark = pytest.mark.e2e
EVERYTHING = 10**6  # sample size: every staged record


@pytest.fixture(scope="module")
def migrated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[s.Migrated]:
    with s.demo_flow(tmp_path_factory.mktemp("spot"), generate("tiny")) as done:
        yield done


def _spot(
    m: s.Migrated, run_id: str, api: bool = True
) -> tuple[dict[str, list[str]], list[dict[str, object]], str]:
    con = duckdb.connect(str(m.warehouse), read_only=True)
    dv = s.client_for(m.dv)
    close = CloseResource(api_key=m.org.api_key, base_url=m.close.base_url).get_client() if api else None
    try:
        return run_spot_check(con, dv, close, run_id, size=EVERYTHING)
    finally:
        con.close()
        dv.close()
        if close is not None:
            close.close()


def test_without_the_api_the_raw_close_json_is_the_source(migrated: s.Migrated) -> None:
    """A JSON export file has no API to ask: the raw JSON kept in close.* is read, and the report says so."""
    sampled, rows, source = _spot(migrated, "file", api=False)
    assert source.startswith("close.* raw JSON")
    assert [r for r in rows if r["status"] == sc.MISMATCH] == []
    assert sum(1 for r in rows if r["status"] == sc.MATCH) > 500 and sum(map(len, sampled.values())) > 100


def test_the_run_spot_checked_against_close_and_recorded_its_sample(migrated: s.Migrated) -> None:
    evals = [e for e in migrated.result.get_asset_check_evaluations() if e.check_name == CHECK]
    assert len(evals) == 1 and evals[0].passed, evals
    mat = next(
        e.event_specific_data.materialization  # type: ignore[union-attr]
        for e in migrated.result.get_asset_materialization_events()
        if e.asset_key == dg.AssetKey(["reports", "spot_check"])
    )
    sampled = mat.metadata["sampled_ids"].value
    assert sampled["contact"] and sampled["lead"], sampled
    assert mat.metadata["close_source"].value == "Close API"
    folder = migrated.home / "reports" / migrated.result.run_id
    with (folder / "spot_check_sampled.csv").open(encoding="utf-8") as fh:
        assert {r["table"] for r in csv.DictReader(fh)} >= {"contact", "lead", "opportunity"}


def test_every_record_matches_close_and_a_swapped_option_fails(migrated: s.Migrated) -> None:
    _, rows, _ = _spot(migrated, "all")
    bad = [r for r in rows if r["status"] == sc.MISMATCH]
    assert bad == [], bad[:10]
    assert sum(1 for r in rows if r["status"] == sc.MATCH) > 500
    # A loaded custom activity choice column with at least two options used by the data.
    con = duckdb.connect(str(migrated.warehouse), read_only=True)
    try:
        plan = load_plan(con)
    finally:
        con.close()
    client = s.client_for(migrated.dv)
    try:
        target = None
        for col in plan.columns:
            if (
                col.type != "Picklist"
                or len(col.options) < 2
                or col.table not in {t.logical_name for t in plan.tables}
            ):
                continue
            recs = list(client.query(col.table, select=[col.logical_name]))
            a, b = col.options[0], col.options[1]
            if any(r.get(col.logical_name) == a[0] for r in recs):
                target = (col, a, b, recs)
                break
        assert target is not None, "the tiny org has a custom activity choice in use"
        col, (va, la), (vb, lb), recs = target
        pk = client.metadata(col.table).primary_id
        swapped = 0
        for rec in recs:  # what a staging defect does: label A stored under B's value and B under A's
            value = rec.get(col.logical_name)
            if value in (va, vb):
                client.update(col.table, rec[pk], {col.logical_name: vb if value == va else va})
                swapped += value == va
    finally:
        client.close()
    _, rows, _ = _spot(migrated, "all")
    bad = [r for r in rows if r["status"] == sc.MISMATCH]
    assert bad and {r["column"] for r in bad} == {col.logical_name}, bad[:5]
    first = next(r for r in bad if r["close"] == la)
    assert str(first["dataverse"]).startswith(lb), first  # "<Dataverse label> (<value>)"
    assert sum(1 for r in bad if r["close"] == la) == swapped


def test_reconciliation_accounts_for_every_close_object(migrated: s.Migrated) -> None:
    folder = migrated.home / "reports" / migrated.result.run_id
    with (folder / "reconciliation.csv").open(encoding="utf-8") as fh:
        rows = {r["table"]: r for r in csv.DictReader(fh)}
    halted = rows.pop(s.EXPECTED_HALT)["status"]
    assert halted.startswith(f"halted (staged/custom_activity_{s.EXPECTED_HALT}: check "), halted
    for table, row in rows.items():
        rejected, status = int(row["rejected"]), row["status"]
        assert int(row["loaded"]) == int(row["staged"]) == int(row["read_back"]), row
        if rejected == 0:
            assert status == "ok", row
            continue
        assert status == f"partial ({rejected} rejected, see rejected_{table}.csv)", row
        with (folder / f"rejected_{table}.csv").open(encoding="utf-8") as fh:
            listed = list(csv.DictReader(fh))
        assert len({r["close_id"] for r in listed}) == rejected and all(r["reason"] for r in listed), table
        if row["close_objects"]:  # a 1:1 table: every Close object is loaded, rejected or excluded
            accounted = int(row["loaded"]) + rejected + int(row["excluded"])
            assert table == "account" or accounted == int(row["close_objects"]), row


def _close_objects(org: CloseOrg) -> dict[str, int]:
    """Close objects per close.* table (and per custom activity type name), counted from the emulator's org,
    not from our extraction."""
    kinds = Counter(a["_type"] for a in org.activities)
    types = {t["id"]: t["name"] for t in org.custom_activity_types}
    per_type = dict.fromkeys(types.values(), 0)  # a type without activities has 0 Close objects
    for a in org.activities:
        if a["_type"] == "CustomActivity":
            per_type[types[a["custom_activity_type_id"]]] += 1
    files = [a for a in org.activities if a["_type"] in ("Email", "Note")]
    return {
        "leads": len(org.leads),
        "contacts": len(org.contacts),
        "opportunities": len(org.opportunities),
        "tasks": len(org.tasks),
        "calls": kinds["Call"],
        "emails": kinds["Email"],
        "notes": kinds["Note"],
        "sms": kinds["SMS"],
        "meetings": kinds["Meeting"],
        "status_changes": kinds["LeadStatusChange"] + kinds["OpportunityStatusChange"],
        "attachments": sum(len(a.get("attachments") or []) for a in files),
        "call_recordings": sum(1 for a in org.activities if a["_type"] == "Call" and a.get("recording_url")),
        **per_type,
    }


def _pack_csv(folder: Path, name: str) -> list[dict[str, str]]:
    with (folder / name).open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def test_the_audit_pack_accounts_for_every_close_object(migrated: s.Migrated) -> None:
    """Issue 14: read from the run's own folder only, every Close object of every table is loaded, rejected
    (listed with its reason), merged into an Account, halted or skipped (listed), per table and source."""
    folder = migrated.home / "reports" / migrated.result.run_id
    expected = _close_objects(migrated.org)
    recon = {r["table"]: r for r in _pack_csv(folder, "reconciliation.csv")}
    by_source = _pack_csv(folder, "reconciliation_by_source.csv")
    assert {r["table"] for r in by_source} == set(recon)
    fates = ("loaded", "rejected", "merged", "halted", "skipped")
    for row in by_source:
        count = expected[row["source"] if row["close_table"] == "custom_activities" else row["close_table"]]
        assert int(row["close_objects"]) == count, row
        assert sum(int(row[f]) for f in fates) == count and row["unaccounted"] == "0", row
    totals = {t: Counter() for t in recon}
    for row in by_source:
        totals[row["table"]].update({f: int(row[f]) for f in (*fates, "close_objects")})
    # Sources summed into one table are broken down.
    assert {r["source"] for r in by_source if r["table"] == "task"} == {"task", "sms"}
    assert {r["source"] for r in by_source if r["table"] == "annotation"} == {
        "note",
        "status_change",
        "attachment",
        "call_recording",
    }
    for table, row in recon.items():
        got = totals[table]
        assert int(row["loaded"]) == got["loaded"] and int(row["merged"]) == got["merged"], (row, got)
        if got["rejected"]:  # each rejected object is listed with its reason
            listed = _pack_csv(folder, f"rejected_{table}.csv")
            assert len({r["close_id"] for r in listed}) == got["rejected"] and all(
                r["reason"] for r in listed
            )
        assert (got["halted"] > 0 or table == s.EXPECTED_HALT) == row["status"].startswith("halted"), row
    # The Accounts add up: every lead is one Account, a merged lead or a rejected one.
    merges = _pack_csv(folder, "merged_accounts.csv")
    account = totals["account"]
    assert account["merged"] == sum(int(m["leads"]) - 1 for m in merges) > 0
    assert account["loaded"] == int(recon["account"]["read_back"])  # one loaded lead per Account in Dataverse
    assert account["loaded"] + account["rejected"] + account["merged"] == expected["leads"]
    # Skipped files are this run's oversize list; the owner queue is this run's too.
    skipped = sum(int(r["skipped"]) for r in by_source if r["source"] == "attachment")
    assert len(_pack_csv(folder, "oversize_attachments.csv")) == skipped > 0
    assert _pack_csv(folder, "owner_queue.csv")
    assert not (folder / "spot_check_sampled.md").exists()  # the sample's ids are its CSV
    page = (folder / "index.html").read_text(encoding="utf-8")
    linked = set(re.findall(r'href="([^"]+)"', page))
    assert linked == {p.name for p in folder.iterdir() if p.name != "index.html"} and "<svg" in page


def test_a_mapping_that_swaps_two_option_values_fails_the_spot_check(migrated: s.Migrated) -> None:
    """The mapping error itself, not a simulated one: a reviewer maps a Close choice field onto the column
    the first run created (action: existing) with two option values swapped in `column.values`. Staging and
    the load do what the mapping says; only a check against Close can see that the labels are wrong."""
    mappings = Path(os.environ["CLOSE2D365_MAPPINGS"])
    proposals = parse_proposal(mappings / "custom_fields.yaml")
    con = duckdb.connect(str(migrated.warehouse), read_only=True)
    try:
        planned = {(c.table, c.logical_name): c.options for c in load_plan(con).columns}
    finally:
        con.close()

    def used(p: FieldProposal) -> set[str]:
        return {str(lead.get(f"custom.{p.close_field_id}")) for lead in migrated.org.leads}

    field = next(
        p
        for p in proposals
        if p.table == "lead" and p.column.attribute_type == "Picklist" and {*p.column.options[:2]} <= used(p)
    )
    values = {label: value for value, label in planned[("lead", field.target)]}
    la, lb = field.column.options[0], field.column.options[1]
    swapped = {**values, la: values[lb], lb: values[la]}
    edited = [
        replace(p, action="existing", values=tuple((o, swapped[o]) for o in p.column.options))
        if p.close_field_id == field.close_field_id
        else p
        for p in proposals
    ]
    (mappings / "custom_fields.yaml").write_text(render_proposal(edited), encoding="utf-8")
    try:
        rerun = materialize_migration(
            s.resources(migrated.org, migrated.close, migrated.dv, migrated.warehouse),
            dg.AssetSelection.assets(["staged", "target_metadata"], ["staged", "lead"], ["loaded", "lead"]),
        )
        assert rerun.success, [
            (e.check_name, e.description) for e in rerun.get_asset_check_evaluations() if not e.passed
        ]
        _, rows, _ = _spot(migrated, "mapping-swap")
    finally:
        (mappings / "custom_fields.yaml").write_text(render_proposal(proposals), encoding="utf-8")
    bad = [r for r in rows if r["status"] == sc.MISMATCH and r["column"] == field.target]
    assert {r["close"] for r in bad} == {la, lb}, bad[:5]
    assert any(r["close"] == la and str(r["dataverse"]).startswith(lb) for r in bad), bad[:5]


# Re-runs after Close changed (the cutover path), on the same migrated org, last: a value emptied in Close
# is cleared, an email whose recipients changed gets its new party list, a contact already loaded whose new
# title is too long keeps its old value, a third run writes nothing, and a rollback of the re-run restores
# the values and the parties it replaced.
def _parties(client: object, email_id: str) -> list[tuple[int, str, str]]:
    rows = client.query(  # type: ignore[attr-defined]
        "activityparty",
        select=["participationtypemask", "addressused", "_partyid_value", "_activityid_value"],
        filter=f"_activityid_value eq {email_id}",
        annotations=True,
    )
    return sorted(
        ld.party_key(ld.current_party(r, {"contact": "contacts", "systemuser": "systemusers"})) for r in rows
    )


def test_a_rerun_clears_emptied_values_replaces_changed_parties_and_rolls_back(migrated: s.Migrated) -> None:
    org = copy.deepcopy(migrated.org)
    client = s.client_for(migrated.dv)
    contact = next(
        c
        for c in org.contacts
        if c.get("title")
        and (client.get("contact", record_id("contact", c["id"]), ["jobtitle"]) or {}).get("jobtitle")
    )
    email = next(
        a
        for a in org.activities
        if a["_type"] == "Email"
        and (a.get("envelope") or {}).get("to")
        and client.get("email", record_id("email", a["id"]), ["activityid"])
    )
    # A contact already in the target whose new title is over MaxLength (100): not written this run, keeps its
    # old value, is listed as kept, and the activities bound to it still load (their lookup resolves in the
    # target).
    children = {a.get("contact_id") for a in org.activities if a["_type"] == "Call"}
    grown = next(
        c
        for c in org.contacts
        if c is not contact
        and c["id"] in children
        and (client.get("contact", record_id("contact", c["id"]), ["jobtitle"]) or {}).get("jobtitle")
    )
    grown_id = record_id("contact", grown["id"])
    grown_title = client.get("contact", grown_id, ["jobtitle"])["jobtitle"]  # type: ignore[index]
    grown["title"] = "x" * 150
    contact_id, email_id = record_id("contact", contact["id"]), record_id("email", email["id"])
    old_title = client.get("contact", contact_id, ["jobtitle"])["jobtitle"]  # type: ignore[index]
    old_parties = _parties(client, email_id)
    contact["title"] = None  # emptied in Close
    email["envelope"]["to"] = [{"email": "new.recipient@example.org", "name": "New Recipient"}]
    migrated.close.reload(org)
    try:
        second = materialize_migration(s.resources(org, migrated.close, migrated.dv, migrated.warehouse))
        failed = {e.check_name: e.description for e in second.get_asset_check_evaluations() if not e.passed}
        assert set(failed) <= {f"custom_activity_{s.EXPECTED_HALT}_target_valid"}, (
            failed,
            s.ledger_rows(migrated.warehouse, "SELECT * FROM staged.contact_rejected"),
        )
        s.assert_only_expected_halt(second)  # no table halted under "a bug" by the rejected contact
        assert client.get("contact", grown_id, ["jobtitle"])["jobtitle"] == grown_title  # type: ignore[index]
        # Listed as kept (its old values stay), not as a rejection: no threshold counts it.
        rejected = s.ledger_rows(
            migrated.warehouse, "SELECT _close_id, reason, check_name FROM staged.contact_rejected"
        )
        assert any(
            cid == grown["id"] and "MaxLength 100" in why and check == "kept_in_target"
            for cid, why, check in rejected
        ), rejected
        assert client.get("contact", contact_id, ["jobtitle"])["jobtitle"] is None  # type: ignore[index]
        parties = _parties(client, email_id)
        assert (2, "address", "new.recipient@example.org") in parties and parties != old_parties
        assert [p for p in parties if p[0] == 2] == [(2, "address", "new.recipient@example.org")]

        third = materialize_migration(s.resources(org, migrated.close, migrated.dv, migrated.warehouse))
        s.assert_only_expected_halt(third)
        assert s.ledger_rows(
            migrated.warehouse, f"SELECT count(*) FROM ledger.writes WHERE run_id = '{third.run_id}'"
        ) == [(0,)], "a run after the re-run has nothing left to write"

        res = s.resources(org, migrated.close, migrated.dv, migrated.warehouse)
        report = rollback(
            second.run_id, False, dataverse=res["dataverse"], warehouse=res["warehouse"], log=lambda _m: None
        )
        assert report.ok, report.render()
        assert client.get("contact", contact_id, ["jobtitle"])["jobtitle"] == old_title  # type: ignore[index]
        assert _parties(client, email_id) == old_parties
    finally:
        migrated.close.reload(migrated.org)
        client.close()
