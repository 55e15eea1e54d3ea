"""Re-runs after Close changed (the cutover path): a value emptied in Close is cleared in Dataverse, an
email whose recipients changed gets its new party list, a third run writes nothing, and a rollback of the
re-run restores the values and the parties it replaced."""

from __future__ import annotations

import copy
from collections.abc import Iterator

import _migrate_support as s  # noqa: E402 - tests/e2e is on sys.path (rootdir conftest)
import pytest

from emulators.orgdata import generate
from migration_assets.lib import load_diff as ld
from migration_assets.lib.ids import record_id
from migration_assets.migration import materialize_migration
from migration_assets.rollback import rollback

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def migrated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[s.Migrated]:
    with s.demo_flow(tmp_path_factory.mktemp("rerun"), generate("tiny")) as m:
        yield m


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
        c for c in org.contacts
        if c.get("title") and (client.get("contact", record_id("contact", c["id"]), ["jobtitle"]) or {}).get("jobtitle")
    )  # fmt: skip
    email = next(
        a for a in org.activities
        if a["_type"] == "Email" and (a.get("envelope") or {}).get("to")
        and client.get("email", record_id("email", a["id"]), ["activityid"])
    )  # fmt: skip
    # A contact already in the target whose new title is over MaxLength (100): rejected this run, keeps its
    # old value, and the activities bound to it still load (their lookup resolves in the target).
    children = {a.get("contact_id") for a in org.activities if a["_type"] == "Call"}
    grown = next(
        c for c in org.contacts
        if c is not contact and c["id"] in children
        and (client.get("contact", record_id("contact", c["id"]), ["jobtitle"]) or {}).get("jobtitle")
    )  # fmt: skip
    grown_id = record_id("contact", grown["id"])
    grown_title = client.get("contact", grown_id, ["jobtitle"])["jobtitle"]  # type: ignore[index]
    grown["title"] = "x" * 150
    settings = migrated.warehouse.parent / "mappings" / "settings.yaml"
    settings.write_text(settings.read_text().replace("  tables: {}", "  tables: {contact: {max_rows: 100}}"))
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
        rejected = s.ledger_rows(migrated.warehouse, "SELECT _close_id, reason FROM staged.contact_rejected")
        assert any(cid == grown["id"] and "MaxLength 100" in why for cid, why in rejected), rejected
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
        report = rollback(second.run_id, False, dataverse=res["dataverse"], warehouse=res["warehouse"],
                          log=lambda _m: None)  # fmt: skip
        assert report.ok, report.render()
        assert client.get("contact", contact_id, ["jobtitle"])["jobtitle"] == old_title  # type: ignore[index]
        assert _parties(client, email_id) == old_parties
    finally:
        migrated.close.reload(migrated.org)
        client.close()
