"""The sales process design for the admin: per Close pipeline, its statuses in order with probabilities and
how many opportunities are open in each, the stage of the sales process the reviewed mapping places them at,
and the business process flow (BPF) to build. A section of the workflow inventory (pure, but for
`status_counts`, which reads the extracted opportunities).

The migration places every opportunity on one BPF (pipelines.yaml `sales_process`, the shipped "Opportunity
Sales Process": Qualify, Develop, Propose, Close). Where a pipeline's open statuses fall on distinct stages
in order, that process fits it; otherwise the recommendation is a BPF of its own, one stage per open
status then Close, which is designed in the Power Apps designer (a BPF definition is authored there or
imported in a solution, not written through the Web API). Limits: 30 stages per BPF, 10 active BPFs per
table (reference §9.1, §9.2).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import duckdb

from migration_assets.mapping.files import SHIPPED_STAGES, PipelinesMap
from migration_assets.resources.markdown import markdown_table
from migration_assets.resources.warehouse import table_exists

MAX_STAGES = 30
MAX_ACTIVE_BPFS = 10
DESIGNER = (
    "make.powerapps.com > Solutions > (your solution) > New > Automation > Process > Business process flow, "
    "table Opportunity"
)


@dataclass(frozen=True)
class StatusLine:
    label: str
    type: str  # active | won | lost
    probability: str  # "40 %" (mapping), "~35 % (avg confidence)" (Close data) or ""
    open: int
    total: int
    stage: str  # where the migration places its opportunities


@dataclass(frozen=True)
class PipelineDesign:
    close_id: str
    name: str
    statuses: tuple[StatusLine, ...]
    fits_shipped: bool
    recommendation: str

    @property
    def open(self) -> int:
        return sum(s.open for s in self.statuses)


def pipelines_in_order(con: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    """The extracted pipelines in Close's display order (`position`: where each came in Close's list), their
    statuses embedded in display order; none when pipelines were not extracted."""
    if not table_exists(con, "close", "pipelines"):
        return []
    rows = con.execute("SELECT raw FROM close.pipelines ORDER BY position NULLS LAST, id").fetchall()
    return [json.loads(r[0]) for r in rows]


def status_counts(con: duckdb.DuckDBPyConnection) -> dict[str, tuple[int, int, float | None]]:
    """Close status id -> (open opportunities, all opportunities, their average confidence)."""
    if not table_exists(con, "close", "opportunities"):
        return {}
    rows = con.execute(
        "SELECT status_id, count(*) FILTER (WHERE status_type = 'active'), count(*), "
        "avg(TRY_CAST(json_extract_string(raw, '$.confidence') AS DOUBLE)) FROM close.opportunities GROUP BY 1"
    ).fetchall()
    return {str(r[0]): (int(r[1]), int(r[2]), None if r[3] is None else float(r[3])) for r in rows}


def _key(text: Any) -> str:
    return " ".join(str(text).split()).casefold()


def _mapped(pipes: PipelinesMap | None) -> dict[tuple[str, str], tuple[str, int | None]]:
    """(pipeline, status) folded -> (stage, probability) from the reviewed mapping."""
    if pipes is None:
        return {}
    return {
        (_key(p.name), _key(s.label)): (s.stage, s.probability) for p in pipes.pipelines for s in p.statuses
    }


def _probability(mapped: int | None, confidence: float | None) -> str:
    if mapped is not None:
        return f"{mapped} %"
    return f"~{round(confidence)} % (avg confidence)" if confidence is not None else ""


def _fits(statuses: Sequence[StatusLine]) -> bool:
    """Whether the open statuses fall on distinct shipped stages, in order (so the shipped BPF shows them)."""
    order = [
        SHIPPED_STAGES.index(s.stage) if s.stage in SHIPPED_STAGES else -1
        for s in statuses
        if s.type == "active"
    ]
    return -1 not in order and order == sorted(set(order)) and len(order) == len(set(order))


def _recommend(name: str, statuses: Sequence[StatusLine], fits: bool, sales_process: str) -> str:
    placed = "; ".join(f"{s.label} -> {s.stage}" for s in statuses if s.type == "active")
    if fits:
        return (
            f"Use the shipped Opportunity Sales Process ({', '.join(SHIPPED_STAGES)}): each open status has its "
            f"own stage ({placed}); won/lost finish at Close."
        )
    stages = [s.label for s in statuses if s.type == "active"] + ["Close"]
    text = (
        f"Design a BPF '{name} Sales Process' on Opportunity in the Power Apps designer ({DESIGNER}) with the "
        f"stages {', '.join(stages)} (won/lost finish at Close), then set `sales_process` and each status's "
        f"`stage` in pipelines.yaml and run again. Until then the migration places its opportunities on "
        f"{sales_process}: {placed}."
    )
    if len(stages) > MAX_STAGES:
        text += f" It has {len(stages)} stages, above the limit of {MAX_STAGES}: merge statuses into stages."
    return text


def design_pipelines(
    pipelines: Sequence[Mapping[str, Any]],
    counts: Mapping[str, tuple[int, int, float | None]],
    pipes: PipelinesMap | None,
) -> list[PipelineDesign]:
    """One design per Close pipeline (GET /pipeline/ objects in display order, statuses embedded in order)."""
    mapped = _mapped(pipes)
    process = pipes.sales_process if pipes is not None else "the shipped process"
    out: list[PipelineDesign] = []
    for pipe in pipelines:
        lines = []
        for s in pipe.get("statuses") or []:
            kind = str(s.get("type") or "active")
            stage, prob = mapped.get((_key(pipe.get("name")), _key(s.get("label"))), ("", None))
            open_, total, confidence = counts.get(str(s.get("id")), (0, 0, None))
            lines.append(
                StatusLine(
                    str(s.get("label")), kind, _probability(prob, confidence), open_, total, stage or "?"
                )
            )
        fits = _fits(lines)
        name = str(pipe.get("name") or "")
        out.append(
            PipelineDesign(
                str(pipe.get("id") or ""), name, tuple(lines), fits, _recommend(name, lines, fits, process)
            )
        )
    return out


def render_design(designs: Sequence[PipelineDesign]) -> str:
    """The Markdown section: one table of statuses per pipeline and its recommended BPF."""
    out = [
        f"## Sales process design ({len(designs)} pipelines)",
        "",
        "Each Close pipeline as a business process flow on Opportunity. The migration places every "
        "opportunity on one BPF (pipelines.yaml `sales_process`) at the stage its status maps to; a BPF per "
        f"pipeline is designed in the Power Apps designer ({DESIGNER}).",
        "",
    ]
    custom = sum(not d.fits_shipped for d in designs)
    if custom > MAX_ACTIVE_BPFS:
        out += [
            f"{custom} pipelines want a BPF of their own, above the limit of {MAX_ACTIVE_BPFS} active BPFs per "
            "table: merge pipelines that share a sales motion into one BPF.",
            "",
        ]
    if not designs:
        return "\n".join([*out, "None.", ""])
    for d in designs:
        rows = [
            {
                "#": str(n),
                "status": s.label,
                "type": s.type,
                "probability": s.probability,
                "open opportunities": str(s.open),
                "all opportunities": str(s.total),
                "stage": s.stage,
            }
            for n, s in enumerate(d.statuses, 1)
        ]
        out += [f"### {d.name} (`{d.close_id}`): {d.open} open", ""]
        out += [
            markdown_table(rows) if rows else "No statuses.",
            "",
            f"**Recommended:** {d.recommendation}",
            "",
        ]
    return "\n".join(out)
