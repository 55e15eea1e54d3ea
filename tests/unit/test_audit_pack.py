"""The audit pack (issue 14): the lineage reads left to right (close -> staged -> schema/loaded -> reports),
and a run's index.html is self-contained, charts every table's records per phase and links every file of
its own run's folder, never another run's."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import dagster as dg
import duckdb

from migration_assets.audit.accounting import FATES, SOURCE_COLUMNS
from migration_assets.audit.audit_pack import INDEX, warehouse_phases, write_index
from migration_assets.audit.reconciliation import RECON_COLUMNS
from migration_assets.mapping.config import load_mapping_config

PLAN = dg.AssetKey(["schema", "plan"])
GROUP_ORDER = {"close": 0, "staged": 1, "schema": 2, "loaded": 2, "reports": 3}


def test_the_lineage_reads_close_staged_schema_loaded_reports() -> None:
    from migration_assets.definitions import defs

    graph = defs.get_repository_def().asset_graph
    groups = {k: graph.get(k).group_name for k in graph.get_all_asset_keys()}
    backwards = [
        f"{up.to_user_string()} ({groups[up]}) -> {key.to_user_string()} ({groups[key]})"
        for key in groups
        for up in graph.get(key).parent_keys
        if up in groups and GROUP_ORDER.get(groups[up], 0) > GROUP_ORDER.get(groups[key], 0)
    ]
    assert backwards == []
    # The inputs of staging and of the preflight sit with the step they feed, not in reports.
    assert groups[dg.AssetKey(["staged", "owner_map"])] == "staged"
    assert groups[dg.AssetKey(["schema", "load_plan"])] == "schema"
    assert groups[PLAN] == "staged", "the plan feeds staging: drawn with it, before the deploy steps"
    assert all(not k.path[0] == "reports" or g == "reports" for k, g in groups.items())


def _write(path: Path, columns: list[str], rows: list[dict[str, object]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, columns)
        writer.writeheader()
        writer.writerows(rows)


def _recon(table: str, close: int, staged: int, loaded: int, status: str) -> dict[str, object]:
    base = dict.fromkeys(RECON_COLUMNS, 0)
    return base | {
        "table": table,
        "close_objects": close,
        "staged": staged,
        "loaded": loaded,
        "read_back": loaded,
        "status": status,
    }


def test_the_index_charts_each_phase_and_links_every_file_of_its_run(isolated_home: Path) -> None:
    folder = isolated_home / "reports" / "run-a"
    other = isolated_home / "reports" / "run-b"
    folder.mkdir(parents=True)
    other.mkdir(parents=True)
    (other / "rejected_lead.csv").write_text("table\n", encoding="utf-8")
    _write(
        folder / "reconciliation.csv",
        RECON_COLUMNS,
        [
            _recon("account", 50, 41, 41, "partial (2 rejected, see rejected_account.csv)"),
            _recon("lead", 7, 7, 7, "ok"),
        ],
    )
    by_source = [
        dict.fromkeys(SOURCE_COLUMNS, 0)
        | {
            "table": "account",
            "source": "account",
            "close_objects": 50,
            "loaded": 41,
            "rejected": 2,
            "merged": 7,
        },
        dict.fromkeys(SOURCE_COLUMNS, 0)
        | {"table": "lead", "source": "<lead>", "close_objects": 7, "loaded": 7},
    ]
    _write(folder / "reconciliation_by_source.csv", SOURCE_COLUMNS, by_source)
    (folder / "rejected_account.csv").write_text("table,close_id\n", encoding="utf-8")
    (folder / "owner queue.csv").write_text("x\n", encoding="utf-8")

    path, files = write_index("run-a", "migrate")
    page = path.read_text(encoding="utf-8")

    assert path == folder / INDEX and files == 4
    assert "<script" not in page and not re.search(r"(src|href)=\"(https?:)?//", page)  # nothing fetched
    links = set(re.findall(r'href="([^"]+)"', page))
    assert links == {
        "reconciliation.csv",
        "reconciliation_by_source.csv",
        "rejected_account.csv",
        "owner%20queue.csv",
    }
    svg = page[page.index("<svg") : page.index("</svg>")]
    # One bar per phase per table, each titled with its figure.
    for title in ("account Close: 50", "account staged: 41", "account loaded: 41", "lead read back: 7"):
        assert f"<title>{title}</title>" in svg, title
    assert svg.count("<rect") == 4 + 2 * 4  # the legend, then 2 tables x 4 phases
    assert "&lt;lead&gt;" in page and "<lead>" not in page  # Close values are escaped
    summary = page[page.index('<ul id="summary">') : page.index("</ul>")]
    assert "tables ok: <b>1</b>" in summary and "tables partial: <b>1</b>" in summary
    assert "Close objects: <b>57</b>" in summary and "Close objects merged: <b>7</b>" in summary
    assert all(f"Close objects {fate}: <b>" in summary for fate in FATES)
    assert not (other / INDEX).exists()


def test_a_run_without_reconciliation_charts_what_the_warehouse_holds(isolated_home: Path) -> None:
    """A dry run loads nothing: its chart shows Close objects (every source of a table) and staged rows."""
    con = duckdb.connect()
    con.execute("CREATE SCHEMA close; CREATE SCHEMA staged")
    con.execute("CREATE TABLE close.tasks AS SELECT 'task_' || i AS id FROM range(3) t(i)")
    con.execute("CREATE TABLE close.sms AS SELECT 'acti_' || i AS id FROM range(2) t(i)")
    con.execute("CREATE TABLE staged.task AS SELECT 'task_' || i AS _close_id FROM range(4) t(i)")
    phases = {r["table"]: r for r in warehouse_phases(con, load_mapping_config())}
    assert phases["task"] == {"table": "task", "close_objects": "5", "staged": "4"}
    assert phases["contact"] == {"table": "contact", "close_objects": "", "staged": ""}
    (isolated_home / "reports" / "dry").mkdir(parents=True)
    page = write_index("dry", "dry_run", list(phases.values()))[0].read_text(encoding="utf-8")
    assert "<title>task Close: 5</title>" in page and "<title>task loaded: n/a</title>" in page
