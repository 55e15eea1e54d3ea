"""The spot check's comparison rules: a value read back from Dataverse against the value in Close.

These rules are written from the field map's declared meaning (the transform NAMES and their arguments in
`mappings/`), never by calling the staging transforms: a defect in staging (a label stored under another
label's option value, a wrong unit, a shifted date) must show up as a difference here. Choice columns are
compared by the FORMATTED LABEL Dataverse returns, not by option numbers. A field whose transform has no
independent rule is reported as "not compared" with the reason, never silently passed.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from migration_assets.clients.close.paging import parse_close_datetime
from migration_assets.mapping.ids import account_id, record_id
from migration_assets.mapping.transforms import MINOR_UNIT_EXPONENTS

FORMATTED = "@OData.Community.Display.V1.FormattedValue"
MATCH, MISMATCH, NOT_COMPARED = "match", "mismatch", "not compared"
_PATH = re.compile(r"([^.\[\]]+)|\[(\d+)\]")
_WS = re.compile(r"\s+")
_ISO = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2})?")
_TAG = re.compile(r"<[^>]*>")
_ALNUM = re.compile(r"[\W_]+", re.UNICODE)
_TRUE = {"true", "yes", "y", "1", "on", "x"}
# Steps that only normalise text (their output is checked by the final comparison, not reproduced).
_TEXT_STEPS = {"copy", "text"}
_FINAL_KINDS = {"email", "phone", "url", "first_name", "last_name", "html_to_text"}


@dataclass(frozen=True)
class Outcome:
    status: str  # match | mismatch | not compared
    close: Any
    dataverse: Any
    why: str = ""


@dataclass(frozen=True)
class Rule:
    """How one Dataverse column is checked against Close: `kind` picks the comparison."""

    column: str
    kind: str
    sources: tuple[str, ...] = ()
    args: Mapping[str, Any] = field(default_factory=dict)
    max_length: int | None = None
    when: tuple[str, tuple[str, ...]] | None = None  # (source, values): value only where source is one of
    unless: str | None = None  # null where this other column holds a value
    keep_row: bool = False  # on_error: keep_row -- a bad value is nulled (and reported at staging)
    why: str = ""  # for kind "skip": the reason


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip()) or value == []


def norm_text(value: Any) -> str:
    return _WS.sub(" ", str(value)).strip().casefold()


# ---- reading Close values -------------------------------------------------------------------------------
def source_value(
    obj: Mapping[str, Any], path: str, joined: Mapping[str, Mapping[str, Any]] | None = None
) -> Any:
    """`path` of a field map source in a Close object: `name`, `custom.cf_x` (a literal key), `a[0].b`,
    or `<join prefix><column>` (e.g. `lead.name`) read from the joined parent object."""
    if path in obj:
        return obj[path]
    for prefix, parent in (joined or {}).items():
        if path.startswith(prefix):
            return source_value(parent, path[len(prefix) :])
    current: Any = obj
    for name, index in _PATH.findall(path):
        if current is None:
            return None
        if index:
            current = current[int(index)] if isinstance(current, list) and int(index) < len(current) else None
        elif isinstance(current, Mapping):
            current = current.get(name)
        elif isinstance(current, list):  # `contacts.name` on a list means its first element's field
            current = current[0].get(name) if current and isinstance(current[0], Mapping) else None
        else:
            return None
    return current


# ---- elementary comparisons ------------------------------------------------------------------------------
def _instants(text: str) -> str:
    """ISO 8601 timestamps inside a text as their UTC instant to the second (a template may render a
    Close timestamp in another ISO form: the same instant is the same value)."""

    def canon(m: re.Match[str]) -> str:
        try:
            return parse_instant(m.group(0)).strftime("%Y-%m-%dT%H:%M:%SZ")  # type: ignore[union-attr]
        except ValueError:
            return m.group(0)

    return _ISO.sub(canon, text)


def compare_text(close: Any, dv: Any, max_length: int | None = None) -> Outcome:
    """Text equal after whitespace/case folding; a value cut at `max_length` matches its Close prefix."""
    want = None if _blank(close) else str(close).strip()
    got = None if _blank(dv) else str(dv)
    if want is None or got is None:
        return Outcome(MATCH if want is None and got is None else MISMATCH, want, got)
    if norm_text(want) == norm_text(got) or norm_text(_instants(want)) == norm_text(_instants(got)):
        return Outcome(MATCH, want, got)
    if (
        max_length is not None
        and len(want) > max_length
        and norm_text(want).startswith(norm_text(got).rstrip())
    ):
        return Outcome(MATCH, want, got, f"truncated to {max_length}")
    return Outcome(MISMATCH, want, got)


def compare_label(close_label: Any, formatted: Any) -> Outcome:
    """A choice column: the formatted label Dataverse shows must be the Close label."""
    return compare_text(close_label, formatted)


def labels_of(value: Any) -> list[str]:
    if _blank(value):
        return []
    if isinstance(value, list):
        return [str(v).strip() for v in value if not _blank(v)]
    return [str(value).strip()]


def compare_labels(close: Any, formatted: Any) -> Outcome:
    """A multi-select column: Dataverse joins the labels with "; " (powerapps-docs multi-select-picklist)."""
    want = sorted({norm_text(v) for v in labels_of(close)})
    got = sorted({norm_text(v) for v in ([] if _blank(formatted) else str(formatted).split("; "))})
    shown = "; ".join(labels_of(close)) or None
    return Outcome(MATCH if want == got else MISMATCH, shown, formatted)


def _number(value: Any) -> float | None:
    if _blank(value):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def compare_number(close: Any, dv: Any, tolerance: float = 1e-9) -> Outcome:
    want, got = _number(close), _number(dv)
    if want is None or got is None:
        return Outcome(MATCH if want is None and got is None else MISMATCH, close, dv)
    return Outcome(MATCH if abs(want - got) <= tolerance * max(1.0, abs(want)) else MISMATCH, close, dv)


def compare_money(cents: Any, currency: Any, dv: Any, default_currency: str = "USD") -> Outcome:
    """Close money is integer minor units of its currency; Dataverse holds currency units."""
    if _blank(cents):
        return Outcome(MATCH if _blank(dv) else MISMATCH, None, dv)
    code = str(currency or default_currency).strip().upper()
    units = float(cents) / 10 ** MINOR_UNIT_EXPONENTS.get(code, 2)
    out = compare_number(units, dv, tolerance=1e-9)
    return Outcome(out.status, f"{cents} ({code} minor units) = {units:g}", dv)


def parse_instant(value: Any) -> datetime | None:
    """A Close or Dataverse timestamp as an aware UTC datetime, by `parse_close_datetime`'s rules (naive
    means UTC; a bare date is midnight). Raises ValueError for text that is not a timestamp: the spot check
    then reports the value instead of treating it as missing."""
    if _blank(value):
        return None
    parsed = parse_close_datetime(value if isinstance(value, date) else str(value))
    if parsed is None:
        raise ValueError(f"not a timestamp: {value!r}")
    return parsed


def compare_datetime(close: Any, dv: Any) -> Outcome:
    """A DateTime column (UserLocal/TimeZoneIndependent) holds the instant in UTC; compared to the second."""
    want, got = parse_instant(close), parse_instant(dv)
    if want is None or got is None:
        return Outcome(MATCH if want is None and got is None else MISMATCH, close, dv)
    same = abs((want - got).total_seconds()) < 1
    return Outcome(MATCH if same else MISMATCH, close, dv)


def compare_date(close: Any, dv: Any) -> Outcome:
    """A DateOnly column holds a calendar date: a Close date as is, a Close timestamp by its UTC date."""
    if _blank(close):
        return Outcome(MATCH if _blank(dv) else MISMATCH, None, dv)
    text = str(close).strip()
    want = text if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text) else parse_instant(text).date().isoformat()  # type: ignore[union-attr]
    got = None if _blank(dv) else str(dv)[:10]
    return Outcome(MATCH if want == got else MISMATCH, close, dv)


def compare_id(expected: str | None, dv: Any, shown: Any) -> Outcome:
    got = None if _blank(dv) else str(dv).lower()
    want = None if expected is None else expected.lower()
    return Outcome(MATCH if want == got else MISMATCH, shown, dv)


# ---- rules from a field map --------------------------------------------------------------------------------
def rule_for(spec: Any, primary_key: str) -> Rule:
    """The comparison for one field-map entry (`mapping_fields.FieldSpec`), from its transform names."""
    names = [s.name for s in spec.steps]
    args: dict[str, Any] = {}
    for step in spec.steps:
        args.update(step.args)
    base = {
        "column": spec.target,
        "sources": tuple(spec.sources),
        "max_length": spec.max_length,
        "when": (spec.when.source, spec.when.values) if spec.when else None,
        "unless": spec.unless,
        "keep_row": spec.on_error == "keep_row",
    }
    first, last = names[0], names[-1]
    if spec.target == primary_key:
        return Rule(kind="skip", why="the record's own id: the sample was read back by it", **base)
    if "owner" in names:
        return Rule(kind="owner", **base)
    if last == "record_id":
        return Rule(kind="record_id", args={"kind": args["kind"]}, **base)
    if last == "account_id":
        return Rule(kind="account_id", **base)
    if spec.lookup_by:
        return Rule(kind="lookup_by", args={"table": spec.lookup, "key": spec.lookup_by}, **base)
    if last in ("choice", "multi_choice"):
        kind = "multi_choice" if last == "multi_choice" else "choice"
        prep = names[:-1]
        if prep not in ([], ["template"], ["text"]):
            return Rule(kind="skip", why=f"no independent rule for {' -> '.join(names)}", **base)
        # A column the project creates (`custom:`) has the Close labels as options, and a Close custom field
        # (custom_fields.yaml, new or existing column: an existing one is proposed only when every Close choice
        # matches one of its options by label): the formatted label must be the Close label, so a mapping that
        # numbers or swaps options wrongly shows up. A standard column keeps its own labels (statuscode, ...):
        # the option value must be the one the reviewed mapping (choice set or inline map) names.
        extra = {
            "template": args.get("format") if prep == ["template"] else None,
            "set": args.get("set"),
            "map": args.get("map"),
        }
        custom_field = any(str(src).startswith("custom.") for src in spec.sources)
        by_label = spec.custom is not None or kind == "multi_choice" or custom_field
        return Rule(kind=kind if by_label else "choice_set", args=extra, **base)
    if first == "cents_to_money":
        return Rule(kind="money", args={"default_currency": args.get("default_currency", "USD")}, **base)
    simple = {
        "number": "number",
        "datetime_utc": "datetime",
        "date_only": "date",
        "const": "const",
        "seconds_to_minutes": "minutes",
        "boolean": "boolean",
        "equals": "equals",
        "is_blank": "is_blank",
        "join_list": "join_list",
    }
    if len(names) == 1 and first in simple:
        return Rule(kind=simple[first], args=args, **base)
    if names[:-1] == ["coalesce"] and last in ("datetime_utc", "date_only", "number"):
        return Rule(kind=simple[last], args={**args, "coalesce": True}, **base)
    rest = [n for n in names if n not in _TEXT_STEPS]
    final = rest[-1] if rest and rest[-1] in _FINAL_KINDS else "text"
    core = rest[:-1] if final != "text" else rest
    if core in ([], ["pick"], ["template"], ["coalesce"], ["coalesce", "account_name"], ["account_name"]):
        return Rule(kind="text", args={**args, "final": final, "core": tuple(core)}, **base)
    return Rule(kind="skip", why=f"no independent rule for {' -> '.join(names)}", **base)


@dataclass(frozen=True)
class Context:
    """What the rules need besides the two records: resolved from the mapping and from Dataverse."""

    owner_for: Callable[[str | None], str | None]  # Close user id -> expected systemuserid
    lookup_key: Callable[[str, str, str], Any]  # (table, record id, key column) -> that column's value
    exists: Callable[[str, str], bool] = lambda table, record_id: True  # is (table, id) in Dataverse
    choice_sets: Mapping[str, Any] = field(default_factory=dict)  # name -> transforms.ChoiceSet
    placeholder_account_name: str = ""


def _pick(value: Any, args: Mapping[str, Any]) -> Any:
    """`field` of the `index`-th list element among those of the wanted types."""
    items = value if isinstance(value, list) else ([] if value is None else [value])
    types = {t.casefold() for t in args.get("types") or []}
    skip = {t.casefold() for t in args.get("exclude_types") or []}
    keep = []
    for item in items:
        kind = str(item.get("type") or "").casefold() if isinstance(item, Mapping) else ""
        if (types and kind not in types) or kind in skip:
            continue
        keep.append(item)
    index = int(args.get("index", 0))
    item = keep[index] if index < len(keep) else None
    return item.get(args["field"]) if isinstance(item, Mapping) else item


def _digits(value: Any) -> str:
    return re.sub(r"\D", "", str(value))


def _final(kind: str, close: Any, dv: Any, max_length: int | None) -> Outcome:
    if kind == "first_name" and _blank(dv) and not _blank(close) and len(norm_text(str(close)).split()) == 1:
        # Dataverse requires a last name: a one-word Close name is all last name, the first name stays empty.
        return Outcome(MATCH, str(close), "", "a one-word name is stored as the last name")
    if _blank(close) or _blank(dv):
        return compare_text(close, dv)
    text, got = str(close).strip(), str(dv)
    if kind == "email":
        return Outcome(MATCH if text.casefold() == got.strip().casefold() else MISMATCH, text, got)
    if kind == "phone":  # E.164 adds a country code: the Close digits must end the stored digits
        ok = len(_digits(text)) >= 6 and _digits(got).endswith(_digits(text).lstrip("0"))
        return Outcome(MATCH if ok else MISMATCH, text, got, "digits compared (E.164 normalisation)")
    if kind == "url":  # a scheme may be added: the stored URL must contain the Close address
        bare = re.sub(r"^[a-z]+://", "", text.casefold()).rstrip("/")
        return Outcome(
            MATCH if bare in got.casefold() else MISMATCH, text, got, "address compared without scheme"
        )
    if kind in ("first_name", "last_name"):  # a split of the full name: every stored word is in it
        words = set(norm_text(text).split())
        ok = all(w in words for w in norm_text(got).split())
        return Outcome(MATCH if ok else MISMATCH, text, got, f"{kind} is part of the Close name")
    if kind == "html_to_text":  # letters and digits in order; the renderer's spacing is not compared
        plain = _ALNUM.sub("", html.unescape(_TAG.sub(" ", text))).casefold()
        mine = _ALNUM.sub("", got).casefold()
        ok = plain == mine or (max_length is not None and plain.startswith(mine))
        return Outcome(MATCH if ok else MISMATCH, text[:200], got[:200], "letters and digits compared")
    return compare_text(text, got, max_length)


def evaluate(
    rule: Rule,
    close_obj: Mapping[str, Any],
    joined: Mapping[str, Mapping[str, Any]],
    dv: Mapping[str, Any],
    dv_column: str,
    ctx: Context,
) -> Outcome:
    """Compare one column of a Dataverse record (`dv`, read with formatted values; `dv_column` is the
    property the column reads as, `_x_value` for a lookup) with the Close object."""
    if rule.kind == "skip":
        return Outcome(NOT_COMPARED, None, None, rule.why)
    got = dv.get(dv_column)
    formatted = dv.get(f"{dv_column}{FORMATTED}")
    values = [source_value(close_obj, s, joined) for s in rule.sources]
    if rule.when is not None and str(source_value(close_obj, rule.when[0], joined)) not in rule.when[1]:
        why = f"empty unless {rule.when[0]} is one of {list(rule.when[1])}"
        return Outcome(MATCH if _blank(got) else MISMATCH, None, got, why)
    if rule.unless is not None and not _blank(dv.get(rule.unless, dv.get(f"_{rule.unless}_value"))):
        return Outcome(NOT_COMPARED, None, got, f"empty by design when {rule.unless} is set")
    if rule.keep_row and _blank(got) and values and not all(_blank(v) for v in values):
        return Outcome(NOT_COMPARED, values[0], None, "nulled by on_error: keep_row (listed at staging)")
    return _evaluate(rule, values, got, formatted, ctx)


def _text_value(rule: Rule, values: Sequence[Any], ctx: Context) -> Any:
    core = rule.args.get("core", ())
    if core and core[0] == "pick":
        return _pick(values[0], rule.args)
    if core and core[0] == "template":
        return rule.args["format"].format(*("" if v is None else v for v in values))
    if core and core[0] == "coalesce":
        value = next((v for v in values if not _blank(v)), None)
    else:
        value = values[0] if values else None
    if "account_name" in core:
        return ctx.placeholder_account_name if _blank(value) else str(value).strip()
    return value


def _evaluate(rule: Rule, values: Sequence[Any], got: Any, formatted: Any, ctx: Context) -> Outcome:
    kind, first = rule.kind, (values[0] if values else None)
    if rule.args.get("coalesce"):
        first = next((v for v in values if not _blank(v)), None)
    if kind == "text":
        return _final(rule.args.get("final", "text"), _text_value(rule, values, ctx), got, rule.max_length)
    if kind in ("choice", "multi_choice", "choice_set"):
        label = (
            rule.args["template"].format(*("" if v is None else v for v in values))
            if rule.args.get("template")
            else first
        )
        if kind == "multi_choice":
            return compare_labels(label, formatted)
        if kind == "choice":
            out = compare_label(label, formatted)
            return Outcome(out.status, out.close, f"{formatted} ({got})" if got is not None else None)
        # A standard column: the reviewed mapping (choice set or inline map) says which option it must be.
        inline = rule.args.get("map")
        choices = ctx.choice_sets.get(rule.args.get("set") or "")
        if choices is None and inline is None:
            return Outcome(NOT_COMPARED, label, got, f"choice set {rule.args.get('set')!r} unknown")
        folded = (
            {str(k).strip().lower(): v for k, v in inline.items()} if inline is not None else choices.folded
        )
        default = None if choices is None else choices.default
        want = None if _blank(label) else folded.get(str(label).strip().lower(), default)
        same = want == got or (want is None and _blank(label) and _blank(got))
        return Outcome(MATCH if same else MISMATCH, f"{label} -> {want}", f"{formatted} ({got})")
    if kind == "money":
        return compare_money(
            first, values[1] if len(values) > 1 else None, got, rule.args["default_currency"]
        )
    if kind == "number":
        return compare_number(first, got)
    if kind == "minutes":
        want = None if _blank(first) else math.ceil(float(first) / 60)
        return compare_number(want, got)
    if kind == "datetime":
        return compare_datetime(first, got)
    if kind == "date":
        return compare_date(first, got)
    if kind == "const":
        return Outcome(MATCH if rule.args["value"] == got else MISMATCH, rule.args["value"], got)
    if kind in ("boolean", "equals", "is_blank"):
        if kind == "is_blank":
            want: Any = _blank(first)
        elif kind == "equals":
            want = (
                None if first is None else str(first).strip().casefold() == str(rule.args["value"]).casefold()
            )
        elif isinstance(first, bool) or first is None:
            want = first
        else:
            words = {str(w).casefold() for w in rule.args.get("true") or _TRUE}
            want = str(first).strip().casefold() in words
        return Outcome(MATCH if want == got else MISMATCH, first, got)
    if kind == "join_list":
        items = first if isinstance(first, list) else []
        parts = [
            str(i.get(rule.args["field"]) if isinstance(i, Mapping) and "field" in rule.args else i)
            for i in items[int(rule.args.get("skip", 0)) :]
        ]
        parts = [p for p in parts if not _blank(p) and p != "None"]
        text = "" if got is None else str(got)
        ok = all(p.casefold() in text.casefold() for p in parts) and (bool(parts) or _blank(got))
        return Outcome(
            MATCH if ok else MISMATCH, "; ".join(parts) or None, got, "every Close item is in the text"
        )
    if kind in ("record_id", "account_id"):
        table = rule.args["kind"] if kind == "record_id" else "account"
        if kind == "account_id":
            want = account_id(None if _blank(first) else str(first))
        else:
            want = None if _blank(first) else record_id(table, str(first))
        if _blank(got) and want is not None and not ctx.exists(table, want):
            why = f"the {table} it refers to is not in Dataverse (rejected: the lookup is left empty and reported)"
            return Outcome(NOT_COMPARED, first, None, why)
        return compare_id(want, got, first)
    if kind == "owner":
        want = ctx.owner_for(None if _blank(first) else str(first))
        if _blank(first):  # no Close user: the fallback owner, or Dataverse makes the caller the owner
            if _blank(got) or (want is not None and compare_id(want, got, None).status == MATCH):
                return Outcome(MATCH, None, got)
            return Outcome(
                NOT_COMPARED, None, got, "no Close user: Dataverse made the calling user the owner"
            )
        if want is None:
            return Outcome(NOT_COMPARED, first, got, "no owner in the owner map for this Close user")
        return compare_id(want, got, f"{first} -> {want}")
    if kind == "lookup_by":
        actual = None if _blank(got) else ctx.lookup_key(rule.args["table"], str(got), rule.args["key"])
        return compare_text(first, actual)
    return Outcome(NOT_COMPARED, first, got, f"no rule {kind!r}")


# ---- columns planned from Close custom fields (custom activities) ------------------------------------------
def rule_for_column(
    column: str,
    attribute_type: str,
    source: str,
    fmt: str | None = None,
    max_length: int | None = None,
    lookup_target: str | None = None,
) -> Rule:
    """A custom column the schema plan created for a Close custom field, by its Dataverse type."""
    if attribute_type == "Lookup":
        if lookup_target == "systemuser":
            return Rule(column, "owner", (source,))
        return Rule(column, "record_id", (source,), {"kind": lookup_target or ""})
    kinds = {
        "Picklist": "choice",
        "MultiSelectPicklist": "multi_choice",
        "Integer": "number",
        "Decimal": "number",
        "Double": "number",
        "Money": "number",
        "Boolean": "boolean",
        "String": "text",
        "Memo": "text",
        "DateTime": "date" if fmt == "DateOnly" else "datetime",
    }
    kind = kinds.get(attribute_type)
    if kind is None:
        return Rule(column, "skip", (source,), why=f"no independent rule for {attribute_type} columns")
    args: dict[str, Any] = {"template": None} if kind in ("choice", "multi_choice") else {}
    if kind == "text":
        args = {"final": "text", "core": ()}
    return Rule(column, kind, (source,), args, max_length)
