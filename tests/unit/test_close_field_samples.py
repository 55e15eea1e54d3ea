"""The values of each Close custom field seen in the data (evidence for `propose-mapping`), read in one
scan per table: every field gets exactly its own values, JSON null included, absent ones left out."""

from __future__ import annotations

import json

import duckdb

from migration_assets.target.close_fields import samples


def test_each_field_gets_its_own_values_from_one_scan_per_table() -> None:
    con = duckdb.connect()
    con.execute("CREATE SCHEMA close")
    leads = [
        {"custom.cf_a": 1, "custom.cf_b": "x"},
        {"custom.cf_b": None},
        {},
        {"custom.cf_a": [1, "two"], "custom.cf_c": {"k": "it's"}},
    ]
    con.execute("CREATE TABLE close.leads (raw VARCHAR)")
    con.executemany("INSERT INTO close.leads VALUES (?)", [[json.dumps(r)] for r in leads])
    con.execute("CREATE TABLE close.contacts (raw VARCHAR)")
    con.execute("""INSERT INTO close.contacts VALUES ('{"custom.cf_d": 2.5}')""")
    con.execute("CREATE TABLE close.opportunities (raw VARCHAR)")
    fields = {
        "lead": [{"id": "cf_a"}, {"id": "cf_b"}, {"id": "cf_c"}, {"id": "cf_never"}],
        "contact": [{"id": "cf_d"}],
    }
    assert samples(con, fields) == {
        "cf_a": [1, [1, "two"]],
        "cf_b": ["x", None],
        "cf_c": [{"k": "it's"}],
        "cf_never": [],
        "cf_d": [2.5],
    }
