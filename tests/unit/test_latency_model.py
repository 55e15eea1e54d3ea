"""The latency models' arithmetic (emulators/*/latency.py) and the load duration estimate that follows the
loader's request pattern at those times (load/estimate.py load_seconds). Computed delays only: no clock."""

from __future__ import annotations

import pytest

from emulators.close.config import CloseEmulatorConfig, EmulatorConfigError, LatencyConfig
from emulators.close.latency import REALISTIC, delay_seconds, file_download_ms, is_off
from emulators.dataverse.config import DataverseEmulatorConfig, Latency, ServiceProtection
from emulators.dataverse.identity import Clock
from emulators.dataverse.latency import REALISTIC_COSTS, execution_seconds, with_realistic_latency
from emulators.dataverse.protection import ServiceProtectionLimiter, execution_ms
from migration_assets.load.estimate import (
    LoaderShape,
    ServiceTimes,
    TableWrites,
    load_seconds,
    pipelined_seconds,
    write_requests,
)

SHAPE = LoaderShape(
    batch_rows=1000, bulk_size=500, batch_parts=100, action_parts=500, in_flight=4, download_workers=4
)
# 1 s per request plus 0.01 s per record: figures easy to add up by hand.
TIMES = ServiceTimes(round_trip_ms=400.0, request_ms=600.0, record_ms=10.0)


def test_close_default_is_off_and_adds_nothing() -> None:
    latency = CloseEmulatorConfig().latency
    assert is_off(latency)
    assert delay_seconds(latency, 200, True) == 0.0


def test_close_delay_is_round_trip_plus_server_time_per_request_and_record() -> None:
    latency = LatencyConfig(round_trip_ms=80.0, per_request_ms=50.0, per_record_ms=1.0)
    assert delay_seconds(latency, 200, True) == pytest.approx(0.33)
    assert delay_seconds(latency, 0, True) == pytest.approx(0.13)
    # storage (signed URLs): the network only
    assert delay_seconds(latency, 200, False) == pytest.approx(0.08)
    assert file_download_ms(latency) == pytest.approx(210.0)
    assert not is_off(REALISTIC)


def test_close_config_refuses_a_negative_latency() -> None:
    config = CloseEmulatorConfig(latency=LatencyConfig(round_trip_ms=-1.0))
    with pytest.raises(EmulatorConfigError, match="latency.round_trip_ms"):
        config.validate()


def test_dataverse_execution_time_is_what_protection_charges() -> None:
    limits = ServiceProtection(cost_ms_per_request=30.0, cost_ms_per_record=10.0)
    assert execution_ms(limits, 500) == 5030.0
    assert execution_seconds(limits, Latency(execution_time=True), 500) == pytest.approx(5.03)
    assert execution_seconds(limits, Latency(), 500) == 0.0  # off by default
    limiter = ServiceProtectionLimiter(limits, Clock())
    limiter.admit("user")
    limiter.finish("user", 500)
    assert limiter.stats["user"].charged_ms == execution_ms(limits, 500)


def test_a_bulk_batch_sends_its_requests_in_parallel() -> None:
    # 1000 rows: two CreateMultiple of 500 at once, one wave of 1 + 5 s.
    duration = load_seconds([TableWrites("account", 1000)], TIMES, SHAPE, reads=0)
    assert duration.service_seconds == pytest.approx(6.0)
    assert duration.requests == 2
    assert duration.charged_ms == pytest.approx(2 * (600 + 5000))


def test_batch_table_states_go_one_batch_at_a_time() -> None:
    # 1000 phone calls: 10 `$batch` of 100 creates, 4 at a time (3 waves of 2 s); then 10 state batches
    # one after another (10 x 2 s).
    duration = load_seconds(
        [TableWrites("phonecall", 1000, state_changes=1000, bulk=False)], TIMES, SHAPE, reads=0
    )
    assert duration.service_seconds == pytest.approx(3 * 2.0 + 10 * 2.0)
    assert (
        duration.requests
        == 20
        == write_requests([TableWrites("phonecall", 1000, state_changes=1000, bulk=False)], SHAPE)
    )


def test_ledgered_batches_follow_one_another_and_actions_are_sequential() -> None:
    # 1500 opportunities: a batch of 1000 (one wave of 2 x 500: 6 s) and one of 500 (6 s); 600 Win/Lose
    # actions spread over both batches (400 + 200), each batch's in one `$batch`: 5 s and 3 s.
    loads = [TableWrites("opportunity", 1500, close_actions=600)]
    duration = load_seconds(loads, TIMES, SHAPE, reads=0)
    assert duration.service_seconds == pytest.approx(6.0 + 5.0 + 6.0 + 3.0)
    assert write_requests(loads, SHAPE) == 5


def test_own_time_reads_and_downloads_add_up() -> None:
    times = ServiceTimes(round_trip_ms=50.0, request_ms=30.0, record_ms=0.0, download_ms=200.0)
    loads = [TableWrites("annotation", 10, downloads=8)]
    duration = load_seconds(loads, times, SHAPE, own_seconds=2.5, reads=5)
    # 5 reads of 80 ms, two rounds of 4 downloads of 200 ms, one CreateMultiple of 80 ms
    assert duration.service_seconds == pytest.approx(0.4 + 0.4 + 0.08, abs=0.05)  # rounded to 0.1 s
    assert duration.seconds == pytest.approx(2.5 + 0.9, abs=0.05)
    assert duration.own_seconds == 2.5
    # unknown reads: the shape's per-table default
    assert load_seconds(loads, times, SHAPE).requests == 1 + SHAPE.setup_requests


def test_the_next_batchs_downloads_overlap_the_batch_being_sent() -> None:
    # Three batches of 1,000 rows, each with 4 downloads of 1 s (one round of 4 workers) and two
    # CreateMultiple of 500 records at once (0.08 + 500 x 1 ms = 0.58 s): the first download round, then
    # each send overlapped by the next batch's downloads (1 s each), then the last send.
    times = ServiceTimes(round_trip_ms=50.0, request_ms=30.0, record_ms=1.0, download_ms=1000.0)
    loads = [TableWrites("annotation", 3000, downloads=12)]
    duration = load_seconds(loads, times, SHAPE, reads=0)
    assert duration.service_seconds == pytest.approx(1.0 + 1.0 + 1.0 + 0.58, abs=0.05)
    assert pipelined_seconds([(1.0, 3.0), (2.0, 0.5), (0.0, 1.0)]) == pytest.approx(1.0 + 3.0 + 0.5 + 1.0)
    assert pipelined_seconds([]) == 0.0


def test_files_fetched_ahead_overlap_the_tables_before_theirs() -> None:
    # 12 downloads of 1 s, 4 at a time: 3 s from the load's start. A contact table before them takes
    # 1 x 0.58 s: the annotation table waits for the fetch (3 s), then sends 3 batches without downloading.
    times = ServiceTimes(round_trip_ms=50.0, request_ms=30.0, record_ms=1.0, download_ms=1000.0)
    ahead = LoaderShape(**{**SHAPE.__dict__, "fetch_ahead": True})
    loads = [TableWrites("contact", 1000), TableWrites("annotation", 3000, downloads=12)]
    duration = load_seconds(loads, times, ahead, reads=0)
    assert duration.service_seconds == pytest.approx(3.0 + 3 * 0.58, abs=0.05)
    inline = load_seconds(loads, times, SHAPE, reads=0)  # each batch downloads its own files
    assert inline.service_seconds == pytest.approx(0.58 + 1.0 + 1.0 + 1.0 + 0.58, abs=0.05)
    # A long table before them hides the fetch entirely.
    long_first = [TableWrites("contact", 10_000), TableWrites("annotation", 3000, downloads=12)]
    assert load_seconds(long_first, times, ahead, reads=0).service_seconds == pytest.approx(
        10 * 0.58 + 3 * 0.58, abs=0.05
    )


def test_the_prediction_never_beats_service_protection() -> None:
    # 2,000,000 records in batches of 10,000 sent 20 requests at once: 200 waves of 6 s = 1,200 s, but
    # 4,000 requests of 5.6 s charge 22,400,000 ms, 18.7 windows of 1,200,000 ms per user: 5,600 s.
    wide = LoaderShape(**{**SHAPE.__dict__, "batch_rows": 10_000, "in_flight": 20})
    loads = [TableWrites("contact", 2_000_000)]
    duration = load_seconds(loads, TIMES, wide, reads=0)
    assert duration.service_seconds == pytest.approx(1200.0)
    assert duration.seconds == duration.protection_seconds == pytest.approx(5600.0)
    two_users = load_seconds(loads, TIMES, LoaderShape(**{**wide.__dict__, "app_users": 2}), reads=0)
    assert two_users.protection_seconds == pytest.approx(duration.protection_seconds / 2, rel=0.01)


def test_realistic_dataverse_keeps_the_limits_and_charges_what_it_sleeps() -> None:
    config = with_realistic_latency(
        DataverseEmulatorConfig(protection=ServiceProtection(enabled=True, max_requests=7))
    )
    assert config.latency.execution_time and config.latency.round_trip_ms > 0
    assert config.protection.enabled and config.protection.max_requests == 7
    assert config.protection.cost_ms_per_record == REALISTIC_COSTS["cost_ms_per_record"]
    assert not DataverseEmulatorConfig().latency.execution_time  # off by default


def test_a_table_with_a_pool_of_its_own_loads_beside_the_tables_it_does_not_follow() -> None:
    # A batch of 1,000 bulk rows: two CreateMultiple of 500 at once, 0.05 + 0.03 + 0.5 = 0.58 s.
    times = ServiceTimes(round_trip_ms=50.0, request_ms=30.0, record_ms=1.0)
    contact, task = TableWrites("contact", 1000), TableWrites("task", 2000)
    beside = TableWrites("annotation", 3000, after=frozenset({"contact"}))
    # Listed last, the contacts still go first (the annotations wait for them): 0.58 s. The tasks follow
    # (1.16 s, until 1.74 s) while the annotations load beside them from 0.58 s (1.74 s, until 2.32 s).
    duration = load_seconds([task, beside, contact], times, SHAPE, reads=0)
    assert duration.service_seconds == pytest.approx(0.58 + 1.74, abs=0.05)
    # In the main pool, one table after another.
    serial = load_seconds([task, TableWrites("annotation", 3000), contact], times, SHAPE, reads=0)
    assert serial.service_seconds == pytest.approx(0.58 + 1.16 + 1.74, abs=0.05)
    assert duration.requests == serial.requests and duration.charged_ms == serial.charged_ms
    # Beside tables that take longer, the load ends with them.
    long_main = load_seconds([TableWrites("task", 9000), beside, contact], times, SHAPE, reads=0)
    assert long_main.service_seconds == pytest.approx(0.58 + 9 * 0.58, abs=0.05)
