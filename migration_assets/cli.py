"""The `close2d365` command line."""

from __future__ import annotations


def main(argv: list[str] | None = None) -> int:
    raise SystemExit("close2d365: not wired yet")
