"""Report CSVs never carry a live spreadsheet formula from Close data."""

from __future__ import annotations

import polars as pl

from migration_assets.audit.csv_safe import neutralise, neutralise_frame

HOSTILE = ['=HYPERLINK("http://x","y")', "+1+1", "-2+3", "@SUM(A1)", "\t=1", "\r=1"]


def test_text_cells_that_start_a_formula_are_quoted() -> None:
    assert [neutralise(v) for v in HOSTILE] == ["'" + v for v in HOSTILE]
    assert [neutralise(v) for v in ("Acme = best", "a@b.com", "", None, -5, 3.5)] == [
        "Acme = best",
        "a@b.com",
        "",
        None,
        -5,
        3.5,
    ]


def test_frames_quote_text_columns_only() -> None:
    frame = pl.DataFrame({"name": [*HOSTILE, "plain", None], "n": [-1, 2, 3, 4, 5, 6, 7, None]})
    out = neutralise_frame(frame)
    assert out["name"].to_list() == [neutralise(v) for v in [*HOSTILE, "plain", None]]
    assert out["n"].to_list() == frame["n"].to_list()


def test_report_files_are_owner_only_and_formula_free(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import csv
    import stat

    from migration_assets.audit.files import write_csv, write_frame_csv, write_report

    monkeypatch.setenv("CLOSE2D365_HOME", str(tmp_path))
    old = tmp_path / "reports" / "queue.csv"
    old.parent.mkdir(parents=True)
    old.write_text("stale")
    old.chmod(0o644)
    frame_csv = write_frame_csv(old, pl.DataFrame({"name": ["=cmd|' /C calc'!A0"], "n": [-1]}))
    md, rows_csv = write_report("run1", "spot", "# spot", [{"value": "@SUM(1)"}], ["value"])
    single = write_csv("run1", "rejected_lead", [{"value": "+1"}], ["value"])
    for path in (frame_csv, md, rows_csv, single):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert pl.read_csv(frame_csv).row(0) == ("'=cmd|' /C calc'!A0", -1)
    assert list(csv.reader(rows_csv.open()))[1] == ["'@SUM(1)"]
    assert list(csv.reader(single.open()))[1] == ["'+1"]
