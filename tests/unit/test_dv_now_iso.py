"""The Dataverse emulator's row timestamps (emulators/dataverse/values.py now_iso)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from emulators.dataverse import values


class _Clock:
    def __init__(self) -> None:
        self.now = datetime(2025, 1, 2, 3, 4, 5, 100_000, tzinfo=UTC)

    def __call__(self, tz: object = None) -> datetime:
        return self.now


def test_now_iso_is_one_text_per_second(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = _Clock()
    monkeypatch.setattr(values, "datetime", type("FakeDatetime", (), {"now": staticmethod(clock)}))
    first = values.now_iso()
    clock.now = clock.now.replace(microsecond=900_000)
    again = values.now_iso()
    assert first == "2025-01-02T03:04:05Z"
    assert again is first  # the rows stamped within one second share the text
    clock.now = clock.now.replace(second=6, microsecond=0)
    assert values.now_iso() == "2025-01-02T03:04:06Z"
