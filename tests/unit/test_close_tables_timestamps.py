from __future__ import annotations

from datetime import UTC, datetime

from migration_assets.extract.tables import parse_timestamps


def test_datetimes_read_back_from_duckdb_are_kept() -> None:
    """Attachments carry their activity's date_created re-read from DuckDB as datetimes: none may be lost."""
    values = [
        datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC),
        "2024-01-02T03:04:05.120000+00:00",
        None,
        datetime(2024, 1, 2),
        "2022-03-10T14:21:15.270359",
    ]
    out = parse_timestamps("activity_date_created", values).to_list()
    assert out[0] == datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert out[1] == datetime(2024, 1, 2, 3, 4, 5, 120000, tzinfo=UTC)
    assert out[2] is None
    assert out[3] == datetime(2024, 1, 2, tzinfo=UTC)
    assert out[4] == datetime(2022, 3, 10, 14, 21, 15, 270359, tzinfo=UTC)
