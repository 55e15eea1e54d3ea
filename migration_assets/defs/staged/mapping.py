"""staged/mapping: the reviewable mapping proposal, and the gate every loaded/* asset waits for.

`close2d365 propose-mapping` (`migration_assets.target.propose`) writes every org-specific mapping file into the
mappings root in use. The asset never touches that root (a reviewed file is never overwritten by a run):
it writes a fresh proposal to `$CLOSE2D365_HOME/reports/mapping_proposal/` for review or diffing (kept as it
is while Close's configuration, the target and the settings are unchanged: `review_status.PROPOSAL_TABLES`),
and shows the state of the mapping (mapping/review_status.py); the blocking check `mapping_confirmed` fails
while an org file is missing, any `review:` or `confirmed: false` is left (each listed by file:line and key),
a Close custom field / activity type in the data has no entry, or a field map targets a column that neither
the target (the cached metadata) nor the schema plan has (by file:line, with the fix). It stops every write,
schema/* included.
"""

from pathlib import Path

import dagster as dg
import polars as pl

from migration_assets.defs.jobs import gate_severity
from migration_assets.defs.staged._common import GROUP, TARGET_METADATA_KEY, close_key, markdown
from migration_assets.mapping.config import load_settings, mappings_root
from migration_assets.mapping.owners import OWNER_COLUMNS
from migration_assets.mapping.review_status import fresh_proposal, mapping_status, proposal_inputs, reusable
from migration_assets.resources.warehouse import WarehouseResource
from migration_assets.target.close_fields import OBJECT_TABLES

MAPPING_KEY = dg.AssetKey([GROUP, "mapping"])
PROPOSAL_INPUTS_META = "fresh_proposal_inputs"  # what the fresh proposal was made from (review_status.py)
PROPOSAL_INPUTS = (
    "custom_fields",
    "custom_activity_types",
    "custom_activities",
    "users",
    "roles",
    "lead_statuses",
    "pipelines",
    "opportunity_statuses",
    *OBJECT_TABLES.values(),
)


@dg.asset(
    key=MAPPING_KEY,
    group_name=GROUP,
    # Everything propose-mapping reads: the org's configuration, the custom fields' data, the activity
    # instances (orphaned fields) and the record owners (the owner map), plus the target's metadata.
    deps=[*(close_key(t) for t in sorted({*PROPOSAL_INPUTS, *OWNER_COLUMNS})), TARGET_METADATA_KEY],
    description="A fresh proposal of every org mapping file (for diffing) and the review state of the one in use.",
)
def mapping(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
    root = mappings_root()
    settings = load_settings(root)
    previous_inputs, previous_files = _last_proposal(context)
    with warehouse.connect() as con:
        inputs = proposal_inputs(con, settings)
        reused = reusable(previous_inputs, previous_files, inputs)
        fresh = [Path(f) for f in previous_files] if reused else fresh_proposal(con, settings)[1]
        problems, entries = mapping_status(con, root, settings.publisher_prefix)
    kept = " (kept: Close's configuration, the target and the settings are unchanged)" if reused else ""
    context.log.info(
        f"fresh proposal in {fresh[0].parent if fresh else '-'}{kept}; the mapping in use is {root}"
    )
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": entries.height,
            "fresh_proposal": ", ".join(str(path) for path in fresh),
            PROPOSAL_INPUTS_META: inputs,
            "fresh_proposal_reused": reused,
            "mapping_in_use": str(root),
            "open_problems": len(problems),
            "entries": dg.MetadataValue.md(markdown(entries, max_rows=100)),
        }
    )


def _last_proposal(context: dg.AssetExecutionContext) -> tuple[str | None, list[str]]:
    """(inputs digest, files) of the proposal the latest materialization of staged/mapping wrote."""
    event = context.instance.get_latest_materialization_event(MAPPING_KEY)
    mat = event.asset_materialization if event else None
    if mat is None:
        return None, []
    inputs = getattr(mat.metadata.get(PROPOSAL_INPUTS_META), "value", None)
    files = str(getattr(mat.metadata.get("fresh_proposal"), "value", "") or "")
    return (str(inputs) if inputs else None), [f for f in files.split(", ") if f]


@dg.asset_check(
    asset=MAPPING_KEY,
    name="mapping_confirmed",
    blocking=True,
    description="Every org mapping file is there, no `review:` / `confirmed: false` is left, every Close "
    "custom field / activity type is mapped, and every field-map target is a column of the target or of the "
    "schema plan.",
)
def mapping_confirmed(
    context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource
) -> dg.AssetCheckResult:
    root = mappings_root()
    with warehouse.connect() as con:
        problems, entries = mapping_status(con, root, load_settings(root).publisher_prefix)
    return dg.AssetCheckResult(
        passed=not problems,
        severity=gate_severity(context),  # WARN in the dry run: staging goes on to show every problem
        description="; ".join(problems) or "the mapping is confirmed",
        metadata={
            "problems": dg.MetadataValue.md("\n".join(f"- {p}" for p in problems) or "none"),
            "unconfirmed": dg.MetadataValue.md(markdown(entries.filter(~pl.col("confirmed")), max_rows=50))
            if entries.height
            else "none",
        },
    )
