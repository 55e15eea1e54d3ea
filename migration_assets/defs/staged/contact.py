"""staged/contact: Close contacts attached to their lead's Account (the flagged placeholder Account when
the lead has no name); emails and phones by type, every address and number kept."""

import dagster as dg

from migration_assets.defs.staged._checks import target_check
from migration_assets.defs.staged._common import (
    GROUP,
    OWNER_MAP_KEY,
    TARGET_METADATA_KEY,
    close_key,
    entity_sets,
    load_rules,
    materialize_result,
    owner_context,
    plan_columns,
    staged_key,
    target_lookup,
    validate_and_write,
)
from migration_assets.mapping.config import load_mapping_config
from migration_assets.mapping.custom_fields import with_custom_fields
from migration_assets.mapping.frame import map_object, read_object_source
from migration_assets.resources.api_calls import reports_api_calls
from migration_assets.resources.dataverse import DataverseResource
from migration_assets.resources.warehouse import WarehouseResource


@dg.asset(
    key=[GROUP, "contact"],
    group_name=GROUP,
    deps=[
        close_key("contacts"),
        close_key("leads"),
        staged_key("account"),
        OWNER_MAP_KEY,
        TARGET_METADATA_KEY,
    ],
    description="Contacts with parentcustomerid = their lead's Account (or the placeholder Account).",
)
@reports_api_calls
def contact(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, dataverse: DataverseResource
) -> dg.MaterializeResult:
    cfg = with_custom_fields(load_mapping_config(), "contact")
    with warehouse.connect() as con:
        src = read_object_source(con, cfg, "contact")
        mapped = map_object(src, cfg, "contact", owner_context(con, cfg), entity_sets(con))
        rules = plan_columns(load_rules(con, "contact"), cfg)
        result = validate_and_write(
            warehouse,
            con,
            "contact",
            rules,
            mapped.frame,
            [mapped.rejections],
            [mapped.notices],
            target_lookup=target_lookup(dataverse),
        )
    return materialize_result(result)


contact_target_valid = target_check("contact")
