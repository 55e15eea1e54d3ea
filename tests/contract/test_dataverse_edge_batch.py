"""DV-EDGE: $batch wire format, changesets, Content-ID references, errors and limits (reference §3)."""

from __future__ import annotations

import uuid

from test_dataverse_edge_support import (
    API,
    USER_B,
    asgi_client,
    batch_body,
    changeset,
    edge_config,
    fake_app,
    http_part,
    parse_batch_response,
)

from emulators.dataverse.config import ServiceProtection

LONG = "x" * 30  # longer than the stand-in app's 20-character account name: a validation error


def setup(user=None):
    config = edge_config()
    app = fake_app(config)
    client = asgi_client(app, config, user) if user else asgi_client(app, config)
    return app, client


def post_batch(client, body: bytes, boundary: str, prefer: str | None = None, quoted: bool = True):
    value = f'"{boundary}"' if quoted else boundary
    headers = {"Content-Type": f"multipart/mixed; boundary={value}", "OData-Version": "4.0"}
    if prefer:
        headers["Prefer"] = prefer
    return client.post(API + "$batch", content=body, headers=headers)


def rows(app, entity_set: str) -> dict:
    return app.state.store.rows.get(entity_set, {})


def test_batch_without_changesets_runs_in_order_with_crlf_response() -> None:
    app, client = setup()
    account_id = str(uuid.uuid4())
    body = batch_body(
        "batch_80dd1615",
        [
            http_part("POST", API + "accounts", {"name": "First", "accountid": account_id}),
            http_part("GET", f"{API}accounts({account_id})"),  # sees the write of the part before it
            http_part("GET", "https://testserver/api/data/v9.2/WhoAmI"),  # absolute URL
            http_part("GET", "WhoAmI()"),  # relative to the service root
        ],
    )
    response = post_batch(client, body, "batch_80dd1615", quoted=False)
    assert response.status_code == 200
    assert response.headers["OData-Version"] == "4.0"
    text = response.content.decode()
    assert "\n" not in text.replace("\r\n", "")  # CRLF only
    parts = parse_batch_response(response)
    assert [p["status_line"] for p in parts] == [
        "HTTP/1.1 204 No Content",
        "HTTP/1.1 200 OK",
        "HTTP/1.1 200 OK",
        "HTTP/1.1 200 OK",
    ]
    assert parts[0]["headers"]["OData-EntityId"].endswith(f"/api/data/v9.2/accounts({account_id})")
    assert parts[1]["body"]["name"] == "First"
    assert parts[2]["body"]["UserId"] == parts[3]["body"]["UserId"]


def test_changeset_with_content_id_references() -> None:
    app, client = setup()
    cs = changeset(
        "changeset_dd81ccab",
        [
            http_part("POST", "https://testserver/api/data/v9.2/accounts", {"name": "Account name"}, "1"),
            http_part("POST", API + "contacts", {"name": "Contact first name"}, "2"),
            http_part("PATCH", "$1", {"primarycontactid@odata.bind": "$2"}, "3"),
        ],
    )
    response = post_batch(client, batch_body("batch_AAA123", [cs]), "batch_AAA123")
    assert response.status_code == 200
    parts = parse_batch_response(response)
    assert [(p["status"], p["content_id"]) for p in parts] == [(204, "1"), (204, "2"), (204, "3")]
    assert all(p["changeset"].startswith("multipart/mixed; boundary=changesetresponse_") for p in parts)
    [(account_id, account)] = rows(app, "accounts").items()
    [contact_id] = rows(app, "contacts")
    assert account["primarycontactid@odata.bind"] == f"/contacts({contact_id})"
    assert parts[2]["headers"]["OData-EntityId"].endswith(f"accounts({account_id})")


def test_failing_changeset_part_rolls_back_the_whole_changeset() -> None:
    app, client = setup()
    cs = changeset(
        "changeset_1",
        [
            http_part("POST", API + "accounts", {"name": "kept?"}, "1"),
            http_part("POST", API + "contacts", {"name": "c"}, "2"),
            http_part("PATCH", "$1", {"name": LONG}, "3"),
        ],
    )
    response = post_batch(client, batch_body("batch_1", [cs]), "batch_1", prefer="odata.continue-on-error")
    assert response.status_code == 200
    [part] = parse_batch_response(response)  # a failed changeset answers with its error only
    assert part["status"] == 400 and part["content_id"] == "3"
    assert part["body"]["error"]["code"] == "0x80044331"
    assert rows(app, "accounts") == {} and rows(app, "contacts") == {}


def test_without_continue_on_error_processing_stops_with_outer_400() -> None:
    app, client = setup()
    body = batch_body(
        "batch_s",
        [
            http_part("POST", API + "accounts", {"name": "one"}),
            http_part("POST", API + "accounts", {"name": LONG}),
            http_part("POST", API + "accounts", {"name": "three"}),
        ],
    )
    response = post_batch(client, body, "batch_s")
    assert response.status_code == 400
    parts = parse_batch_response(response)
    assert [p["status"] for p in parts] == [204, 400]
    assert parts[1]["body"]["error"]["message"].startswith("A validation error occurred.")
    assert parts[1]["headers"]["Content-Type"].startswith("application/json")
    assert sorted(r["name"] for r in rows(app, "accounts").values()) == [
        "one"
    ]  # no rollback outside changesets


def test_continue_on_error_runs_every_part() -> None:
    app, client = setup()
    body = batch_body(
        "batch_c",
        [
            http_part("POST", API + "accounts", {"name": "one"}),
            http_part("POST", API + "accounts", {"name": LONG}),
            changeset("changeset_c", [http_part("POST", API + "accounts", {"name": "three"}, "1")]),
            http_part("GET", API + "accounts(00000000-0000-0000-0000-000000000001)"),
        ],
    )
    response = post_batch(client, body, "batch_c", prefer="odata.continue-on-error")
    assert response.status_code == 200
    assert response.headers["Preference-Applied"] == "odata.continue-on-error"
    assert [p["status"] for p in parse_batch_response(response)] == [204, 400, 204, 404]
    assert sorted(r["name"] for r in rows(app, "accounts").values()) == ["one", "three"]


def test_reference_rules_inside_changesets() -> None:
    app, client = setup()
    forward = changeset(
        "changeset_f",
        [
            http_part("PATCH", "$2", {"name": "a"}, "1"),
            http_part("POST", API + "accounts", {"name": "b"}, "2"),
        ],
    )
    no_id = changeset("changeset_n", [http_part("POST", API + "accounts", {"name": "c"})])
    get_inside = changeset("changeset_g", [http_part("GET", API + "WhoAmI", content_id="1")])
    body = batch_body("batch_r", [forward, no_id, get_inside])
    parts = parse_batch_response(post_batch(client, body, "batch_r", prefer="odata.continue-on-error"))
    assert [p["status"] for p in parts] == [400, 400, 400]
    assert (
        parts[0]["body"]["error"]["message"]
        == "Content-ID Reference: '$2' does not exist in the batch context."
    )
    assert parts[1]["body"]["error"]["code"] == "0x80060888"
    assert "GET" in parts[2]["body"]["error"]["message"]
    assert rows(app, "accounts") == {}


def test_more_than_1000_requests_is_rejected_before_any_work() -> None:
    app, client = setup()
    part = http_part("POST", API + "accounts", {"name": "n"})
    response = post_batch(client, batch_body("batch_big", [part] * 1001), "batch_big")
    assert response.status_code == 400
    assert response.headers["content-type"].startswith("application/json")
    assert "'1000'" in response.json()["error"]["message"]
    assert rows(app, "accounts") == {}
    cs = changeset(
        "changeset_big", [http_part("POST", API + "accounts", {"name": "n"}, str(i)) for i in range(600)]
    )
    response = post_batch(client, batch_body("batch_big", [cs, cs]), "batch_big")  # 1200 in total
    assert response.status_code == 400 and rows(app, "accounts") == {}


def test_exactly_1000_requests_are_accepted() -> None:
    app, client = setup()
    response = post_batch(client, batch_body("batch_k", [http_part("GET", API + "WhoAmI")] * 1000), "batch_k")
    assert response.status_code == 200
    assert len(parse_batch_response(response)) == 1000


def test_lf_only_body_fails_like_the_real_service() -> None:
    app, client = setup()
    body = batch_body("batch_lf", [http_part("POST", API + "accounts", {"name": "lf"}, nl="\n")], nl="\n")
    response = post_batch(client, body, "batch_lf")
    assert response.status_code == 400
    [part] = parse_batch_response(response)
    assert part["body"]["error"]["code"] == "0x80048d19"
    assert (
        "Error identified in Payload provided by the user for Entity :'accounts'"
        in part["body"]["error"]["message"]
    )
    assert "Stream was not readable." in part["body"]["error"]["message"]
    assert rows(app, "accounts") == {}
    # the same batch with CRLF works
    crlf = batch_body("batch_lf", [http_part("POST", API + "accounts", {"name": "ok"})])
    assert post_batch(client, crlf, "batch_lf").status_code == 200


def test_missing_final_crlf_fails_the_last_part_with_a_body() -> None:
    app, client = setup()
    parts = [http_part("GET", API + "WhoAmI"), http_part("POST", API + "accounts", {"name": "last"})]
    body = batch_body("batch_e", parts)[:-2]  # "--batch_e--" without its CRLF
    response = post_batch(client, body, "batch_e", prefer="odata.continue-on-error")
    assert [p["status"] for p in parse_batch_response(response)] == [200, 400]
    assert rows(app, "accounts") == {}
    only_get = batch_body("batch_e", [http_part("GET", API + "WhoAmI")])[:-2]
    assert post_batch(client, only_get, "batch_e").status_code == 200


def test_malformed_batches_get_a_clear_400() -> None:
    app, client = setup()
    cases = [
        (b"--b\r\n", "multipart/mixed; boundary=b"),  # no closing delimiter
        (b"hello", "application/json"),
        (batch_body("b", [http_part("GET", API + "WhoAmI")]), "multipart/mixed"),  # no boundary
    ]
    for body, ctype in cases:
        response = client.post(API + "$batch", content=body, headers={"Content-Type": ctype})
        assert response.status_code == 400, ctype
        assert response.json()["error"]["message"]


def test_inner_requests_run_as_the_outer_caller_and_nested_batches_fail() -> None:
    app, client = setup(USER_B)
    body = batch_body(
        "batch_u", [http_part("GET", API + "WhoAmI"), http_part("POST", API + "$batch", {"x": 1})]
    )
    parts = parse_batch_response(post_batch(client, body, "batch_u", prefer="odata.continue-on-error"))
    assert parts[0]["body"]["UserId"] == USER_B.systemuserid
    assert parts[1]["status"] == 400


def test_batch_needs_a_token_and_counts_as_one_request() -> None:
    config = edge_config(protection=ServiceProtection(enabled=True, max_requests=3))
    app = fake_app(config)
    client = asgi_client(app, config)
    body = batch_body("batch_o", [http_part("GET", API + "WhoAmI")] * 5)
    response = post_batch(client, body, "batch_o")
    assert response.status_code == 200
    assert response.headers["x-ms-ratelimit-burst-remaining-xrm-requests"] == "2"
    del client.headers["Authorization"]
    assert post_batch(client, body, "batch_o").status_code == 401
