"""Field-map targets against the target table (pure): an entry of `mappings/fields/<table>.yaml` whose target
column the target table does not have and no schema step creates is a mapping error, named by file and line
with its fix, before any row is staged or written.

Without this, a typo (`jobtitlee`) or a custom column left without `custom:` showed only at staging, as every
row with a value rejected (the table over its threshold, its children cascading) after the schema had been
deployed and the tables before it loaded. Now the gate every write waits for (`mapping_confirmed`) names the
entry, once; staging leaves such a column out instead of rejecting rows; and a table's check that does find
rows rejected for such a column (the target's metadata changed since staging) names the same line, never
"a bug". `rules` is the table as staging validates it: the cached target metadata plus the planned columns
(`staged._common.plan_columns`), so the gate, staging and the check agree on what exists.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

from migration_assets.mapping.fields import FieldMap, FieldSpec
from migration_assets.mapping.yaml_loc import MappingError
from migration_assets.target.checks import BIND
from migration_assets.target.rules import TableRules


def staged_column(spec: FieldSpec) -> str:
    """The staged column an entry writes: a lookup becomes `<target>@odata.bind` (staged/_mapping.py)."""
    return spec.target + BIND if spec.lookup else spec.target


def target_known(spec: FieldSpec, rules: TableRules) -> bool:
    """Whether the entry's target exists in the target table or is created by the schema plan."""
    if spec.lookup:
        return bool(rules.lookup_targets(spec.target))
    return spec.target in rules.columns


def unknown_target_error(spec: FieldSpec, rules: TableRules) -> MappingError:
    """The one-line error of an entry whose target does not exist: file, line, key `target`, and the fix."""
    names: Iterable[str] = [*rules.columns, *rules.navigation] if spec.lookup else rules.columns
    near = difflib.get_close_matches(spec.target, list(names), n=1, cutoff=0.8)
    hint = f" (did you mean {near[0]!r}?)" if near else ""
    what = "lookup" if spec.lookup else "column"
    return MappingError(
        spec.file,
        spec.line,
        "target",
        f"{what} {spec.target!r} is neither on table {rules.table} in the target nor created by the schema "
        f"plan{hint} -> correct the name, or add `custom: {{type: ...}}` to this entry to create the column "
        "(a Close custom field: propose it in custom_fields.yaml)",
    )


def unknown_targets(fmap: FieldMap, rules: TableRules) -> list[MappingError]:
    """Every entry of the field map whose target neither the target table nor the schema plan has."""
    return [unknown_target_error(s, rules) for s in fmap.fields if not target_known(s, rules)]


def table_entries(fmaps: Iterable[FieldMap], rules: TableRules) -> list[FieldSpec]:
    """The field-map entries that write to the rules' table (SMS and tasks may share one)."""
    return [s for m in fmaps if m.table == rules.table for s in m.fields]


def unknown_columns(fmaps: Iterable[FieldMap], rules: TableRules) -> list[str]:
    """Staged columns the field maps of the rules' table write to a target that does not exist. Staging leaves
    them out rather than rejecting every row with a value: the mistake is the mapping's, reported once."""
    found = [staged_column(s) for s in table_entries(fmaps, rules) if not target_known(s, rules)]
    return list(dict.fromkeys(found))


def column_errors(
    fmaps: Iterable[FieldMap], rules: TableRules, columns: Iterable[str]
) -> tuple[list[str], list[str]]:
    """(the mapping error of each staged column a field-map entry writes, the columns no entry writes): a
    rejection names the column, this names the file and line to change."""
    entries = {staged_column(s): s for s in table_entries(fmaps, rules)}
    errors, others = [], []
    for column in sorted(set(columns)):
        spec = entries.get(column)
        if spec is None:
            others.append(column)
        else:
            errors.append(str(unknown_target_error(spec, rules)))
    return errors, others
