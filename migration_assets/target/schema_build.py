"""Build the schema plan from `mappings/` (field maps' custom columns, choice sets), the confirmed custom
field proposal (`mappings/custom_fields.yaml`) and the Close custom activity types (pure)."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import replace
from typing import Any

from migration_assets.clients.dataverse.metadata import EntityMeta
from migration_assets.mapping.config import MappingConfig
from migration_assets.mapping.custom_activities import (
    ActivityType,
    field_values,
    joined_text,
    orphan_columns,
    orphan_display_name,
    orphaned_field_ids,
)
from migration_assets.mapping.tables import table_registry
from migration_assets.target.proposal import FieldProposal
from migration_assets.target.schema_plan import ColumnSpec, SchemaPlan, SchemaPlanError, TableSpec, key_for
from migration_assets.target.schema_types import ColumnType, column_type_for, option_values, schema_name


def closeid_column(config: MappingConfig) -> str:
    return f"{config.settings.publisher_prefix}_closeid"


def _from_custom(table: str, column: str, custom: Any, config: MappingConfig) -> ColumnSpec:
    ctype, fmt, options = custom.type, None, ()
    if ctype == "DateOnly":
        ctype, fmt = "DateTime", "DateOnly"
    elif ctype == "DateTime":
        fmt = "DateAndTime"
    if ctype in ("Picklist", "MultiSelectPicklist"):
        if not custom.choice_set or custom.choice_set not in config.choice_sets:
            raise SchemaPlanError(
                f"{table}.{column}: choice column without a known choice_set ({custom.choice_set!r})"
            )
        opts = config.choice_sets[custom.choice_set].options
        options = tuple(sorted(((int(v), str(k)) for k, v in opts.items()), key=lambda o: o[0]))
        options = tuple(dict(options).items())  # one label per value (several labels may share one)
    display = custom.display_name or column
    return ColumnSpec(
        table,
        column,
        schema_name(column, display),
        ctype,
        display,
        display,
        custom.max_length,
        fmt,
        None,
        options,
    )


def planned_choices(plan: SchemaPlan, table: str, column: str) -> dict[str, int] | None:
    """Close label -> option value of a choice column the plan creates (None: not a planned choice column).
    What staging writes for a label, so the value is the one whose Dynamics label is that label."""
    for c in plan.columns:
        if c.table == table and c.logical_name == column and c.type in ("Picklist", "MultiSelectPicklist"):
            return {text: value for value, text in c.options}
    return None


def _from_type(
    table: str, column: str, label: str, col: ColumnType, prefix_value: int, description: str
) -> ColumnSpec:
    options = tuple((v, k) for k, v in option_values(col.options, prefix_value).items())
    return ColumnSpec(
        table,
        column,
        schema_name(column, label),
        col.attribute_type,
        label,
        description,
        col.max_length,
        col.format,
        col.precision,
        options,
        col.lookup_target,
    )


def proposal_column(p: FieldProposal, option_value_prefix: int) -> ColumnSpec:
    """The column a confirmed `action: new` proposal of custom_fields.yaml creates (options numbered in the
    order of `column.options`, Close's choice order)."""
    return _from_type(
        p.table,
        p.target,
        p.close_name,
        p.column,
        option_value_prefix,
        f"Close custom field {p.close_name} ({p.close_field_id})",
    )


def orphan_specs(
    t: ActivityType, instances: Sequence[Mapping[str, Any]], prefix: str, closeid: str
) -> list[ColumnSpec]:
    """One String (Memo when too long) column per field the type's instances use but the type no longer
    defines (`orphaned_values: column`), sized by the values (lists joined as staging writes them)."""
    used = {k for i in instances for k, v in i.items() if k.startswith("custom.") and v not in (None, [], "")}
    names = orphan_columns(t, orphaned_field_ids(t, used), prefix, closeid)
    out = []
    for fid, column in names.items():
        values = [joined_text(v) for v in field_values(instances, fid)]
        col = column_type_for({"type": "text"}, [v for v in values if v])
        label = orphan_display_name(fid)
        out.append(
            ColumnSpec(
                t.table,
                column,
                schema_name(column, label),
                col.attribute_type,
                label,
                f"Values of the Close custom field {fid}, deleted from type {t.close_name} in Close",
                col.max_length,
            )
        )
    return out


def align_options(
    plan: SchemaPlan,
    existing: Mapping[str, EntityMeta | None],
    option_value_prefix: int,
    tables: Collection[str],
) -> SchemaPlan:
    """The plan with the choice columns of `tables` that already exist in the target numbered as the target
    numbers them: each label the column has keeps its value, new labels take free values. Staging reads the
    values from the saved plan, so a Close label is written as the option that shows that label even when
    Close's choice list changed (or an older plan numbered the options otherwise) since the column was made."""
    columns = []
    for c in plan.columns:
        meta = existing.get(c.table)
        attr = meta.attributes.get(c.logical_name) if meta is not None else None
        if c.table in tables and c.options and attr is not None and attr.options:
            have = {o.label: o.value for o in attr.options if o.label}
            values = option_values([label for _, label in c.options], option_value_prefix, have)
            c = replace(c, options=tuple((v, label) for label, v in values.items()))
        columns.append(c)
    return SchemaPlan(list(plan.tables), columns, list(plan.keys))


def build_plan(
    config: MappingConfig,
    proposals: Sequence[FieldProposal] = (),
    activity_types: Sequence[ActivityType] = (),
    activity_field_defs: Mapping[str, Mapping[str, Any]] | None = None,
    activity_instances: Sequence[Mapping[str, Any]] = (),
    orphan_column_tables: Collection[str] = (),
) -> SchemaPlan:
    """Everything the load needs in the target. `activity_field_defs` maps cf_id -> the full custom field
    definition (with `choices`, which the custom activity type listing leaves out). `orphan_column_tables`:
    custom activity tables whose type keeps values of deleted fields in columns (`orphaned_values: column`)."""
    plan = SchemaPlan()
    prefix_value = config.settings.option_value_prefix
    closeid = closeid_column(config)
    seen: set[tuple[str, str]] = set()

    def add(spec: ColumnSpec) -> None:
        if (spec.table, spec.logical_name) not in seen:
            seen.add((spec.table, spec.logical_name))
            plan.columns.append(spec)

    for table, columns in sorted(config.custom_columns().items()):
        for column, custom in sorted(columns.items()):
            add(_from_custom(table, column, custom, config))
    # Account bookkeeping columns written by staged/account (accounts.yaml), not declared in a field map.
    accounts = config.accounts
    add(
        ColumnSpec(
            "account",
            accounts.flag_column,
            schema_name(accounts.flag_column, "Placeholder account"),
            "Boolean",
            "Placeholder account",
            "Account created for Close leads without a name",
        )
    )
    add(
        ColumnSpec(
            "account",
            accounts.merged_ids_column,
            schema_name(accounts.merged_ids_column, "Close lead ids"),
            "Memo",
            "Close lead ids",
            "Ids of the Close leads merged into this account",
            100_000,
        )
    )
    for p in proposals:
        if p.action != "new":
            continue
        if not p.confirmed:
            raise SchemaPlanError(
                f"custom field {p.close_name!r} ({p.close_field_id}) is not confirmed in custom_fields.yaml"
            )
        add(proposal_column(p, prefix_value))
    defs = activity_field_defs or {}
    for t in activity_types:
        plan.tables.append(
            TableSpec(
                t.table, t.schema, t.close_name, t.description or f"Close custom activity {t.close_name}"
            )
        )
        add(
            ColumnSpec(
                t.table, closeid, schema_name(closeid, "Close id"), "String", "Close id", "Close id", 100
            )
        )
        mine = [i for i in activity_instances if i.get("custom_activity_type_id") == t.close_type_id]
        for f in t.fields:
            definition = {**f.raw, **defs.get(f.close_field_id, {})}
            col = column_type_for(definition, field_values(mine, f.close_field_id))
            add(
                _from_type(
                    t.table,
                    f.column,
                    f.close_name,
                    col,
                    prefix_value,
                    f"Close custom field {f.close_name} ({f.close_field_id})",
                )
            )
        if t.table in orphan_column_tables:
            for spec in orphan_specs(t, mine, config.settings.publisher_prefix, closeid):
                add(spec)
    prefix = config.settings.publisher_prefix
    # Tables whose Close id column is unique by construction get an alternate key on it (mapping/tables.py).
    for table in [*table_registry().keyed, *(t.table for t in activity_types)]:
        plan.keys.append(key_for(table, closeid, prefix))
    return plan
