"""The export split: worker processes over JSON lines give exactly the in-process result; arrays are
parsed in order; bad input fails with the line named."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest

from migration_assets.clients.close.export_file import CloseExportError, iter_export_leads
from migration_assets.extract.export_split import export_frames, split_export, split_parallel

TYPES = ("Call", "Email", "Note", "Created", "LeadStatusChange")
LEADS = [
    {
        "id": f"lead_{i:04d}",
        "name": f"Lead {i} ü",
        "date_updated": "2024-01-02T03:04:05.000000+00:00",
        "contacts": [{"id": f"cont_{i:04d}", "lead_id": f"lead_{i:04d}", "name": "C"}],
        "opportunities": [],
        "tasks": [{"id": f"task_{i:04d}", "_type": "lead", "lead_id": f"lead_{i:04d}"}] if i % 3 == 0 else [],
        "activities": [
            {"id": f"acti_{i:04d}_{k}", "_type": TYPES[(i + k) % len(TYPES)], "lead_id": f"lead_{i:04d}"}
            for k in range(i % 4)
        ],
    }
    for i in range(400)
]


def byte_chunks(data: bytes, size: int = 3000) -> Iterator[bytes]:
    return iter([data[i : i + size] for i in range(0, len(data), size)])


def lines() -> bytes:
    return ("\n".join(json.dumps(lead, ensure_ascii=False) for lead in LEADS) + "\n").encode()


def tables(directory: Path) -> dict[str, pl.DataFrame]:
    out = {}
    for table in ("leads", "contacts", "tasks", "calls", "emails", "notes", "status_changes"):
        frames = [pl.from_arrow(ds.to_table()) for ds in export_frames(directory, table)]
        out[table] = pl.concat(frames).sort("id")  # type: ignore[arg-type]
    return out


@pytest.fixture
def reference(tmp_path: Path) -> tuple[dict[str, int], dict[str, pl.DataFrame]]:
    path = tmp_path / "ref.jsonl"
    path.write_bytes(lines())
    directory = tmp_path / "ref"
    counts = split_export(iter_export_leads(path), directory, batch_rows=50)
    return counts, tables(directory)


def test_parallel_split_equals_in_process_split(tmp_path: Path, reference: tuple) -> None:
    counts, frames = reference
    directory = tmp_path / "par"
    got = split_parallel(byte_chunks(gzip.compress(lines())), directory, workers=2, batch_rows=50)
    assert got == counts and got["skipped:Created"] > 0
    par = tables(directory)
    for name, frame in frames.items():
        assert par[name].equals(frame), name


def test_json_array_is_parsed_in_order(tmp_path: Path, reference: tuple) -> None:
    counts, frames = reference
    data = json.dumps(LEADS, indent=1).encode()
    got = split_parallel(byte_chunks(data), tmp_path / "arr", workers=2, batch_rows=50)
    assert got == counts
    assert tables(tmp_path / "arr")["calls"].equals(frames["calls"])


def test_invalid_line_is_named(tmp_path: Path) -> None:
    data = lines().replace(b'{"id": "lead_0300"', b'{"id": lead_0300', 1)
    with pytest.raises(CloseExportError, match="line 301: invalid JSON"):
        split_parallel(byte_chunks(data), tmp_path / "bad", workers=2)


def test_non_object_line_is_named(tmp_path: Path) -> None:
    with pytest.raises(CloseExportError, match="line 2: expected a lead object, found list"):
        split_parallel(byte_chunks(b'{"id": "lead_1"}\n[1, 2]\n'), tmp_path / "bad", workers=1)


def test_csv_is_refused(tmp_path: Path) -> None:
    with pytest.raises(CloseExportError, match="CSV export"):
        split_parallel(byte_chunks(b"id,display_name\nlead_1,A\n"), tmp_path / "csv", workers=2)
