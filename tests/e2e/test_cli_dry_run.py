"""`close2d365 dry-run` from the command line: ONE dry run lists the problems of every layer (an account
rejected at staging, a lead status missing from lead_status.yaml and its cascade, unmatched owners without
a fallback, an unconfirmed mapping entry) in review.md, the rejected_<table>.csv files and the printed
summary, exits 2 with a run that failed in the UI too; nothing is written to the target; and `migrate`
still stops at the first failed gate.

The mapping is made the user's way: extract, propose-mapping, the scripted review accepting every proposal
with the strict defaults (no fallback owner, zero rejections tolerated), then the problems a user would
meet are made on purpose.
"""

from __future__ import annotations

import csv
import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml
from _migrate_support import close_server as close_emulator  # noqa: E402 - tests/e2e is on sys.path
from run_graph import reviewed_mappings  # tests/ is on sys.path (rootdir conftest)

from emulators.dataverse.config import DataverseEmulatorConfig
from emulators.dataverse.server import EmulatorServer
from emulators.orgdata import CloseOrg, generate
from migration_assets.cli import main
from migration_assets.defs.jobs import REVIEW_KEY
from migration_assets.demo import demo_dataverse_env, first_enabled_user, reload_generated_assets
from migration_assets.mapping.scripted_review import accept_proposals
from migration_assets.runtime import instance, run_job

pytestmark = pytest.mark.e2e


def _drop_lead_status(root: Path, labels: Counter[str]) -> tuple[str, int]:
    """Remove the most used lead status that lead_status.yaml maps: (its label, how many leads have it)."""
    path = root / "lead_status.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    folded = {str(k).strip().casefold(): k for k in data["statuses"]}
    label, n = next((lab, n) for lab, n in labels.most_common() if lab.strip().casefold() in folded)
    del data["statuses"][folded[label.strip().casefold()]]
    data["unmapped"] = "reject"
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return label, n


def _unconfirm_one_field(root: Path) -> None:
    """Set `confirmed: false` back on one custom field entry: the review is not finished."""
    path = root / "custom_fields.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["fields"][0]["confirmed"] = False
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")


def _csv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_one_dry_run_lists_every_problem_and_migrate_still_halts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], isolated_home: Path
) -> None:
    org = generate("tiny", 1)
    mappings = tmp_path / "mappings"
    config = DataverseEmulatorConfig(seed_users=[dict(u) for u in org.dynamics_users])
    with close_emulator(org) as close_server, EmulatorServer(config) as dv:
        for key, value in {
            "CLOSE_API_KEY": org.api_key,
            "CLOSE_BASE_URL": close_server.base_url,
            "CLOSE2D365_MAPPINGS": str(mappings),
            **demo_dataverse_env(dv),
        }.items():
            monkeypatch.setenv(key, value)
        assert main(["extract"]) == 0
        reviewed_mappings(mappings)  # propose-mapping + accept every proposal, strict defaults
        reload_generated_assets()
        reviewed_status = (mappings / "lead_status.yaml").read_text(encoding="utf-8")
        label, n_leads = _drop_lead_status(mappings, Counter(str(lead["status_label"]) for lead in org.leads))
        _unconfirm_one_field(mappings)
        capsys.readouterr()

        assert main(["dry-run"]) == 2
        out = capsys.readouterr()
        printed = out.out + out.err

        # What the real load will take under the target's limits, before anything is written.
        predicted = next(x for x in out.out.splitlines() if x.startswith("Predicted load: "))
        assert re.match(
            r"Predicted load: [1-9][\d,]* requests to Dataverse, at least [\d.]+ min under its "
            r"service-protection limits \(1 application user\(s\)",
            predicted,
        ), predicted

        # The UI tells the same story: the run failed, on the review's verdict, with the gates failed.
        run = instance().get_runs(limit=1)[0]
        assert run.job_name == "dry_run" and run.is_failure
        report = isolated_home / "reports" / run.run_id
        review = (report / "review.md").read_text(encoding="utf-8")
        last = out.err.strip().splitlines()[-1]
        assert (
            last.startswith(f"run {run.run_id}: ")
            and "problems" in last
            and str(report / "review.md") in last
        )

        # 1. Accounts: rejected at staging over the zero threshold (the first layer, which used to stop the run).
        accounts = _csv(report / "rejected_account.csv")
        assert accounts and all(r["table"] == "account" and r["close_id"] for r in accounts)
        lines = printed.splitlines()
        threshold = next(line for line in lines if line.startswith("rejection threshold exceeded: "))
        assert "account" in threshold and "mappings/settings.yaml rejection_thresholds" in threshold
        too_long = next(
            line for line in lines if line.startswith("values longer than their column's MaxLength")
        )
        assert "account" in too_long and "truncation.columns" in too_long
        # 2. The missing lead status: every lead with it, in the same run, with the file that fixes it.
        status = f"Close lead status '{label}' is not in mappings/lead_status.yaml"
        assert f"lead: {n_leads} rows: {status} -> add it there (or set unmapped:)" in printed
        assert f"| lead | {n_leads} | {status} |" in review
        leads = _csv(report / "rejected_lead.csv")
        assert {r["close_id"] for r in leads if r["value"] == label} == {
            lead["id"] for lead in org.leads if lead["status_label"] == label
        }
        # Their dependants are listed as a cascade, naming why.
        cascades = [r for f in report.glob("rejected_*.csv") for r in _csv(f) if r["cascade"]]
        assert cascades and all(r["cascade"].startswith("because ") for r in cascades)
        # 3. Unmatched owners without a fallback: the owner gate, with the setting that fixes it.
        assert "owner: " in printed and "fallback_owner" in printed and "owners.yaml" in printed
        # 4. The unfinished review: mapping_confirmed names the file and line.
        mapping = next(line for line in lines if line.startswith("mapping: "))
        assert "mappings/custom_fields.yaml:" in mapping and "confirmed: false" in mapping
        for needle in ("account_target_valid", "lead_target_valid", "owners_resolved", "mapping_confirmed"):
            assert f"| {needle} | FAILED |" in review, needle
        # Every staged table was staged and checked, downstream of the failed gates too.
        checks = {e.check_name: e for e in _run_checks(run.run_id)}
        for table in ("contact", "opportunity", "phonecall", "email", "task", "appointment", "annotation"):
            assert f"{table}_target_valid" in checks, table
        assert checks["plan_clean"].passed is False

        store = dv.app.state.store
        for table in ("account", "contact", "lead", "opportunity", "phonecall", "annotation"):
            assert not store.table(table), f"the dry run wrote {table} rows to the target"

        # `migrate` still halts at the first failed gate: nothing downstream of the accounts is staged.
        result = run_job("migrate")
        assert not result.success
        failed = {e.check_name: e for e in result.get_asset_check_evaluations() if not e.passed}
        assert failed["account_target_valid"].severity.value == "ERROR"
        staged = {e.asset_key.path[-1] for e in result.get_asset_materialization_events()}
        assert "account" in staged and "contact" not in staged and "lead" not in staged
        assert REVIEW_KEY not in {e.asset_key for e in result.get_asset_materialization_events()}
        for table in ("account", "contact", "lead"):
            assert not store.table(table), f"migrate loaded {table} rows past a failed gate"

        # Fixed where the summary said (and the remaining rejected rows tolerated): the next dry run is clean,
        # exits 0, and its run succeeded in the UI.
        (mappings / "lead_status.yaml").write_text(reviewed_status, encoding="utf-8")
        accept_proposals(mappings, _fixes(org))
        reload_generated_assets()  # a new `close2d365` process would read custom_activities.yaml afresh
        capsys.readouterr()
        assert main(["dry-run"]) == 0
        out = capsys.readouterr()
        run = instance().get_runs(limit=1)[0]
        assert run.job_name == "dry_run" and run.is_success
        assert out.out.strip().splitlines()[-1].startswith(f"run {run.run_id}: the plan is clean")
        assert "within the thresholds: " in out.out  # the tolerated rejections are still listed
        assert (isolated_home / "reports" / run.run_id / "review.md").is_file()


def _fixes(org: CloseOrg) -> dict[str, dict[str, Any]]:
    """The decisions the summary asked for: a fallback owner (disabled users to it too), what to do with the
    orphaned values of the type that has them, and a tolerance for the org's deliberately bad records."""
    broken = org.truth["edge_cases"]["broken_custom_activity_type_id"]
    name = next(t["name"] for t in org.custom_activity_types if t["id"] == broken)
    return {
        "owners.yaml": {
            "fallback_owner": first_enabled_user(org.dynamics_users),
            "disabled_users": "fallback",
        },
        "custom_activities.yaml": {name: {"orphaned_values": "drop"}},
        "settings.yaml": {"rejection_thresholds": {"default": {"max_rows": None, "max_fraction": 0.5}}},
    }


def _run_checks(run_id: str) -> list:
    import dagster as dg

    records = instance().all_logs(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)
    return [r.dagster_event.asset_check_evaluation_data for r in records if r.dagster_event]
