"""THE table registry: every Dataverse table the migration writes, generated from `mappings/objects.yaml`.

One `Table` per Dataverse table (several objects.yaml entries may write one table: notes, status changes,
attachments and call recordings all become annotations). The staged/* and loaded/* assets, their
dependencies, the load order, the rollback order, the tables keyed on their Close id and the activity
tables all come from here, so adding a standard table is one entry in objects.yaml (+ its field file).

Only objects.yaml and settings.yaml are read (the definitions are built before the org's files exist),
from the mappings root in effect (`mapping.config.mappings_root`: $CLOSE2D365_MAPPINGS or the repository's).
The tables are those objects.yaml names: the SMS routing of activities.yaml only changes which objects a
table's staging reads at run time, not the graph.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from migration_assets.mapping.config import (
    DEFAULT_ROOT,
    ObjectMap,
    load_settings,
    mappings_root,
    parse_objects,
)
from migration_assets.mapping.yaml_loc import MappingError, load_located

ACTIVITY_KEY = "activityid"  # every Dataverse activity table's primary key


@dataclass(frozen=True)
class Table:
    name: str  # Dataverse logical name
    entity_set: str
    primary_key: str
    objects: tuple[str, ...]  # objects.yaml entries writing it, in file order
    sources: tuple[str, ...]  # close/* tables its objects read, in file order
    joined: tuple[str, ...]  # close/* tables its objects left-join
    depends_on: tuple[str, ...]  # tables loaded before it (its loaded/* deps)
    stage_after: tuple[str, ...]  # tables staged before it (its staged/* deps)
    staged_description: str
    loaded_description: str
    keyed: bool  # its Close id column is unique: every object keyed on its own id (an alternate key on it)

    @property
    def is_activity(self) -> bool:
        return self.primary_key == ACTIVITY_KEY


@dataclass(frozen=True)
class TableRegistry:
    tables: tuple[Table, ...]  # in load order: every table after the tables it depends on

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.tables)

    def table(self, name: str) -> Table:
        for t in self.tables:
            if t.name == name:
                return t
        raise KeyError(f"no table {name!r} in objects.yaml (known: {', '.join(self.names)})")

    @property
    def activities(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.tables if t.is_activity)

    @property
    def activity_parents(self) -> tuple[str, ...]:
        """The tables every activity loads after (custom activity tables load after them too)."""
        deps = [set(t.depends_on) for t in self.tables if t.is_activity]
        common = set.intersection(*deps) if deps else set()
        return tuple(n for n in self.names if n in common)

    @property
    def keyed(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.tables if t.keyed)

    def delete_ranks(self) -> dict[str, int]:
        """Rollback order, children before parents: the reverse of the load order, the activity tables
        sharing one rank (they hang off the same parents; custom activity tables take that rank too)."""
        levels: list[list[str]] = []
        for t in self.tables:
            if t.is_activity and levels and any(self.table(n).is_activity for n in levels[-1]):
                levels[-1].append(t.name)
            else:
                levels.append([t.name])
        top = len(levels) - 1
        return {name: top - n for n, level in enumerate(levels) for name in level}

    def activity_rank(self) -> int:
        ranks = self.delete_ranks()
        return min((ranks[a] for a in self.activities), default=0)


def _first(values: Iterable[str]) -> str:
    return next((v for v in values if v), "")


def build_registry(objects: Sequence[ObjectMap], file: str = "objects.yaml") -> TableRegistry:
    """The tables written by `objects`, in a stable topological load order (file order where free)."""
    table_of = {o.name: o.table for o in objects}
    names = list(dict.fromkeys(o.table for o in objects))
    tables: dict[str, Table] = {}
    for name in names:
        objs = [o for o in objects if o.table == name]
        for attr in ("entity_set", "primary_key"):
            values = {getattr(o, attr) for o in objs}
            if len(values) > 1:
                raise MappingError(
                    file, None, None, f"objects of table {name!r} disagree on {attr}: {sorted(values)}"
                )

        def tables_of(deps: Iterable[str]) -> tuple[str, ...]:
            return tuple(t for t in dict.fromkeys(table_of[d] for d in deps) if t != name)  # noqa: B023

        tables[name] = Table(
            name=name,
            entity_set=objs[0].entity_set,
            primary_key=objs[0].primary_key,
            objects=tuple(o.name for o in objs),
            sources=tuple(dict.fromkeys(o.source for o in objs)),
            joined=tuple(dict.fromkeys(j.source for o in objs for j in o.joins)),
            depends_on=tables_of(d for o in objs for d in o.depends_on),
            stage_after=tables_of(d for o in objs for d in o.stage_after),
            staged_description=_first(o.staged_description for o in objs)
            or f"{name} rows staged from Close.",
            loaded_description=_first(o.loaded_description for o in objs)
            or f"{name} rows written to Dataverse.",
            # Not annotation: an attachment's Close id is the activity it came from (one email, several files).
            keyed=all(o.key == "id" for o in objs),
        )
    ordered: list[str] = []
    while len(ordered) < len(names):
        ready = next(
            (
                n
                for n in names
                if n not in ordered
                and all(d in ordered for d in (*tables[n].depends_on, *tables[n].stage_after))
            ),
            None,
        )
        if ready is None:
            stuck = [n for n in names if n not in ordered]
            raise MappingError(
                file, None, None, f"depends_on/stage_after form a cycle among tables {', '.join(stuck)}"
            )
        ordered.append(ready)
    return TableRegistry(tuple(tables[n] for n in ordered))


def table_registry(root: Path | str | None = None) -> TableRegistry:
    """The registry of the mappings root in effect (objects.yaml and settings.yaml only)."""
    root = mappings_root(root)
    if not (root / "objects.yaml").is_file() and (DEFAULT_ROOT / "objects.yaml").is_file():
        # A mappings folder that propose-mapping has not filled yet (it copies the defaults there): the
        # definitions are built from the project's defaults, and the mapping gate reports the missing
        # files before anything runs.
        root = DEFAULT_ROOT
    path = root / "objects.yaml"
    display = f"{root.name}/objects.yaml"
    if not path.is_file():
        raise MappingError(display, None, None, "file is missing (every file in mappings/ is required)")
    prefix = load_settings(root).publisher_prefix
    return build_registry(parse_objects(load_located(path, display), display, prefix), display)
