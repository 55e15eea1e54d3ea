"""schema/preflight: what the target says about this migration, before anything is written to it.

Read-only, in `dry_run`, `migrate` and `delta` (the reads: target/preflight_reads.py). It runs after the
mapping gate (`staged/mapping` mapping_confirmed) and the owner check (`staged/owner_map` owners_resolved), and every asset that writes to
the target hangs below it (schema/solution, then schema/deployed and the custom activity phases, then
loaded/*), so a failed gate or a blocker here stops the run before its first write. It reads:

- who the application users are (WhoAmI, and each configured client id's systemuser) and the privileges
  their roles give them (RetrieveUserPrivileges), against what the plan writes (EntityMetadata.Privileges of
  each table, prvOverrideCreatedOnCreatedBy, the bypass privilege when bypass headers are sent);
- business-required columns of each existing target table that the mapping does not fill;
- the custom tables (IsCustomEntity, unmanaged) plus the planned ones against `target.edition`;
- the request entitlement figures of schema/load_plan; maxuploadfilesize against the Close attachments; the
  base and enabled currencies against the Close currencies; owners mapped to users disabled since;
- the publisher/solution conflicts (`inspect_solution`).

In a delta run whose schema/plan reused the deployed plan (target/plan_reuse.py), the metadata reads are
skipped (table privileges, required columns, custom tables, publisher/solution: their findings are carried
over from the full preflight of that plan, target/preflight_state.py); the credentials, the application
users' privileges, upload limit, currencies and disabled owners are read again. The metadata says so.

Findings (target/preflight.py) go to the asset's metadata as a Markdown table and to `preflight.md` (+ csv) in
the run's reports folder; its blocking check `target_ready` fails on any blocker (WARN in the dry run, whose
review lists the blockers with the other problems).
"""

# No `from __future__ import annotations`: Dagster reads the context annotation at definition time.

import dagster as dg

from migration_assets.audit.files import write_report
from migration_assets.defs.jobs import gate_severity
from migration_assets.defs.staged._common import OWNER_MAP_KEY
from migration_assets.defs.staged.mapping import MAPPING_KEY
from migration_assets.mapping.config import load_mapping_config
from migration_assets.resources.api_calls import reports_api_calls
from migration_assets.resources.dataverse import DataverseResource
from migration_assets.resources.markdown import markdown_table
from migration_assets.resources.warehouse import WarehouseResource
from migration_assets.target import preflight as pf
from migration_assets.target.plan_reuse import reused_in_run, stored_plan
from migration_assets.target.preflight_reads import collect, render
from migration_assets.target.preflight_state import forget_known, load_known, save_known

GROUP = "schema"
PREFLIGHT = dg.AssetKey([GROUP, "preflight"])
PLAN = dg.AssetKey([GROUP, "plan"])
LOAD_PLAN = dg.AssetKey([GROUP, "load_plan"])  # defs/reports/load_plan.py, in the schema group
CHECK = "target_ready"


def load_plan_figures(instance: dg.DagsterInstance) -> tuple[int, int] | None:
    event = instance.get_latest_materialization_event(LOAD_PLAN)
    meta = event.asset_materialization.metadata if event and event.asset_materialization else {}
    requests, pool = meta.get("entitlement_requests"), meta.get("daily_entitlement_pool")
    if requests is None or pool is None:
        return None
    return int(requests.value), int(pool.value)  # type: ignore[arg-type]


@dg.asset(
    key=PREFLIGHT,
    group_name=GROUP,
    deps=[PLAN, MAPPING_KEY, OWNER_MAP_KEY, LOAD_PLAN],
    pool="dataverse_api",
    description="Reads the target (privileges of the application users, business-required columns, custom "
    "tables against the edition, entitlement, file size, currencies, owners, publisher/solution) and lists "
    "each blocker with its fix. Writes nothing; every write of the run waits for its check target_ready.",
    kinds={"dataverse"},
)
@reports_api_calls
def preflight(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, dataverse: DataverseResource
) -> dg.MaterializeResult:
    cfg = load_mapping_config()
    with warehouse.connect() as con:
        # A delta run whose schema/plan reused the deployed plan: the metadata read by the full preflight of
        # that plan still holds (same fingerprint); only what can change between runs is read again.
        reused = reused_in_run(con, context.run.run_id)
        plan = stored_plan(con)
        fingerprint = plan.fingerprint if plan is not None else None
        known = load_known(con, fingerprint) if reused is not None and fingerprint else None
        findings, facts, read = collect(
            dataverse.get_client(),
            cfg,
            con,
            load_plan_figures(context.instance),
            app_client_ids=[u.client_id for u in dataverse.settings().users],
            bypass_custom_logic=dataverse.bypass_custom_logic,
            known=known,
        )
        if known is None and read is not None and fingerprint:
            save_known(con, fingerprint, context.run.run_id, read)
        elif known is None:
            forget_known(con)
    if known is not None:
        context.log.info(f"preflight without the metadata reads: {facts['metadata_reads']}")
    md = render(findings, facts)
    path, _ = write_report(
        context.run.run_id, "preflight", md, [f.row() for f in findings], pf.FINDING_COLUMNS
    )
    for f in pf.blockers(findings):
        context.log.warning(f"preflight blocker: {f.finding} -> {f.fix}")
    return dg.MaterializeResult(
        metadata={
            "blockers": len(pf.blockers(findings)),
            "warnings": len(findings) - len(pf.blockers(findings)),
            "findings": dg.MetadataValue.md(markdown_table([f.row() for f in findings], pf.FINDING_COLUMNS)),
            "findings_json": dg.MetadataValue.json([f.row() for f in findings]),
            "report": dg.MetadataValue.path(str(path)),
            "metadata_reads_skipped": known is not None,
            **{k: str(v) for k, v in facts.items()},
        }
    )


@dg.asset_check(
    asset=PREFLIGHT,
    name=CHECK,
    blocking=True,
    description="The target has no preflight blocker: privileges, business-required columns, custom table "
    "limit, disabled owners, publisher/solution.",
)
def target_ready(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
    event = context.instance.get_latest_materialization_event(PREFLIGHT)
    meta = event.asset_materialization.metadata if event and event.asset_materialization else {}
    rows = meta.get("findings_json")
    findings = [pf.Finding(**r) for r in (rows.value if rows is not None else [])]  # type: ignore[union-attr]
    blockers = pf.blockers(findings)
    return dg.AssetCheckResult(
        passed=rows is not None and not blockers,
        severity=gate_severity(context),  # WARN in the dry run: its review lists the blockers
        description="; ".join(f"{f.finding} -> {f.fix}" for f in blockers)
        or ("the target is ready" if rows is not None else "the preflight did not run"),
        metadata={"blockers": dg.MetadataValue.json([f.row() for f in blockers])},
    )
