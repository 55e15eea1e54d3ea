"""An attachment Close declares small but serves above the upload limit (issue 11 #15): the loader measures
the body, does not send it, ledgers it with the oversize code and both sizes; the admin's
oversize_attachments.csv lists it next to the staging-time entries; the reconciliation counts it as an
expected exclusion (status ok), not a load error."""

from __future__ import annotations

import base64
import csv
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest
from _loader_fakes import EmptyAnnotationTarget

from migration_assets.audit.reconcile_status import Counts, status
from migration_assets.audit.reconciliation import _rejections
from migration_assets.clients.dataverse.bulk import WriteResult
from migration_assets.load.engine import TableLoader
from migration_assets.load.file_body import OVERSIZE_CODE
from migration_assets.load.ledger import Ledger
from migration_assets.load.oversize import oversize_files, write_oversize_list

LIMIT = 4_000  # base64 bytes: files up to 3,000 bytes fit
RUN = "run-1"


class FakeDataverse(EmptyAnnotationTarget):
    """An empty target that records every body it is sent."""

    def __init__(self) -> None:
        self.created: list[dict[str, Any]] = []

    def create_multiple(self, table: str, bodies: list[dict[str, Any]]) -> WriteResult:
        self.created += bodies
        return WriteResult(table, "create", succeeded=list(range(len(bodies))))


BODIES = {"https://files/small": b"s" * 100, "https://files/liar": b"L" * 50_000}
SERVED: list[int] = []


def download(url: str) -> Iterator[bytes]:
    body = BODIES[url]
    for start in range(0, len(body), 1_000):
        SERVED.append(start)
        yield body[start : start + 1_000]


def _row(n: int, url: str, declared: int) -> dict[str, Any]:
    return {
        "annotationid": f"00000000-0000-0000-0000-00000000000{n}",
        "name": f"file {n}",
        "_close_id": f"acti_{n}:{url}",
        "_file_url": url,
        "_file_size": declared,
    }


@pytest.fixture
def con() -> Iterator[duckdb.DuckDBPyConnection]:
    c = duckdb.connect()
    c.execute("CREATE SCHEMA staged")
    c.execute(
        "CREATE TABLE staged.annotation (annotationid VARCHAR, name VARCHAR, _close_id VARCHAR, "
        "_file_url VARCHAR, _file_size BIGINT)"
    )
    c.execute(
        "INSERT INTO staged.annotation VALUES (?, ?, ?, ?, ?), (?, ?, ?, ?, ?)",
        [*_row(1, "https://files/small", 100).values(), *_row(2, "https://files/liar", 10).values()],
    )
    c.execute(
        'CREATE TABLE staged.annotation_rejected (_close_id VARCHAR, "column" VARCHAR, value VARCHAR, '
        "reason VARCHAR, check_name VARCHAR)"
    )
    c.execute(
        "INSERT INTO staged.annotation_rejected VALUES ('acti_3:https://files/big', '_file_size', '9000', "
        "'file of 9000 bytes (12000 as base64) exceeds the upload limit', 'max_upload_size'), "
        "('acti_4', 'subject', 'x', 'required value is missing', 'required')"
    )
    yield c
    c.close()


def test_a_body_larger_than_declared_is_refused_listed_and_excluded(
    con: duckdb.DuckDBPyConnection, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLOSE2D365_HOME", str(tmp_path))
    SERVED.clear()
    client = FakeDataverse()
    rows = [_row(1, "https://files/small", 100), _row(2, "https://files/liar", 10)]
    loader = TableLoader(client, Ledger(con, RUN), "annotation", list(rows[0]), 1000, download, LIMIT)  # type: ignore[arg-type]
    stats = loader.load(rows)

    # Not sent: only the honest file reached Dataverse; the other body was measured to its end (1 + 50
    # chunks served: it is below Dataverse's ceiling, so the admin gets its real size).
    assert [b["annotationid"][-1] for b in client.created] == ["1"]
    assert len(SERVED) == 51
    assert (stats.created, stats.rejected, stats.excluded, stats.downloads) == (1, 0, 1, 1)
    refused = con.execute("SELECT close_id, operation, code, message FROM ledger.rejected").fetchall()
    assert len(refused) == 1
    close_id, operation, code, message = refused[0]
    assert (close_id, operation, code) == ("acti_2:https://files/liar", "download", OVERSIZE_CODE)
    assert message == (
        "file of 50000 bytes (Close declared 10 bytes) is above the target's maxuploadfilesize (4000 bytes, "
        "base64): not loaded, listed for the admin"
    )

    # The admin's list keeps the staging-time entry and adds the measured one, with its ids and sizes.
    path, listed = write_oversize_list(con, RUN)
    assert path == tmp_path / "reports" / "oversize_attachments.csv" and listed == 2
    with path.open(newline="") as fh:
        entries = list(csv.DictReader(fh))
    assert [(e["_close_id"], e["column"], e["value"], e["check_name"]) for e in entries] == [
        ("acti_3:https://files/big", "_file_size", "9000", "max_upload_size"),
        ("acti_2:https://files/liar", "_file_size", "10", "max_upload_size"),
    ]
    assert "50000 bytes" in entries[1]["reason"] and "declared 10 bytes" in entries[1]["reason"]
    assert oversize_files(con, "another-run").height == 1  # another run's refusals are not this run's list

    # Counted like a staging-time oversize file: an exclusion, not a load error; the table is ok.
    rejections = _rejections(con, "annotation", "annotation", RUN)
    load_time = [r for r in rejections if r.get("at_load")]
    assert [(r["close_id"], r["excluded"]) for r in load_time] == [("acti_2:https://files/liar", True)]
    # 4 Close files: 2 staged (1 loaded, 1 refused at load), 1 declared too big, 1 rejected for a missing value.
    counts = Counts(
        close_objects=4,
        staged=2,
        rejected_at_staging=1,
        excluded=1,
        loaded=1,
        rejected_at_load=0,
        excluded_at_load=len(load_time),
    )
    assert (
        status(counts, None, "rejected_annotation.csv") == "partial (1 rejected, see rejected_annotation.csv)"
    )
    without_the_missing_value = Counts(3, 2, 0, 1, 1, 0, excluded_at_load=1)
    assert status(without_the_missing_value, None, "rejected_annotation.csv") == "ok"


def test_a_body_within_the_limit_is_sent_whole(con: duckdb.DuckDBPyConnection) -> None:
    client = FakeDataverse()
    rows = [_row(1, "https://files/small", 100)]
    stats = TableLoader(client, Ledger(con, RUN), "annotation", list(rows[0]), 1000, download, LIMIT).load(
        rows
    )  # type: ignore[arg-type]
    assert (stats.created, stats.excluded) == (1, 0)
    assert client.created[0]["documentbody"] == base64.b64encode(b"s" * 100).decode()
