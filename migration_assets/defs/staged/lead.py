"""staged/lead's hook: the sales part of each Close lead; person fields from its first contact, the Close
status label mapped to statecode/statuscode (applied after create) and kept in `<prefix>_closeoriginalstatus`."""

from migration_assets.defs.staged._hooks import StagingHook
from migration_assets.mapping.table_staging import with_contacts

HOOK = StagingHook(reads=("contacts",), prepare=with_contacts)
