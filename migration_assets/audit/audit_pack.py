"""The audit pack of one run: every report of the run in its own folder, `$CLOSE2D365_HOME/reports/<run_id>/`,
and one `index.html` a reviewer opens in a browser (the run's summary, a chart of records per phase per
table, links to every file). Self-contained: inline SVG and CSS, no script, nothing fetched.

The owner queue and the oversize attachment list are also kept one level up (the files staging writes for
the admin, rewritten by each run); the pack writes this run's own copies from the warehouse, so that no run
overwrites another's.
"""

from __future__ import annotations

import csv
import html
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote as url_quote

import duckdb

from migration_assets.audit.accounting import FATES, close_ids, sources_of
from migration_assets.audit.files import private_file, report_dir, write_frame_csv
from migration_assets.audit.reconciliation import target_tables
from migration_assets.load.oversize import oversize_files
from migration_assets.mapping.config import MappingConfig
from migration_assets.resources.warehouse import fetch_polars, quote, table_exists

INDEX = "index.html"
OWNER_QUEUE = "owner_queue.csv"
OVERSIZE = "oversize_attachments.csv"
# owners.py: the owner reconciliation queue is every Close user not matched nor overridden.
QUEUED_SQL = "SELECT * FROM staged.owner_map WHERE status NOT IN ('matched', 'override') ORDER BY 1"
PHASES = (("close_objects", "Close"), ("staged", "staged"), ("loaded", "loaded"), ("read_back", "read back"))
COLOURS = ("#5b6770", "#2f80c0", "#2e9e5b", "#d98a1c")
# Reports that ask the admin for decisions, named above the list of every file when the run wrote them.
ADMIN_REPORTS = {
    "security_roles.md": "security-role plan: for admin review, nothing is assigned automatically"
}


def write_admin_lists(con: duckdb.DuckDBPyConnection, run_id: str, load_run: str) -> list[Path]:
    """This run's owner queue (from staged.owner_map) and oversize attachments (staging's entries and the
    files run `load_run` refused at load) in the run's folder."""
    folder = report_dir(run_id)
    written = []
    if table_exists(con, "staged", "owner_map"):
        written.append(write_frame_csv(folder / OWNER_QUEUE, fetch_polars(con, QUEUED_SQL)))
    written.append(write_frame_csv(folder / OVERSIZE, oversize_files(con, load_run)))
    return written


def warehouse_phases(con: duckdb.DuckDBPyConnection, config: MappingConfig) -> list[dict[str, str]]:
    """Close objects and staged rows per target table from the warehouse, for a run without a
    reconciliation (a dry run): nothing was loaded nor read back."""
    rows = []
    for table, staged in target_tables(con):
        counts = [close_ids(con, s) for s in sources_of(con, config, table)]
        known = [len(c) for c in counts if c is not None]
        n_staged = None
        if table_exists(con, "staged", staged):
            n_staged = con.execute(f"SELECT count(*) FROM staged.{quote(staged)}").fetchall()[0][0]
        rows.append(
            {
                "table": table,
                "close_objects": str(sum(known)) if known else "",
                "staged": "" if n_staged is None else str(n_staged),
            }
        )
    return rows


def read_csv_rows(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with path.open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except ValueError:
        return None


def phase_chart(rows: Sequence[Mapping[str, str]]) -> str:
    """Records per phase (Close -> staged -> loaded -> read back) per table as an inline SVG bar chart
    (n/a: a phase the run did not reach)."""
    if not rows:
        return "<p>No table staged nor reconciled in this run: no records per phase to chart.</p>"
    label_w, bar_h, gap, width = 190, 11, 12, 520
    top = max([_int(r.get(p)) or 0 for r in rows for p, _ in PHASES] + [1])
    height = 30 + len(rows) * (len(PHASES) * bar_h + gap)
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" width="{label_w + width + 60}" '
        f'height="{height}" aria-label="records per phase per table">'
    ]
    for i, (_, name) in enumerate(PHASES):
        x = label_w + i * 110
        out.append(f'<rect x="{x}" y="4" width="10" height="10" fill="{COLOURS[i]}"/>')
        out.append(f'<text x="{x + 14}" y="13" font-size="11">{html.escape(name)}</text>')
    y = 30
    for row in rows:
        table = html.escape(row.get("table", ""))
        out.append(f'<text x="0" y="{y + 2 * bar_h}" font-size="12" class="table">{table}</text>')
        for i, (phase, name) in enumerate(PHASES):
            value = _int(row.get(phase))
            w = max(1, round(width * value / top)) if value else 0
            shown = "n/a" if value is None else str(value)
            out.append(
                f'<rect x="{label_w}" y="{y}" width="{w}" height="{bar_h - 2}" fill="{COLOURS[i]}">'
                f"<title>{table} {html.escape(name)}: {shown}</title></rect>"
            )
            out.append(f'<text x="{label_w + w + 4}" y="{y + bar_h - 3}" font-size="10">{shown}</text>')
            y += bar_h
        y += gap
    out.append("</svg>")
    return "\n".join(out)


def html_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    if not rows:
        return "<p>(none)</p>"
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(r.get(c) or ''))}</td>" for c in columns) + "</tr>"
        for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def summary(recon: Sequence[Mapping[str, str]], by_source: Sequence[Mapping[str, str]]) -> dict[str, int]:
    """Tables by status and Close objects by fate, for the index's headline."""
    out = {
        f"tables {s}": sum(1 for r in recon if r.get("status", "").startswith(s))
        for s in ("ok", "partial", "halted")
    }
    out["Close objects"] = sum(_int(r.get("close_objects")) or 0 for r in by_source)
    for fate in FATES:
        out[f"Close objects {fate}"] = sum(_int(r.get(fate)) or 0 for r in by_source)
    return out


def render_index(run_id: str, job: str, folder: Path, phases: Sequence[Mapping[str, str]] = ()) -> str:
    """index.html for the run's folder: summary, chart, reconciliation, Close objects by source, files.
    `phases`: the chart's rows when the run wrote no reconciliation (warehouse_phases)."""
    recon = read_csv_rows(folder / "reconciliation.csv")
    by_source = read_csv_rows(folder / "reconciliation_by_source.csv")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.name != INDEX)
    links = "".join(
        f'<li><a href="{url_quote(p.name)}">{html.escape(p.name)}</a> ({p.stat().st_size} bytes)</li>'
        for p in files
    )
    heads = summary(recon, by_source) if recon else {}
    headline = (
        "".join(f"<li>{html.escape(k)}: <b>{v}</b></li>" for k, v in heads.items())
        if heads
        else "<li>This run wrote no reconciliation (a dry run, or it stopped before the reports): see the "
        "files below.</li>"
    )
    for_admin = "".join(
        f'<li><a href="{url_quote(n)}">{html.escape(n)}</a>: {html.escape(what)}</li>'
        for n, what in ADMIN_REPORTS.items()
        if (folder / n).is_file()
    )
    recon_columns = list(recon[0]) if recon else []
    source_columns = list(by_source[0]) if by_source else []
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>close2d365 audit pack: run {html.escape(run_id)}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; font-size: 13px; margin-bottom: 1.5em; }}
th, td {{ border: 1px solid #ccc; padding: 3px 6px; text-align: left; vertical-align: top; }}
td {{ max-width: 40em; overflow-wrap: anywhere; }}
th {{ background: #f0f0f0; }}
</style></head><body>
<h1>Audit pack of run {html.escape(run_id)}</h1>
<p>Job <b>{html.escape(job)}</b>. Every file of this run is in this folder; nothing in it is shared with another
run.</p>
<h2>Summary</h2><ul id="summary">{headline}</ul>
<h2>Records per phase</h2>
<p>Per table: Close objects, staged rows, rows loaded, and records read back from Dataverse. Accounts are one
per normalised lead name, so fewer than the Close leads (merged_accounts.csv).</p>
<div id="chart">{phase_chart(recon or phases)}</div>
<h2>Reconciliation</h2>{html_table(recon, recon_columns)}
<h2>Every Close object by source</h2>
<p>loaded + rejected + merged + halted + skipped = Close objects, per table and source.</p>
{html_table(by_source, source_columns)}
<h2>Files</h2><ul id="admin">{for_admin}</ul><ul id="files">{links}</ul>
</body></html>
"""


def write_index(run_id: str, job: str, phases: Sequence[Mapping[str, str]] = ()) -> tuple[Path, int]:
    """Write the run's index.html; (its path, the number of files it links)."""
    folder = report_dir(run_id)
    page = render_index(run_id, job, folder, phases)
    path = folder / INDEX
    with private_file(path) as fh:
        fh.write(page)
    return path, sum(1 for p in folder.iterdir() if p.is_file() and p.name != INDEX)
