"""Issue 13's acceptance: the delta cutover from the command line, verified against a fresh migration.

Migrate a generated org (`close2d365 run`); change it through the Close emulator's public API (creates,
updates and deletes of every migrated type, an attachment, a lead merge); observe Close
(`close2d365 observe`) and read Dagster's staleness from the instance: exactly the assets downstream of
what changed are unsynced; run the delta (`close2d365 delta`). Dataverse then holds, field by field, what a
fresh full migration of the mutated org into an empty target produces; a rollback of the delta restores the
state before it, deleted records included. `close2d365 cutover` refuses while Close is still changing and
goes ahead once it has been quiet (Close's clock is moved, nothing waits).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import _migrate_support as s  # noqa: E402 - tests/e2e is on sys.path (rootdir conftest)
import duckdb
import pytest
from _close_mutations import ATTACHMENT_BYTES, Mutations, close_http, mutate_every_type

from emulators.close.server import CloseEmulatorServer
from emulators.dataverse.server import EmulatorServer
from emulators.orgdata import CloseOrg, generate
from migration_assets.audit.reconciliation import target_tables
from migration_assets.demo import demo_dataverse_env, first_enabled_user
from migration_assets.mapping.scripted_review import accept_proposals

pytestmark = pytest.mark.e2e

# Columns the server sets on every write: they differ between any two targets and say nothing about
# what was migrated.
SYSTEM_COLUMNS = frozenset(
    {
        "overriddencreatedon",  # after a create with a historical date: the import time (reference §7.12)
        "modifiedon",
        "versionnumber",
        "_createdby_value",
        "_modifiedby_value",
        "_createdonbehalfby_value",
        "_modifiedonbehalfby_value",
        "timezoneruleversionnumber",
        "utcconversiontimezonecode",
        "importsequencenumber",
    }
)
State = dict[str, dict[str, dict[str, Any]]]
TEST_STARTED = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Cutover:
    org: CloseOrg
    close: CloseEmulatorServer
    env: dict[str, str]
    home: Path
    tables: list[str]
    mutations: Mutations
    before: State  # after the first migration
    after_delta: State
    fresh: State  # a fresh full migration of the mutated org into an empty target
    after_rollback: State
    steps: dict[str, subprocess.CompletedProcess[str]] = field(default_factory=dict)
    unsynced: dict[str, set[str]] = field(default_factory=dict)  # moment -> unsynced asset keys
    expected_unsynced: dict[str, set[str]] = field(default_factory=dict)


def ok(step: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert step.returncode == 0, f"{step.args}\n{step.stdout}\n{step.stderr}"
    return step


def run_id_of(step: subprocess.CompletedProcess[str]) -> str:
    ids = [line.split()[1].rstrip(":") for line in step.stdout.splitlines() if line.startswith("run ")]
    assert ids, step.stdout
    return ids[-1]


def decisions(org: CloseOrg) -> dict[str, Any]:
    """The reviewing engineer's decisions: a fallback owner, the orphaned values of the org's one broken
    custom activity type dropped (so nothing halts and a cutover can say "go"), deleted Close records
    deleted in Dataverse (so that the delta's target can equal a fresh migration's)."""
    broken = org.truth["edge_cases"]["broken_custom_activity_type_id"]
    name = next(t["name"] for t in org.custom_activity_types if t["id"] == broken)
    return {
        "owners.yaml": {
            "fallback_owner": first_enabled_user(org.dynamics_users),
            "disabled_users": "fallback",
        },
        "custom_activities.yaml": {name: {"orphaned_values": "drop"}},
        "settings.yaml": {
            "rejection_thresholds": {"default": {"max_rows": None, "max_fraction": 0.5}},
            "delta": {"deleted_records": "delete"},
        },
    }


def environment(
    org: CloseOrg, close: CloseEmulatorServer, dv: EmulatorServer, home: Path, maps: Path
) -> dict:
    env = {
        **os.environ,
        **demo_dataverse_env(dv),
        "CLOSE_API_KEY": org.api_key,
        "CLOSE_BASE_URL": close.base_url,
        "CLOSE2D365_CLOSE_SOURCE": "api",
        "CLOSE2D365_HOME": str(home),
        "CLOSE2D365_MAPPINGS": str(maps),
    }
    env.pop("DAGSTER_HOME", None)
    return env


def state(dv: EmulatorServer, tables: list[str]) -> State:
    """Every record of the migrated tables, without the columns the server sets on each write."""
    client = s.client_for(dv)
    try:
        raw = s.snapshot(client, tables)
    finally:
        client.close()
    return {
        t: {
            rid: {k: _historical(k, v) for k, v in rec.items() if k not in SYSTEM_COLUMNS}
            for rid, rec in recs.items()
        }
        for t, recs in raw.items()
    }


def _historical(column: str, value: Any) -> Any:
    """createdon is the Close record's date where the migration sets one; else the server's time of the
    create, which differs between any two targets."""
    if column == "createdon" and isinstance(value, str) and value >= TEST_STARTED:
        return "(set by the server)"
    return value


def differences(left: State, right: State) -> list[str]:
    out = []
    for table in sorted(set(left) | set(right)):
        a, b = left.get(table, {}), right.get(table, {})
        out += [f"{table} {rid}: only on the left" for rid in sorted(set(a) - set(b))]
        out += [f"{table} {rid}: only on the right" for rid in sorted(set(b) - set(a))]
        for rid in sorted(set(a) & set(b)):
            cols = sorted(c for c in set(a[rid]) | set(b[rid]) if a[rid].get(c) != b[rid].get(c))
            out += [f"{table} {rid}.{c}: {a[rid].get(c)!r} != {b[rid].get(c)!r}" for c in cols]
    return out


def migrated_tables(home: Path) -> list[str]:
    con = duckdb.connect(str(home / "warehouse.duckdb"), read_only=True)
    try:
        return [t for t, _ in target_tables(con)]
    finally:
        con.close()


def unsynced(env: dict[str, str]) -> set[str]:
    """Asset keys Dagster's staleness marks as unsynced on the run's instance (as the UI shows them)."""
    from migration_assets.cutover import unsynced_assets

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CLOSE2D365_HOME", env["CLOSE2D365_HOME"])
        mp.setenv("CLOSE2D365_MAPPINGS", env["CLOSE2D365_MAPPINGS"])
        # runtime.dagster_home() exports DAGSTER_HOME for the process: an earlier test's must not win.
        mp.delenv("DAGSTER_HOME", raising=False)
        return {k.to_user_string() for k in unsynced_assets()}


@pytest.fixture(scope="module")
def cut(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cutover]:
    org = generate("tiny", 1)
    root = tmp_path_factory.mktemp("delta")
    maps = root / "mappings"
    shutil.copytree(s.REPO / "mappings", maps)
    with s.close_server(org) as close, EmulatorServer(s.dv_config(org)) as dv:
        env = environment(org, close, dv, root / "home", maps)
        steps = {"extract": ok(s.run_cli(env, "extract")), "propose": ok(s.run_cli(env, "propose-mapping"))}
        accept_proposals(maps, decisions(org))
        steps["run"] = ok(s.run_cli(env, "run"))
        tables = migrated_tables(root / "home")
        before = state(dv, tables)
        moments: dict[str, set[str]] = {"after run": unsynced(env)}
        expected: dict[str, set[str]] = {"after run": set()}

        # One change in Close: exactly its close/* asset and what is downstream of it become unsynced.
        http = close_http(close.base_url, org.api_key)
        contact = next(c for c in org.contacts if c.get("title") != "Chief Delta Officer")
        assert http.put(f"contact/{contact['id']}/", json={"title": "VP Delta"}).status_code == 200
        steps["observe one"] = ok(s.run_cli(env, "observe"))
        moments["one contact"] = unsynced(env)

        mutations = mutate_every_type(http, org)
        steps["observe all"] = ok(s.run_cli(env, "observe"))
        moments["every type"] = unsynced(env)
        steps["delta"] = ok(s.run_cli(env, "delta"))
        moments["after delta"] = unsynced(env)
        expected["after delta"] = set()
        after_delta = state(dv, tables)

        # A fresh full migration of the mutated org into an empty target, with the same reviewed mappings.
        with EmulatorServer(s.dv_config(org)) as fresh_dv:
            fresh_env = environment(org, close, fresh_dv, root / "fresh_home", maps)
            steps["fresh run"] = ok(s.run_cli(fresh_env, "run"))
            fresh = state(fresh_dv, tables)

        steps["rollback"] = ok(s.run_cli(env, "rollback", "--run", run_id_of(steps["delta"])))
        after_rollback = state(dv, tables)
        http.close()
        yield Cutover(
            org,
            close,
            env,
            root / "home",
            tables,
            mutations,
            before,
            after_delta,
            fresh,
            after_rollback,
            steps,
            moments,
            expected,
        )


def test_observation_marks_exactly_what_changed_in_close_as_unsynced(cut: Cutover) -> None:
    assert cut.unsynced["after run"] == set(), cut.steps["run"].stdout
    # Dagster marks the assets whose input moved: the Close tables the change touched (a contact's edit
    # also moves its lead's date_updated). What is downstream follows in the same delta run.
    assert "close/contacts" in cut.unsynced["one contact"]
    assert cut.unsynced["one contact"] <= {"close/contacts", "close/leads"}
    changed = cut.unsynced["every type"]
    for table in (
        "leads",
        "contacts",
        "opportunities",
        "tasks",
        "calls",
        "emails",
        "sms",
        "meetings",
        "notes",
    ):
        assert f"close/{table}" in changed
    # Configuration Close did not change stays in sync.
    for table in ("users", "lead_statuses", "opportunity_statuses", "pipelines", "custom_activity_types"):
        assert f"close/{table}" not in changed
    # After the delta only the spot check waits: it compares the whole target with Close, which the delta
    # leaves to `verify` (run by the cutover) so that its requests stay proportional to the change.
    # The security-role plan, an admin review, is left to `verify` too.
    assert cut.unsynced["after delta"] <= {"reports/spot_check", "reports/security_roles"}


def test_the_delta_leaves_what_a_fresh_full_migration_of_the_changed_org_produces(cut: Cutover) -> None:
    diffs = differences(cut.after_delta, cut.fresh)
    assert diffs == [], "\n".join(diffs[:60])
    assert cut.after_delta != cut.before  # the changes did move


def test_deleted_and_merged_records_are_gone_and_the_attachment_arrived(cut: Cutover) -> None:
    closeids = {t: {rec.get("c2d_closeid") for rec in recs.values()} for t, recs in cut.after_delta.items()}
    every = set().union(*closeids.values())
    for kind in ("contact", "opportunity", "email", "note"):
        for close_id in cut.mutations.deleted[kind]:
            assert close_id not in every, (kind, close_id)
    source, destination = cut.mutations.merged or ("", "")
    assert source not in every
    assert destination in every
    notes = [r for r in cut.after_delta["annotation"].values() if r.get("filename") == "delta.png"]
    assert len(notes) == 1
    import base64

    assert base64.b64decode(notes[0]["documentbody"]) == ATTACHMENT_BYTES


def test_the_delta_writes_only_what_changed(cut: Cutover) -> None:
    run_id = run_id_of(cut.steps["delta"])
    con = duckdb.connect(str(cut.home / "warehouse.duckdb"), read_only=True)
    try:
        written = con.execute(
            "SELECT count(*) FROM ledger.writes WHERE run_id = ? AND rolled_back_by IS NULL OR run_id = ?",
            [run_id, run_id],
        ).fetchone()[0]
    finally:
        con.close()
    changes = sum(len(v) for v in cut.mutations.created.values()) + sum(
        len(v) for v in cut.mutations.updated.values()
    )
    records = sum(len(recs) for recs in cut.before.values())
    # Each change touches a few records (a lead: its account; a merge: the children it moves), never the org.
    assert 0 < written < records / 5, (written, changes, records)


def test_a_rollback_of_the_delta_restores_the_state_before_it(cut: Cutover) -> None:
    diffs = differences(cut.after_rollback, cut.before)
    assert diffs == [], "\n".join(diffs[:60])


def test_cutover_refuses_while_close_changes_and_goes_once_it_is_quiet(cut: Cutover) -> None:
    http = close_http(cut.close.base_url, cut.org.api_key)
    lead = next(lead for lead in cut.org.leads if lead["id"] not in (cut.mutations.merged or ()))
    assert (
        http.put(f"lead/{lead['id']}/", json={"description": "Changed during the freeze"}).status_code == 200
    )
    refused = s.run_cli(cut.env, "cutover", "--quiet-minutes", "10")
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "still changing" in refused.stdout + refused.stderr
    assert "leads" in refused.stdout + refused.stderr
    # Eleven minutes pass on Close's own clock (the `Date` of its answers, the time of its events).
    config = cut.close.app.state.emulator.config
    config.clock = lambda: time.time() + timedelta(minutes=11).total_seconds()
    went = s.run_cli(cut.env, "cutover", "--quiet-minutes", "10")
    assert went.returncode == 0, went.stdout + went.stderr
    assert "GO" in went.stdout
