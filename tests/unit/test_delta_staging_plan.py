"""mapping/delta_staging.py: when a staged table may be re-staged incrementally, and which rows are affected."""

from __future__ import annotations

from pathlib import Path

import duckdb
import polars as pl
import pytest

from migration_assets.mapping.delta_staging import (
    DeltaPlan,
    StatesBefore,
    affected_source_ids,
    plan,
    record,
    row_states,
    rules_digest,
    state_changed,
)
from migration_assets.target.rules import ColumnRule, TableRules


@pytest.fixture
def con(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> duckdb.DuckDBPyConnection:
    maps = tmp_path / "mappings"
    maps.mkdir()
    (maps / "settings.yaml").write_text("a: 1\n")
    monkeypatch.setenv("CLOSE2D365_MAPPINGS", str(maps))
    c = duckdb.connect(":memory:")
    c.execute("CREATE SCHEMA close; CREATE SCHEMA staged")
    c.execute("CREATE TABLE close.calls (id VARCHAR, lead_id VARCHAR, contact_id VARCHAR, raw VARCHAR)")
    c.execute(
        "INSERT INTO close.calls VALUES ('acti_1', 'lead_a', 'cont_1', '{}'), ('acti_2', 'lead_b', 'cont_2', '{}'),"
        " ('acti_3', 'lead_c', NULL, '{\"custom.cf_x\": \"cont_9\"}')"
    )
    c.execute("CREATE TABLE staged.phonecall (_close_id VARCHAR)")
    c.execute(
        "CREATE TABLE close._extractions (table_name VARCHAR, mode VARCHAR, run_id VARCHAR, extracted_at TIMESTAMP)"
    )
    c.execute("CREATE TABLE close._changes (table_name VARCHAR, id VARCHAR, change VARCHAR, run_id VARCHAR)")
    return c


def extracted(
    con: duckdb.DuckDBPyConnection, run_id: str, mode: str, at: str, changes: dict[str, str]
) -> None:
    con.execute("INSERT INTO close._extractions VALUES ('calls', ?, ?, ?)", [mode, run_id, at])
    con.execute("DELETE FROM close._changes WHERE table_name = 'calls'")
    for i, change in changes.items():
        con.execute("INSERT INTO close._changes VALUES ('calls', ?, ?, ?)", [i, change, run_id])


def staged(con: duckdb.DuckDBPyConnection, parents: tuple[str, ...] = ()) -> None:
    """A staging of staged.phonecall that read close.calls (and staged `parents`) as they are now."""
    record(con, plan(con, "phonecall", ("calls",), parents), None)


def test_first_staging_and_full_extractions_are_full(con: duckdb.DuckDBPyConnection) -> None:
    extracted(con, "r0", "full", "2026-01-01", {})
    assert plan(con, "phonecall", ("calls",), ()).full_reason == "no earlier staging state"
    staged(con)
    extracted(con, "r1", "full", "2026-01-02", {})
    assert "last extracted in full mode" in str(plan(con, "phonecall", ("calls",), ()).full_reason)


def test_a_delta_extraction_gives_its_changed_ids(con: duckdb.DuckDBPyConnection) -> None:
    extracted(con, "r0", "full", "2026-01-01", {})
    staged(con)
    assert plan(con, "phonecall", ("calls",), ()).changed == {}  # nothing extracted since
    extracted(con, "r1", "delta", "2026-01-02", {"acti_1": "upserted", "acti_0": "deleted"})
    delta = plan(con, "phonecall", ("calls",), ())
    assert delta.incremental and delta.changed == {"calls": {"acti_1", "acti_0"}}
    assert affected_source_ids(con, delta, "calls", "id") == {"acti_1", "acti_0"}


def test_a_missed_extraction_or_a_changed_mapping_forces_a_full_staging(
    con: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    extracted(con, "r0", "full", "2026-01-01", {})
    staged(con)
    extracted(con, "r1", "delta", "2026-01-02", {"acti_1": "upserted"})
    extracted(con, "r2", "delta", "2026-01-03", {"acti_2": "upserted"})
    assert "more than once" in str(plan(con, "phonecall", ("calls",), ()).full_reason)
    staged(con)
    (tmp_path / "mappings" / "settings.yaml").write_text("a: 2\n")
    assert "mappings/settings.yaml" in str(plan(con, "phonecall", ("calls",), ()).full_reason)


def test_rows_of_dirty_leads_and_of_restaged_parents_are_affected(con: duckdb.DuckDBPyConnection) -> None:
    extracted(con, "r0", "full", "2026-01-01", {})
    con.execute("CREATE TABLE staged.contact (_close_id VARCHAR)")
    parent = plan(con, "contact", (), ())
    record(con, parent, None)
    staged(con, ("contact",))
    parent = plan(con, "contact", (), ())
    restaged = pl.DataFrame(
        {"close_id": ["cont_1", "cont_9"], "lead_id": ["lead_b", None], "ref": [None, None]}
    )
    record(con, parent, restaged)  # contact re-staged incrementally: cont_1 (of lead_b) and cont_9
    delta = plan(con, "phonecall", ("calls",), ("contact",))
    assert delta.incremental and delta.dirty_leads == {"lead_b"} and delta.contacts == {"cont_1", "cont_9"}
    # acti_1 names cont_1, acti_2 is lead_b's, acti_3 names cont_9 in a custom lookup field
    lookups = {"contact": ["custom.cf_x"]}
    assert affected_source_ids(con, delta, "calls", "id", lookups=lookups) == {"acti_1", "acti_2", "acti_3"}
    assert affected_source_ids(con, delta, "calls", "id") == {"acti_1", "acti_2"}


def test_rules_digest_ignores_what_does_not_change_a_check() -> None:
    planned = ColumnRule("c2d_x", "String", max_length=100, planned=True)
    created = ColumnRule("c2d_x", "String", type_name="StringType", max_length=100, format="Text")
    longer = ColumnRule("c2d_x", "String", type_name="StringType", max_length=200, format="Text")
    email = ColumnRule("c2d_x", "String", max_length=100, format="Email")

    def digest(rule: ColumnRule) -> str:
        return rules_digest(TableRules("lead", "leads", "leadid", {"c2d_x": rule}))

    assert digest(planned) == digest(created)
    assert digest(planned) != digest(longer) and digest(planned) != digest(email)


def test_a_derived_table_changes_with_its_origin_once_derived_again(con: duckdb.DuckDBPyConnection) -> None:
    """close.call_recordings is derived in full from close.calls by every extraction: its changed activities
    are the calls' changes, provided it was derived after the calls' latest extraction."""
    con.execute("CREATE TABLE close.call_recordings (activity_id VARCHAR, lead_id VARCHAR, url VARCHAR)")
    con.execute(
        "INSERT INTO close.call_recordings VALUES ('acti_1', 'lead_a', 'u1'), ('acti_2', 'lead_b', 'u2')"
    )

    def derived(run_id: str, at: str) -> None:
        con.execute("INSERT INTO close._extractions VALUES ('call_recordings', 'full', ?, ?)", [run_id, at])

    extracted(con, "r0", "full", "2026-01-01", {})
    derived("r0", "2026-01-01 00:10")
    reads = ("call_recordings",)
    assert plan(con, "phonecall", reads, ()).consumed == {"calls": "r0"}  # read through its origin
    record(con, plan(con, "phonecall", reads, ()), None)
    extracted(con, "r1", "delta", "2026-01-02", {"acti_1": "upserted", "acti_7": "deleted"})
    assert "not derived again" in str(plan(con, "phonecall", reads, ()).full_reason)
    derived("r1", "2026-01-02 00:10")
    delta = plan(con, "phonecall", reads, ())
    assert delta.incremental and delta.changed["call_recordings"] == {"acti_1", "acti_7"}
    # The deleted call's recording is a key too: its staged row is removed.
    assert affected_source_ids(con, delta, "call_recordings", "activity_id") == {"acti_1", "acti_7"}


def test_activities_whose_parties_match_a_restaged_contact(con: duckdb.DuckDBPyConnection) -> None:
    """An email naming a re-staged contact's address in any envelope field (any case, spaces around), a
    meeting with that contact or address among its attendees; not the others, nor one without parties."""
    con.execute("CREATE TABLE close.emails (id VARCHAR, lead_id VARCHAR, raw VARCHAR)")
    con.execute(
        """INSERT INTO close.emails VALUES
        ('acti_e1', 'lead_x', '{"envelope": {"from": [{"email": "sales@us.example"}],
                                            "to": [{"email": " Ann@Example.com "}], "cc": [], "bcc": []}}'),
        ('acti_e2', 'lead_x', '{"envelope": {"from": [{"email": "sales@us.example"}], "to": [],
                                            "bcc": [{"email": "bob@example.com"}]}}'),
        ('acti_e3', 'lead_x', '{"envelope": {"from": [{"email": "sales@us.example"}],
                                            "to": [{"email": "eve@example.com"}]}}'),
        ('acti_e4', 'lead_x', '{"subject": "no envelope"}')"""
    )
    con.execute("CREATE TABLE close.meetings (id VARCHAR, lead_id VARCHAR, raw VARCHAR)")
    con.execute(
        """INSERT INTO close.meetings VALUES
        ('acti_m1', 'lead_x', '{"attendees": [{"email": "eve@example.com", "contact_id": "cont_ann"}]}'),
        ('acti_m2', 'lead_x', '{"attendees": [{"email": "BOB@example.com", "contact_id": null}]}'),
        ('acti_m3', 'lead_x', '{"attendees": [{"email": "eve@example.com", "contact_id": "cont_eve"}]}'),
        ('acti_m4', 'lead_x', '{"attendees": []}')"""
    )
    delta = DeltaPlan("email", "f", {}, {})
    delta.restaged["contact"] = {"cont_ann", "cont_bob"}
    delta.addresses = {"ann@example.com", "bob@example.com"}
    assert affected_source_ids(con, delta, "emails", "id", parties=True) == {"acti_e1", "acti_e2"}
    assert affected_source_ids(con, delta, "meetings", "id", parties=True) == {"acti_m1", "acti_m2"}
    assert affected_source_ids(con, delta, "emails", "id", parties=False) == set()


def test_row_states_tell_the_rows_whose_staged_state_changed(con: duckdb.DuckDBPyConnection) -> None:
    """Re-staged to the same values: unchanged; a value, a rejection, a removal or an addition: changed."""
    con.execute("CREATE TABLE staged.contact (_close_id VARCHAR, firstname VARCHAR)")
    con.execute("CREATE TABLE staged.contact_rejected (_close_id VARCHAR, reason VARCHAR)")
    con.execute(
        "INSERT INTO staged.contact VALUES ('cont_same', 'Ann'), ('cont_edit', 'Bob'), ('cont_gone', 'Cy'), "
        "('cont_bad', 'Di')"
    )
    keys = {"cont_same", "cont_edit", "cont_gone", "cont_bad", "cont_new", "cont_never"}
    before = row_states(con, "contact", keys, ["firstname"])
    assert set(before) == {"cont_same", "cont_edit", "cont_gone", "cont_bad"}
    # What an incremental staging of `keys` does: their rows replaced.
    con.execute("DELETE FROM staged.contact")
    con.execute(
        "INSERT INTO staged.contact VALUES ('cont_same', 'Ann'), ('cont_edit', 'Robert'), ('cont_new', 'Ed')"
    )
    con.execute("INSERT INTO staged.contact_rejected VALUES ('cont_bad', 'emailaddress1 is not an email')")
    after = row_states(con, "contact", keys, ["firstname"])
    assert state_changed(before, after, keys) == {"cont_edit", "cont_gone", "cont_bad", "cont_new"}
    assert row_states(con, "contact", set(), ["firstname"]) == {}


def test_later_tables_need_a_rows_presence_its_id_and_a_contacts_addresses(
    con: duckdb.DuckDBPyConnection,
) -> None:
    """What the tables staged after read of a contact: a changed job title is no change to them; a changed
    address, a new id, a rejection or a removal is."""
    con.execute(
        "CREATE TABLE staged.contact (_close_id VARCHAR, contactid VARCHAR, jobtitle VARCHAR, emailaddress1 VARCHAR)"
    )
    con.execute("CREATE TABLE staged.contact_rejected (_close_id VARCHAR, reason VARCHAR)")
    rows = [("cont_title", "c1", "CEO", "a@x.com"), ("cont_mail", "c2", "CTO", "b@x.com")]
    rows += [("cont_bad", "c3", None, "c@x.com"), ("cont_gone", "c4", None, None)]
    con.executemany("INSERT INTO staged.contact VALUES (?, ?, ?, ?)", rows)
    keys = {"cont_title", "cont_mail", "cont_bad", "cont_gone"}
    before = StatesBefore.take(con, "contact", keys, "contactid")
    assert before.columns == ["contactid", "emailaddress1"]
    con.execute("DELETE FROM staged.contact")
    con.executemany(
        "INSERT INTO staged.contact VALUES (?, ?, ?, ?)",
        [("cont_title", "c1", "Chief Executive", "a@x.com"), ("cont_mail", "c2", "CTO", "new@x.com")],
    )
    con.execute("INSERT INTO staged.contact_rejected VALUES ('cont_bad', 'emailaddress1 is not an email')")
    assert before.changed(con, keys) == {"cont_mail", "cont_bad", "cont_gone"}
