"""Shared fixtures. Every test gets its own CLOSE2D365_HOME so no test touches a developer's warehouse, and
the session fails if the suite left files in the working copy."""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

# Written while the suite runs by git, Python and the tools, never by the code under test.
TOOL_DIRS = frozenset({".git", "__pycache__", ".pytest_cache", ".ruff_cache", ".mypy_cache", ".venv", "venv"})
_BEFORE = pytest.StashKey[tuple[Path, frozenset[str]]]()
_CREATED = pytest.StashKey[list[str]]()


def _working_copy() -> Path | None:
    """The git working copy holding the tests (None outside a git checkout: then nothing is guarded)."""
    try:
        done = subprocess.run(
            ["git", "rev-parse", "--show-toplevel"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return Path(done.stdout.strip())


def _paths(root: Path) -> frozenset[str]:
    """Every file and folder of the working copy, relative, tool folders left out. Walked rather than
    asked of `git status --untracked-files=all`: git lists neither ignored files (`.close2d365/` is
    ignored) nor empty folders (what the suite left was an empty `.close2d365/close_export/`)."""
    found: set[str] = set()
    # Where a run keeps its test artifacts (screenshots) on purpose, wherever the user points it.
    artifacts = Path(os.environ.get("CLOSE2D365_ARTIFACTS") or root / ".git").resolve()
    for folder, dirs, files in os.walk(root):
        dirs[:] = [
            d
            for d in dirs
            if d not in TOOL_DIRS and not d.endswith(".egg-info") and Path(folder, d).resolve() != artifacts
        ]
        base = Path(folder).relative_to(root)
        # New Python source is an edit in progress (the code under test never writes any), not a test's.
        found.update(str(base / name) + "/" for name in dirs)
        found.update(str(base / name) for name in files if not name.endswith((".py", ".pyc")))
    return frozenset(found)


def pytest_sessionstart(session: pytest.Session) -> None:
    if hasattr(session.config, "workerinput"):  # an xdist worker: the controller guards the whole session
        return
    root = _working_copy()
    if root is not None:
        session.config.stash[_BEFORE] = (root, _paths(root))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _BEFORE not in session.config.stash:
        return
    root, before = session.config.stash[_BEFORE]
    created = sorted(_paths(root) - before)
    if created:
        session.config.stash[_CREATED] = created
        if session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    created = config.stash.get(_CREATED, [])
    if created:
        terminalreporter.section("the suite left files in the working copy", red=True)
        terminalreporter.write_line(
            "a test or a module fixture wrote outside its tmp_path (a default path such as ./.close2d365):"
        )
        for path in created:
            terminalreporter.write_line(f"  {path}")


@pytest.fixture(scope="session", autouse=True)
def session_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A CLOSE2D365_HOME for the whole session: module- and session-scoped fixtures run before each test's
    `isolated_home`, and without it wrote to the default home, ./.close2d365 in the working copy."""
    home = tmp_path_factory.mktemp("session") / "close2d365_home"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CLOSE2D365_HOME", str(home))
        for name in ("DAGSTER_HOME", "CLOSE2D365_WAREHOUSE", "CLOSE2D365_WAREHOUSE_KEY"):
            mp.delenv(name, raising=False)
        yield home


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


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port of 127.0.0.1 that something listens on for the test's duration."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield int(listener.getsockname()[1])


@pytest.fixture(autouse=True)
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "close2d365_home"
    monkeypatch.setenv("CLOSE2D365_HOME", str(home))
    # The Dagster instance lives under the home too (runtime.dagster_home sets DAGSTER_HOME for the process).
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    monkeypatch.delenv("CLOSE2D365_WAREHOUSE", raising=False)
    monkeypatch.delenv("CLOSE2D365_WAREHOUSE_KEY", raising=False)
    return home
