from __future__ import annotations

from pathlib import Path

import pytest

from emulators.orgdata import generate
from migration_assets.lib.mapping_tables import parse_lead_status, parse_pipelines
from migration_assets.lib.proposal_statuses import guess_lead_state, render_lead_status, render_pipelines
from migration_assets.lib.yaml_loc import load_located


@pytest.mark.parametrize(
    ("label", "pair"),
    [("Potential", (0, 1)), ("Contacted", (0, 2)), ("Interested", (0, 2)), ("Qualified", (1, 3)),
     ("Customer", (1, 3)), ("Bad Fit", (2, 4)), ("Not Interested", (2, 6)), ("Canceled", (2, 7)),
     ("Unreachable", (2, 5)), ("Something Else", (0, 1))],
)  # fmt: skip
def test_guess_lead_state(label: str, pair: tuple[int, int]) -> None:
    assert guess_lead_state(label)[:2] == pair


def test_rendered_files_load_with_the_real_parsers(tmp_path: Path) -> None:
    org = generate("tiny", 1)
    (tmp_path / "lead_status.yaml").write_text(
        render_lead_status([*org.lead_statuses, {"label": "Won: big"}])
    )
    lead = parse_lead_status(
        load_located(tmp_path / "lead_status.yaml", "lead_status.yaml"), "lead_status.yaml", "c2d"
    )
    assert lead.statuses["Bad Fit"] == (2, 4) and lead.statuses["Won: big"] == (1, 3)
    assert lead.original_label_column == "c2d_closeoriginalstatus" and lead.unmapped is None

    (tmp_path / "pipelines.yaml").write_text(render_pipelines(org.pipelines, 72700))
    pipes = parse_pipelines(
        load_located(tmp_path / "pipelines.yaml", "pipelines.yaml"), "pipelines.yaml", "c2d", 72700
    )
    assert [p.name for p in pipes.pipelines] == [p["name"] for p in org.pipelines]
    sales = pipes.pipelines[0]
    assert [s.salesstage for s in sales.statuses] == [0, 1, 2, 3, 3]
    options = [s.option for p in pipes.pipelines for s in p.statuses]
    assert options == list(range(727000000, 727000000 + len(options)))


def test_repository_pipelines_match_the_demo_org() -> None:
    """The committed pipelines.yaml is the one propose-mapping derives for the demo org."""
    org = generate("tiny", 1)
    root = Path(__file__).resolve().parents[2] / "mappings"
    committed = parse_pipelines(load_located(root / "pipelines.yaml", "p"), "p", "c2d", 72700)
    assert [(p.name, [(s.label, s.type) for s in p.statuses]) for p in committed.pipelines] == [
        (p["name"], [(s["label"], s["type"]) for s in p["statuses"]]) for p in org.pipelines
    ]
