"""Issue 16's acceptance for the security-role plan, on two org shapes: after extract, propose-mapping and
the scripted review, reports/security_roles lists every Close user with its Close role, its matched Dynamics
user's current roles read from Dataverse, a proposed role and its reason; owners.yaml (the owner review)
shows the same proposal; nothing is assigned in Dataverse."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import _migrate_support as s  # noqa: E402 - tests/e2e is on sys.path (rootdir conftest)
import dagster as dg
import pytest
import yaml

from emulators.orgdata import CloseOrg, generate
from migration_assets.audit.security_roles import REVIEW_NOTE, SALES_MANAGER, SYSTEM_ADMINISTRATOR

pytestmark = pytest.mark.e2e
PLAN = dg.AssetSelection.assets(
    ["staged", "target_metadata"], ["staged", "owner_map"], ["reports", "security_roles"]
)
USER_ROLES = "systemusers?$select=systemuserid&$expand=systemuserroles_association($select=name)"


@dataclass
class Planned:
    org: CloseOrg
    rows: list[dict[str, str]]
    owners_yaml: dict[str, Any]
    roles_before: list[dict[str, Any]]
    roles_after: list[dict[str, Any]]


@pytest.fixture(scope="module", params=["nordlicht", "pacifica"])
def planned(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Planned]:
    org = generate("tiny", 1, org=request.param)
    root = tmp_path_factory.mktemp(f"roles_{request.param}")
    mp = pytest.MonkeyPatch()
    mp.setenv("CLOSE2D365_MAPPINGS", str(root / "mappings"))
    mp.setenv("CLOSE2D365_HOME", str(root / "home"))
    try:
        with s.close_server(org) as close, s.dataverse(org) as dv:
            warehouse = root / "w.duckdb"
            s.prepare_mappings(org, root / "mappings", close, dv, warehouse)
            client = s.client_for(dv)
            before = client.get_json(USER_ROLES)["value"]
            result = s.materialize_migration(s.resources(org, close, dv, warehouse), PLAN)
            assert result.success, s.failed_steps(result)
            after = client.get_json(USER_ROLES)["value"]
            meta = result.asset_materializations_for_node("reports__security_roles")[0].metadata
            with Path(str(meta["csv"].value)).open(encoding="utf-8", newline="") as fh:
                rows = list(csv.DictReader(fh))
            owners = yaml.safe_load((root / "mappings" / "owners.yaml").read_text(encoding="utf-8"))
            yield Planned(org, rows, owners, before, after)
    finally:
        mp.undo()


def test_plan_lists_every_close_user_with_a_proposal_and_a_reason(planned: Planned) -> None:
    users = {u["id"] for u in planned.org.users + planned.org.inactive_users}
    assert {r["close_user_id"] for r in planned.rows} == users
    assert len(planned.rows) == len(users)
    for row in planned.rows:
        assert row["proposed_role"] and row["reason"] and row["review"] == REVIEW_NOTE, row
        assert row["close_role_kind"] in ("built-in", "custom"), row  # every role read from Close


def test_plan_shows_close_roles_and_current_dynamics_roles(planned: Planned) -> None:
    memberships = planned.org.organization["memberships"] + planned.org.organization["inactive_memberships"]
    role_of = {m["user_id"]: m["role_id"] for m in memberships}
    names = {r["id"]: r["name"] for r in planned.org.roles}
    for row in planned.rows:
        assert row["close_role_id"] == role_of[row["close_user_id"]]
        assert row["close_role"] == names[row["close_role_id"]]
    by_role = {r["close_role_id"]: r["proposed_role"] for r in planned.rows}
    assert by_role["admin"] == SYSTEM_ADMINISTRATOR
    assert SALES_MANAGER in by_role.values()
    matched = [r for r in planned.rows if r["owner_map_status"] == "matched"]
    assert matched and all(r["dynamics_user"] and r["current_roles"] for r in matched)
    # The seeded first Dynamics user is a System Administrator (emulators/dataverse/security.py).
    assert any(SYSTEM_ADMINISTRATOR in r["current_roles"] for r in matched)
    # The users without an enabled Dynamics user of their own (the org's unmatched and disabled ones).
    others = [r for r in planned.rows if r["owner_map_status"] not in ("matched", "override")]
    assert len(others) >= 2 and all(r["action"].startswith("no enabled Dynamics user") for r in others)


def test_owner_review_carries_the_proposal_and_nothing_is_assigned(planned: Planned) -> None:
    proposed = {r["close_user_id"]: r["proposed_role"] for r in planned.rows}
    entries = planned.owners_yaml["users"]
    assert {e["close_user_id"] for e in entries} == set(proposed)
    for entry in entries:
        assert entry["proposed_security_role"] == proposed[entry["close_user_id"]]
        assert entry["security_role_reason"] and "unknown" not in entry["close_role"]
    assert planned.roles_after == planned.roles_before
