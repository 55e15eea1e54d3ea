from __future__ import annotations

import pytest

from migration_assets.resources import MissingEnvironmentError, dataverse_resource


def test_resolved_dataverse_resource_reads_values_now(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "DATAVERSE_URL": "https://contoso.crm.dynamics.com",
        "DATAVERSE_TENANT_ID": "tenant",
        "DATAVERSE_CLIENT_IDS": "a,b",
        "DATAVERSE_CLIENT_SECRETS": "s1,s2",
    }.items():
        monkeypatch.setenv(name, value)
    resource = dataverse_resource(resolved=True)
    assert resource.environment_url == "https://contoso.crm.dynamics.com"
    assert resource.client_ids == "a,b"


def test_deferred_dataverse_resource_keeps_secrets_out_of_the_definitions(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DATAVERSE_CLIENT_SECRETS", "very-secret")
    resource = dataverse_resource()
    assert "very-secret" not in repr(resource)


def test_missing_settings_are_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DATAVERSE_TENANT_ID", raising=False)
    monkeypatch.setenv("DATAVERSE_URL", "https://contoso.crm.dynamics.com")
    with pytest.raises(MissingEnvironmentError, match="DATAVERSE_TENANT_ID"):
        dataverse_resource(resolved=True)


def test_environment_variables_are_read_by_their_named_constant() -> None:
    """Every variable the product reads is named in resources/env.py: no literal name beside a read."""
    import re
    from pathlib import Path

    import migration_assets
    from migration_assets.resources import env

    literal_read = re.compile(r"""(environ\.get|environ\[|EnvVar|getenv)\(?\s*["']""")
    root = Path(migration_assets.__file__).parent
    offenders = [
        f"{path.relative_to(root)}:{n}"
        for path in root.rglob("*.py")
        for n, line in enumerate(path.read_text().splitlines(), start=1)
        if literal_read.search(line) and not line.lstrip().startswith("#")
    ]
    assert offenders == []
    names = [v for k, v in vars(env).items() if k.isupper() and isinstance(v, str)]
    assert all(k == v for k, v in vars(env).items() if k.isupper() and isinstance(v, str))
    assert {"CLOSE_API_KEY", "CLOSE2D365_HOME", "CLOSE2D365_MAPPINGS", "DATAVERSE_URL"} <= set(names)
