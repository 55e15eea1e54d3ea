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
    assert {"close/leads", "staged/contact", "schema/plan", "reports/owner_map"} <= dry
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
