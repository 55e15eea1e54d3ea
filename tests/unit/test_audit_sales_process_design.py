"""The sales process design section of the workflow inventory: per Close pipeline its statuses in order with
probabilities and open opportunities, where the migration places them, and the BPF to build."""

from __future__ import annotations

import duckdb

from migration_assets.audit.sales_process_design import design_pipelines, render_design, status_counts
from migration_assets.audit.workflow_inventory import pipeline_item, render_markdown
from migration_assets.mapping.files import Pipeline, PipelinesMap, PipelineStatus


def _pipe(pid: str, name: str, statuses: list[tuple[str, str, str]]) -> dict:
    return {"id": pid, "name": name, "statuses": [{"id": i, "label": lb, "type": t} for i, lb, t in statuses]}


PIPES = [
    _pipe("pipe_1", "Sales", [("s1", "Intro", "active"), ("s2", "Quote", "active"), ("s3", "Won", "won")]),
    _pipe(
        "pipe_2",
        "Partners",
        [
            ("s4", "Lead", "active"),
            ("s5", "Call", "active"),
            ("s6", "Trial", "active"),
            ("s7", "Lost", "lost"),
        ],
    ),
]
MAPPING = PipelinesMap(
    "c2d_closepipeline",
    "c2d_closestatus",
    (
        Pipeline(
            "Sales",
            1,
            (
                PipelineStatus("Intro", "active", 1, 0, 20, "Qualify"),
                PipelineStatus("Quote", "active", 2, 2, None, "Propose"),
                PipelineStatus("Won", "won", 3, 3, 100, "Close"),
            ),
        ),
        Pipeline(
            "Partners",
            2,
            (
                PipelineStatus("Lead", "active", 4, 0, None, "Qualify"),
                PipelineStatus("Call", "active", 5, 0, None, "Qualify"),
                PipelineStatus("Trial", "active", 6, 1, None, "Develop"),
                PipelineStatus("Lost", "lost", 7, 3, None, "Close"),
            ),
        ),
    ),
)


def _counts() -> dict:
    con = duckdb.connect()
    con.execute("CREATE SCHEMA close")
    con.execute("CREATE TABLE close.opportunities (status_id VARCHAR, status_type VARCHAR, raw VARCHAR)")
    rows = [("s1", "active", 10), ("s1", "active", 30), ("s2", "active", 50), ("s3", "won", 100)]
    rows += [("s2", "active", None), ("s5", "active", 5)]
    con.executemany(
        "INSERT INTO close.opportunities VALUES (?, ?, ?)",
        [(s, t, "{}" if c is None else f'{{"confidence": {c}}}') for s, t, c in rows],
    )
    return status_counts(con)


def test_open_counts_and_average_confidence_per_status() -> None:
    counts = _counts()
    assert counts["s1"] == (2, 2, 20.0)
    assert counts["s2"] == (2, 2, 50.0)
    assert counts["s3"] == (0, 1, 100.0)


def test_each_pipeline_in_order_with_probabilities_stages_and_a_recommendation() -> None:
    sales, partners = design_pipelines(PIPES, _counts(), MAPPING)
    assert [(s.label, s.type, s.probability, s.open, s.stage) for s in sales.statuses] == [
        ("Intro", "active", "20 %", 2, "Qualify"),  # the reviewed probability wins
        ("Quote", "active", "~50 % (avg confidence)", 2, "Propose"),
        ("Won", "won", "100 %", 0, "Close"),
    ]
    assert sales.open == 4 and sales.fits_shipped
    assert "Use the shipped Opportunity Sales Process" in sales.recommendation
    # Two open statuses share Qualify: the shipped process cannot show them apart.
    assert not partners.fits_shipped
    rec = partners.recommendation
    assert "Design a BPF 'Partners Sales Process'" in rec and "stages Lead, Call, Trial, Close" in rec
    assert "Power Apps designer" in rec and "Lead -> Qualify; Call -> Qualify" in rec


def test_the_section_and_the_csv_rows() -> None:
    designs = design_pipelines(PIPES, _counts(), MAPPING)
    md = render_design(designs)
    assert "## Sales process design (2 pipelines)" in md
    assert "### Sales (`pipe_1`): 4 open" in md and "**Recommended:** Design a BPF" in md
    assert md.index("| 1 | Intro") < md.index("| 2 | Quote")
    row = pipeline_item(designs[1]).row()
    assert row["kind"] == "pipeline" and row["status"] == "wants a BPF of its own"
    assert row["steps"].startswith(
        "1. Lead (active, 0 open) -> Qualify; 2. Call (active, ~5 % (avg confidence)"
    )
    assert "## Sales process design" in render_markdown([], designs)
    assert "Sales process design" not in render_markdown([])


def test_without_a_mapping_the_stage_is_unknown() -> None:
    (sales, _) = design_pipelines(PIPES, {}, None)
    assert {s.stage for s in sales.statuses} == {"?"} and not sales.fits_shipped
    assert "None." in render_design([])
