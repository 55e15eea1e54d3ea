"""Where a delta of each close/* table starts comes from the metadata of its latest materialization, read for
every table of the step in one query of the instance: each table gets its own (`watermark`,
`read_started`), a table never materialized gets nothing."""

# No `from __future__ import annotations`: Dagster reads the `context` annotation at definition time.
from datetime import UTC, datetime

import dagster as dg

from migration_assets.defs.close._common import READ_STARTED, _last_time, key_of, latest_metadata


def test_each_table_gets_the_metadata_of_its_latest_materialization() -> None:
    instance = dg.DagsterInstance.ephemeral()

    def materialize(table: str, watermark: str) -> None:
        @dg.asset(key=key_of(table))
        def _table() -> dg.MaterializeResult:
            return dg.MaterializeResult(metadata={"watermark": watermark, READ_STARTED: watermark})

        dg.materialize([_table], instance=instance)

    materialize("leads", "2026-01-01T00:00:00+00:00")
    materialize("leads", "2026-02-01T00:00:00+00:00")
    materialize("calls", "2026-03-01T00:00:00+00:00")
    seen: dict[str, object] = {}

    @dg.asset(key=["probe"])
    def probe(context: dg.AssetExecutionContext) -> None:
        latest = latest_metadata(context, ["leads", "calls", "notes"])
        seen.update({t: _last_time(context, t, "watermark", latest) for t in ("leads", "calls", "notes")})
        seen["alone"] = _last_time(context, "calls", READ_STARTED)

    dg.materialize([probe], instance=instance)
    assert seen == {
        "leads": datetime(2026, 2, 1, tzinfo=UTC),
        "calls": datetime(2026, 3, 1, tzinfo=UTC),
        "notes": None,
        "alone": datetime(2026, 3, 1, tzinfo=UTC),
    }
