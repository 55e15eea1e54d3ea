from __future__ import annotations

import dagster as dg


def test_definitions_load_and_validate() -> None:
    from migration_assets.definitions import defs

    dg.Definitions.validate_loadable(defs)
    repo = defs.get_repository_def()
    for key in repo.asset_graph.get_all_asset_keys():
        assert len(key.path) == 2, f"asset keys are [group, name]: {key.to_user_string()}"
