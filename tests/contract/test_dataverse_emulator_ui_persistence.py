"""DV-CORE contract: the read-only HTML view and persistence of the emulated org across restarts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_dataverse_emulator_support import Dv, core_config, string_column


def test_ui_lists_tables_and_escapes_records() -> None:
    dv = Dv()
    rid = dv.create("accounts", {"name": "<script>alert(1)</script> & Co"})
    index = dv.client.get("/")
    assert index.status_code == 200 and index.headers["content-type"].startswith("text/html")
    assert "<a href='/ui/account'>account</a></td><td>accounts</td><td>1</td>" in index.text
    page = dv.client.get("/ui/account")
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; Co" in page.text
    assert "<script>alert" not in page.text
    assert rid in page.text
    assert dv.client.get("/ui/nosuch").status_code == 404
    for i in range(60):
        dv.create("contacts", {"lastname": f"L{i}"})
    first = dv.client.get("/ui/contact")
    assert "60 records, page 1 of 2" in first.text and "page=2" in first.text
    assert "page 2 of 2" in dv.client.get("/ui/contact?page=2").text


def test_state_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "dv_state.json"
    dv = Dv(core_config(persist_path=str(path)))
    dv.use_solution()
    assert dv.add_column("account", string_column("c2d_CloseId")).status_code == 204
    assert (
        dv.post(
            "EntityDefinitions(LogicalName='account')/Keys",
            {"SchemaName": "c2d_key", "KeyAttributes": ["c2d_closeid"]},
        ).status_code
        == 204
    )
    acct = dv.create("accounts", {"name": "Kept", "c2d_closeid": "acct_1"})
    dv.create(
        "emails",
        {"subject": "e", "email_activity_parties": [{"addressused": "a@b.c", "participationtypemask": 1}]},
    )
    assert dv.app.state.persistence.save() is True
    assert dv.app.state.persistence.save() is False  # nothing changed since
    assert json.loads(path.read_text())["format"] == 1

    again = Dv(core_config(persist_path=str(path)))
    assert again.get(f"accounts({acct})?$select=name,c2d_closeid").json()["c2d_closeid"] == "acct_1"
    assert again.patch("accounts(c2d_closeid='acct_1')", {"name": "Still kept"}).status_code == 204
    assert again.row("account", acct)["name"] == "Still kept"
    assert again.post("accounts", {"c2d_closeid": "acct_1"}).status_code == 412
    email = next(iter(again.env.store.table("email")))
    assert len(again.get(f"emails({email})/email_activity_parties").json()["value"]) == 1


def test_lifespan_saves_on_shutdown(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    dv = Dv(core_config(persist_path=str(path)))
    with dv.client:  # runs the app's lifespan: start the saver thread, save on shutdown
        dv.create("leads", {"lastname": "Saved"})
    assert any(
        r.get("lastname") == "Saved" for r in json.loads(path.read_text())["store"]["rows"]["lead"].values()
    )


def test_corrupt_state_file_gives_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_text("{broken")
    with pytest.raises(RuntimeError, match="Cannot read the Dataverse emulator state file"):
        Dv(core_config(persist_path=str(path)))
