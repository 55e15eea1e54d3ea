"""Open decisions in a mappings root (contract B): every `review:` key and every `confirmed: false`.

propose-mapping marks each generated entry that needs a human decision with `review: "<question and
options>"` (custom field proposals carry `confirmed: false`). The blocking check `mapping_confirmed` lists
what is left, by file, line and key, so a reviewer can go through them in one pass.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from migration_assets.mapping.yaml_loc import REVIEW_KEY, load_located


@dataclass(frozen=True)
class OpenDecision:
    file: str  # display name, e.g. mappings/lead_status.yaml
    line: int | None
    key: str  # path of the entry, e.g. statuses.Gesperrt or types[1]
    question: str  # the review text, or "confirmed: false"

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        return f"{where} {self.key}: {self.question}"


def _walk(data: Any, path: str) -> Iterator[tuple[str, Any, Any]]:
    """(entry path, container, key) for every key of every mapping, depth first, in file order."""
    if isinstance(data, dict):
        for key, value in data.items():
            yield path, data, key
            yield from _walk(value, f"{path}.{key}" if path else str(key))
    elif isinstance(data, list):
        for n, value in enumerate(data):
            yield from _walk(value, f"{path}[{n}]")


def open_decisions_in(data: Any, display: str) -> list[OpenDecision]:
    out = []
    for path, container, key in _walk(data, ""):
        line = getattr(container, "lines", {}).get(key)
        if key == REVIEW_KEY:
            out.append(OpenDecision(display, line, path or "(file)", str(container[key])))
        elif key == "confirmed" and container[key] is False:
            out.append(OpenDecision(display, line, path or "(file)", "confirmed: false"))
    return out


def open_decisions(root: Path) -> list[OpenDecision]:
    """Every open decision in the YAML files of a mappings root (sub-folders included), in file order."""
    out: list[OpenDecision] = []
    for path in sorted(root.rglob("*.yaml")):
        display = f"{root.name}/{path.relative_to(root).as_posix()}"
        out += open_decisions_in(load_located(path, display), display)
    return out


def strip_reviews(data: Any) -> Any:
    """The same data without any `review` key (the scripted review's last step)."""
    if isinstance(data, dict):
        return {k: strip_reviews(v) for k, v in data.items() if k != REVIEW_KEY}
    if isinstance(data, list):
        return [strip_reviews(v) for v in data]
    return data
