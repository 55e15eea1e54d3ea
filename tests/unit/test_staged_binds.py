"""The bind values a staged parent table resolves (`/<entity set>(<id>)`), read as one column of DuckDB
(issue 13): one per staged id, in the text form of the id whatever its column type, none for a row without
an id or a table not staged."""

from __future__ import annotations

import duckdb

from migration_assets.mapping.staged_lookups import staged_binds


def test_each_staged_id_gives_its_bind_value() -> None:
    con = duckdb.connect(":memory:")
    con.execute("CREATE SCHEMA staged")
    con.execute(
        "CREATE TABLE staged.target_entity_sets (table_name VARCHAR, entity_set VARCHAR, primary_id VARCHAR)"
    )
    con.execute(
        "INSERT INTO staged.target_entity_sets VALUES ('account', 'accounts', 'accountid'), ('lead', 'leads', 'leadid')"
    )
    con.execute("CREATE TABLE staged.account (accountid UUID, name VARCHAR)")
    con.execute(
        "INSERT INTO staged.account VALUES ('6F9619FF-8B86-D011-B42D-00C04FC964FF', 'A'), (NULL, 'no id')"
    )
    assert staged_binds(con, "account", "accounts") == {"/accounts(6f9619ff-8b86-d011-b42d-00c04fc964ff)"}
    assert staged_binds(con, "lead", "leads") == set()  # not staged
