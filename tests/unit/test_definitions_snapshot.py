"""A snapshot of the definitions: every asset with its group, kinds, step, dependencies and checks, and
every job's selection. Any change to the lineage shows as a diff of `snapshots/definitions.json` in review.

After a deliberate change: `CLOSE2D365_UPDATE_SNAPSHOT=1 pytest tests/unit/test_definitions_snapshot.py`,
then read the diff before committing it.
"""

from __future__ import annotations

import difflib
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import dagster as dg

SNAPSHOT = Path(__file__).parent / "snapshots" / "definitions.json"


def describe(defs: dg.Definitions) -> dict[str, Any]:
    """The lineage of the definitions as plain, sorted data."""
    graph = defs.get_repository_def().asset_graph
    checks: dict[str, list[dict[str, Any]]] = {}
    for check_key in graph.asset_check_keys:
        spec = graph.get_check_spec(check_key)
        checks.setdefault(check_key.asset_key.to_user_string(), []).append(
            {"name": check_key.name, "blocking": spec.blocking}
        )
    assets = {}
    for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string()):
        node = graph.get(key)
        assets[key.to_user_string()] = {
            "group": node.group_name,
            # The step that computes it: assets of one multi_asset (one pass over a source) share it.
            "step": node.assets_def.node_def.name,
            "kinds": sorted(node.kinds),
            "deps": sorted(parent.to_user_string() for parent in node.parent_keys),
            "checks": sorted(checks.get(key.to_user_string(), []), key=lambda c: c["name"]),
        }
    jobs = {}
    for job in sorted(defs.resolve_all_job_defs(), key=lambda j: j.name):
        if job.name.startswith("__"):
            continue
        layer = job.asset_layer
        jobs[job.name] = {
            "assets": sorted(k.to_user_string() for k in layer.executable_asset_keys),
            "checks": sorted(
                f"{c.asset_key.to_user_string()}:{c.name}" for c in layer.asset_graph.asset_check_keys
            )
            if layer.executable_asset_keys
            else [],
        }
    return {"assets": assets, "jobs": jobs}


def test_the_definitions_match_their_snapshot(reviewed_mappings: Path) -> None:
    # A fresh process: the definitions are built once per process, from the mappings of that moment, and
    # another test of this worker may have built them from another org's mappings.
    env = {**os.environ, "CLOSE2D365_MAPPINGS": str(reviewed_mappings)}
    code = (
        "import json, sys; sys.path.insert(0, sys.argv[1]); from test_definitions_snapshot import describe; "
        "from migration_assets.definitions import defs; print(json.dumps(describe(defs), indent=1, sort_keys=True))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(Path(__file__).parent)], env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    now = out.stdout
    if os.environ.get("CLOSE2D365_UPDATE_SNAPSHOT") == "1":
        SNAPSHOT.write_text(now)
    before = SNAPSHOT.read_text()
    diff = "".join(
        difflib.unified_diff(before.splitlines(True), now.splitlines(True), "snapshot", "definitions")
    )
    assert not diff, f"the definitions changed (update the snapshot if this is intended):\n{diff}"
