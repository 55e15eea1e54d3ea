"""Record reads: $select, $filter, $orderby, $top, $count, $expand, paging with an opaque $skiptoken (§2.3)."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import quote, unquote

from emulators.dataverse.annotations import (
    FORMATTED,
    LOOKUP_LOGICAL_NAME,
    NAVIGATION_PROPERTY,
    AnnotationFilter,
    as_filter,
    formatted_value,
)
from emulators.dataverse.errors import DataverseError
from emulators.dataverse.file_store import BODY_COLUMNS, StoredBody, plain
from emulators.dataverse.metadata import LOOKUP_KINDS, Attribute, Entity
from emulators.dataverse.odata import ExpandItem, parse_expand, parse_filter, parse_orderby, parse_select
from emulators.dataverse.state import Environment
from emulators.dataverse.store import Row
from emulators.dataverse.values import parse_datetime

MAX_PAGE = 5000
COUNT_LIMIT = 5000
Getter = Callable[[Row], Any]
_COOKIE_RE = re.compile(r'pagingcookie="([^"]*)"')


def property_not_found(ent: Entity, name: str) -> DataverseError:
    return DataverseError(400, "0x0", f"Could not find a property named '{name}' on type '{ent.odata_type}'.")


def etag(row: Row) -> str:
    return f'W/"{row.get("versionnumber", 0)}"'


class Reader:
    def __init__(self, env: Environment):
        self.env = env
        self._plans: dict[str, tuple[int, list[tuple[str, str, bool]]]] = {}

    # ---- projection ------------------------------------------------------------------------------------
    def full_plan(self, ent: Entity) -> list[tuple[str, str, bool]]:
        """(output name, attribute, is lookup) for every readable column, cached per metadata version."""
        cached = self._plans.get(ent.logical_name)
        if cached and cached[0] == self.env.metadata.version:
            return cached[1]
        plan = []
        for attr in ent.attributes.values():
            if attr.kind == "PartyList":
                continue
            if attr.kind in LOOKUP_KINDS:
                plan.append((f"_{attr.logical_name}_value", attr.logical_name, True))
            else:
                plan.append((attr.logical_name, attr.logical_name, False))
        self._plans[ent.logical_name] = (self.env.metadata.version, plan)
        return plan

    def select_plan(self, ent: Entity, select: list[str] | None) -> list[tuple[str, str, bool]]:
        if not select:
            return self.full_plan(ent)
        by_out = {p[0]: p for p in self.full_plan(ent)}
        plan = [by_out[ent.primary_id]]
        for name in select:
            if name not in by_out:
                raise property_not_found(ent, name)
            if name != ent.primary_id:
                plan.append(by_out[name])
        return plan

    def format_row(
        self,
        ent: Entity,
        row: Row,
        plan: list[tuple[str, str, bool]],
        annotations: bool | AnnotationFilter,
        expand: list[ExpandItem] | None = None,
    ) -> dict:
        wanted = as_filter(annotations)
        formatted = wanted.wants(FORMATTED)
        out: dict[str, Any] = {"@odata.etag": etag(row)}
        for out_name, attr_name, is_lookup in plan:
            value = row.get(attr_name)
            if is_lookup:
                out[out_name] = value[1] if value else None
                if wanted and value:
                    self._lookup_annotations(ent, attr_name, value, out, out_name, wanted)
            else:
                if isinstance(value, StoredBody):  # a file body, read from disk (file_store.py)
                    value = value.read()
                out[out_name] = value
                if formatted and value is not None:
                    text = self.formatted(ent.attributes[attr_name], value, row)
                    if text is not None:
                        out[f"{out_name}@{FORMATTED}"] = text
        for item in expand or []:
            out[item.name] = self.expand(ent, row, item, wanted)
        return out

    def _lookup_annotations(
        self, ent: Entity, attr_name: str, value: list, out: dict, out_name: str, wanted: AnnotationFilter
    ) -> None:
        target = self.env.metadata.tables.get(value[0])
        nav = next((n for n, (a, t) in ent.nav_single.items() if a == attr_name and t == value[0]), attr_name)
        if wanted.wants(NAVIGATION_PROPERTY):
            out[f"{out_name}@{NAVIGATION_PROPERTY}"] = nav
        if wanted.wants(LOOKUP_LOGICAL_NAME):
            out[f"{out_name}@{LOOKUP_LOGICAL_NAME}"] = value[0]
        if target is not None and wanted.wants(FORMATTED):
            ref = self.env.store.get(target.logical_name, value[1])
            if ref is not None and ref.get(target.primary_name) is not None:
                out[f"{out_name}@{FORMATTED}"] = ref.get(target.primary_name)

    def formatted(self, attr: Attribute, value: Any, row: Row | None = None) -> str | None:
        """The FormattedValue of a column: money takes the symbol of the record's own currency."""
        symbol = "$"
        if attr.kind == "Money":
            currency = (row or {}).get("transactioncurrencyid")
            ref = self.env.store.get("transactioncurrency", currency[1]) if currency else None
            symbol = (ref or {}).get("currencysymbol") or symbol
        return formatted_value(attr, value, symbol, self.env.config.user_time_zone)

    def expand(self, ent: Entity, row: Row, item: ExpandItem, annotations: AnnotationFilter) -> Any:
        if item.name in ent.nav_single:
            attr_name, target = ent.nav_single[item.name]
            value = row.get(attr_name)
            if not value or value[0] != target:
                return None
            tgt = self.env.metadata.tables[target]
            ref = self.env.store.get(target, value[1])
            return (
                None
                if ref is None
                else self.format_row(tgt, ref, self.select_plan(tgt, item.select), annotations)
            )
        related = self.related_rows(ent, row[ent.primary_id], item.name)
        if related is None:
            raise property_not_found(ent, item.name)
        child, rows = related
        plan = self.select_plan(child, item.select)
        return [self.format_row(child, r, plan, annotations) for r in rows]

    def related_rows(self, ent: Entity, record_id: str, nav: str) -> tuple[Entity, list[Row]] | None:
        """The rows behind a collection-valued navigation property (None when `nav` is not one)."""
        store = self.env.store
        if ent.is_activity and nav == f"{ent.logical_name}_activity_parties":
            # Indexed: activity parties are read for every email/phonecall/appointment.
            rows = [store.get("activityparty", pid) for pid in store.parties_by_activity.get(record_id, ())]
            return self.env.metadata.tables["activityparty"], [r for r in rows if r is not None]
        many = self.env.security.related(ent.logical_name, record_id, nav)  # N:N (security.py)
        if many is not None:
            return self.env.metadata.tables[many[0]], many[1]
        rel = next((r for r in ent.one_to_many if r.collection_nav == nav), None)
        if rel is None:
            return None
        child = self.env.metadata.tables[rel.referencing_entity]
        wanted = [ent.logical_name, record_id]
        with store.lock:
            rows = [
                r
                for r in store.table(child.logical_name).values()
                if r.get(rel.referencing_attribute) == wanted
            ]
        return child, rows

    # ---- filtering and ordering --------------------------------------------------------------------------
    def getter(self, ent: Entity, prop: str) -> tuple[Getter, Attribute]:
        attr = ent.attributes.get(prop)
        if attr is not None and attr.kind not in LOOKUP_KINDS and attr.kind != "PartyList":
            if prop in BODY_COLUMNS.get(ent.logical_name, ()):
                return (lambda r: plain(r.get(prop))), attr
            return (lambda r: r.get(prop)), attr
        if prop.startswith("_") and prop.endswith("_value"):
            attr = ent.attributes.get(prop[1:-6])
            if attr is not None and attr.kind in LOOKUP_KINDS:
                name = attr.logical_name
                return (lambda r: (r.get(name) or (None, None))[1]), attr
        raise property_not_found(ent, prop)

    def compile_filter(self, ent: Entity, node: tuple | None) -> Callable[[Row], bool]:
        if node is None:
            return lambda r: True
        op = node[0]
        if op in ("and", "or"):
            a, b = self.compile_filter(ent, node[1]), self.compile_filter(ent, node[2])
            return (lambda r: a(r) and b(r)) if op == "and" else (lambda r: a(r) or b(r))
        if op == "not":
            inner = self.compile_filter(ent, node[1])
            return lambda r: not inner(r)
        if op == "in":
            get, attr = self.getter(ent, node[1] or "")
            wanted = {norm(literal_for(attr, v)) for v in node[2]}
            return lambda r: norm(get(r)) in wanted
        if op == "fn":
            get, _ = self.getter(ent, node[2])
            needle = str(node[3]).casefold()
            test = {
                "contains": lambda s: needle in s,
                "startswith": lambda s: s.startswith(needle),
                "endswith": lambda s: s.endswith(needle),
            }[node[1]]
            return lambda r: isinstance(get(r), str) and test(get(r).casefold())
        _, cmp, prop, literal = node
        get, attr = self.getter(ent, prop)
        value = norm(literal_for(attr, literal))
        return compare(cmp, get, value)

    def order_key(self, ent: Entity, orderby: list[tuple[str, bool]]) -> list[tuple[Getter, bool]]:
        return [(self.getter(ent, prop)[0], desc) for prop, desc in orderby]

    # ---- collections -----------------------------------------------------------------------------------
    def source_rows(self, ent: Entity) -> Iterable[Row]:
        if ent.is_pointer:
            for t in self.env.metadata.tables.values():
                if t.is_activity:
                    yield from self.env.store.table(t.logical_name).values()
            return
        yield from self.env.store.table(ent.logical_name).values()

    def collection(
        self, ent: Entity, params: dict[str, str], page_size: int | None, annotations: bool | AnnotationFilter
    ) -> dict:
        """The body of GET /<set>: value, @odata.count, @odata.nextLink (relative query string)."""
        if "$skip" in params:
            raise DataverseError(
                400,
                "0x0",
                "The query parameter '$skip' is not supported. Use the @odata.nextLink of the previous page.",
            )
        for unsupported in ("fetchXml", "sql", "$apply", "savedQuery", "userQuery"):
            if unsupported in params:
                raise DataverseError(
                    501, "0x80040216", f"The emulator does not support the '{unsupported}' query option."
                )
        aliases = {k: v for k, v in params.items() if k.startswith("@")}
        select = parse_select(params.get("$select"))
        plan = self.select_plan(ent, select)
        expand = parse_expand(params.get("$expand"))
        orderby = self.order_key(ent, parse_orderby(params.get("$orderby")))
        node = parse_filter(params.get("$filter"), aliases)
        predicate = self.compile_filter(ent, node)
        ids = None if ent.is_pointer else primary_key_lookup(node, ent.primary_id)
        with self.env.store.lock:
            if ids is not None:  # "pk eq <id> or pk eq <id> ...": direct lookups instead of a table scan
                table = self.env.store.table(ent.logical_name)
                found = {i: table[i] for i in ids if i in table}
                matched = list(found.values())
            else:
                matched = [r for r in self.source_rows(ent) if predicate(r)]
        if orderby:
            for get, desc in reversed(orderby):
                matched.sort(key=lambda r, g=get: sort_key(g(r)), reverse=desc)
        top = params.get("$top")
        body: dict[str, Any] = {}
        if params.get("$count") == "true":
            body["@odata.count"] = min(len(matched), COUNT_LIMIT)
            if len(matched) > COUNT_LIMIT:
                body["@Microsoft.Dynamics.CRM.totalrecordcountlimitexceeded"] = True
        offset = decode_skiptoken(params.get("$skiptoken"))
        if top is not None:
            try:
                limit = int(top)
            except ValueError:
                raise DataverseError(400, "0x0", f"Invalid value '{top}' for $top query option.") from None
            page, has_more = matched[:limit], False  # $top limits the result and disables paging
        else:
            size = min(page_size or MAX_PAGE, MAX_PAGE)
            page, has_more = matched[offset : offset + size], offset + size < len(matched)
            if has_more:
                body["_next_offset"] = offset + size
        body["value"] = [self.format_row(ent, r, plan, annotations, expand) for r in page]
        return body


def primary_key_lookup(node: tuple | None, pk: str) -> list[str] | None:
    """The ids of a filter made only of `pk eq <guid>` terms joined by `or`; None for any other filter."""
    if node is None:
        return None
    if node[0] == "or":
        left, right = primary_key_lookup(node[1], pk), primary_key_lookup(node[2], pk)
        return None if left is None or right is None else left + right
    if node[0] == "cmp" and node[1] == "eq" and node[2] == pk and isinstance(node[3], str):
        return [node[3].lower()]
    return None


def literal_for(attr: Attribute, literal: Any) -> Any:
    if attr.kind == "DateTime" and isinstance(literal, str):
        return parse_datetime(literal, attr.format == "DateOnly" or attr.behavior == "DateOnly")
    if (
        attr.kind in ("Picklist", "State", "Status", "Integer")
        and isinstance(literal, str)
        and literal.lstrip("-").isdigit()
    ):
        return int(literal)
    return literal


def norm(value: Any) -> Any:
    return value.casefold() if isinstance(value, str) else value


def sort_key(value: Any) -> tuple:
    # Nulls first ascending, as SQL Server orders them; strings compare case-insensitively.
    return (value is not None, norm(value) if value is not None else 0)


def compare(op: str, get: Getter, value: Any) -> Callable[[Row], bool]:
    if op == "eq":
        return lambda r: norm(get(r)) == value
    if op == "ne":
        return lambda r: norm(get(r)) != value

    def ordered(r: Row) -> bool:
        v = norm(get(r))
        if v is None or value is None:
            return False
        try:
            return {"gt": v > value, "ge": v >= value, "lt": v < value, "le": v <= value}[op]
        except TypeError:
            return False

    return ordered


def encode_skiptoken(offset: int) -> str:
    cookie = base64.urlsafe_b64encode(json.dumps({"o": offset}).encode()).decode()
    page = offset  # informative only, clients must treat the token as opaque
    return quote(f'<cookie pagenumber="{page}" pagingcookie="{cookie}" istracking="False" />', safe="")


def decode_skiptoken(token: str | None) -> int:
    if not token:
        return 0
    m = _COOKIE_RE.search(unquote(token))
    try:
        return int(json.loads(base64.urlsafe_b64decode(m.group(1)))["o"]) if m else int("x")
    except (ValueError, KeyError, TypeError):
        raise DataverseError(
            400, "0x80040203", "The $skiptoken is not valid. Follow @odata.nextLink unchanged."
        ) from None
