"""The publisher and solution every custom component of the migration is created in (pure).

In Dataverse a custom SchemaName must carry the customization prefix of the publisher of the solution it is
created in, and the solution named in `MSCRM.SolutionUniqueName` must exist (reference §6.1). So before any
schema write the tool needs its publisher (unique name, prefix, option value prefix from
mappings/settings.yaml) and its unmanaged solution of that publisher. `solution_state` compares what the
target holds (rows of `publishers` and `solutions`) with the settings and says what to create, or, when the
target has them in a shape the tool must not change, each conflict as a sentence naming the fix.
Column names of the rows: reference/entities/publisher.md and solution.md (MicrosoftDocs/powerapps-docs).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from migration_assets.clients.dataverse.odata import odata_bind
from migration_assets.mapping.files import Settings

SETTINGS_FILE = "mappings/settings.yaml"
PUBLISHER_COLUMNS = (
    "publisherid",
    "uniquename",
    "friendlyname",
    "customizationprefix",
    "customizationoptionvalueprefix",
)
SOLUTION_COLUMNS = ("solutionid", "uniquename", "friendlyname", "version", "ismanaged", "_publisherid_value")


@dataclass(frozen=True)
class SolutionTarget:
    """The publisher and solution named by the settings."""

    publisher_unique_name: str
    publisher_friendly_name: str
    prefix: str
    option_value_prefix: int
    solution_unique_name: str
    solution_friendly_name: str
    version: str

    @classmethod
    def from_settings(cls, settings: Settings) -> SolutionTarget:
        return cls(
            publisher_unique_name=settings.publisher_unique_name,
            publisher_friendly_name=settings.publisher_friendly_name,
            prefix=settings.publisher_prefix,
            option_value_prefix=settings.option_value_prefix,
            solution_unique_name=settings.solution_unique_name,
            solution_friendly_name=settings.solution_friendly_name,
            version=settings.solution_version,
        )

    def publisher_body(self) -> dict[str, Any]:
        """POST publishers body (reference/entities/publisher.md)."""
        return {
            "uniquename": self.publisher_unique_name,
            "friendlyname": self.publisher_friendly_name,
            "customizationprefix": self.prefix,
            "customizationoptionvalueprefix": self.option_value_prefix,
            "description": "Publisher of the schema created by close2d365 (Close to Dynamics 365 migration).",
        }

    def solution_body(self, publisher_id: str) -> dict[str, Any]:
        """POST solutions body (reference/entities/solution.md): an unmanaged solution of our publisher."""
        return {
            "uniquename": self.solution_unique_name,
            "friendlyname": self.solution_friendly_name,
            "version": self.version,
            "description": "Columns, choices, alternate keys and custom activity tables of the migration.",
            "publisherid@odata.bind": odata_bind("publishers", publisher_id),
        }


@dataclass(frozen=True)
class SolutionState:
    publisher_id: str | None  # existing publisher to use (None: create it)
    solution_id: str | None  # existing solution to use (None: create it)
    conflicts: tuple[str, ...]  # each a full sentence naming the fix
    # Our solution is installed managed (the schema was moved here from a sandbox as a managed solution):
    # nothing is created in it; a schema write it would need stops with the fix (target/deploy.py).
    managed: bool = False

    @property
    def ok(self) -> bool:
        return not self.conflicts


def _same(a: Any, b: Any) -> bool:
    """Dataverse compares unique names and prefixes case-insensitively."""
    return str(a or "").casefold() == str(b or "").casefold()


def _describe(pub: Mapping[str, Any]) -> str:
    return (
        f"publisher '{pub.get('friendlyname') or pub.get('uniquename')}' "
        f"(unique name '{pub.get('uniquename')}', prefix '{pub.get('customizationprefix')}')"
    )


def _publisher_conflicts(
    publishers: Sequence[Mapping[str, Any]], ours: Mapping[str, Any] | None, target: SolutionTarget
) -> list[str]:
    out: list[str] = []
    for pub in publishers:
        if pub is ours or not _same(pub.get("customizationprefix"), target.prefix):
            continue
        out.append(
            f"The customization prefix '{target.prefix}' already belongs to {_describe(pub)}, not to the "
            f"migration's publisher '{target.publisher_unique_name}': set publisher_prefix in "
            f"{SETTINGS_FILE} to a prefix no publisher of the target uses, or set publisher.unique_name to "
            f"'{pub.get('uniquename')}' to create the migration's components under that publisher."
        )
    if ours is None:
        return out
    if not _same(ours.get("customizationprefix"), target.prefix):
        out.append(
            f"The publisher '{target.publisher_unique_name}' already exists in the target with customization "
            f"prefix '{ours.get('customizationprefix')}', not '{target.prefix}': set publisher_prefix in "
            f"{SETTINGS_FILE} to '{ours.get('customizationprefix')}', or set publisher.unique_name to the "
            "name of a new publisher for the migration."
        )
    existing_ovp = ours.get("customizationoptionvalueprefix")
    if existing_ovp is not None and int(existing_ovp) != target.option_value_prefix:
        out.append(
            f"The publisher '{target.publisher_unique_name}' already exists in the target with option value "
            f"prefix {existing_ovp}, not {target.option_value_prefix}: set option_value_prefix in "
            f"{SETTINGS_FILE} to {existing_ovp}, or set publisher.unique_name to the name of a new "
            "publisher for the migration."
        )
    return out


def solution_state(
    publishers: list[dict[str, Any]], solutions: list[dict[str, Any]], target: SolutionTarget
) -> SolutionState:
    """What to create (None ids) and what stops the run (conflicts), from the target's rows of `publishers`
    (at least ours and any owning our prefix) and `solutions` (at least the one with our unique name)."""
    ours = next((p for p in publishers if _same(p.get("uniquename"), target.publisher_unique_name)), None)
    conflicts = _publisher_conflicts(publishers, ours, target)
    solution = next((s for s in solutions if _same(s.get("uniquename"), target.solution_unique_name)), None)
    solution_id: str | None = None
    if solution is not None:
        owner_id = str(solution.get("_publisherid_value") or "").lower()
        owner = next((p for p in publishers if str(p.get("publisherid") or "").lower() == owner_id), None)
        ours_id = str((ours or {}).get("publisherid") or "").lower()
        if not ours_id or owner_id != ours_id:
            whose = _describe(owner) if owner is not None else f"the publisher with id {owner_id or '?'}"
            conflicts.append(
                f"The solution '{target.solution_unique_name}' already exists in the target and belongs to "
                f"{whose}, not to the migration's publisher '{target.publisher_unique_name}': set "
                f"solution_unique_name in {SETTINGS_FILE} to a new name, or set publisher.unique_name and "
                "publisher_prefix to that publisher's unique name and prefix."
            )
        else:
            solution_id = str(solution.get("solutionid") or "").lower() or None
    publisher_id = str(ours.get("publisherid") or "").lower() or None if ours is not None else None
    managed = bool(solution is not None and solution.get("ismanaged") and solution_id)
    return SolutionState(publisher_id, solution_id, tuple(conflicts), managed)


def managed_solution_error(solution: str, missing: list[str]) -> str:
    """Why a schema write cannot go into our solution installed as managed, and what to do instead."""
    shown = ", ".join(missing[:10]) + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
    return (
        f"the solution '{solution}' is installed managed in this target (imported from a sandbox), and a "
        f"managed solution cannot take new components; the plan needs {shown}. Create them in the "
        "sandbox (run there), export the solution as managed with a higher version, import it here, then "
        "run again."
    )
