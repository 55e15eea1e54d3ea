"""A step's requests are counted into its own scope, from whichever thread sends them, while other steps send
too (clients/call_scope.py, resources/api_calls.py)."""

# No `from __future__ import annotations`: Dagster reads the context annotation as an object.
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import dagster as dg

from migration_assets.clients.call_scope import call_scope, count, current_counts, in_context, submit
from migration_assets.resources.api_calls import reports_api_calls

# One pool shared by every step, like a run's client's senders: created before any step's scope.
SHARED_POOL = ThreadPoolExecutor(max_workers=4, thread_name_prefix="shared-senders")


def _send(n: int, retries: int = 0) -> None:
    """A client's worker: sends `n` requests, `retries` of them repeats."""
    for _ in range(n):
        count("dataverse", "requests")
    count("dataverse", "retries", retries)


def test_work_handed_to_a_shared_pool_or_a_new_thread_counts_for_the_scope_that_handed_it() -> None:
    with call_scope() as scope:
        submit(SHARED_POOL, _send, 3, retries=1).result()
        worker = threading.Thread(target=in_context(_send), args=(2,))
        worker.start()
        worker.join()
        count("close", "throttled_429")
    assert scope.counts() == {
        "dataverse": {"requests": 5, "retries": 1, "throttled_429": 0},
        "close": {"requests": 0, "retries": 0, "throttled_429": 1},
    }
    assert scope.counts("close") == {"close": {"requests": 0, "retries": 0, "throttled_429": 1}}
    count("dataverse", "requests")  # outside any step: nobody to credit, and no error
    assert scope.counts()["dataverse"]["requests"] == 5
    assert current_counts("dataverse") is None  # the loader then reads its client's own totals
    with call_scope():
        count("dataverse", "retries", 2)
        assert current_counts("dataverse") == {"requests": 0, "retries": 2, "throttled_429": 0}


def test_a_plain_submit_loses_the_scope_which_is_why_the_clients_hand_work_over_with_submit() -> None:
    with call_scope() as scope:
        SHARED_POOL.submit(_send, 3).result()
    assert scope.counts() == {}


def test_steps_that_overlap_each_report_only_their_own_requests() -> None:
    """Two steps send through the shared pool at the same time: each one's metadata holds its own counts
    (a difference of the client's totals before and after each would give both steps both counts)."""
    both_sending = threading.Barrier(2)

    def step(requests: int, retries: int) -> Any:
        @reports_api_calls
        def _step(context: Any) -> dg.MaterializeResult:
            first = submit(SHARED_POOL, _send, requests // 2, retries)
            both_sending.wait(timeout=10)  # the other step is sending now too
            rest = submit(SHARED_POOL, _send, requests - requests // 2)
            first.result()
            rest.result()
            both_sending.wait(timeout=10)  # neither step returns before the other has sent everything
            return dg.MaterializeResult(metadata={"rows": requests})

        return _step(object())

    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="step") as steps:
        small, large = steps.submit(step, 3, 1), steps.submit(step, 40, 7)
        results = [small.result(timeout=30), large.result(timeout=30)]
    metadata = [r.metadata for r in results]
    assert metadata[0] == {
        "rows": 3,
        "dataverse_requests": 3,
        "dataverse_retries": 1,
        "dataverse_throttled_429": 0,
    }
    assert metadata[1] == {
        "rows": 40,
        "dataverse_requests": 40,
        "dataverse_retries": 7,
        "dataverse_throttled_429": 0,
    }
