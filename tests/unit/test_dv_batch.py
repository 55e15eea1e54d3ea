"""$batch multipart encoding/decoding against the shapes of Microsoft's documentation (reference §3)."""

from __future__ import annotations

import json

import pytest

from migration_assets.clients.dataverse.batch import (
    BatchDecodingError,
    BatchEncodingError,
    BatchRequest,
    ChangeSet,
    boundary_of,
    decode_batch,
    encode_batch,
    entity_id_from_url,
    match_responses,
)

ROOT = "https://org.crm.dynamics.com/api/data/v9.2/"


def test_encode_uses_crlf_changesets_and_content_ids() -> None:
    items = [
        BatchRequest("POST", "tasks", {"subject": "Task 1"}),
        ChangeSet(
            [
                BatchRequest("POST", "phonecalls", {"subject": "call"}),
                BatchRequest("PATCH", "$1", {"statecode": 1, "statuscode": 2}),
            ]
        ),
        BatchRequest("GET", "accounts?$select=name"),
    ]
    ctype, body = encode_batch(items, ROOT, boundary="batch_abc")
    assert ctype == "multipart/mixed; boundary=batch_abc"
    text = body.decode()
    assert "\n" not in text.replace("\r\n", "")  # no bare LF anywhere
    assert text.startswith(
        "--batch_abc\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n"
    )
    assert f"POST {ROOT}tasks HTTP/1.1\r\nContent-Type: application/json; type=entry\r\n\r\n" in text
    assert '{"subject":"Task 1"}' in text
    assert "Content-Type: multipart/mixed; boundary=changeset_" in text
    assert "Content-ID: 1\r\n" in text and "Content-ID: 2\r\n" in text
    assert "PATCH $1 HTTP/1.1" in text
    assert f"GET {ROOT}accounts?$select=name HTTP/1.1\r\n" in text
    assert text.endswith("--batch_abc--\r\n")


def test_encode_refuses_what_dataverse_refuses() -> None:
    with pytest.raises(BatchEncodingError, match="GET is not allowed inside a changeset"):
        encode_batch([ChangeSet([BatchRequest("GET", "accounts")])], ROOT)
    with pytest.raises(BatchEncodingError, match="at most 1000"):
        encode_batch([BatchRequest("DELETE", f"accounts({i})") for i in range(1001)], ROOT)
    with pytest.raises(BatchEncodingError):
        encode_batch([], ROOT)


DOC_RESPONSE = (
    "--batchresponse_01346794\r\n"
    "Content-Type: application/http\r\n"
    "Content-Transfer-Encoding: binary\r\n"
    "\r\n"
    "HTTP/1.1 204 No Content\r\n"
    "OData-Version: 4.0\r\n"
    "Location: [Org]/api/data/v9.2/tasks(d31ba648-c592-ed11-aad1-000d3a993550)\r\n"
    "OData-EntityId: [Org]/api/data/v9.2/tasks(d31ba648-c592-ed11-aad1-000d3a993550)\r\n"
    "\r\n"
    "\r\n"
    "--batchresponse_01346794\r\n"
    "Content-Type: multipart/mixed; boundary=changesetresponse_0c15\r\n"
    "\r\n"
    "--changesetresponse_0c15\r\n"
    "Content-Type: application/http\r\n"
    "Content-Transfer-Encoding: binary\r\n"
    "Content-ID: 1\r\n"
    "\r\n"
    "HTTP/1.1 204 No Content\r\n"
    "OData-EntityId: [Org]/api/data/v9.2/accounts(6cd81853-7b75-e911-a97a-000d3a34a1bd)\r\n"
    "\r\n"
    "--changesetresponse_0c15\r\n"
    "Content-Type: application/http\r\n"
    "Content-Transfer-Encoding: binary\r\n"
    "Content-ID: 2\r\n"
    "\r\n"
    "HTTP/1.1 204 No Content\r\n"
    "OData-EntityId: [Org]/api/data/v9.2/contacts(6ed81853-7b75-e911-a97a-000d3a34a1bd)\r\n"
    "\r\n"
    "--changesetresponse_0c15--\r\n"
    "--batchresponse_01346794\r\n"
    "Content-Type: application/http\r\n"
    "Content-Transfer-Encoding: binary\r\n"
    "\r\n"
    "HTTP/1.1 400 Bad Request\r\n"
    "REQ_ID: 5ecd1cb3-1730-4ffc-909c-d44c22270026\r\n"
    "Content-Type: application/json; odata.metadata=minimal\r\n"
    "\r\n"
    '{"error":{"code":"0x80044331","message":"A validation error occurred.  The length of the '
    "'subject' attribute of the 'task' entity exceeded the maximum allowed length of '200'.\"}}\r\n"
    "--batchresponse_01346794--\r\n"
)


@pytest.mark.parametrize("newline", ["\r\n", "\n"])
def test_decode_documented_response(newline: str) -> None:
    text = DOC_RESPONSE.replace("\r\n", newline)
    decoded = decode_batch('multipart/mixed; boundary="batchresponse_01346794"', text.encode())
    assert len(decoded) == 3
    first, changeset, failed = decoded
    assert not isinstance(first, list) and first.status == 204
    assert first.entity_id == "d31ba648-c592-ed11-aad1-000d3a993550"
    assert isinstance(changeset, list) and [p.content_id for p in changeset] == ["1", "2"]
    assert changeset[1].entity_id == "6ed81853-7b75-e911-a97a-000d3a34a1bd"
    assert not isinstance(failed, list) and failed.status == 400 and not failed.ok
    assert failed.error == (
        "0x80044331",
        "A validation error occurred.  The length of the 'subject' attribute of the 'task' entity "
        "exceeded the maximum allowed length of '200'.",
    )
    assert failed.headers["req_id"] == "5ecd1cb3-1730-4ffc-909c-d44c22270026"


def test_round_trip_json_body_and_match_responses() -> None:
    body = {"value": [{"subject": "a\r\nb"}]}
    resp = (
        "--b1\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\n"
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n" + json.dumps(body) + "\r\n"
        "--b1\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\n"
        "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\n\r\n"
        '{"error":{"code":"0x80040217","message":"missing"}}\r\n'
        "--b1--\r\n"
    )
    decoded = decode_batch("multipart/mixed; boundary=b1", resp)
    items = [
        BatchRequest("GET", "tasks"),
        ChangeSet([BatchRequest("POST", "a", {}), BatchRequest("POST", "b", {})]),
        BatchRequest("DELETE", "accounts(1)"),
    ]
    matched = match_responses(items, decoded)
    assert len(matched) == 4
    assert matched[0] is not None and matched[0].json() == body
    # A changeset answered by a single error part: every request of it failed (rolled back).
    assert (
        matched[1] is matched[2] and matched[1] is not None and matched[1].error == ("0x80040217", "missing")
    )
    assert matched[3] is None  # processing stopped before it


def test_decode_errors_are_clear() -> None:
    with pytest.raises(BatchDecodingError, match="multipart"):
        boundary_of("application/json")
    with pytest.raises(BatchDecodingError, match="status line"):
        decode_batch(
            "multipart/mixed; boundary=x", "--x\r\nContent-Type: application/http\r\n\r\nnot http\r\n--x--"
        )


def test_entity_id_from_url() -> None:
    assert entity_id_from_url("https://o/api/data/v9.2/accounts(7EB682F1-CA75-E511-80D4-00155D2A68D1)") == (
        "7eb682f1-ca75-e511-80d4-00155d2a68d1"
    )
    assert entity_id_from_url("accounts(name='x')") is None
