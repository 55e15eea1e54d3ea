"""Pure helpers of the Close client: rate-limit headers, 429 delays, back-off, windows, timestamps."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from migration_assets.clients.backoff import EQUAL_JITTER, backoff_delay
from migration_assets.clients.close.paging import (
    DEFAULT_RATE_LIMIT_DELAY,
    RateLimit,
    Window,
    WindowTooNarrow,
    format_filter_datetime,
    lead_window_query,
    max_limit_from_error,
    max_skip_from_error,
    parse_close_datetime,
    parse_ratelimit,
    rate_limit_delay,
    split_window,
)


def test_parse_structured_ratelimit_header() -> None:
    assert parse_ratelimit({"RateLimit": "limit=20, remaining=0, reset=1.5"}) == RateLimit(20, 0, 1.5)


def test_parse_split_and_legacy_ratelimit_headers() -> None:
    assert parse_ratelimit(
        {"ratelimit-limit": "60", "ratelimit-remaining": "59", "ratelimit-reset": "1"}
    ) == (RateLimit(60, 59, 1))
    legacy = {"X-Rate-Limit-Limit": "320", "X-Rate-Limit-Remaining": "0", "X-Rate-Limit-Reset": "0.595956"}
    assert parse_ratelimit(legacy) == RateLimit(320, 0, 0.595956)
    assert parse_ratelimit({"content-type": "application/json"}) is None
    assert parse_ratelimit({"RateLimit": "garbage"}) is None


def test_rate_limit_delay_precedence() -> None:
    body = {"error": {"rate_reset": 7.5}, "rate_reset": "3.25"}
    assert rate_limit_delay({"RateLimit": "limit=20, remaining=0, reset=2"}, body) == 2
    assert rate_limit_delay({"Retry-After": "4"}, body) == 4
    assert rate_limit_delay({"RateLimit-Reset": "5"}, body) == 5
    assert rate_limit_delay({}, body) == 3.25  # legacy top-level body, a string in real responses
    assert rate_limit_delay({}, {"error": {"rate_reset": 1.2, "message": "x"}}) == 1.2
    assert rate_limit_delay({}, None) == DEFAULT_RATE_LIMIT_DELAY  # ingress 429: no body, no header
    assert rate_limit_delay({}, {"error": "Too many"}, default=0.25) == 0.25


def test_backoff_grows_and_is_bounded() -> None:
    rng = random.Random(1)
    delays = [backoff_delay(n - 1, base=1.0, cap=8.0, fixed_share=EQUAL_JITTER, rng=rng) for n in range(1, 8)]
    for n, d in enumerate(delays, start=1):
        step = min(8.0, 2 ** (n - 1))
        assert step / 2 <= d <= step
    assert max(delays) <= 8.0


def test_error_message_caps() -> None:
    skip_msg = "The skip you set is larger than the maximum skip for this resource (max_skip = 250000). Please refine"
    assert max_skip_from_error(skip_msg) == 250000
    assert max_limit_from_error("larger than the maximum limit for this resource (max_limit = 200).") == 200
    assert max_skip_from_error("something else") is None


def test_parse_close_datetime_variants() -> None:
    utc = datetime(2021, 7, 13, 11, 39, 5, 12000, tzinfo=UTC)
    assert parse_close_datetime("2021-07-13T11:39:05.012000+00:00") == utc
    assert parse_close_datetime("2021-07-13T11:39:05.012000") == utc  # naive = UTC (pipelines, events)
    assert parse_close_datetime("2021-07-13T13:39:05.012000+02:00") == utc
    assert parse_close_datetime("2021-07-16") == datetime(2021, 7, 16, tzinfo=UTC)
    assert parse_close_datetime("") is None
    assert parse_close_datetime("not a date") is None
    assert parse_close_datetime(None) is None


def test_window_params_and_lead_query() -> None:
    w = Window(datetime(2021, 1, 1, tzinfo=UTC), datetime(2021, 2, 1, tzinfo=UTC))
    assert w.params("date_created") == {
        "date_created__gte": "2021-01-01T00:00:00.000000+00:00",
        "date_created__lt": "2021-02-01T00:00:00.000000+00:00",
    }
    assert Window(None, None).params("date_created") == {}
    assert lead_window_query("date_created", w.start, w.end) == (
        'sort:created date_created >= "2021-01-01T00:00:00" date_created < "2021-02-01T00:00:00"'
    )
    assert (
        format_filter_datetime(datetime(2020, 1, 1, 1, 0, tzinfo=UTC)) == "2020-01-01T01:00:00.000000+00:00"
    )


def test_split_window_covers_interval_without_overlap() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    a, b = split_window(Window(None, None), now)
    assert a.start is None and b.end is None and a.end == b.start
    lo, hi = datetime(2021, 1, 1, tzinfo=UTC), datetime(2021, 1, 2, tzinfo=UTC)
    a, b = split_window(Window(lo, hi), now)
    assert a == Window(lo, datetime(2021, 1, 1, 12, tzinfo=UTC)) and b.start == a.end and b.end == hi
    a, b = split_window(Window(lo, lo + timedelta(minutes=3)), now, granularity=timedelta(minutes=1))
    assert a.end is not None and a.end.second == 0 and lo < a.end < lo + timedelta(minutes=3)


def test_split_window_refuses_below_granularity() -> None:
    lo = datetime(2021, 1, 1, tzinfo=UTC)
    with pytest.raises(WindowTooNarrow):
        split_window(Window(lo, lo + timedelta(seconds=1)), lo)


def test_vectorised_timestamps_match_the_python_parser() -> None:
    from migration_assets.extract.tables import parse_timestamps

    values = [
        "2021-07-13T11:39:05.012000+00:00",
        "2021-07-13T11:39:05+00:00",
        "2021-07-13T11:36:04.983404",
        "2021-07-13T11:36:04",
        None,
        "2021-07-16",
        "2021-07-13T13:39:05.012000+02:00",
        "garbage",
        "2021-07-13T11:39:05Z",
        "2021-07-13 11:39:05",
        5,
        "",
    ]
    assert parse_timestamps("t", values).to_list() == [parse_close_datetime(v) for v in values]
