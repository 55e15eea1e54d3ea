"""Shared fixtures. Every test gets its own CLOSE2D365_HOME so no test touches a developer's warehouse."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "close2d365_home"
    monkeypatch.setenv("CLOSE2D365_HOME", str(home))
    monkeypatch.delenv("CLOSE2D365_WAREHOUSE", raising=False)
    monkeypatch.delenv("CLOSE2D365_WAREHOUSE_KEY", raising=False)
    return home
