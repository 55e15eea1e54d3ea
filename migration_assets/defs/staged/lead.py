"""staged/lead: the sales part of each Close lead; person fields from its first contact, the Close status
label mapped to statecode/statuscode (applied after create) and kept in `<prefix>_closeoriginalstatus`."""

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
from migration_assets.mapping.staging_source import lead_contacts
from migration_assets.resources.api_calls import reports_api_calls
from migration_assets.resources.dataverse import DataverseResource
from migration_assets.resources.warehouse import WarehouseResource


@dg.asset(
    key=[GROUP, "lead"],
    group_name=GROUP,
    deps=[
        close_key("leads"),
        close_key("contacts"),
        staged_key("account"),
        staged_key("contact"),
        OWNER_MAP_KEY,
        TARGET_METADATA_KEY,
    ],
    description="Leads (sales part of Close leads) with their original status label kept.",
)
@reports_api_calls
def lead(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, dataverse: DataverseResource
) -> dg.MaterializeResult:
    cfg = with_custom_fields(load_mapping_config(), "lead")
    with warehouse.connect() as con:
        src = read_object_source(con, cfg, "lead")
        # Close embeds contacts in the lead; the extraction keeps them in close.contacts.
        src = src.drop("contacts", strict=False).join(
            lead_contacts(con), left_on="id", right_on="lead_id", how="left"
        )
        mapped = map_object(src, cfg, "lead", owner_context(con, cfg), entity_sets(con))
        rules = plan_columns(load_rules(con, "lead"), cfg)
        result = validate_and_write(
            warehouse,
            con,
            "lead",
            rules,
            mapped.frame,
            [mapped.rejections],
            [mapped.notices],
            target_lookup=target_lookup(dataverse),
        )
    return materialize_result(result)


lead_target_valid = target_check("lead")
