"""The subset of Close's legacy lead search language (`GET /lead/?query=...`) the emulator understands.

Supported (close_api.md §2.7): `*`; `sort:<field>` / `sort:-<field>` with field in updated, created,
date_updated, date_created (ascending unless prefixed with `-`; without `sort:` leads come newest first);
`date_updated|date_created|updated|created` with `>`, `>=`, `<`, `<=`, `=` and a date or date-time value
(quoted or not, spaces around the operator optional); `name:<text>`; `status:"Label"` (also `lead_status:`);
`id:<lead id>`; `custom.<cf_id or field name>:"value"`; `slice:i/M` (0 <= i < M, a deterministic
partition by a hash of the lead id); bare words and quoted phrases (case-insensitive substring of the lead
name); `OR` between terms (terms next to each other are ANDed); parentheses. Anything else is a 400
that names the supported subset, so a client never silently gets the wrong rows.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .errors import bad_request
from .timeutil import parse_filter_value, to_key

Pred = Callable[[dict[str, Any]], bool]

SUPPORTED = (
    "*, sort:[-]updated|created|date_updated|date_created, date_updated|date_created (>, >=, <, <=, =) <date>, "
    'name:<text>, status:"Label", id:<lead id>, custom.<field>:"value", slice:i/M, bare words, OR, parentheses'
)

_TOKEN = re.compile(
    r"""\s*(?:
      (?P<lp>\() | (?P<rp>\)) |
      (?P<date>(?:date_updated|date_created|updated|created))\s*(?P<op>>=|<=|>|<|=)\s*(?P<dval>"[^"]*"|[^\s()]+) |
      sort:(?P<sort>-?[A-Za-z_]+) |
      slice:(?P<si>\d+)/(?P<sm>\d+) |
      (?P<field>[A-Za-z_][\w.]*):(?P<fval>"[^"]*"|[^\s()]+) |
      (?P<phrase>"[^"]*") |
      (?P<word>[^\s()]+)
    )""",
    re.VERBOSE,
)

_SORT_FIELDS = {
    "updated": "date_updated",
    "date_updated": "date_updated",
    "created": "date_created",
    "date_created": "date_created",
}


@dataclass
class LeadQuery:
    predicate: Pred | None  # None = every lead
    sort_field: str | None  # None = default order (newest date_created first)
    descending: bool


def _unquote(text: str) -> str:
    return text[1:-1] if len(text) >= 2 and text[0] == text[-1] == '"' else text


def _name_contains(text: str) -> Pred:
    needle = text.casefold()

    def check(lead: dict[str, Any]) -> bool:
        return (
            needle in (lead.get("name") or "").casefold()
            or needle in (lead.get("display_name") or "").casefold()
        )

    return check


def _date_pred(field: str, op: str, raw: str) -> Pred:
    name = _SORT_FIELDS[field]
    value = parse_filter_value(name, _unquote(raw))

    def check(lead: dict[str, Any]) -> bool:
        key = to_key(lead.get(name))
        if key is None:
            return False
        if op == ">":
            return key > value
        if op == ">=":
            return key >= value
        if op == "<":
            return key < value
        if op == "<=":
            return key <= value
        return key == value

    return check


def _custom_pred(path: str, raw: str) -> Pred:
    wanted = _unquote(raw).casefold()
    name = path[len("custom.") :]

    def matches(value: Any) -> bool:
        if isinstance(value, list):
            return any(matches(v) for v in value)
        return value is not None and str(value).casefold() == wanted

    def check(lead: dict[str, Any]) -> bool:
        if name.startswith("cf_"):
            return matches(lead.get("custom." + name))
        return matches((lead.get("custom") or {}).get(name))

    return check


def _field_pred(field: str, raw: str) -> Pred:
    value = _unquote(raw)
    if field == "name":
        return _name_contains(value)
    if field in ("status", "lead_status"):
        label = value.casefold()
        return lambda lead: (lead.get("status_label") or "").casefold() == label
    if field == "id":
        return lambda lead: lead.get("id") == value
    if field.startswith("custom."):
        return _custom_pred(field, raw)
    raise bad_request(f"Unsupported lead query term {field}:{raw}. The emulator supports: {SUPPORTED}.")


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens: list[re.Match[str]] = []
        pos = 0
        stripped = text.rstrip()
        while pos < len(stripped):
            m = _TOKEN.match(stripped, pos)
            if m is None or m.end() == pos:
                raise bad_request(
                    f"Cannot parse lead query near {stripped[pos : pos + 30]!r}. Supported: {SUPPORTED}."
                )
            self.tokens.append(m)
            pos = m.end()
        self.i = 0
        self.sort: str | None = None
        self.descending = False

    def peek(self) -> re.Match[str] | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def parse_or(self) -> Pred | None:
        parts = [self.parse_and()]
        while (tok := self.peek()) is not None and tok.group("word") == "OR":
            self.i += 1
            parts.append(self.parse_and())
        if len(parts) == 1:
            return parts[0]
        # `None` (no restriction) inside an OR makes the whole OR unrestricted.
        if any(p is None for p in parts):
            return None
        preds = [p for p in parts if p is not None]
        return lambda lead: any(p(lead) for p in preds)

    def parse_and(self) -> Pred | None:
        preds: list[Pred] = []
        while (tok := self.peek()) is not None and tok.group("rp") is None and tok.group("word") != "OR":
            self.i += 1
            pred = self.term(tok)
            if pred is not None:
                preds.append(pred)
        if not preds:
            return None
        if len(preds) == 1:
            return preds[0]
        return lambda lead: all(p(lead) for p in preds)

    def term(self, tok: re.Match[str]) -> Pred | None:
        if tok.group("lp"):
            inner = self.parse_or()
            closing = self.peek()
            if closing is None or closing.group("rp") is None:
                raise bad_request("Unbalanced parentheses in lead query.")
            self.i += 1
            return inner
        if tok.group("date"):
            return _date_pred(tok.group("date"), tok.group("op"), tok.group("dval"))
        if tok.group("sort"):
            spec = tok.group("sort")
            field = spec.lstrip("-")
            if field not in _SORT_FIELDS:
                raise bad_request(
                    f"Unsupported sort:{spec}. The emulator supports sort:[-]updated|created|date_updated|date_created."
                )
            self.sort = _SORT_FIELDS[field]
            self.descending = spec.startswith("-")
            return None
        if tok.group("si"):
            index, parts = int(tok.group("si")), int(tok.group("sm"))
            if parts <= 0 or index >= parts:
                raise bad_request(f"Invalid slice:{index}/{parts} (expected 0 <= i < M).")
            return lambda lead: zlib.crc32(lead["id"].encode()) % parts == index
        if tok.group("field"):
            return _field_pred(tok.group("field"), tok.group("fval"))
        if tok.group("phrase"):
            return _name_contains(_unquote(tok.group("phrase")))
        word = tok.group("word")
        if word in ("*", "AND"):
            return None
        return _name_contains(word)


def parse_lead_query(text: str | None) -> LeadQuery:
    if not text or not text.strip():
        return LeadQuery(None, None, False)
    parser = _Parser(text)
    predicate = parser.parse_or()
    if parser.peek() is not None:
        raise bad_request("Unbalanced parentheses in lead query.")
    return LeadQuery(predicate, parser.sort, parser.descending)
