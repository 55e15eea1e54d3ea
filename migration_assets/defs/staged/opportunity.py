"""staged/opportunity's hook: value in currency units, the lead's Account as customer, pipeline and status as
choice columns; won/lost deals carry `_close_action` (WinOpportunity/LoseOpportunity after create)."""

from migration_assets.defs.staged._hooks import StagingHook
from migration_assets.mapping.table_staging import closing, no_state_patch

HOOK = StagingHook(finish=closing, post=no_state_patch)
