"""DV-EDGE: the local identity provider over HTTPS with the real msal package, bearer auth, local CA."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import msal
import pytest
from cryptography import x509
from test_dataverse_edge_support import API, USER_A, USER_B, ca_context, edge_config, fake_app, token_for

from emulators.dataverse.server import EmulatorServer
from emulators.dataverse.tls import generate_ca_and_cert


@pytest.fixture
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorServer]:
    config = edge_config()
    with EmulatorServer(config, app=fake_app(config), tls_dir=tmp_path_factory.getbasetemp() / "tls") as srv:
        yield srv


@pytest.fixture
def no_requests_ca_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # requests lets REQUESTS_CA_BUNDLE/CURL_CA_BUNDLE override a Session's `verify` (psf/requests#3829);
    # msal's default http client is a requests Session, so `verify=` only works without them.
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)


def msal_app(
    server: EmulatorServer, user=USER_A, secret: str | None = None, **kw
) -> msal.ConfidentialClientApplication:
    return msal.ConfidentialClientApplication(
        user.client_id,
        client_credential=user.client_secret if secret is None else secret,
        authority=server.authority,
        instance_discovery=False,
        **kw,
    )


def api_client(server: EmulatorServer, token: str | None = None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=server.base_url, verify=ca_context(server), headers=headers)


@pytest.mark.usefixtures("no_requests_ca_env")
def test_msal_client_credentials_over_https_with_verify_and_cache(server: EmulatorServer) -> None:
    app = msal_app(server, verify=server.ca_bundle)
    scopes = [server.base_url + "/.default"]
    first = app.acquire_token_for_client(scopes=scopes)
    assert first["token_type"] == "Bearer" and first["token_source"] == "identity_provider", first
    assert first["expires_in"] > 3000
    second = app.acquire_token_for_client(scopes=scopes)
    assert second["token_source"] == "cache"
    assert second["access_token"] == first["access_token"]
    with api_client(server, first["access_token"]) as client:
        response = client.get(API + "WhoAmI")
    assert response.status_code == 200
    assert response.json()["UserId"] == USER_A.systemuserid
    assert response.headers["x-ms-dop-hint"] == "8"


def test_msal_with_httpx_http_client_per_app_user(server: EmulatorServer) -> None:
    with httpx.Client(verify=ca_context(server)) as http:
        tokens = {
            user.client_id: msal_app(server, user, http_client=http).acquire_token_for_client(
                scopes=[server.base_url + "/.default"]
            )["access_token"]
            for user in (USER_A, USER_B)
        }
    for user in (USER_A, USER_B):
        with api_client(server, tokens[user.client_id]) as client:
            assert client.get(API + "WhoAmI").json()["UserId"] == user.systemuserid


def test_bad_secret_gets_aadsts7000215(server: EmulatorServer) -> None:
    with httpx.Client(verify=ca_context(server)) as http:
        result = msal_app(server, secret="wrong", http_client=http).acquire_token_for_client(
            scopes=[server.base_url + "/.default"]
        )
    assert "access_token" not in result
    assert result["error"] == "invalid_client"
    assert result["error_codes"] == [7000215]
    assert result["error_description"].startswith("AADSTS7000215: Invalid client secret provided.")


def _token_request(server: EmulatorServer, **fields: str) -> httpx.Response:
    form = {
        "client_id": USER_A.client_id,
        "grant_type": "client_credentials",
        "client_info": "1",
        "client_secret": USER_A.client_secret,
        "scope": server.base_url + "/.default",
    }
    form.update(fields)
    with httpx.Client(verify=ca_context(server)) as http:
        return http.post(f"{server.authority}/oauth2/v2.0/token", data=form)


def test_oauth_errors_carry_real_aadsts_codes(server: EmulatorServer) -> None:
    cases = [
        ({"client_secret": "nope"}, 401, "invalid_client", 7000215),
        ({"client_id": "11111111-2222-3333-4444-555555555555"}, 400, "unauthorized_client", 700016),
        ({"scope": server.base_url + "/user_impersonation"}, 400, "invalid_scope", 1002012),
        ({"scope": "https://org.crm.dynamics.com/.default"}, 400, "invalid_resource", 500011),
        ({"grant_type": "password"}, 400, "unsupported_grant_type", 70003),
    ]
    for fields, status, error, code in cases:
        response = _token_request(server, **fields)
        body = response.json()
        assert (response.status_code, body["error"], body["error_codes"]) == (status, error, [code]), fields
        assert body["error_description"].startswith(f"AADSTS{code}: ")
    assert _token_request(server, scope=server.base_url + "//.default").status_code == 200  # v1 resource form


def test_unknown_tenant_is_rejected(server: EmulatorServer) -> None:
    with httpx.Client(verify=ca_context(server)) as http:
        response = http.get(f"{server.base_url}/other-tenant/v2.0/.well-known/openid-configuration")
    assert response.status_code == 400
    assert response.json()["error_codes"] == [90002]


def test_discovery_document_matches_what_msal_needs(server: EmulatorServer) -> None:
    with httpx.Client(verify=ca_context(server)) as http:
        doc = http.get(f"{server.authority}/v2.0/.well-known/openid-configuration").json()
    assert doc["token_endpoint"] == f"{server.authority}/oauth2/v2.0/token"
    assert doc["authorization_endpoint"] == f"{server.authority}/oauth2/v2.0/authorize"
    assert doc["issuer"] == f"{server.authority}/v2.0"


def test_missing_invalid_and_foreign_tokens_get_401_with_challenge(server: EmulatorServer) -> None:
    challenge = (
        f"Bearer authorization_uri=https://{server.base_url[8:]}/{server.config.tenant_id}/oauth2/authorize, "
        f"resource_id={server.base_url}/"
    )
    foreign = server.app.state.edge_control.issue_token(USER_A.client_id, "https://org.crm.dynamics.com")
    for token in (None, "not-a-jwt", "a.b.c", foreign):
        with api_client(server, token) as client:
            response = client.get(API + "WhoAmI")
        assert response.status_code == 401, token
        assert response.headers["WWW-Authenticate"].startswith(challenge)
        assert response.json()["error"]["code"] == "0x80044302"


@pytest.mark.usefixtures("no_requests_ca_env")
def test_expired_token_gets_401_and_msal_fetches_a_new_one(server: EmulatorServer) -> None:
    control = server.app.state.edge_control
    server.config.token_lifetime_seconds = 60  # under msal's 5-minute margin: msal refreshes on every call
    app = msal_app(server, verify=server.ca_bundle)
    scopes = [server.base_url + "/.default"]
    old = app.acquire_token_for_client(scopes=scopes)
    assert old["expires_in"] == 60
    with api_client(server, old["access_token"]) as client:
        assert client.get(API + "WhoAmI").status_code == 200
        control.advance_clock(61)
        expired = client.get(API + "WhoAmI")
    assert expired.status_code == 401
    assert 'error="invalid_token"' in expired.headers["WWW-Authenticate"]
    assert "expired" in expired.json()["error"]["message"]
    new = app.acquire_token_for_client(scopes=scopes)
    assert new["token_source"] == "identity_provider"
    assert new["access_token"] != old["access_token"]
    with api_client(server, new["access_token"]) as client:
        assert client.get(API + "WhoAmI").status_code == 200


def test_token_endpoint_form_as_msal_sends_it(server: EmulatorServer) -> None:
    with httpx.Client(base_url=server.base_url, verify=ca_context(server)) as http:
        token = token_for(http, server.config, USER_B, server.base_url)
        response = http.get(API + "WhoAmI", headers={"Authorization": f"Bearer {token}"})
    assert response.json()["UserId"] == USER_B.systemuserid


def test_tls_files_are_reused_and_repaired(tmp_path: Path) -> None:
    first = generate_ca_and_cert(tmp_path)
    ca_bytes, cert_bytes = first.ca_cert.read_bytes(), first.cert.read_bytes()
    again = generate_ca_and_cert(tmp_path)
    assert (again.ca_cert.read_bytes(), again.cert.read_bytes()) == (ca_bytes, cert_bytes)
    # a certificate for other names is replaced, signed by the same (kept) CA
    wider = generate_ca_and_cert(tmp_path, ["localhost", "127.0.0.1", "emulator.test"])
    assert wider.ca_cert.read_bytes() == ca_bytes and wider.cert.read_bytes() != cert_bytes
    cert = x509.load_pem_x509_certificate(wider.cert.read_bytes())
    cert.verify_directly_issued_by(x509.load_pem_x509_certificate(ca_bytes))
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "emulator.test" in san.get_values_for_type(x509.DNSName)
    # corrupt files are regenerated rather than failing the start
    wider.cert.write_text("garbage")
    repaired = generate_ca_and_cert(tmp_path)
    x509.load_pem_x509_certificate(repaired.cert.read_bytes()).verify_directly_issued_by(
        x509.load_pem_x509_certificate(ca_bytes)
    )


def test_the_listening_socket_disables_nagle_for_every_connection() -> None:
    """Accepted connections inherit TCP_NODELAY: with Nagle on, a response body waited for the client's
    delayed ACK of its headers (40 ms per request on loopback, where the real service answers at once)."""
    import socket

    from emulators.dataverse.server import _listening_socket

    sock = _listening_socket("127.0.0.1", 0)
    try:
        sock.listen()
        client = socket.create_connection(sock.getsockname())
        accepted, _ = sock.accept()
        try:
            assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
        finally:
            accepted.close()
            client.close()
    finally:
        sock.close()
