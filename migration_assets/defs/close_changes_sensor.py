"""close_changes_sensor: observes Close during the migration window and launches the delta runs itself
(DESIGN §8). Off by default (switched on in the UI's Automation tab), every CLOSE2D365_OBSERVE_SECONDS.

Each tick records an observation of every Close table (the same as the `close__observe` step:
defs/close/observe.py), so the UI's staleness follows Close even while no run happens. When the version of
Close some close/* asset was extracted from is no longer the current one, it requests a `delta` run of
those close/* assets and everything downstream of them in that job, keyed on the versions (a tick that
sees the same versions again does not request the same run twice).
"""

# No `from __future__ import annotations`: Dagster inspects the sensor function's annotations.
import hashlib
from collections.abc import Sequence

import dagster as dg

from migration_assets.defs.close._common import key_of
from migration_assets.defs.close.observe import OBSERVED_TABLES, Observation, observe_close
from migration_assets.defs.jobs import DELTA_JOB, DELTA_RUN_CONFIG
from migration_assets.resources.close import CloseResource
from migration_assets.resources.env import observe_interval_seconds

INPUT_VERSION_TAG = "dagster/input_data_version/"  # + the upstream key: the version a materialization read


def extracted_from(instance: dg.DagsterInstance, observation: Observation) -> str | None:
    """The version of Close that close/<table>'s latest materialization read ("" when it recorded none:
    extracted before any observation); None when the table was never extracted (a migration comes first)."""
    event = instance.get_latest_materialization_event(key_of(observation.table))
    materialization = event.asset_materialization if event else None
    if materialization is None:
        return None
    tags = materialization.tags or {}
    return tags.get(INPUT_VERSION_TAG + observation.key.to_user_string(), "")


def behind(instance: dg.DagsterInstance, observations: Sequence[Observation]) -> list[Observation]:
    """The observed tables whose close/* asset was extracted from another version of Close than now."""
    out = []
    for observation in observations:
        read = extracted_from(instance, observation)
        if read is not None and read != observation.version:
            out.append(observation)
    return out


def delta_selection(context: dg.SensorEvaluationContext, tables: Sequence[str]) -> list[dg.AssetKey]:
    """close/<table> for `tables` and everything downstream of them that the delta job materializes."""
    start = dg.AssetSelection.assets(*(key_of(t) for t in tables))
    definitions = context.repository_def
    if definitions is None:
        return sorted(key_of(t) for t in tables)
    graph = definitions.asset_graph
    in_job = definitions.get_job(DELTA_JOB).asset_layer.selected_asset_keys
    return sorted(k for k in start.downstream().resolve(graph) if k in in_job)


@dg.sensor(
    name="close_changes_sensor",
    job_name=DELTA_JOB,
    minimum_interval_seconds=observe_interval_seconds(),
    default_status=dg.DefaultSensorStatus.STOPPED,
    description="Observes Close (event log, date probes, configuration objects) and, when Close changed "
    "since the close/* assets were extracted, runs `delta` for those assets and their downstream.",
)
def close_changes_sensor(context: dg.SensorEvaluationContext, close: CloseResource) -> dg.SensorResult:
    observations = observe_close(context.instance, close.get_client(), OBSERVED_TABLES)
    events = [o.as_event() for o in observations]
    stale = behind(context.instance, observations)
    if not stale:
        return dg.SensorResult(
            asset_events=events, skip_reason="Close has not changed since the last extraction"
        )
    tables = [o.table for o in stale]
    versions = "\n".join(f"{o.table}={o.version}" for o in stale)
    request = dg.RunRequest(
        run_key="close-changes-" + hashlib.sha256(versions.encode()).hexdigest()[:16],
        run_config=DELTA_RUN_CONFIG,
        asset_selection=delta_selection(context, tables),
        tags={"close2d365/changed_tables": ",".join(tables)},
    )
    context.log.info(f"Close changed: {', '.join(tables)}; requesting a delta run")
    return dg.SensorResult(asset_events=events, run_requests=[request])
