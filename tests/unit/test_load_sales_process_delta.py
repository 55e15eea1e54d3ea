"""Delta runs of loaded/opportunity_sales_process consider only the opportunities whose placement changed
since the last completed load; what a load refused is retried."""

from __future__ import annotations

import duckdb

from migration_assets.load.sales_process import (
    PlacementReport,
    Wanted,
    changed_since,
    last_placed,
    placement_key,
    save_placed,
)

STATUSES = {
    1: ("Qualify", "active", "S / A"),
    2: ("Propose", "active", "S / B"),
    3: ("Close", "won", "S / W"),
}


def test_placement_key_comes_from_the_mapping_alone() -> None:
    assert placement_key(STATUSES, 1) == "stage:qualify"
    assert placement_key(STATUSES, 3) == "finished"
    assert placement_key(STATUSES, 9) is None and placement_key(STATUSES, None) is None


def test_only_changed_opportunities_are_considered_and_refused_ones_retried() -> None:
    con = duckdb.connect()
    assert last_placed(con) is None  # no load yet: a delta considers every opportunity
    wanted = [Wanted("o1", "c1", 1), Wanted("o2", "c2", 2), Wanted("o3", "c3", 3)]
    report = PlacementReport(placements={"o1": ("Qualify", False), "o2": ("Propose", False)}, refused={"o2"})
    assert save_placed(con, wanted, STATUSES, report, None) == 1  # o2 refused, o3 not loaded
    placed = last_placed(con)
    assert placed == {"o1": "stage:qualify"}
    now = [Wanted("o1", "c1", 1), Wanted("o2", "c2", 2), Wanted("o3", "c3", 3), Wanted("o4", "c4", 1)]
    assert [w.opportunity_id for w in changed_since(now, STATUSES, placed)] == ["o2", "o3", "o4"]
    # A delta placing o2 and o3 keeps what earlier loads placed for the others.
    considered = changed_since(now, STATUSES, placed)[:2]
    done = PlacementReport(placements={"o2": ("Propose", False), "o3": ("Close", True)})
    save_placed(con, considered, STATUSES, done, placed)
    assert last_placed(con) == {"o1": "stage:qualify", "o2": "stage:propose", "o3": "finished"}
    moved = [Wanted("o1", "c1", 2), Wanted("o2", "c2", 2), Wanted("o3", "c3", 3)]
    assert [w.opportunity_id for w in changed_since(moved, STATUSES, last_placed(con) or {})] == ["o1"]


def test_the_resolved_process_is_saved_for_deltas_and_read_back_as_it_was() -> None:
    from migration_assets.load.sales_process import SalesProcess, save_definition, saved_definition
    from migration_assets.load.sales_process_plan import Stage

    con = duckdb.connect(":memory:")
    assert saved_definition(con, "opportunitysalesprocess") is None
    process = SalesProcess(
        "wf-1",
        "opportunitysalesprocess",
        "opportunitysalesprocess",
        "businessprocessflowinstanceid",
        "bpf_opportunityid",
        "bpf_opportunityid",
        (Stage("s1", "Qualify", 0), Stage("s2", "Develop", None)),
    )
    save_definition(con, process)
    assert saved_definition(con, "opportunitysalesprocess") == process
    assert saved_definition(con, "another_process") is None
