"""Contract: the loader against the Dataverse emulator when a staged account takes over an alternate-key
value ("Close id key") another account still holds: a renamed lead's new account (the old one is no longer
staged) and a name group whose old account moves its key to another lead while a new account takes the
first. Both land (a superseded holder's key released through the ledger; a holder whose own row moves its
key needs none); a real duplicate stays refused; a rollback deletes the new accounts and then gives the
keys back."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import duckdb
import pytest

from emulators.dataverse.config import DataverseEmulatorConfig
from emulators.dataverse.server import EmulatorServer
from migration_assets.clients.dataverse.client import DataverseClient
from migration_assets.load import ledger as lg
from migration_assets.load.engine import TableLoader
from migration_assets.load.key_release import DUPLICATE_KEY
from migration_assets.load.ledger import Ledger
from migration_assets.load.rollback import execute_rollback
from migration_assets.mapping.ids import id_for_key
from migration_assets.resources.dataverse import DataverseResource

KEY = "new_closeid"  # no solution named: the Default Solution publisher's prefix
# OLD: a renamed lead's old account; NEW: its new account; RUBY: an account whose key moves to another lead
# of its name group; RUBY2: a new account taking Ruby's old key.
OLD, NEW, RUBY, RUBY2 = (id_for_key(f"contract-key-takeover:{k}") for k in ("old", "new", "ruby", "ruby2"))
COLUMNS = ["accountid", "name", KEY, "_close_id"]


@pytest.fixture(scope="module")
def server() -> Iterator[EmulatorServer]:
    with EmulatorServer(DataverseEmulatorConfig()) as srv:
        yield srv


def _client(server: EmulatorServer) -> DataverseClient:
    u = server.config.app_users[0]
    resource = DataverseResource(
        environment_url=server.base_url,
        tenant_id=server.config.tenant_id,
        client_ids=u.client_id,
        client_secrets=u.client_secret,
        authority_host=server.base_url,
        ca_bundle=server.ca_bundle,
    )
    return resource.get_client()


def _keyed_account_table(client: DataverseClient) -> None:
    client.create_column(
        "account",
        {
            "@odata.type": "Microsoft.Dynamics.CRM.StringAttributeMetadata",
            "AttributeType": "String",
            "AttributeTypeName": {"Value": "StringType"},
            "SchemaName": "new_CloseId",
            "MaxLength": 100,
            "FormatName": {"Value": "Text"},
            "RequiredLevel": {"Value": "None", "CanBeChanged": True},
            "DisplayName": {"LocalizedLabels": [{"Label": "Close Id", "LanguageCode": 1033}]},
        },
    )
    client.publish_xml(["account"])
    client.create_key("account", "new_account_closeid_key", [KEY], "Close id key")
    assert client.wait_for_key("account", "new_account_closeid_key", timeout=30) == "Active"


def _row(rid: str, name: str, key: str) -> dict[str, Any]:
    return {"accountid": rid, "name": name, KEY: key, "_close_id": name.lower()}


def _keys(client: DataverseClient) -> dict[str, Any]:
    return {
        rid: (client.get("account", rid, [KEY]) or {"gone": True}).get(KEY) for rid in (OLD, NEW, RUBY, RUBY2)
    }


def test_new_accounts_take_over_released_keys_and_a_rollback_gives_them_back(server: EmulatorServer) -> None:
    con = duckdb.connect(":memory:")
    with _client(server) as client:
        _keyed_account_table(client)
        client.create("account", {"accountid": OLD, "name": "Sapphire", KEY: "lead_1"})
        client.create("account", {"accountid": RUBY, "name": "Ruby", KEY: "lead_2"})
        before = _keys(client)
        staged = [
            _row(NEW, "Sapphire (renamed)", "lead_1"),  # OLD is no longer staged: superseded
            _row(RUBY2, "Ruby & Co", "lead_2"),  # takes RUBY's key...
            _row(RUBY, "Ruby", "lead_3"),  # ...which RUBY's own row moves to another lead
        ]
        loader = TableLoader(client, Ledger(con, "delta-1", kind="delta"), "account", COLUMNS, 100)
        loader.staged_keys = {r["accountid"]: {KEY: r[KEY]} for r in staged}
        stats = loader.load(staged)
        assert (stats.created, stats.updated, stats.rejected) == (2, 1, 0), stats.messages
        assert _keys(client) == {OLD: None, NEW: "lead_1", RUBY: "lead_3", RUBY2: "lead_2"}
        writes = {(e.record_id, e.action): e.before_image for e in lg.entries(con, ["delta-1"])}
        assert writes[(OLD, "released")] == {KEY: "lead_1"}
        # RUBY's own update (same batch) moved its key before RUBY2 was written again: nothing to release.
        assert (RUBY, "released") not in writes and writes[(RUBY, "updated")] == {KEY: "lead_2"}

        report = execute_rollback(con, client, ["delta-1"], "rollback-1", log=lambda _m: None)
        assert report.ok, report.failed
        assert _keys(client) == before
        assert client.get("account", NEW, ["name"]) is None


def test_a_holder_staging_still_wants_keeps_its_key_and_the_row_stays_refused(server: EmulatorServer) -> None:
    con = duckdb.connect(":memory:")
    taker = id_for_key("contract-key-takeover:duplicate")
    with _client(server) as client:
        if client.get("account", RUBY, [KEY]) is None:  # run alone: the first test's table and records
            _keyed_account_table(client)
            client.create("account", {"accountid": RUBY, "name": "Ruby", KEY: "lead_2"})
        held = (client.get("account", RUBY, [KEY]) or {})[KEY]
        row = _row(taker, "Ruby twin", held)
        loader = TableLoader(client, Ledger(con, "delta-2", kind="delta"), "account", COLUMNS, 100)
        loader.staged_keys = {taker: {KEY: held}, RUBY: {KEY: held}}  # staging wants both: a duplicate
        stats = loader.load([row])
        assert (stats.created, stats.rejected) == (0, 1)
        codes = con.execute("SELECT code FROM ledger.rejected WHERE run_id = 'delta-2'").fetchall()
        assert codes == [(DUPLICATE_KEY,)]
        assert (client.get("account", RUBY, [KEY]) or {})[KEY] == held
        assert not [e for e in lg.entries(con, ["delta-2"]) if e.action == "released"]
