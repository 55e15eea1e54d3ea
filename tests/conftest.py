"""Shared fixtures. Every test gets its own CLOSE2D365_HOME so no test touches a developer's warehouse."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(scope="session", autouse=True)
def reviewed_mappings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The repository's defaults plus the org files proposed for the tiny demo org and accepted by the
    scripted review (the repository's mappings/ holds no org files), as CLOSE2D365_MAPPINGS for the whole
    session (module-scoped fixtures load the mapping config too)."""
    from org_mappings import reviewed_root

    from emulators.orgdata import generate

    root = reviewed_root(generate("tiny", 1), tmp_path_factory.mktemp("reviewed") / "mappings")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CLOSE2D365_MAPPINGS", str(root))
        yield root


@pytest.fixture(autouse=True)
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "close2d365_home"
    monkeypatch.setenv("CLOSE2D365_HOME", str(home))
    # The Dagster instance lives under the home too (runtime.dagster_home sets DAGSTER_HOME for the process).
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    monkeypatch.delenv("CLOSE2D365_WAREHOUSE", raising=False)
    monkeypatch.delenv("CLOSE2D365_WAREHOUSE_KEY", raising=False)
    return home
