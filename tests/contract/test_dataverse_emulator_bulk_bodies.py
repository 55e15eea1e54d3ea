"""Bulk bodies parsed once at the edge and handed to the real app as documents (emulators/dataverse/edge.py,
http.py parse_body/read_json, bulk.py): the answers are those of the body's bytes parsed by read_json."""

from __future__ import annotations

import codecs
import json

import pytest
from test_dataverse_edge_support import API, asgi_client, edge_config

from emulators.dataverse.app import create_app
from emulators.dataverse.bulk import run_bulk
from emulators.dataverse.config import DataverseEmulatorConfig
from emulators.dataverse.http import parse_body
from emulators.dataverse.records import Writer
from emulators.dataverse.state import Environment

BODIES = [
    b'{"Targets": []}',
    b"  \r\n",
    b"",
    b'{"Targets": [',
    b"[1, 2",
    b'{"a": NaN, "b": 123456789012345678901234567890}',
    b'"\\ud800"',
    codecs.BOM_UTF8 + b'{"x": 1}',
    '{"x": "é"}'.encode("utf-16"),
    b'{"x": "\xff"}',
    b"\xef\xbb\xbf\xef\xbb\xbf{}",
    '{"Targets": [{"subject": "Café 😀", "n": -12, "f": 1.5e300}]}'.encode(),  # parsed by orjson
    '{"n": 123456789012345678901234567890, "s": "é"}'.encode(),  # orjson would answer a float
    '{"n": -9223372036854775809, "s": "é"}'.encode(),
    '{"s": "é", "x": NaN}'.encode(),
    '{"s": "é"'.encode(),
    '{"s": "é", "s": "ü"}'.encode(),
    b'{"s": "a", "s": "b", "t": {"u": 1, "u": [2]}}',  # ASCII bodies go through orjson too
    b'{"n": 1e400, "m": -1e400}',
    b'{"n": -0, "f": -0.0, "g": 1E+2, "h": 0.1, "i": 9223372036854775807, "j": 18446744073709551616}',
    b'{"x": "\\ud83d\\ude00 \\u00e9 \\n \\/"}',
    b'{"x": "\\udc00"}',
    b'{"Targets": [{"documentbody": "QUJD", "subject": "s"}, {}, [], null, true, false]}',
    b'\t{"x": 1}\r\n ',
    b'{"x": 1} {"y": 2}',
    b'{"x": [1, 2,]}',
    b"{'x': 1}",
]


def _json_answer(body: bytes) -> tuple[str, object]:
    if not body.strip():
        return ("document", {})  # what read_json answers for an empty body
    try:
        return ("document", json.loads(body))
    except ValueError as exc:
        return (type(exc).__name__, str(exc))


@pytest.mark.parametrize("body", BODIES)
def test_parse_body_answers_what_json_loads_answers(body: bytes) -> None:
    buffer = bytearray(body)
    parsed = parse_body(buffer)
    got = (
        ("document", parsed.document)
        if parsed.error is None
        else (type(parsed.error).__name__, str(parsed.error))
    )
    assert repr(got) == repr(_json_answer(body))  # repr: NaN != NaN
    if parsed.error is None and body.strip():
        assert buffer == bytearray()  # the bytes went once decoded


@pytest.fixture(scope="module")
def real_app() -> tuple[DataverseEmulatorConfig, object]:
    config = edge_config()
    return config, create_app(config)


def test_bulk_body_parsed_at_the_edge_creates_and_is_charged_per_target(real_app: tuple) -> None:
    config, app = real_app
    client = asgi_client(app, config)
    targets = [{"name": f"parsed {i}", "@odata.type": "Microsoft.Dynamics.CRM.account"} for i in range(3)]
    user = config.app_users[0].client_id
    before = (
        app.state.edge_control.limiter.stats[user].records
        if user in app.state.edge_control.limiter.stats
        else 0
    )
    response = client.post(API + "accounts/Microsoft.Dynamics.CRM.CreateMultiple", json={"Targets": targets})
    assert response.status_code == 200, response.text
    assert len(response.json()["Ids"]) == 3
    assert app.state.edge_control.limiter.stats[user].records - before == 3
    names = client.get(API + "accounts?$select=name&$filter=startswith(name,'parsed')").json()["value"]
    assert sorted(r["name"] for r in names) == ["parsed 0", "parsed 1", "parsed 2"]


@pytest.mark.parametrize("body", [b'{"Targets": [', b"  ", b'{"Targets": [{"name": "x"}], "y": NaN}'])
def test_bulk_body_that_is_not_usable_json_gets_read_json_answer(real_app: tuple, body: bytes) -> None:
    config, app = real_app
    client = asgi_client(app, config)
    response = client.post(
        API + "accounts/Microsoft.Dynamics.CRM.CreateMultiple",
        content=body,
        headers={"Content-Type": "application/json"},
    )
    kind, answer = _json_answer(body)
    if kind == "document" and answer == {}:
        assert response.status_code == 400
        assert response.json()["error"]["message"].startswith('The request body must be {"Targets"')
    elif kind == "document":  # NaN is accepted by the parser; the target then lacks its @odata.type
        assert response.status_code == 400
        assert "@odata.type" in response.json()["error"]["message"]
    else:
        assert response.status_code == 400
        assert response.json()["error"] == {
            "code": "0x80048d19",
            "message": "Error identified in Payload provided by the user for Entity :'accounts'  ---->  "
            f"InnerException : Microsoft.OData.ODataException: The request body is not valid JSON ({answer}).",
        }


def test_bulk_message_lets_go_of_each_target_once_written() -> None:
    env = Environment(DataverseEmulatorConfig())
    ent = env.metadata.tables["account"]
    body = {"Targets": [{"name": f"n{i}", "@odata.type": "Microsoft.Dynamics.CRM.account"} for i in range(3)]}
    ids = run_bulk(env, Writer(env), ent, "CreateMultiple", body, env.caller(None))
    assert ids is not None and len(ids) == 3
    # the message's list no longer holds the targets (a file body of megabytes each for annotations)
    assert all(not target for target in body["Targets"])
    assert sorted(env.store.get("account", i)["name"] for i in ids) == ["n0", "n1", "n2"]
