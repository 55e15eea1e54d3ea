"""Django-style list filters: exact, `__in`, `__gt/__gte/__lt/__lte` (close_api.md §2.5).

Only the filters a resource declares are applied; anything else is ignored silently, exactly like the real
API (flask-mongorest `apply_filters` skips unknown keys) — which is why `date_updated__gt` on activities
returns everything.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from .timeutil import parse_filter_value, to_key

Bounds = tuple[int | None, int | None, int | None, int | None]
Predicate = Callable[[dict[str, Any]], bool]


def date_bounds(params: dict[str, str], field: str) -> Bounds:
    """(gt, gte, lt, lte) keys of the date filters on `field`; absent operators are None."""
    out: list[int | None] = []
    for op in ("gt", "gte", "lt", "lte"):
        name = f"{field}__{op}"
        raw = params.get(name)
        out.append(parse_filter_value(name, raw) if raw else None)
    return out[0], out[1], out[2], out[3]


def has_bounds(bounds: Bounds) -> bool:
    return any(b is not None for b in bounds)


def bounds_predicate(field: str, bounds: Bounds) -> Predicate:
    gt, gte, lt, lte = bounds

    def check(obj: dict[str, Any]) -> bool:
        key = to_key(obj.get(field))
        if key is None:
            return False
        return not (
            (gt is not None and key <= gt)
            or (gte is not None and key < gte)
            or (lt is not None and key >= lt)
            or (lte is not None and key > lte)
        )

    return check


def values(params: dict[str, str], field: str, allow_in: bool = True) -> frozenset[str] | None:
    """The accepted values of `field` (exact) or `field__in` (comma-separated); None when not filtered."""
    exact = params.get(field)
    if exact is not None and exact != "":
        return frozenset([exact])
    if allow_in:
        listed = params.get(field + "__in")
        if listed:
            return frozenset(v.strip() for v in listed.split(",") if v.strip())
    return None


def value_predicate(field: str, accepted: frozenset[str]) -> Predicate:
    def check(obj: dict[str, Any]) -> bool:
        value = obj.get(field)
        if isinstance(value, bool):
            value = "true" if value else "false"
        return value is not None and str(value) in accepted

    return check


def parse_bool(raw: str) -> bool | None:
    lowered = raw.strip().lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    return None


@dataclass
class Window:
    """Rows [lo, hi) of `items`, optionally read backwards (newest first); paging is O(page size)."""

    items: Sequence[dict[str, Any]]
    lo: int = 0
    hi: int | None = None
    reverse: bool = False

    def __len__(self) -> int:
        hi = len(self.items) if self.hi is None else self.hi
        return max(0, hi - self.lo)

    def page(self, skip: int, count: int) -> list[dict[str, Any]]:
        hi = len(self.items) if self.hi is None else self.hi
        if count <= 0 or skip >= hi - self.lo:
            return []
        if not self.reverse:
            start = self.lo + skip
            return list(self.items[start : min(hi, start + count)])
        end = hi - skip  # exclusive
        start = max(self.lo, end - count)
        return list(reversed(self.items[start:end]))

    def __iter__(self) -> Iterable[dict[str, Any]]:  # type: ignore[override]
        return iter(self.page(0, len(self)))


def apply(objects: Iterable[dict[str, Any]], predicates: list[Predicate]) -> list[dict[str, Any]]:
    if not predicates:
        return list(objects)
    return [o for o in objects if all(p(o) for p in predicates)]
