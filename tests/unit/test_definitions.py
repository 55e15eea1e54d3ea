from __future__ import annotations

import dagster as dg


def test_definitions_load_and_validate() -> None:
    from migration_assets.definitions import defs

    dg.Definitions.validate_loadable(defs)
    repo = defs.get_repository_def()
    for key in repo.asset_graph.get_all_asset_keys():
        assert len(key.path) == 2, f"asset keys are [group, name]: {key.to_user_string()}"


def test_dry_run_writes_nothing_to_the_target_and_migrate_covers_everything() -> None:
    from migration_assets.definitions import defs

    dry = {k.to_user_string() for k in defs.resolve_job_def("dry_run").asset_layer.executable_asset_keys}
    everything = {
        k.to_user_string() for k in defs.resolve_job_def("migrate").asset_layer.executable_asset_keys
    }
    assert not any(k.startswith("loaded/") for k in dry)
    assert not dry & {"schema/deployed", "schema/custom_activity_tables", "schema/custom_activity_columns"}
    assert {"close/leads", "staged/contact", "schema/plan", "staged/owner_map", "schema/preflight"} <= dry
    # The review of every problem is the dry run's own (in a migration the gates stop the run themselves).
    assert "reports/dry_run_review" in dry and "reports/dry_run_review" not in everything
    assert dry - {"reports/dry_run_review"} < everything and any(k.startswith("loaded/") for k in everything)


def test_lineage_enforces_load_order() -> None:
    from migration_assets.definitions import defs

    graph = defs.get_repository_def().asset_graph

    def upstream(key: str) -> set[str]:
        seen: set[str] = set()
        todo = [dg.AssetKey(key.split("/"))]
        while todo:
            for parent in graph.get(todo.pop()).parent_keys:
                name = parent.to_user_string()
                if name not in seen:
                    seen.add(name)
                    todo.append(parent)
        return seen

    assert "loaded/account" in upstream("loaded/contact")
    assert {"loaded/account", "loaded/contact"} <= upstream("loaded/opportunity")
    for activity in ("phonecall", "email", "task", "appointment", "annotation"):
        assert {"loaded/lead", "loaded/contact"} <= upstream(f"loaded/{activity}"), activity


def test_no_target_write_before_the_mapping_gate_the_owner_check_and_the_preflight() -> None:
    """Every asset that writes to the target (TARGET_WRITES, schema writes included) runs only after
    staged/mapping (mapping_confirmed), staged/owner_map (owners_resolved) and schema/preflight
    (target_ready): their blocking checks halt everything below them."""
    from migration_assets.definitions import defs
    from migration_assets.defs.jobs import TARGET_WRITES

    graph = defs.get_repository_def().asset_graph
    gates = {
        dg.AssetKey(["staged", "mapping"]),
        dg.AssetKey(["staged", "owner_map"]),
        dg.AssetKey(["schema", "preflight"]),
    }
    # reports/reconciliation only reads the target back (it sits in TARGET_WRITES to stay out of dry runs).
    writes = TARGET_WRITES.resolve(graph) - {dg.AssetKey(["reports", "reconciliation"])}
    assert {dg.AssetKey(["schema", "solution"]), dg.AssetKey(["schema", "deployed"])} <= writes
    assert any(k.path[0] == "loaded" for k in writes)
    for key in writes:
        upstream = graph.upstream_key_iterator(key)
        missing = gates - set(upstream)
        assert not missing, (
            f"{key.to_user_string()} can run before {sorted(m.to_user_string() for m in missing)}"
        )
