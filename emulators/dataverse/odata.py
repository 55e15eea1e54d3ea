"""OData v4 syntax used by the Dataverse Web API: key predicates, $filter expressions, $orderby, $select.

Only parsing lives here; evaluation against rows is in `query.py`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from emulators.dataverse.errors import DataverseError

GUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
SEGMENT_RE = re.compile(r"^([A-Za-z_$][\w.$]*)(?:\((.*)\))?$", re.S)
DATETIME_RE = re.compile(r"^\d{4}-\d{2}-\d{2}(T[\d:.]+(Z|[+-]\d{2}:\d{2})?)?$")


def syntax_error(message: str) -> DataverseError:
    return DataverseError(400, "0x80060888", message)


def split_segment(segment: str) -> tuple[str, str | None]:
    """'accounts(1234)' -> ('accounts', '1234'); 'accounts' -> ('accounts', None)."""
    m = SEGMENT_RE.match(segment)
    if not m:
        raise DataverseError(404, "0x8006088a", f"Resource not found for the segment '{segment}'.")
    return m.group(1), m.group(2)


def split_path(path: str) -> list[str]:
    """Split on '/' outside parentheses and quotes (key values may contain '/' only when quoted)."""
    parts, depth, quote, cur = [], 0, False, []
    for ch in path:
        if ch == "'" and depth:
            quote = not quote
        elif not quote and ch == "(":
            depth += 1
        elif not quote and ch == ")":
            depth -= 1
        if ch == "/" and not depth and not quote:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return [p for p in parts if p != ""]


def parse_literal(text: str) -> Any:
    text = text.strip()
    if len(text) >= 2 and text[0] == "'" and text[-1] == "'":
        return text[1:-1].replace("''", "'")
    if text == "null":
        return None
    if text in ("true", "false"):
        return text == "true"
    if GUID_RE.match(text):
        return text.lower()
    if DATETIME_RE.match(text):
        return text
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text.rstrip("mMdD"))
    except ValueError:
        raise syntax_error(f"Syntax error: the literal '{text}' is not a valid value.") from None


def parse_key(predicate: str) -> str | dict[str, Any]:
    """A key predicate: a bare GUID (primary key) or name=value pairs (alternate key)."""
    predicate = predicate.strip()
    if GUID_RE.match(predicate):
        return predicate.lower()
    pairs: dict[str, Any] = {}
    for part in _split_top(predicate, ","):
        if "=" not in part:
            raise DataverseError(
                400, "0x80060888", f"Bad Request - Error in query syntax: invalid key '{predicate}'."
            )
        name, _, value = part.partition("=")
        pairs[name.strip()] = parse_literal(value)
    return pairs


def _split_top(text: str, sep: str) -> list[str]:
    out, depth, quote, cur = [], 0, False, []
    for ch in text:
        if ch == "'":
            quote = not quote
        elif not quote and ch == "(":
            depth += 1
        elif not quote and ch == ")":
            depth -= 1
        if ch == sep and not depth and not quote:
            out.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    out.append("".join(cur))
    return [p for p in (s.strip() for s in out) if p]


def parse_select(value: str | None) -> list[str] | None:
    if not value:
        return None
    return [s.strip() for s in value.split(",") if s.strip()]


def parse_orderby(value: str | None) -> list[tuple[str, bool]]:
    out = []
    for item in _split_top(value or "", ","):
        parts = item.split()
        desc = len(parts) > 1 and parts[1].lower() == "desc"
        out.append((parts[0], desc))
    return out


@dataclass
class ExpandItem:
    name: str
    select: list[str] | None
    options: dict[str, str]


def parse_expand(value: str | None) -> list[ExpandItem]:
    """'a($select=x,y;$filter=...),b' -> items; nested options are kept raw for the caller."""
    items = []
    for part in _split_top(value or "", ","):
        name, inner = split_segment(part) if "(" in part else (part, None)
        options: dict[str, str] = {}
        for opt in _split_top(inner or "", ";"):
            k, _, v = opt.partition("=")
            options[k.strip()] = v.strip()
        items.append(ExpandItem(name=name, select=parse_select(options.get("$select")), options=options))
    return items


# ---- $filter -------------------------------------------------------------------------------------------
_TOKEN_RE = re.compile(
    r"\s*(?:(?P<str>'(?:[^']|'')*')|(?P<guid>[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b)|(?P<lp>\()|(?P<rp>\))|(?P<comma>,)|(?P<lb>\[)|(?P<rb>\])|(?P<eqs>=)"
    r"|(?P<word>[A-Za-z_@$][\w.@$/]*(?:\(\))?)|(?P<num>[-+]?[\d][\w.:+-]*))"
)
COMPARISONS = {"eq", "ne", "gt", "ge", "lt", "le"}
FUNCTIONS = {"contains", "startswith", "endswith"}

# A parsed filter is a tuple tree:
#   ("and"|"or", a, b) | ("not", a) | ("cmp", op, prop, value) | ("fn", name, prop, value) | ("in", prop, [values])


class FilterParser:
    def __init__(self, text: str, aliases: dict[str, str]):
        self.text = text
        self.aliases = aliases
        self.tokens = self._tokenize(text)
        self.pos = 0

    def _tokenize(self, text: str) -> list[tuple[str, str]]:
        tokens, pos = [], 0
        while pos < len(text):
            if text[pos:].strip() == "":
                break
            m = _TOKEN_RE.match(text, pos)
            if not m or m.end() == pos:
                raise syntax_error(f"Syntax error at position {pos} in '{text}'.")
            kind = m.lastgroup or ""
            tokens.append((kind, m.group(kind)))
            pos = m.end()
        return tokens

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self, kind: str | None = None) -> tuple[str, str]:
        tok = self.peek()
        if tok is None or (kind and tok[0] != kind):
            raise syntax_error(f"Syntax error in '$filter={self.text}': expected {kind or 'a token'}.")
        self.pos += 1
        return tok

    def parse(self) -> tuple:
        node = self.parse_or()
        if self.peek() is not None:
            raise syntax_error(f"Syntax error in '$filter={self.text}' near '{self.peek()[1]}'.")  # type: ignore[index]
        return node

    def parse_or(self) -> tuple:
        node = self.parse_and()
        while self.peek() == ("word", "or"):
            self.take()
            node = ("or", node, self.parse_and())
        return node

    def parse_and(self) -> tuple:
        node = self.parse_unary()
        while self.peek() == ("word", "and"):
            self.take()
            node = ("and", node, self.parse_unary())
        return node

    def parse_unary(self) -> tuple:
        if self.peek() == ("word", "not"):
            self.take()
            return ("not", self.parse_unary())
        if self.peek() and self.peek()[0] == "lp":  # type: ignore[index]
            self.take()
            node = self.parse_or()
            self.take("rp")
            return node
        return self.parse_predicate()

    def value(self) -> Any:
        kind, text = self.take()
        if kind == "word" and text.startswith("@"):
            if text not in self.aliases:
                raise syntax_error(f"The parameter alias '{text}' is not defined in the request URI.")
            return parse_literal(self.aliases[text])
        if kind == "word" and self.peek() and self.peek()[0] == "str":  # type: ignore[index]
            # An enum literal such as Microsoft.Dynamics.CRM.AttributeTypeCode'Picklist' compares as its name.
            return parse_literal(self.take()[1])
        if kind in ("str", "num", "word", "guid"):
            return parse_literal(text)
        raise syntax_error(f"Syntax error in '$filter={self.text}' near '{text}'.")

    def parse_predicate(self) -> tuple:
        kind, word = self.take("word")
        low = word.lower()
        if low in FUNCTIONS and self.peek() and self.peek()[0] == "lp":  # type: ignore[index]
            self.take("lp")
            prop = self.take("word")[1]
            self.take("comma")
            val = self.value()
            self.take("rp")
            return ("fn", low, prop, val)
        if word == "Microsoft.Dynamics.CRM.In":
            return self._parse_in()
        op = self.take("word")[1]
        if op not in COMPARISONS:
            raise syntax_error(f"Syntax error in '$filter={self.text}': unknown operator '{op}'.")
        return ("cmp", op, word, self.value())

    def _parse_in(self) -> tuple:
        self.take("lp")
        args: dict[str, Any] = {}
        while self.peek() and self.peek()[0] != "rp":  # type: ignore[index]
            name = self.take("word")[1]
            self.take("eqs")
            if self.peek() and self.peek()[0] == "lb":  # type: ignore[index]
                self.take()
                vals = []
                while self.peek() and self.peek()[0] != "rb":  # type: ignore[index]
                    if self.peek()[0] == "comma":  # type: ignore[index]
                        self.take()
                        continue
                    vals.append(self.value())
                self.take("rb")
                args[name] = vals
            else:
                args[name] = self.value()
            if self.peek() and self.peek()[0] == "comma":  # type: ignore[index]
                self.take()
        self.take("rp")
        return ("in", args.get("PropertyName"), list(args.get("PropertyValues") or []))


def parse_filter(text: str | None, aliases: dict[str, str]) -> tuple | None:
    if not text:
        return None
    # "PropertyName='statuscode'" uses '=' which the tokenizer does not know: normalize it to a word.
    return FilterParser(
        text.replace("=", " = ") if "Microsoft.Dynamics.CRM.In" in text else text, aliases
    ).parse()
