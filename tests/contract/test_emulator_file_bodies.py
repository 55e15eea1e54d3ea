"""Both emulators keep file bodies on disk, not in their memory, and serve them exactly as before.

Dataverse: an annotation's `documentbody` written through the Web API (POST, PATCH, CreateMultiple,
UpdateMultiple, UpsertMultiple, `$batch`) is a file in the emulator's body directory; the record store holds
only a reference; every read gives the text back byte-identical; deleting or replacing the body deletes its
file; a rolled-back changeset leaves the previous body in place; persistence keeps bodies across a restart.
Close: a file uploaded through the Files API is stored on disk and downloaded byte-identical.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_dataverse_edge_support import batch_body, changeset, http_part, parse_batch_response
from test_dataverse_emulator_support import API, Dv, core_config, new_id

from emulators.close import CloseEmulatorConfig
from emulators.close.server import CloseEmulatorServer
from emulators.dataverse.file_store import StoredBody
from emulators.orgdata import CloseOrg, generate

T_NOTE = "Microsoft.Dynamics.CRM.annotation"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def body_files(dv: Dv) -> set[Path]:
    return set(dv.env.store.bodies.directory.glob("*.b64"))


def stored(dv: Dv, note_id: str) -> StoredBody:
    value = dv.row("annotation", note_id)["documentbody"]
    assert isinstance(value, StoredBody), value
    return value


def read_body(dv: Dv, note_id: str) -> Any:
    resp = dv.get(f"annotations({note_id})?$select=documentbody,filesize")
    assert resp.status_code == 200, resp.text
    return resp.json()["documentbody"]


def strings_in_memory(dv: Dv, text: str) -> list[tuple[str, str]]:
    """(table, column) of every stored value equal to `text`: where a body would sit in memory."""
    return [
        (table, column)
        for table, rows in dv.env.store.rows.items()
        for row in rows.values()
        for column, value in row.items()
        if value == text
    ]


@pytest.fixture
def dv() -> Dv:
    return Dv()


def test_annotation_body_lives_on_disk_and_reads_back_identical(dv: Dv) -> None:
    data = os.urandom(200_000)
    text = b64(data)
    acct = dv.create("accounts", {"name": "Files"})
    note = dv.create(
        "annotations",
        {
            "subject": "Contract",
            "filename": "c.bin",
            "isdocument": True,
            "documentbody": text,
            "objectid_account@odata.bind": f"/accounts({acct})",
        },
    )
    ref = stored(dv, note)
    assert ref.path.parent == dv.env.store.bodies.directory and ref.path.read_text() == text
    assert strings_in_memory(dv, text) == []
    assert dv.row("annotation", note)["filesize"] == len(data)
    assert read_body(dv, note) == text
    assert dv.client.get(f"{API}annotations({note})/documentbody/$value").text == text
    assert dv.get(f"annotations({note})/documentbody").json()["value"] == text
    listed = dv.get(f"annotations?$select=documentbody&$filter=_objectid_value eq {acct}").json()["value"]
    assert [r["documentbody"] for r in listed] == [text]
    found = dv.get(f"annotations?$select=subject&$filter=documentbody eq '{text[:40]}'").json()["value"]
    assert found == []  # a filter compares the text, as before (no match on a prefix)
    assert "c.bin" in dv.client.get(f"/ui/annotation?id={note}").text

    # An update that leaves the body alone keeps its file; one that replaces it deletes the old file.
    assert dv.patch(f"annotations({note})", {"subject": "Renamed"}).status_code == 204
    assert stored(dv, note) is ref and dv.row("annotation", note)["filesize"] == len(data)
    assert dv.patch(f"annotations({note})", {"documentbody": b64(b"new")}).status_code == 204
    assert not ref.path.exists() and read_body(dv, note) == b64(b"new")
    assert dv.row("annotation", note)["filesize"] == 3
    assert dv.patch(f"annotations({note})", {"documentbody": None}).status_code == 204
    assert body_files(dv) == set() and read_body(dv, note) is None

    again = dv.create("annotations", {"subject": "gone", "documentbody": text})
    path = stored(dv, again).path
    assert dv.delete(f"annotations({again})").status_code == 204
    assert not path.exists() and body_files(dv) == set()


def test_bulk_messages_store_bodies_on_disk(dv: Dv) -> None:
    ids = [new_id(), new_id()]
    targets = [
        {"@odata.type": T_NOTE, "annotationid": i, "subject": f"n{n}", "documentbody": b64(bytes([n]) * 9)}
        for n, i in enumerate(ids)
    ]
    resp = dv.post("annotations/Microsoft.Dynamics.CRM.CreateMultiple", {"Targets": targets})
    assert resp.status_code == 200, resp.text
    first = [stored(dv, i).path for i in ids]
    assert body_files(dv) == set(first)
    assert [read_body(dv, i) for i in ids] == [t["documentbody"] for t in targets]

    update = [{"@odata.type": T_NOTE, "annotationid": ids[0], "documentbody": b64(b"updated")}]
    assert (
        dv.post("annotations/Microsoft.Dynamics.CRM.UpdateMultiple", {"Targets": update}).status_code == 204
    )
    upsert = [
        {"@odata.type": T_NOTE, "annotationid": ids[1], "documentbody": b64(b"upserted")},
        {"@odata.type": T_NOTE, "annotationid": (fresh := new_id()), "documentbody": b64(b"fresh")},
    ]
    assert (
        dv.post("annotations/Microsoft.Dynamics.CRM.UpsertMultiple", {"Targets": upsert}).status_code == 204
    )
    assert [read_body(dv, i) for i in (*ids, fresh)] == [b64(b"updated"), b64(b"upserted"), b64(b"fresh")]
    assert not any(p.exists() for p in first) and len(body_files(dv)) == 3

    # All or nothing: a failing target rolls back the message, its bodies with it.
    bad = [
        {"@odata.type": T_NOTE, "annotationid": ids[0], "documentbody": b64(b"never")},
        {"@odata.type": T_NOTE, "annotationid": new_id(), "subject": "x" * 600},
    ]
    before = body_files(dv)
    assert dv.post("annotations/Microsoft.Dynamics.CRM.UpsertMultiple", {"Targets": bad}).status_code == 400
    assert body_files(dv) == before and read_body(dv, ids[0]) == b64(b"updated")


def post_batch(dv: Dv, parts: list[str]) -> list[dict]:
    headers = {
        "Content-Type": "multipart/mixed; boundary=batch_f",
        "OData-Version": "4.0",
        "Prefer": "odata.continue-on-error",
    }
    resp = dv.client.post(API + "$batch", content=batch_body("batch_f", parts), headers=headers)
    assert resp.status_code == 200, resp.text
    return parse_batch_response(resp)


def test_batch_changesets_write_read_and_roll_back_bodies(dv: Dv) -> None:
    note = dv.create("annotations", {"subject": "kept", "documentbody": b64(b"original")})
    kept = stored(dv, note)
    failing = changeset(
        "changeset_f",
        [
            http_part("PATCH", f"{API}annotations({note})", {"documentbody": b64(b"replaced")}, "1"),
            http_part("POST", f"{API}annotations", {"subject": "new", "documentbody": b64(b"new")}, "2"),
            http_part("POST", f"{API}annotations", {"subject": "x" * 600}, "3"),
        ],
    )
    [failed] = post_batch(dv, [failing])
    assert failed["status"] == 400
    assert stored(dv, note) is kept and body_files(dv) == {kept.path}
    assert read_body(dv, note) == b64(b"original")

    good = changeset(
        "changeset_g",
        [http_part("PATCH", f"{API}annotations({note})", {"documentbody": b64(b"replaced")}, "1")],
    )
    read = http_part("GET", f"{API}annotations({note})?$select=documentbody")
    parts = post_batch(dv, [good, read])
    assert [p["status"] for p in parts] == [204, 200]
    assert parts[1]["body"]["documentbody"] == b64(b"replaced")
    assert not kept.path.exists() and body_files(dv) == {stored(dv, note).path}


def test_nested_transactions_release_bodies_only_when_nothing_can_bring_them_back(dv: Dv) -> None:
    store, ent = dv.env.store, dv.env.metadata.tables["annotation"]

    def put(text: bytes) -> StoredBody:
        store.put(ent, "n1", {"annotationid": "n1", "documentbody": b64(text)})
        return stored(dv, "n1")

    first = put(b"0")
    with store.transaction():
        second = put(b"1")
        assert first.path.exists()  # the outer transaction could still roll back to it
        with pytest.raises(RuntimeError), store.transaction():
            third = put(b"2")
            raise RuntimeError("undo the inner write")
        assert stored(dv, "n1") is second and not third.path.exists() and first.path.exists()
    assert not first.path.exists() and body_files(dv) == {second.path}
    with pytest.raises(RuntimeError), store.transaction():
        store.put(ent, "n1", None)
        raise RuntimeError("undo the delete")
    assert stored(dv, "n1") is second and second.path.read_text() == b64(b"1")


def test_persisted_bodies_survive_a_restart_and_deletes_wait_for_the_save(tmp_path: Path) -> None:
    state = tmp_path / "dv_state.json"
    dv = Dv(core_config(persist_path=str(state)))
    text = b64(os.urandom(5000))
    note = dv.create("annotations", {"subject": "persisted", "documentbody": text})
    gone = dv.create("annotations", {"subject": "deleted later", "documentbody": b64(b"bye")})
    assert dv.env.store.bodies.directory == tmp_path / "dv_state.json.bodies"
    assert dv.app.state.persistence.save() is True
    assert text not in state.read_text()  # the state file names the body; the body is its own file

    again = Dv(core_config(persist_path=str(state)))
    assert read_body(again, note) == text and stored(again, note).path == stored(dv, note).path
    gone_path = stored(again, gone).path
    assert again.delete(f"annotations({gone})").status_code == 204
    assert gone_path.exists()  # the saved state still names it: deleted after the next save
    assert again.app.state.persistence.save() is True
    assert not gone_path.exists() and read_body(again, note) == text
    saved = json.loads(state.read_text())["store"]["rows"]["annotation"]
    assert set(saved) == {note}

    orphan = again.env.store.bodies.directory / "written-after-the-last-save.b64"
    orphan.write_text(b64(b"lost"))
    third = Dv(core_config(persist_path=str(state)))
    assert not orphan.exists() and read_body(third, note) == text

    # A state saved before bodies went to disk holds the text itself: loaded, the body moves to disk.
    older = json.loads(state.read_text())
    older["store"]["rows"]["annotation"][note]["documentbody"] = text
    state.write_text(json.dumps(older))
    fourth = Dv(core_config(persist_path=str(state)))
    assert read_body(fourth, note) == text and stored(fourth, note).path.read_text() == text
    assert body_files(fourth) == {stored(fourth, note).path}


# ----- Close: uploaded attachments -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def close_org() -> CloseOrg:
    return generate("tiny")


@pytest.fixture(scope="module")
def close_server(close_org: CloseOrg) -> Iterator[CloseEmulatorServer]:
    config = CloseEmulatorConfig()
    config.rate_limit.enabled = False
    with CloseEmulatorServer(close_org, config) as server:
        yield server


def test_close_upload_is_stored_on_disk_and_downloads_identical(
    close_server: CloseEmulatorServer, close_org: CloseOrg
) -> None:
    content = os.urandom(300_000) + b"\r\n\r\n--not-the-boundary\r\n"  # binary, CRLFs and dashes inside
    with httpx.Client(base_url=close_server.base_url, auth=(close_org.api_key, ""), timeout=30) as api:
        slot = api.post("files/upload/", json={"filename": "call.wav", "content_type": "audio/wav"}).json()
        posted = httpx.post(
            slot["upload"]["url"], data=slot["upload"]["fields"], files={"file": ("call.wav", content)}
        )
        assert posted.status_code == 201 and hashlib.md5(content).hexdigest() in posted.text  # the ETag
        body = {
            "lead_id": close_org.leads[0]["id"],
            "note": "recording attached",
            "attachments": [{"url": slot["download"]["url"], "filename": "call.wav"}],
        }
        note = api.post("activity/note/", json=body)
        assert note.status_code == 200, note.text
        (attachment,) = note.json()["attachments"]
        assert attachment["size"] == len(content)

        stored_file = close_server.org.files["go/file/" + attachment["url"].split("/go/file/", 1)[1]]
        assert not any(isinstance(getattr(stored_file, n), bytes) for n in stored_file.__slots__)
        assert stored_file.path.read_bytes() == content
        uploads = close_server.state.uploads.bodies
        assert [p.suffix for p in stored_file.path.parent.iterdir()] == [".bin"]  # the spooled form is gone
        assert stored_file.path.parent == uploads.new_file("").parent

        download = api.get(attachment["url"], follow_redirects=True)
        assert download.status_code == 200 and download.content == content
        assert download.headers["content-length"] == str(len(content))
