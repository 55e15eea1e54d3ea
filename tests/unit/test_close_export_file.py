"""Streaming reader of Close JSON exports: JSON-lines, arrays, gzip; CSV refused with the explanation."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from migration_assets.clients.close.export_file import CloseExportError, iter_export_leads

LEADS = [
    {
        "id": f"lead_{i}",
        "name": f"Lead {i}",
        "contacts": [{"id": f"cont_{i}"}],
        "activities": [{"id": f"a{i}"}] * i,
    }
    for i in range(25)
]


def test_json_lines_and_gzip(tmp_path: Path) -> None:
    text = "\n".join(json.dumps(lead) for lead in LEADS) + "\n\n"
    (tmp_path / "e.jsonl").write_text(text)
    with gzip.open(tmp_path / "e.json.gz", "wt") as fh:
        fh.write(text)
    assert list(iter_export_leads(tmp_path / "e.jsonl")) == LEADS
    assert list(iter_export_leads(tmp_path / "e.json.gz")) == LEADS


@pytest.mark.parametrize("indent", [None, 2])
def test_json_array_streamed_in_small_chunks(tmp_path: Path, indent: int | None) -> None:
    path = tmp_path / "e.json"
    path.write_text(json.dumps(LEADS, indent=indent, ensure_ascii=False))
    assert list(iter_export_leads(path, chunk_size=17)) == LEADS


def test_empty_array(tmp_path: Path) -> None:
    (tmp_path / "e.json").write_text("[ ]")
    assert list(iter_export_leads(tmp_path / "e.json")) == []


def test_truncated_array_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "e.json").write_text(json.dumps(LEADS)[:-40])
    with pytest.raises(CloseExportError, match="truncated|invalid JSON"):
        list(iter_export_leads(tmp_path / "e.json", chunk_size=64))


def test_bad_json_line_names_the_line(tmp_path: Path) -> None:
    (tmp_path / "e.jsonl").write_text(json.dumps(LEADS[0]) + "\n{oops\n")
    with pytest.raises(CloseExportError, match="line 2"):
        list(iter_export_leads(tmp_path / "e.jsonl"))


@pytest.mark.parametrize("name", ["leads.csv", "leads.json"])
def test_csv_export_refused_with_explanation(tmp_path: Path, name: str) -> None:
    (tmp_path / name).write_text("id,display_name,status_label\nlead_1,Acme,Potential\n")
    with pytest.raises(CloseExportError) as info:
        list(iter_export_leads(tmp_path / name))
    message = str(info.value)
    assert "no activity history" in message and "include_activities" in message and "Settings" in message


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CloseExportError, match="not found"):
        list(iter_export_leads(tmp_path / "nope.json"))
