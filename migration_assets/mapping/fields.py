"""Field maps (`mappings/fields/<table>.yaml`): source expression -> target column, transform + args."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from migration_assets.mapping.activity_states import ActivityStateError, resolve_completed
from migration_assets.mapping.transforms import TRANSFORMS, ChoiceSet
from migration_assets.mapping.yaml_loc import LocDict, MappingError, Section, type_name

if TYPE_CHECKING:
    from migration_assets.mapping.config import ObjectMap
    from migration_assets.mapping.files import ActivitiesMap

FIELD_KEYS = (
    "target",
    "source",
    "transform",
    "args",
    "required",
    "max_length",
    "on_error",
    "lookup",
    "lookup_by",
    "custom",
    "when",
    "when_parent",
    "unless",
    "note",
)
CUSTOM_TYPES = (
    "String",
    "Memo",
    "Integer",
    "Decimal",
    "Money",
    "DateTime",
    "DateOnly",
    "Boolean",
    "Picklist",
    "MultiSelectPicklist",
)
_TARGET = re.compile(r"^[a-z][a-z0-9_]*$")


@dataclass(frozen=True)
class Step:
    name: str
    args: Mapping[str, Any]


@dataclass(frozen=True)
class CustomColumn:
    """A column this project creates (schema/*) before loading; `type` is a Dataverse AttributeType."""

    type: str
    max_length: int | None = None
    display_name: str | None = None
    choice_set: str | None = None  # for Picklist columns: the named choice set giving the options


@dataclass(frozen=True)
class Condition:
    source: str
    values: tuple[str, ...]


@dataclass(frozen=True)
class FieldSpec:
    target: str
    sources: tuple[str, ...]
    steps: tuple[Step, ...]
    file: str
    line: int | None
    required: bool = False
    max_length: int | None = None
    on_error: str = "reject"  # reject the row, or keep_row: null the value (the problem is still reported)
    lookup: str | None = None  # target table of a lookup; the loader writes `<target>@odata.bind`
    lookup_by: str | None = None  # bind by this alternate key instead of the id
    custom: CustomColumn | None = None
    when: Condition | None = None  # value only on rows where `source` is one of `values`
    unless: str | None = None  # null where the named target column already has a value


@dataclass(frozen=True)
class FieldMap:
    object: str
    table: str
    file: str
    fields: tuple[FieldSpec, ...]

    def source_paths(self) -> tuple[str, ...]:
        """Every source path the map reads (sources and `when` columns), in first-use order: what the
        staging asset must select from close.<table>."""
        paths = [p for f in self.fields for p in (*f.sources, *((f.when.source,) if f.when else ()))]
        return tuple(dict.fromkeys(paths))

    @property
    def targets(self) -> tuple[str, ...]:
        return tuple(f.target for f in self.fields)


def _steps(s: Section) -> tuple[Step, ...]:
    raw = s.data.get("transform", "copy")
    args = s.get("args", dict, default={})
    if isinstance(raw, str):
        items: list[tuple[str, Any]] = [(raw, args)]
    elif isinstance(raw, list):
        if "args" in s.data:
            raise s.error("args", "with a list of transforms, give args per step: {name: ..., args: {...}}")
        items = []
        for item in raw:
            if isinstance(item, str):
                items.append((item, {}))
            elif (
                isinstance(item, dict) and set(item) <= {"name", "args"} and isinstance(item.get("name"), str)
            ):
                items.append((item["name"], item.get("args") or {}))
            else:
                raise s.error(
                    "transform", f"each step is a name or {{name: ..., args: {{...}}}}, got {item!r}"
                )
    else:
        raise s.error("transform", f"expected a transform name or a list of steps, got {raw!r}")
    return tuple(Step(name, dict(a)) for name, a in items)


def _check_step(
    s: Section, step: Step, n_sources: int, first: bool, choice_sets: Mapping[str, ChoiceSet]
) -> None:
    spec = TRANSFORMS.get(step.name)
    if spec is None:
        raise s.error(
            "transform", f"unknown transform {step.name!r} (known: {', '.join(sorted(TRANSFORMS))})"
        )
    n = n_sources if first else 1
    if n < spec.min_sources or (spec.max_sources is not None and n > spec.max_sources):
        wanted = (
            spec.min_sources
            if spec.max_sources == spec.min_sources
            else f"{spec.min_sources}..{spec.max_sources or 'n'}"
        )
        raise s.error("source", f"transform {step.name!r} takes {wanted} source(s), got {n}")
    where = "args" if "args" in s.data else "transform"
    for key, value in step.args.items():
        arg = spec.args.get(key)
        if arg is None:
            raise s.error(
                where,
                f"transform {step.name!r} has no argument {key!r} (arguments: {', '.join(spec.args) or 'none'})",
            )
        if not isinstance(value, arg.type) or (
            isinstance(value, bool) and bool not in (arg.type if isinstance(arg.type, tuple) else (arg.type,))
        ):
            raise s.error(
                where, f"argument {key!r} of {step.name!r} must be {type_name(arg.type)}, got {value!r}"
            )
    for key, arg in spec.args.items():
        if arg.required and key not in step.args:
            raise s.error(where, f"transform {step.name!r} needs argument {key!r}")
    if step.name in ("choice", "multi_choice"):
        if ("set" in step.args) == ("map" in step.args):
            raise s.error(where, f"transform {step.name!r} needs exactly one of 'set' or 'map'")
        if "set" in step.args and step.args["set"] not in choice_sets:
            raise s.error(
                where, f"unknown choice set {step.args['set']!r} (known: {', '.join(sorted(choice_sets))})"
            )
    if step.name == "template" and step.args["format"].count("{}") != n:
        raise s.error(
            where,
            f"template format has {step.args['format'].count('{}')} '{{}}' placeholders for {n} sources",
        )


def parse_field(
    item: Any,
    file: str,
    path: str,
    line: int | None,
    prefix: str,
    table: str,
    choice_sets: Mapping[str, ChoiceSet],
) -> FieldSpec:
    s = Section(item, file, path, line)
    s.only(*FIELD_KEYS)
    target = s.get("target", str, required=True).replace("{prefix}", prefix).replace("{table}", table)
    if not _TARGET.match(target):
        raise s.error("target", f"{target!r} is not a Dataverse logical name (lower-case letters, digits, _)")
    raw_src = s.data.get("source")
    sources: tuple[str, ...] = (
        () if raw_src is None else (raw_src,) if isinstance(raw_src, str) else tuple(raw_src)
    )
    if not all(isinstance(x, str) and x for x in sources):
        raise s.error("source", f"expected a column path or a list of them, got {raw_src!r}")
    steps = _steps(s)
    try:  # {completed_statecode}/{completed_statuscode}: the numbers of the table this map writes to
        steps = tuple(Step(st.name, resolve_completed(st.args, table, prefix)) for st in steps)
    except ActivityStateError as exc:
        raise s.error("args" if "args" in s.data else "transform", str(exc)) from None
    for n, step in enumerate(steps):
        _check_step(s, step, len(sources), n == 0, choice_sets)
    max_length = s.get("max_length", int)
    if max_length is not None and max_length < 1:
        raise s.error("max_length", "must be >= 1")
    on_error = s.get("on_error", str, "reject")
    if on_error not in ("reject", "keep_row"):
        # A YAML `null` here would silently mean "reject"; the explicit word avoids that trap.
        raise s.error(
            "on_error", "must be 'reject' (the row is rejected) or 'keep_row' (the value is nulled)"
        )
    custom = None
    cs = s.sub("custom")
    if cs is not None:
        cs.only("type", "max_length", "display_name", "choice_set")
        ctype = cs.get("type", str, required=True)
        if ctype not in CUSTOM_TYPES:
            raise cs.error("type", f"unknown column type {ctype!r} (known: {', '.join(CUSTOM_TYPES)})")
        if not target.startswith(prefix + "_"):
            raise s.error("target", f"a custom column must start with the publisher prefix '{prefix}_'")
        choice_set = cs.get("choice_set", str)
        if choice_set is not None and choice_set not in choice_sets:
            raise cs.error(
                "choice_set", f"unknown choice set {choice_set!r} (known: {', '.join(sorted(choice_sets))})"
            )
        custom = CustomColumn(
            ctype, cs.get("max_length", int) or max_length, cs.get("display_name", str), choice_set
        )
    when = None
    ws = s.sub("when")
    if ws is not None:
        ws.only("source", "in")
        when = Condition(
            ws.get("source", str, required=True), tuple(str(v) for v in ws.get("in", list, required=True))
        )
    unless = s.get("unless", str)
    return FieldSpec(
        target,
        sources,
        steps,
        file,
        s.line,
        bool(s.get("required", bool, False)),
        max_length,
        on_error,
        s.get("lookup", str),
        s.get("lookup_by", str),
        custom,
        when,
        unless.replace("{prefix}", prefix).replace("{table}", table) if unless else None,
    )


def _route(s: Section, item: Any, activities: ActivitiesMap | None, obj: str) -> tuple[bool, str | None]:
    """(keep, unless) for a `when_parent` field: notes go to the configured parent, else to the fallback."""
    parent = item.get("when_parent") if isinstance(item, dict) else None
    if parent is None:
        return True, None
    if obj != "note" or activities is None:
        raise s.error("when_parent", "only the 'note' map routes by parent (activities.yaml notes.parent)")
    if parent == activities.notes_parent:
        return True, None
    if parent == activities.notes_fallback:
        return True, f"objectid_{activities.notes_parent}"
    return False, None


def parse_field_file(
    data: Any,
    file: str,
    objects: Mapping[str, ObjectMap],
    choice_sets: Mapping[str, ChoiceSet],
    prefix: str,
    activities: ActivitiesMap | None = None,
) -> list[FieldMap]:
    top = Section(data, file, "")
    top.only("table", "maps")
    file_table = top.get("table", str, required=True)
    maps = top.section("maps")
    out = []
    for obj_name in maps.data:
        if obj_name not in objects:
            raise maps.error(str(obj_name), f"no object {obj_name!r} in objects.yaml")
        obj = objects[obj_name]
        if obj.table != file_table and obj_name != "sms":
            raise maps.error(
                str(obj_name), f"object {obj_name!r} maps to table {obj.table!r}, not {file_table!r}"
            )
        ms = maps.section(str(obj_name))
        ms.only("fields")
        specs: list[FieldSpec] = []
        for n, (item, line) in enumerate(ms.items_of("fields", required=True)):
            path = f"maps.{obj_name}.fields[{n}]"
            fs = Section(item, file, path, line)
            keep, unless = _route(fs, item, activities, str(obj_name))
            if not keep:
                continue
            body = {k: v for k, v in item.items() if k != "when_parent"}
            spec = parse_field(_relocate(body, item), file, path, line, prefix, obj.table, choice_sets)
            if unless:
                spec = FieldSpec(**{**spec.__dict__, "unless": unless})
            if any(x.target == spec.target for x in specs):
                raise fs.error("target", f"column {spec.target!r} is mapped twice in this map")
            specs.append(spec)
        targets = {x.target for x in specs}
        for spec in specs:
            if spec.unless and spec.unless not in targets:
                raise MappingError(file, spec.line, "unless", f"{spec.unless!r} is not a target of this map")
        if obj.primary_key not in targets:
            raise ms.error(None, f"map for {obj_name!r} does not set the primary key {obj.primary_key!r}")
        out.append(FieldMap(str(obj_name), obj.table, file, tuple(specs)))
    return out


def _relocate(body: dict[str, Any], original: Any) -> Any:
    """Copy `original`'s line information onto a filtered copy of it (errors must keep their lines)."""
    copy = LocDict(body)
    copy.line, copy.lines = getattr(original, "line", 0), getattr(original, "lines", {})
    return copy
