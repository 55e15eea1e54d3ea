"""Load and validate every `mappings/*.yaml` into typed, frozen dataclasses.

Everything a human may change lives in `mappings/`; this module is the single gate between those files
and the code. Any mistake is a `MappingError` that names the file, the line and the key.

The repository's `mappings/` holds project defaults only. The org-specific files (ORG_FILES) are generated
for the extracted org by `close2d365 propose-mapping` into the mappings root in use and reviewed there.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from migration_assets.mapping.fields import FieldMap, parse_field_file
from migration_assets.mapping.files import (
    AccountsMap,
    ActivitiesMap,
    LeadStatusMap,
    OwnersMap,
    PipelinesMap,
    Settings,
    parse_accounts,
    parse_activities,
    parse_lead_status,
    parse_owners,
    parse_pipelines,
    parse_settings,
)
from migration_assets.mapping.transform_exprs import TransformContext
from migration_assets.mapping.transforms import ChoiceSet
from migration_assets.mapping.yaml_loc import MappingError, Section, load_located
from migration_assets.resources import env

DEFAULT_ROOT = Path(__file__).resolve().parents[2] / "mappings"
# Generated per org by propose-mapping (owners.yaml also ships as a default: it holds settings only).
ORG_FILES = (
    "lead_status.yaml",
    "pipelines.yaml",
    "custom_fields.yaml",
    "custom_activities.yaml",
    "owners.yaml",
)
OBJECT_KEYS = (
    "name",
    "close_object",
    "source",
    "table",
    "entity_set",
    "primary_key",
    "natural_key",
    "key",
    "depends_on",
    "stage_after",
    "joins",
    "description",
    "staged_description",
    "loaded_description",
)


@dataclass(frozen=True)
class Join:
    """Left-join another close/* table before mapping; its columns appear as `<prefix><column>`."""

    source: str
    left_on: str
    right_on: str
    prefix: str
    columns: tuple[str, ...]


@dataclass(frozen=True)
class ObjectMap:
    name: str
    close_object: str
    source: str  # the close/* table (DuckDB schema close)
    table: str  # Dataverse logical name
    entity_set: str
    primary_key: str
    natural_key: str
    key: str  # source column holding the Close id
    order: int  # position in objects.yaml (dependencies first); mapping/tables.py derives the load order
    depends_on: tuple[str, ...] = ()  # objects whose tables load first (loaded/* deps)
    stage_after: tuple[str, ...] = ()  # objects whose staged rows this one's staging reads (staged/* deps)
    joins: tuple[Join, ...] = ()
    description: str = ""
    staged_description: str = ""  # the table's staged/* asset description (one object of the table says it)
    loaded_description: str = ""  # the table's loaded/* asset description


@dataclass(frozen=True)
class MappingConfig:
    root: Path
    settings: Settings
    objects: tuple[ObjectMap, ...]
    field_maps: Mapping[str, FieldMap]  # by object name
    lead_status: LeadStatusMap
    pipelines: PipelinesMap
    owners: OwnersMap
    activities: ActivitiesMap
    accounts: AccountsMap
    choice_sets: Mapping[str, ChoiceSet] = field(default_factory=dict)

    def object(self, name: str) -> ObjectMap:
        for obj in self.objects:
            if obj.name == name:
                return obj
        raise KeyError(
            f"no object {name!r} in objects.yaml (known: {', '.join(o.name for o in self.objects)})"
        )

    def field_map(self, object_name: str) -> FieldMap:
        return self.field_maps[object_name]

    def context(
        self, owners: Mapping[str, str] | None = None, fallback_owner: str | None = None
    ) -> TransformContext:
        return TransformContext(
            choice_sets=self.choice_sets,
            placeholder_account_name=self.accounts.placeholder_name,
            default_country_code=self.settings.default_country_code,
            owners=owners,
            fallback_owner=fallback_owner,
        )

    def source_columns(self, object_name: str) -> tuple[str, ...]:
        """Top-level columns of close.<source> the object's field map reads: the key, join keys, and the
        root of every source path (`contacts[0].emails` -> `contacts`; `custom.cf_x` is a column as is;
        paths under a join prefix such as `lead.name` come from the join, not from this table)."""
        obj, fmap = self.object(object_name), self.field_map(object_name)
        prefixes = tuple(j.prefix for j in obj.joins)
        roots = [obj.key, *(j.left_on for j in obj.joins)]
        for path in fmap.source_paths():
            if prefixes and path.startswith(prefixes):
                continue
            roots.append(path if path.startswith("custom.") else re.split(r"[.\[]", path, maxsplit=1)[0])
        return tuple(dict.fromkeys(roots))

    def custom_columns(self) -> dict[str, dict[str, Any]]:
        """Every custom column the field maps write, per table: {table: {column: CustomColumn}}."""
        out: dict[str, dict[str, Any]] = {}
        for fmap in self.field_maps.values():
            for spec in fmap.fields:
                if spec.custom is not None:
                    out.setdefault(fmap.table, {})[spec.target] = spec.custom
        return out


def _display(root: Path, path: Path) -> str:
    try:
        return f"{root.name}/{path.relative_to(root).as_posix()}"
    except ValueError:
        return str(path)


class MissingOrgFileError(MappingError):
    """An org-specific mapping file has not been generated yet: one line saying how to get it."""

    def __init__(self, display: str) -> None:
        super().__init__(display, None, None, "is missing")
        self.line_text = f"{display} is missing: run `close2d365 propose-mapping` (after `close2d365 extract`) and review it"

    def __str__(self) -> str:
        return self.line_text


def _load(root: Path, rel: str) -> tuple[Any, str]:
    path = root / rel
    display = _display(root, path)
    if not path.is_file():
        if rel in ORG_FILES:
            raise MissingOrgFileError(display)
        raise MappingError(display, None, None, "file is missing (every file in mappings/ is required)")
    return load_located(path, display), display


def mappings_root(root: Path | str | None = None) -> Path:
    """The mappings root in use: `root`, else $CLOSE2D365_MAPPINGS, else the repository's `mappings/`."""
    return Path(root or env.mappings_setting() or DEFAULT_ROOT).resolve()


def load_settings(root: Path | str | None = None) -> Settings:
    """settings.yaml alone (propose-mapping needs the prefixes before the org's files exist)."""
    return parse_settings(*_load(mappings_root(root), "settings.yaml"))


def load_activities(root: Path | str | None = None) -> ActivitiesMap:
    """activities.yaml alone (the SMS routing decides which assets exist, before the org's files exist)."""
    root = mappings_root(root)
    return parse_activities(*_load(root, "activities.yaml"), load_settings(root).publisher_prefix)


def parse_objects(data: Any, file: str, prefix: str) -> tuple[ObjectMap, ...]:
    top = Section(data, file, "")
    top.only("objects")
    objects: list[ObjectMap] = []
    seen: dict[str, int] = {}
    stage_after_of: dict[str, tuple[Section, tuple[str, ...]]] = {}
    for n, (item, line) in enumerate(top.items_of("objects", required=True)):
        s = Section(item, file, f"objects[{n}]", line)
        s.only(*OBJECT_KEYS)
        name = s.get("name", str, required=True)
        if name in seen:
            raise s.error("name", f"duplicate object name {name!r}")
        deps = tuple(str(d) for d in s.get("depends_on", list, default=[]))
        for dep in deps:
            if dep not in seen:
                raise s.error(
                    "depends_on", f"{dep!r} is not an object listed above (dependencies load first)"
                )
        stage_after = s.get("stage_after", list, default=None)
        stage_after_of[name] = (s, deps if stage_after is None else tuple(str(d) for d in stage_after))
        joins = []
        for m, (j, jline) in enumerate(s.items_of("joins")):
            js = Section(j, file, f"objects[{n}].joins[{m}]", jline)
            js.only("source", "left_on", "right_on", "prefix", "columns")
            cols = js.get("columns", list, required=True)
            joins.append(
                Join(
                    js.get("source", str, required=True),
                    js.get("left_on", str, required=True),
                    js.get("right_on", str, "id"),
                    js.get("prefix", str, required=True),
                    tuple(str(c) for c in cols),
                )
            )
        seen[name] = n
        objects.append(
            ObjectMap(
                name=name,
                close_object=s.get("close_object", str, required=True),
                source=s.get("source", str, required=True),
                table=s.get("table", str, required=True).replace("{prefix}", prefix),
                entity_set=s.get("entity_set", str, required=True).replace("{prefix}", prefix),
                primary_key=s.get("primary_key", str, required=True),
                natural_key=s.get("natural_key", str, required=True),
                key=s.get("key", str, "id"),
                order=n,
                depends_on=deps,
                stage_after=stage_after_of[name][1],
                joins=tuple(joins),
                description=s.get("description", str, ""),
                staged_description=s.get("staged_description", str, ""),
                loaded_description=s.get("loaded_description", str, ""),
            )
        )
    for section, after in stage_after_of.values():  # may name objects listed below (staging order only)
        for dep in after:
            if dep not in seen:
                raise section.error("stage_after", f"{dep!r} is not an object of objects.yaml")
    return tuple(objects)


def build_choice_sets(lead: LeadStatusMap, pipes: PipelinesMap) -> dict[str, ChoiceSet]:
    """Named choice sets the field maps refer to with `choice: {set: ...}`."""
    state_default = lead.unmapped[0] if lead.unmapped else None
    status_default = lead.unmapped[1] if lead.unmapped else None
    sets = {
        "lead_statecode": ChoiceSet(
            "lead status (statecode)", {k: v[0] for k, v in lead.statuses.items()}, state_default
        ),
        "lead_statuscode": ChoiceSet(
            "lead status (statuscode)", {k: v[1] for k, v in lead.statuses.items()}, status_default
        ),
        "opportunity_pipeline": ChoiceSet(
            "opportunity pipeline", {p.name: p.option for p in pipes.pipelines}
        ),
    }
    statuses = [(f"{p.name} / {s.label}", s) for p in pipes.pipelines for s in p.statuses]
    closing = {"won": pipes.won, "lost": pipes.lost, "active": (0, 1)}
    sets["opportunity_status"] = ChoiceSet("opportunity status", {k: s.option for k, s in statuses})
    sets["opportunity_salesstage"] = ChoiceSet(
        "opportunity sales stage", {k: s.salesstage for k, s in statuses}
    )
    sets["opportunity_statecode"] = ChoiceSet(
        "opportunity state", {k: closing[s.type][0] for k, s in statuses}
    )
    sets["opportunity_statuscode"] = ChoiceSet(
        "opportunity status reason", {k: closing[s.type][1] for k, s in statuses}
    )
    return sets


# root -> (digest of its files, the config parsed from them): steps load the mapping many times (each staged
# table, check and hook), and parsing the YAML was most of a small delta's staging. The digest is of the
# files' bytes, so an edit (even within the same second) is always seen.
_PARSED: dict[Path, tuple[str, MappingConfig]] = {}


def files_digest(root: Path) -> str:
    """SHA-256 over the relative path and bytes of every file under `root` (cheap: a few small files)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def load_mapping_config(root: Path | str | None = None) -> MappingConfig:
    """Load `mappings/` (default: the repository's, or $CLOSE2D365_MAPPINGS) and validate all of it; parsed
    once per content of its files (the config is immutable: callers derive new ones with `replace`)."""
    root = mappings_root(root)
    digest = files_digest(root)
    cached = _PARSED.get(root)
    if cached is not None and cached[0] == digest:
        return cached[1]
    cfg = _parse_mapping_config(root)
    _PARSED[root] = (digest, cfg)
    return cfg


def _parse_mapping_config(root: Path) -> MappingConfig:
    settings = parse_settings(*_load(root, "settings.yaml"))
    prefix = settings.publisher_prefix
    objects = parse_objects(*_load(root, "objects.yaml"), prefix)
    lead_status = parse_lead_status(*_load(root, "lead_status.yaml"), prefix)
    pipelines = parse_pipelines(*_load(root, "pipelines.yaml"), prefix, settings.option_value_prefix)
    owners = parse_owners(*_load(root, "owners.yaml"))
    activities = parse_activities(*_load(root, "activities.yaml"), prefix)
    accounts = parse_accounts(*_load(root, "accounts.yaml"), prefix)
    choice_sets = build_choice_sets(lead_status, pipelines)
    objects = tuple(
        ObjectMap(**{**o.__dict__, "table": activities.sms_table, "entity_set": activities.sms_entity_set})
        if o.name == "sms"
        else o
        for o in objects
    )
    by_name = {o.name: o for o in objects}
    field_maps: dict[str, FieldMap] = {}
    field_dir = root / "fields"
    tables = sorted({o.table if o.name != "sms" else "task" for o in objects})
    for table in tables:
        rel = f"fields/{table}.yaml"
        if not (field_dir / f"{table}.yaml").is_file():
            raise MappingError(
                _display(root, field_dir / f"{table}.yaml"),
                None,
                None,
                f"file is missing: objects.yaml maps objects to table {table!r}",
            )
        data, display = _load(root, rel)
        for fmap in parse_field_file(data, display, by_name, choice_sets, prefix, activities):
            field_maps[fmap.object] = fmap
    missing = [o.name for o in objects if o.name not in field_maps]
    if missing:
        raise MappingError(
            _display(root, field_dir), None, None, f"no field map for objects: {', '.join(missing)}"
        )
    return MappingConfig(
        root, settings, objects, field_maps, lead_status, pipelines, owners, activities, accounts, choice_sets
    )
