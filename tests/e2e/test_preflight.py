"""The preflight and the gates before any write, end to end on the `tiny` org: a `migrate` run against a
target that lacks a privilege, has a business-required column the mapping does not fill, or has too many
custom tables for the edition is blocked by schema/preflight with the fix named; a run whose mapping is
unconfirmed or whose owners are unresolved stops at its gate. In every case the emulator's whole state
(records and metadata) is byte-for-byte what it was before the run.

One extraction and one reviewed mapping serve the module; each case gets a fresh target and a copy of the
staged warehouse, and the run skips the extraction (the close/* assets are already in the warehouse).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import _migrate_support as s  # noqa: E402 - tests/e2e is on sys.path (rootdir conftest)
import dagster as dg
import duckdb
import polars as pl
import pytest
import yaml

from emulators.close.server import CloseEmulatorServer
from emulators.dataverse.persistence import state_dump
from emulators.dataverse.server import EmulatorServer
from emulators.orgdata import CloseOrg, generate
from migration_assets.audit.review_problems import check_problems
from migration_assets.defs.jobs import MIGRATE_SELECTION
from migration_assets.demo import demo_dataverse_env
from migration_assets.mapping.config import load_mapping_config
from migration_assets.resources.warehouse import fetch_polars
from migration_assets.runtime import run_job

pytestmark = pytest.mark.e2e
PREFLIGHT = dg.AssetKey(["schema", "preflight"])
PREFLIGHT_AND_UPSTREAM = dg.AssetSelection.assets(PREFLIGHT).upstream()
# `migrate` on the warehouse the fixture extracted and staged once: the staged tables are not staged again
# (the gates, the target's metadata and everything from the preflight on are).
STAGED_TABLES = dg.AssetSelection.groups("staged") - dg.AssetSelection.assets(
    ["staged", "mapping"], ["staged", "target_metadata"], ["staged", "owner_map"]
)
RUN = MIGRATE_SELECTION - dg.AssetSelection.groups("close") - STAGED_TABLES
API = "Microsoft.Dynamics.CRM."
CONTACT = dg.AssetKey(["staged", "contact"])


@dataclass
class World:
    org: CloseOrg
    close: CloseEmulatorServer
    root: Path
    mappings: Path
    warehouse: Path  # extracted (close/*) and staged once for the module


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("preflight")
    org = generate("tiny")
    mappings = root / "mappings"
    mp = pytest.MonkeyPatch()
    mp.setenv("CLOSE2D365_MAPPINGS", str(mappings))
    mp.setenv("CLOSE2D365_HOME", str(root / "home"))
    try:
        with s.close_server(org) as close, s.dataverse(org) as dv:
            warehouse = root / "extracted.duckdb"
            s.prepare_mappings(org, mappings, close, dv, warehouse)
            staging = dg.AssetSelection.groups("staged").upstream() - dg.AssetSelection.groups("close")
            s.assert_only_expected_halt(s.load(org, close, dv, warehouse, staging))
            yield World(org, close, root, mappings, warehouse)
    finally:
        mp.undo()


def dump(dv: EmulatorServer) -> str:
    """The emulator's whole state: schema writes, every row, every table definition."""
    return json.dumps(state_dump(dv.app.state.env, with_metadata=True), sort_keys=True, default=str)


def warehouse_copy(world: World, name: str) -> Path:
    warehouse = world.root / f"{name}.duckdb"
    shutil.copyfile(world.warehouse, warehouse)
    return warehouse


def run(world: World, dv: EmulatorServer, name: str) -> dg.ExecuteInProcessResult:
    return s.load(world.org, world.close, dv, warehouse_copy(world, name), RUN)


def checks(result: dg.ExecuteInProcessResult) -> dict[str, Any]:
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def blocked_by_preflight(result: dg.ExecuteInProcessResult) -> str:
    """The failed target_ready check's description (ERROR: it halts every write below it)."""
    assert not result.success
    ready = checks(result)["target_ready"]
    assert not ready.passed and ready.severity == dg.AssetCheckSeverity.ERROR
    materialized = {e.asset_key for e in result.get_asset_materialization_events()}
    assert PREFLIGHT in materialized
    assert not {k for k in materialized if k.path[0] == "loaded" or k.path[1] in ("solution", "deployed")}
    # The reconciliation still reports the stopped run (custom tables never created are "halted").
    assert not [k for k in s.failed_steps(result) if "reconciliation" in k], s.failed_steps(result)
    return str(ready.description)


def clean_mappings(world: World, monkeypatch: pytest.MonkeyPatch, name: str) -> Path:
    copy = world.root / f"mappings_{name}"
    shutil.copytree(world.mappings, copy)
    monkeypatch.setenv("CLOSE2D365_MAPPINGS", str(copy))
    return copy


def test_a_clean_target_passes_the_preflight(world: World) -> None:
    with s.dataverse(world.org) as dv:
        # Up to the preflight (and the solution, the first write): the target accepts this migration.
        selection = PREFLIGHT_AND_UPSTREAM - dg.AssetSelection.groups("close")
        result = s.load(world.org, world.close, dv, warehouse_copy(world, "clean"), selection)
        ready = checks(result)["target_ready"]
        assert ready.passed, ready.description
        (event,) = [e for e in result.get_asset_materialization_events() if e.asset_key == PREFLIGHT]
        meta = event.event_specific_data.materialization.metadata  # type: ignore[union-attr]
        assert meta["blockers"].value == 0
        report = Path(str(meta["report"].value))
        assert report.name == "preflight.md" and "The target is ready" in report.read_text(encoding="utf-8")


def remove_privilege(dv: EmulatorServer, name: str) -> None:
    """What an admin does to the application user's role, through the Web API (RemovePrivilegeRole)."""
    client = s.client_for(dv)
    try:
        user = client.whoami()["UserId"]
        role = client.get_json(f"systemusers({user})/systemuserroles_association")["value"][0]["roleid"]
        pid = client.rows("privileges", ["privilegeid"], f"name eq '{name}'")[0]["privilegeid"]
        client.request(
            "POST",
            f"roles({role})/{API}RemovePrivilegeRole",
            expect_json=False,
            json={"Privilege": {"@odata.type": f"{API}privilege", "privilegeid": pid}},
        )
    finally:
        client.close()


def test_a_privilege_removed_from_the_app_users_role_blocks_before_any_write(world: World) -> None:
    with s.dataverse(world.org) as dv:
        remove_privilege(dv, "prvCreateContact")
        before = dump(dv)
        description = blocked_by_preflight(run(world, dv, "privilege"))
        assert "lacks prvCreateContact" in description and "Create on contact" in description
        assert "Security roles" in description and "Organization" in description
        assert dump(dv) == before


def test_an_unmapped_business_required_column_blocks_before_any_write(world: World) -> None:
    targets = set(load_mapping_config(world.mappings).field_map("contact").targets)
    column = next(c for c in ("middlename", "salutation", "fax", "telephone3") if c not in targets)
    with s.dataverse(world.org) as dv:
        client = s.client_for(dv)
        try:
            # Microsoft's "Update a column": read the definition, change RequiredLevel, PUT it back whole.
            path = f"EntityDefinitions(LogicalName='contact')/Attributes(LogicalName='{column}')"
            definition = client.get_json(path)
            definition["RequiredLevel"] = {**definition["RequiredLevel"], "Value": "ApplicationRequired"}
            client.request(
                "PUT", path, expect_json=False, json=definition, headers={"MSCRM.MergeLabels": "true"}
            )
        finally:
            client.close()
        before = dump(dv)
        description = blocked_by_preflight(run(world, dv, "required"))
        assert f"contact.{column} is ApplicationRequired" in description
        assert f"mappings/fields/contact.yaml (target: {column})" in description
        assert dump(dv) == before


def test_too_many_custom_tables_for_the_edition_block_before_any_write(world: World) -> None:
    assert load_mapping_config(world.mappings).settings.edition == "sales_professional"
    with s.dataverse(world.org) as dv:
        client = s.client_for(dv)
        try:
            for n in range(15):  # the target already uses the edition's 15 custom tables
                client.create_table(_table_body(f"new_Existing{n}"))
        finally:
            client.close()
        before = dump(dv)
        description = blocked_by_preflight(run(world, dv, "tables"))
        assert "exceed the sales_professional limit of 15" in description
        assert "target.edition in mappings/settings.yaml" in description
        assert dump(dv) == before


def _table_body(schema: str) -> dict[str, Any]:
    def label(text: str) -> dict[str, Any]:
        return {"LocalizedLabels": [{"Label": text, "LanguageCode": 1033}]}

    return {
        "@odata.type": f"{API}EntityMetadata",
        "SchemaName": schema,
        "DisplayName": label(schema),
        "DisplayCollectionName": label(schema + "s"),
        "OwnershipType": "UserOwned",
        "IsActivity": False,
        "HasActivities": False,
        "HasNotes": False,
        "Attributes": [
            {
                "@odata.type": f"{API}StringAttributeMetadata",
                "SchemaName": "new_Name",
                "AttributeType": "String",
                "AttributeTypeName": {"Value": "StringType"},
                "MaxLength": 100,
                "IsPrimaryName": True,
                "DisplayName": label("Name"),
                "RequiredLevel": {"Value": "None"},
            }
        ],
    }


def _unconfirm(data: dict[str, Any]) -> None:
    data["fields"][0]["confirmed"] = False  # the review of custom_fields.yaml is not finished


def _no_fallback(data: dict[str, Any]) -> None:
    data["fallback_owner"], data["disabled_users"] = None, "queue"  # unmatched owners stay unresolved


@pytest.mark.parametrize(
    ("file", "change", "gate"),
    [
        ("custom_fields.yaml", _unconfirm, "mapping_confirmed"),
        ("owners.yaml", _no_fallback, "owners_resolved"),
    ],
)
def test_a_failed_gate_leaves_the_target_byte_for_byte_unchanged(
    world: World, monkeypatch: pytest.MonkeyPatch, file: str, change: Any, gate: str
) -> None:
    path = clean_mappings(world, monkeypatch, gate) / file
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    change(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
    with s.dataverse(world.org) as dv:
        before = dump(dv)
        result = run(world, dv, gate)
        failed = checks(result)[gate]
        assert not failed.passed and failed.severity == dg.AssetCheckSeverity.ERROR
        assert "target_ready" not in checks(result)  # the preflight, and every write, wait for the gate
        # Nothing at all: no publisher, solution, custom activity table, column or record.
        assert dump(dv) == before


def test_a_field_map_target_the_target_lacks_stops_at_the_mapping_gate_with_its_file_and_line(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 11 #4: a mapping to a column that neither the target nor the schema plan has (a typo, a custom
    column without `custom:`) is the mapping's error: the gate every write waits for names the file and line
    with the fix, nothing is written, and staging rejects no row for it (no table over its threshold, nothing
    "invalid after write", no "a bug")."""
    root = clean_mappings(world, monkeypatch, "unknown_column")
    prefix = load_mapping_config(root).settings.publisher_prefix
    path = root / "fields" / "contact.yaml"
    lines = path.read_text(encoding="utf-8").splitlines()
    n = next(i for i, line in enumerate(lines) if "{target: jobtitle," in line)
    lines[n] = lines[n].replace("{target: jobtitle,", "{target: jobtitlee,")
    lines.insert(n + 1, '      - {target: "{prefix}_nosuchcolumn", source: name, transform: text}')
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    where = f"{root.name}/fields/contact.yaml line"
    with s.dataverse(world.org) as dv:
        before = dump(dv)
        warehouse = warehouse_copy(world, "unknown_column")
        result = s.load(world.org, world.close, dv, warehouse, RUN | dg.AssetSelection.assets(CONTACT))
        gate = checks(result)["mapping_confirmed"]
        assert not gate.passed and gate.severity == dg.AssetCheckSeverity.ERROR
        found = str(gate.description).split("; ")
        assert found == [
            f"{where} {n + 1}: key 'target': column 'jobtitlee' is neither on table contact in the target nor "
            "created by the schema plan (did you mean 'jobtitle'?) -> correct the name, or add `custom: {type: "
            "...}` to this entry to create the column (a Close custom field: propose it in custom_fields.yaml)",
            f"{where} {n + 2}: key 'target': column '{prefix}_nosuchcolumn' is neither on table contact in the "
            "target nor created by the schema plan -> correct the name, or add `custom: {type: ...}` to this "
            "entry to create the column (a Close custom field: propose it in custom_fields.yaml)",
        ]
        assert "target_ready" not in checks(result)  # the preflight, and every write, wait for the gate
        assert dump(dv) == before
        # Staging left the column out: the table's rows are exactly those of the clean mapping (none rejected
        # for it, none "invalid after write"), and its check passes: no table halts, the gate stops the run.
        assert checks(result)["contact_target_valid"].passed
    staged, clean = staged_contacts(warehouse), staged_contacts(world.warehouse)
    assert "jobtitlee" not in staged.columns and f"{prefix}_nosuchcolumn" not in staged.columns
    # Every contact the clean mapping stages, plus those it rejected only for their title (not mapped now).
    extra = set(staged["_close_id"]) - set(clean["_close_id"])
    assert set(clean["_close_id"]) <= set(staged["_close_id"])
    rejected = staged_contacts(world.warehouse, "contact_rejected")
    assert set(rejected.filter(pl.col("_close_id").is_in(list(extra)))["column"]) <= {"jobtitle"}
    # The dry run's review: the gate's lines, each with its own fix.
    review = [
        p.line() for p in check_problems("mapping_confirmed", "staged/mapping", str(gate.description), {})
    ]
    assert len(review) == 2 and review[0].startswith(
        f"mapping: {where} {n + 1}: key 'target': column 'jobtitlee'"
    )
    assert review[0].endswith(
        "-> correct the name, or add `custom: {type: ...}` to this entry to create the "
        "column (a Close custom field: propose it in custom_fields.yaml)"
    )


def staged_contacts(warehouse: Path, table: str = "contact") -> pl.DataFrame:
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        return fetch_polars(con, f"SELECT * FROM staged.{table}")
    finally:
        con.close()


def test_the_dry_run_review_lists_the_preflight_blocker_with_its_fix(
    world: World, monkeypatch: pytest.MonkeyPatch, isolated_home: Path
) -> None:
    with s.dataverse(world.org) as dv:
        remove_privilege(dv, "prvCreateContact")
        env = {
            "CLOSE_API_KEY": world.org.api_key,
            "CLOSE_BASE_URL": world.close.base_url,
            "CLOSE2D365_WAREHOUSE": str(warehouse_copy(world, "dry")),
            **demo_dataverse_env(dv),
        }
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        before = dump(dv)
        result = run_job("dry_run")
        assert not result.success  # the review's verdict: the plan is not clean
        ready = checks(result)["target_ready"]
        assert not ready.passed and ready.severity == dg.AssetCheckSeverity.WARN  # the dry run goes on
        (folder,) = (isolated_home / "reports").glob("*/review.md")
        review = folder.read_text(encoding="utf-8")
        assert "| preflight: privilege |" in review and "lacks prvCreateContact" in review
        assert "Security roles" in review
        assert "lacks prvCreateContact" in (folder.parent / "preflight.md").read_text(encoding="utf-8")
        assert dump(dv) == before
