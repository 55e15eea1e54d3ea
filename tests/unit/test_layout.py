"""The layout's one rule (DESIGN §2): dependencies point down. `defs/` declares assets and calls the
folders below it; `extract/ load/ target/ mapping/ audit/` never import `defs/` or the command-line
modules; `clients/` needs neither Dagster nor anything else of the package, so a script can use it alone."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "migration_assets"
TOP_LEVEL = {"cli", "runtime", "demo", "definitions", "startup_checks", "cutover"}
MIDDLE = ("extract", "load", "target", "mapping", "audit")


def imports_of(path: Path) -> set[str]:
    """Every migration_assets module (or package) a file imports, at any depth of the file."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def modules_under(folder: str) -> list[Path]:
    return sorted((PACKAGE / folder).rglob("*.py"))


def upward(imported: str, allowed_first_parts: set[str]) -> bool:
    parts = imported.split(".")
    return parts[0] == "migration_assets" and len(parts) > 1 and parts[1] not in allowed_first_parts


@pytest.mark.parametrize("folder", MIDDLE)
def test_the_middle_folders_never_import_the_asset_declarations_or_the_command_line(folder: str) -> None:
    allowed = {"clients", "resources", *MIDDLE}
    offenders = {
        f"{path.relative_to(PACKAGE)} imports {name}"
        for path in modules_under(folder)
        for name in imports_of(path)
        if upward(name, allowed)
    }
    assert not offenders, sorted(offenders)


def test_the_clients_stand_alone_without_dagster() -> None:
    offenders = {
        f"{path.relative_to(PACKAGE)} imports {name}"
        for path in modules_under("clients")
        for name in imports_of(path)
        if upward(name, {"clients"}) or name.split(".")[0] == "dagster"
    }
    assert not offenders, sorted(offenders)


def test_the_resources_import_only_the_clients() -> None:
    offenders = {
        f"{path.relative_to(PACKAGE)} imports {name}"
        for path in modules_under("resources")
        for name in imports_of(path)
        if upward(name, {"clients", "resources"})
    }
    assert not offenders, sorted(offenders)


def test_nothing_imports_the_command_line() -> None:
    offenders = {
        f"{path.relative_to(PACKAGE)} imports {name}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if path.stem != "cli"
        for name in imports_of(path)
        if name == "migration_assets.cli"
    }
    assert not offenders, sorted(offenders)
