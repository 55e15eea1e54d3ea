"""staged/mapping keeps its fresh proposal while what a proposal is made from besides the records is
unchanged (issue 13: a delta that changed records only does not re-read every custom value): a delta whose
Close configuration did not change keeps it, one whose custom fields changed proposes again, and a proposal
whose files are gone is made again."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from migration_assets.defs.staged import mapping as mapping_defs
from migration_assets.mapping.files import Settings
from migration_assets.mapping.review_status import proposal_inputs, reusable
from migration_assets.resources.warehouse import WarehouseResource


@pytest.fixture
def warehouse(tmp_path: Path) -> WarehouseResource:
    wh = WarehouseResource(path=str(tmp_path / "w.duckdb"))
    with wh.connect() as con:
        con.execute("CREATE SCHEMA close")
        con.execute("CREATE TABLE close.custom_fields (id VARCHAR, name VARCHAR, raw VARCHAR)")
        con.execute("INSERT INTO close.custom_fields VALUES ('cf_1', 'Industry', '{}')")
        con.execute("CREATE TABLE close.leads (id VARCHAR, raw VARCHAR)")
        con.execute("INSERT INTO close.leads VALUES ('lead_1', '{}')")
    return wh


@pytest.fixture
def proposals(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[Path]:
    """The proposals made (each a file written), the mapping's review state stubbed out."""
    made: list[Path] = []

    def propose(con: object, settings: object) -> tuple[Path, list[Path]]:
        path = tmp_path / "proposal" / f"custom_fields_{len(made)}.yaml"
        path.parent.mkdir(exist_ok=True)
        path.write_text("fields: []\n")
        made.append(path)
        return path.parent, [path]

    monkeypatch.setattr(mapping_defs, "fresh_proposal", propose)
    monkeypatch.setattr(mapping_defs, "mapping_status", lambda con, root, prefix: ([], pl.DataFrame()))
    monkeypatch.setattr(mapping_defs, "load_settings", lambda root: _settings())
    return made


def _settings(prefix: str = "c2d") -> Settings:
    return Settings(prefix, "close2d365", 10000, None, "truncate", {}, None, {}, None)  # type: ignore[arg-type]


def _run(warehouse: WarehouseResource, instance: dg.DagsterInstance) -> dict[str, object]:
    result = dg.materialize([mapping_defs.mapping], instance=instance, resources={"warehouse": warehouse})
    (event,) = result.get_asset_materialization_events()
    assert event.materialization is not None
    return {k: getattr(v, "value", v) for k, v in event.materialization.metadata.items()}


def test_records_only_keep_the_proposal_and_a_custom_field_change_proposes_again(
    warehouse: WarehouseResource, proposals: list[Path]
) -> None:
    instance = dg.DagsterInstance.ephemeral()
    first = _run(warehouse, instance)
    assert len(proposals) == 1 and first["fresh_proposal_reused"] is False
    with warehouse.connect() as con:  # a delta: records changed, Close's configuration did not
        con.execute("INSERT INTO close.leads VALUES ('lead_2', '{}')")
    second = _run(warehouse, instance)
    assert len(proposals) == 1 and second["fresh_proposal_reused"] is True
    assert second["fresh_proposal"] == first["fresh_proposal"]
    with warehouse.connect() as con:  # a custom field added in Close
        con.execute("INSERT INTO close.custom_fields VALUES ('cf_2', 'Region', '{}')")
    third = _run(warehouse, instance)
    assert len(proposals) == 2 and third["fresh_proposal_reused"] is False
    proposals[-1].unlink()  # the proposal's files removed by hand: made again
    _run(warehouse, instance)
    assert len(proposals) == 3


def test_the_inputs_digest_follows_configuration_and_settings_not_records(
    warehouse: WarehouseResource,
) -> None:
    with warehouse.connect() as con:
        before = proposal_inputs(con, _settings())
        con.execute('UPDATE close.leads SET raw = \'{"name": "x"}\'')
        assert proposal_inputs(con, _settings()) == before
        assert proposal_inputs(con, _settings("abc")) != before
        con.execute("UPDATE close.custom_fields SET name = 'Sector'")
        assert proposal_inputs(con, _settings()) != before


def test_a_proposal_is_reusable_only_with_the_same_inputs_and_its_files(tmp_path: Path) -> None:
    kept = tmp_path / "f.yaml"
    kept.write_text("x")
    assert reusable("abc", [str(kept)], "abc")
    assert not reusable("abc", [str(kept)], "abd")
    assert not reusable(None, [str(kept)], "abc")
    assert not reusable("abc", [str(tmp_path / "gone.yaml")], "abc")
    assert not reusable("abc", [], "abc")
