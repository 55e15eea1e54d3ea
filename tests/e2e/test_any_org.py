"""Issue 9's acceptance on org shapes other than the demo org: the user's flow from the command line
(extract -> propose-mapping -> a scripted review -> one dry run that lists every problem -> run), then every
custom choice value read back from Dataverse with its formatted label and compared with the label in Close
(the generated org is the source of truth here, never our staged tables).
"""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import _migrate_support as s  # noqa: E402 - tests/e2e is on sys.path (rootdir conftest)
import duckdb
import pytest
import yaml

from emulators.dataverse.server import EmulatorServer
from emulators.orgdata import CloseOrg, generate
from emulators.orgdata.shapes import DEFAULT_SHAPE, ORG_SHAPES
from migration_assets.audit import spot_compare as sc
from migration_assets.audit.spot_check import run_spot_check
from migration_assets.clients.dataverse.client import FORMATTED_VALUES, DataverseClient
from migration_assets.demo import demo_dataverse_env, first_enabled_user
from migration_assets.mapping.scripted_review import accept_proposals
from migration_assets.target.proposal import parse_proposal

pytestmark = pytest.mark.e2e
OTHER_SHAPES = [s for s in ORG_SHAPES if s != DEFAULT_SHAPE]
CLOSEID = "c2d_closeid"


@dataclass
class Flow:
    org: CloseOrg
    home: Path
    mappings: Path
    client: DataverseClient
    steps: dict[str, subprocess.CompletedProcess[str]]

    def report_dir(self, step: str) -> Path:
        """The reports folder of the run a step printed (`run <id>: ...`)."""
        out = self.steps[step].stdout + self.steps[step].stderr
        run_ids = [
            w.rstrip(":") for line in out.splitlines() for w in line.split()[1:2] if line.startswith("run ")
        ]
        assert run_ids, out
        return self.home / "reports" / run_ids[-1]


def decisions_for(org: CloseOrg) -> dict[str, Any]:
    """What the reviewing engineer decides: the fallback owner, disabled users to it, and what to do with the
    orphaned values of the one type that has them (drop on one shape, a column on the other, so both paths
    load). The generated orgs hold deliberately bad records: they may be rejected (and reported)."""
    orphaned = org.truth["edge_cases"]["broken_custom_activity_type_id"]
    name = next(t["name"] for t in org.custom_activity_types if t["id"] == orphaned)
    how = "drop" if OTHER_SHAPES.index(org.shape) % 2 == 0 else "column"
    return {
        "owners.yaml": {
            "fallback_owner": first_enabled_user(org.dynamics_users),
            "disabled_users": "fallback",
        },
        "custom_activities.yaml": {name: {"orphaned_values": how}},
        "settings.yaml": {"rejection_thresholds": {"default": {"max_rows": None, "max_fraction": 0.5}}},
    }


@pytest.fixture(scope="module", params=OTHER_SHAPES)
def flow(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flow]:
    org = generate("tiny", 1, org=request.param)
    home = tmp_path_factory.mktemp(f"org_{request.param}")
    mappings = home / "mappings"
    shutil.copytree(s.REPO / "mappings", mappings)
    with s.close_server(org) as close, EmulatorServer(s.dv_config(org)) as dv:
        env = {
            **os.environ,
            **demo_dataverse_env(dv),
            "CLOSE_API_KEY": org.api_key,
            "CLOSE_BASE_URL": close.base_url,
            "CLOSE2D365_CLOSE_SOURCE": "api",
            "CLOSE2D365_HOME": str(home / "home"),
            "CLOSE2D365_MAPPINGS": str(mappings),
        }
        env.pop("DAGSTER_HOME", None)
        steps = {"extract": s.run_cli(env, "extract")}
        assert steps["extract"].returncode == 0, steps["extract"].stderr
        steps["propose"] = s.run_cli(env, "propose-mapping")
        assert steps["propose"].returncode == 0, steps["propose"].stderr
        accept_proposals(mappings, decisions_for(org))
        steps["dry_run"] = s.run_cli(env, "dry-run")
        steps["run"] = s.run_cli(env, "run")
        yield Flow(org, home / "home", mappings, s.client_for(dv), steps)


def test_propose_writes_every_org_file_and_run_succeeds(flow: Flow) -> None:
    printed = flow.steps["propose"].stdout
    for name in (
        "lead_status.yaml",
        "pipelines.yaml",
        "custom_fields.yaml",
        "custom_activities.yaml",
        "owners.yaml",
    ):
        assert (flow.mappings / name).is_file(), name
        assert name in printed, printed
    run = flow.steps["run"]
    assert run.returncode == 0, run.stdout + run.stderr


def _label_sets(value: Any) -> frozenset[str]:
    if value is None:
        return frozenset()
    if isinstance(value, list):
        return frozenset(str(v) for v in value)
    return frozenset([str(value)])


def _read_back(client: DataverseClient, table: str, column: str) -> dict[str, frozenset[str]]:
    """Close id -> the formatted label(s) Dataverse shows for `column` (multi-select labels are joined by "; ")."""
    out: dict[str, frozenset[str]] = {}
    for rec in client.query(table, [column, CLOSEID], annotations=FORMATTED_VALUES):
        label = rec.get(f"{column}@{FORMATTED_VALUES}")
        out[str(rec[CLOSEID])] = frozenset(label.split("; ")) if label else frozenset()
    return out


def _compare(source: dict[str, Any], back: dict[str, frozenset[str]], where: str) -> tuple[int, list[str]]:
    checked, bad = 0, []
    for close_id, value in source.items():
        if close_id not in back:
            continue  # not loaded (rejected and reported): the reconciliation test covers it
        checked += 1
        if back[close_id] != _label_sets(value):
            bad.append(
                f"{where} {close_id}: Close {sorted(_label_sets(value))} != Dataverse {sorted(back[close_id])}"
            )
    return checked, bad


def test_every_custom_choice_reads_back_with_its_close_label(flow: Flow) -> None:
    org, checked, mismatches = flow.org, 0, []
    objects = {"lead": org.leads, "contact": org.contacts, "opportunity": org.opportunities}
    for p in parse_proposal(flow.mappings / "custom_fields.yaml"):
        if p.column.attribute_type not in ("Picklist", "MultiSelectPicklist"):
            continue
        key = f"custom.{p.close_field_id}"
        source = {o["id"]: o.get(key) for o in objects[p.close_object]}
        n, bad = _compare(source, _read_back(flow.client, p.table, p.target), f"{p.table}.{p.target}")
        checked, mismatches = checked + n, mismatches + bad
    types = yaml.safe_load((flow.mappings / "custom_activities.yaml").read_text(encoding="utf-8"))["types"]
    instances = [a for a in org.activities if a.get("custom_activity_type_id")]
    for t in types:
        for f in t.get("fields") or []:
            if f.get("type") != "choices":
                continue
            key = f"custom.{f['close_field_id']}"
            source = {a["id"]: a.get(key) for a in instances if a["custom_activity_type_id"] == t["close_id"]}
            n, bad = _compare(
                source, _read_back(flow.client, t["table"], f["column"]), f"{t['table']}.{f['column']}"
            )
            checked, mismatches = checked + n, mismatches + bad
    pipelines = {p["id"]: p["name"] for p in org.pipelines}
    source = {o["id"]: pipelines[o["pipeline_id"]] for o in org.opportunities}
    n, bad = _compare(
        source, _read_back(flow.client, "opportunity", "c2d_closepipeline"), "opportunity pipeline"
    )
    checked, mismatches = checked + n, mismatches + bad
    assert mismatches == [], mismatches[:20]
    assert checked > 50, checked  # the comparison really ran over the org's values


def _reconciliation(flow: Flow) -> dict[str, dict[str, str]]:
    with (flow.report_dir("run") / "reconciliation.csv").open(encoding="utf-8") as fh:
        return {r["table"]: r for r in csv.DictReader(fh)}


def test_reconciliation_status_matches_what_was_rejected(flow: Flow) -> None:
    rows = _reconciliation(flow)
    assert rows, "no reconciliation rows"
    for table, row in rows.items():
        rejected = int(row.get("rejected") or 0)
        status = row["status"]
        if status.startswith("halted"):
            continue
        if rejected:
            assert status.startswith(f"partial ({rejected} rejected"), (table, row)
        else:
            assert status == "ok", (table, row)


def test_one_dry_run_listed_every_problem_the_run_met(flow: Flow) -> None:
    """Every row the run rejected was already listed by the single dry run before it (one dry run shows every
    problem, not one layer at a time)."""
    dry = flow.report_dir("dry_run")
    assert (dry / "review.md").is_file()
    listed: set[tuple[str, str]] = set()
    for path in dry.glob("rejected_*.csv"):
        with path.open(encoding="utf-8") as fh:
            listed |= {(r["table"], r["close_id"]) for r in csv.DictReader(fh)}
    con = duckdb.connect(str(flow.home / "warehouse.duckdb"), read_only=True)
    try:
        tables = [
            r[0]
            for r in con.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'staged' "
                "AND table_name LIKE '%\\_rejected' ESCAPE '\\'"
            ).fetchall()
        ]
        rejected = {
            (t.removesuffix("_rejected"), str(r[0]))
            for t in tables
            for r in con.execute(f'SELECT DISTINCT _close_id FROM staged."{t}"').fetchall()
        }
    finally:
        con.close()
    assert rejected, "the generated org has deliberately bad records: some must be rejected"
    assert rejected - listed == set(), sorted(rejected - listed)[:20]


def test_every_loaded_record_matches_close_field_by_field(
    flow: Flow, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The spot check over every record instead of a sample, so a rare mapping error cannot hide in the
    sample. The Close side is the raw JSON Close returned (close.*), never our staged rows."""
    monkeypatch.setenv("CLOSE2D365_MAPPINGS", str(flow.mappings))
    con = duckdb.connect(str(flow.home / "warehouse.duckdb"), read_only=True)
    try:
        sampled, rows, source = run_spot_check(con, flow.client, None, "every-record", size=10**6)
    finally:
        con.close()
    assert source.startswith("close.* raw JSON")
    mismatches = [r for r in rows if r["status"] == sc.MISMATCH]
    assert mismatches == [], mismatches[:20]
    assert sum(1 for r in rows if r["status"] == sc.MATCH) > 1000 and sum(map(len, sampled.values())) > 300
