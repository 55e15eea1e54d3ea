"""staged/account's hook: one Account per distinct normalised lead name, staged its own way
(mapping/account_staging.py)."""

import dagster as dg

from migration_assets.defs.staged._common import materialize_result
from migration_assets.defs.staged._hooks import StagingHook
from migration_assets.mapping.account_staging import stage_accounts
from migration_assets.mapping.table_staging import DeltaInputs
from migration_assets.resources.dataverse import DataverseResource
from migration_assets.resources.warehouse import WarehouseResource


def stage(
    context: dg.AssetExecutionContext,
    warehouse: WarehouseResource,
    dataverse: DataverseResource,
    inputs: DeltaInputs,
) -> dg.MaterializeResult:
    # Its incremental staging reads close.leads alone (account_staging.py plans it itself).
    staging = stage_accounts(warehouse, incremental=True)
    return materialize_result(
        staging.result,
        {"leads_read": staging.leads_read, "accounts_with_merged_leads": staging.accounts_with_merged_leads},
    )


# No owners (an Account is owned by whoever loads it), no lookup of records already in the target.
HOOK = StagingHook(owners=False, stage=stage)
