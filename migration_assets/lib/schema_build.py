"""Build the schema plan from `mappings/` (field maps' custom columns, choice sets), the confirmed custom
field proposal (`mappings/custom_fields.yaml`) and the Close custom activity types (pure)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from migration_assets.lib.custom_activities import ActivityType, field_values, option_values
from migration_assets.lib.mapping_config import MappingConfig
from migration_assets.lib.proposal import FieldProposal
from migration_assets.lib.schema_plan import ColumnSpec, SchemaPlan, SchemaPlanError, TableSpec, key_for
from migration_assets.lib.schema_types import ColumnType, column_type_for, schema_name

# Tables whose Close id column is unique by construction get an alternate key on it. Not annotation: its
# Close id is the note/activity it came from, and one email can carry several attachments.
KEYED_TABLES = ("account", "contact", "lead", "opportunity", "phonecall", "email", "task", "appointment")


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
    return ColumnSpec(table, column, schema_name(column, display), ctype, display, display,
                      custom.max_length, fmt, None, options)  # fmt: skip


def _from_type(
    table: str, column: str, label: str, col: ColumnType, prefix_value: int, description: str
) -> ColumnSpec:
    options = (
        tuple((v, k) for k, v in option_values(col.options, prefix_value).items()) if col.options else ()
    )
    return ColumnSpec(table, column, schema_name(column, label), col.attribute_type, label, description,
                      col.max_length, col.format, col.precision, options, col.lookup_target)  # fmt: skip


def build_plan(
    config: MappingConfig,
    proposals: Sequence[FieldProposal] = (),
    activity_types: Sequence[ActivityType] = (),
    activity_field_defs: Mapping[str, Mapping[str, Any]] | None = None,
    activity_instances: Sequence[Mapping[str, Any]] = (),
) -> SchemaPlan:
    """Everything the load needs in the target. `activity_field_defs` maps cf_id -> the full custom field
    definition (with `choices`, which the custom activity type listing leaves out)."""
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
    add(ColumnSpec("account", accounts.flag_column, schema_name(accounts.flag_column, "Placeholder account"),
                   "Boolean", "Placeholder account", "Account created for Close leads without a name"))  # fmt: skip
    add(ColumnSpec("account", accounts.merged_ids_column, schema_name(accounts.merged_ids_column, "Close lead ids"),
                   "Memo", "Close lead ids", "Ids of the Close leads merged into this account", 100_000))  # fmt: skip
    for p in proposals:
        if p.action != "new":
            continue
        if not p.confirmed:
            raise SchemaPlanError(
                f"custom field {p.close_name!r} ({p.close_field_id}) is not confirmed in custom_fields.yaml"
            )
        add(
            _from_type(
                p.table,
                p.target,
                p.close_name,
                p.column,
                prefix_value,
                f"Close custom field {p.close_name} ({p.close_field_id})",
            )
        )
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
    prefix = config.settings.publisher_prefix
    for table in [*KEYED_TABLES, *(t.table for t in activity_types)]:
        plan.keys.append(key_for(table, closeid, prefix))
    return plan
