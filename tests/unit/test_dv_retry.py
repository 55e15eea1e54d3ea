"""Retry arithmetic of the Dataverse client: Retry-After, backoff with jitter, AIMD window."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from migration_assets.clients.backoff import FULL_JITTER, backoff_delay
from migration_assets.clients.dataverse.retry import (
    AimdWindow,
    parse_retry_after,
    throttle_delay,
)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("12", 12.0),
        ("0.5", 0.5),
        (" 3 ", 3.0),
        ("-4", 0.0),
        ("", None),
        (None, None),
        ("soon", None),
        ("nan", None),
    ],
)
def test_parse_retry_after_seconds(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value) == expected


def test_parse_retry_after_http_date() -> None:
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("Thu, 01 Jan 2026 12:00:30 GMT", now=now) == 30.0
    assert parse_retry_after("Thu, 01 Jan 2026 11:00:00 GMT", now=now) == 0.0


def test_backoff_is_jittered_and_capped() -> None:
    rng = random.Random(1)
    delays = [
        backoff_delay(a, base=0.5, cap=4.0, fixed_share=FULL_JITTER, rng=rng)
        for a in range(10)
        for _ in range(50)
    ]
    assert all(0.0 <= d <= 4.0 for d in delays)
    assert len({round(d, 6) for d in delays}) > 100  # jitter: not a fixed schedule
    first = [backoff_delay(0, base=0.5, cap=4.0, fixed_share=FULL_JITTER, rng=rng) for _ in range(200)]
    assert max(first) <= 0.5
    with pytest.raises(ValueError):
        backoff_delay(-1, base=0.5, cap=30.0, fixed_share=FULL_JITTER)


def test_throttle_delay_prefers_server_value() -> None:
    assert throttle_delay(7.5, consecutive=5) == 7.5
    assert throttle_delay(None, consecutive=0) == 1.0
    assert throttle_delay(None, consecutive=3) == 8.0
    assert throttle_delay(10_000.0, consecutive=0, cap=300.0) == 300.0


def test_aimd_halves_on_throttle_and_grows_back_slowly() -> None:
    w = AimdWindow(ceiling=8)
    assert w.limit == 8
    w.on_throttle()
    assert w.limit == 4
    w.on_throttle()
    w.on_throttle()
    w.on_throttle()
    assert w.limit == 1  # never below one: a request is always possible, never dropped
    for _ in range(3):
        w.on_success()
    assert w.limit >= 2
    for _ in range(200):
        w.on_success()
    assert w.limit == 8  # never above the configured ceiling
    with pytest.raises(ValueError):
        AimdWindow(ceiling=0)
