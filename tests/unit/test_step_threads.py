"""The run's executor (migration_assets/step_threads.py): ready steps at once, priorities as order, pools
within the run, failures and skips as Dagster reports them, and the job's executor kept when a job runs in
this process. Overlap is shown by a barrier that only two steps under way at once can pass, never by time."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

import dagster as dg
import pytest

from migration_assets.step_threads import execute_in_this_process, step_threads_executor

BARRIER_SECONDS = 60  # a safety net: a barrier that is never met fails the step instead of hanging the test


def _run(
    assets: Sequence[object],
    selection: Sequence[dg.AssetKey] | None = None,
    threads: int = 2,
    instance: dg.DagsterInstance | None = None,
) -> dg.ExecuteInProcessResult:
    job = dg.define_asset_job("job", selection=dg.AssetSelection.all())
    defs = dg.Definitions(assets=assets, jobs=[job], executor=step_threads_executor)
    return execute_in_this_process(
        defs.resolve_job_def("job"),
        run_config={"execution": {"config": {"max_concurrent": threads}}},
        asset_selection=selection,
        instance=instance,
    )


def _failed(result: dg.ExecuteInProcessResult) -> set[str]:
    return {e.step_key for e in result.all_events if e.is_step_failure and e.step_key}


def _started(result: dg.ExecuteInProcessResult) -> set[str]:
    return {e.step_key for e in result.all_events if e.is_step_start and e.step_key}


def test_independent_steps_run_at_the_same_time() -> None:
    meet = threading.Barrier(2, timeout=BARRIER_SECONDS)

    @dg.asset
    def left() -> None:
        meet.wait()  # only passes while `right` waits too: one step at a time would break the barrier

    @dg.asset
    def right() -> None:
        meet.wait()

    @dg.asset(deps=[left, right])
    def joined() -> None:
        pass

    result = _run([left, right, joined])
    assert result.success, _failed(result)
    assert {e.asset_key.path[-1] for e in result.get_asset_materialization_events()} == {
        "left",
        "right",
        "joined",
    }


def test_one_thread_runs_one_step_at_a_time() -> None:
    meet = threading.Barrier(2, timeout=2)  # broken (fails the step) because the other step never comes

    @dg.asset
    def left() -> None:
        meet.wait()

    @dg.asset
    def right() -> None:
        meet.wait()

    result = _run([left, right], threads=1)
    assert not result.success and _failed(result)


def test_a_low_priority_step_starts_after_every_higher_one_even_with_a_thread_free() -> None:
    finished: list[str] = []
    seen_at_start: list[list[str]] = []

    def work(name: str) -> None:
        finished.append(name)

    @dg.asset
    def first() -> None:
        work("first")

    @dg.asset(deps=[first])
    def second() -> None:
        work("second")

    @dg.asset(deps=[second])
    def third() -> None:
        work("third")

    # Depends on nothing, as the reports do (so that it runs after failed steps too): ready at once.
    @dg.asset(op_tags={"dagster/priority": "-10"})
    def report() -> None:
        seen_at_start.append(list(finished))

    # Its own check waits for it and has the default priority: it must not hold the report back.
    @dg.asset_check(asset=report)
    def report_written() -> dg.AssetCheckResult:
        return dg.AssetCheckResult(passed=True)

    result = _run([first, second, third, report, report_written])
    assert result.success, _failed(result)
    assert seen_at_start == [["first", "second", "third"]]
    assert [e.check_name for e in result.get_asset_check_evaluations()] == ["report_written"]


def test_a_positive_priority_goes_first_in_its_pool_and_holds_no_other_step_back() -> None:
    """The loads an annotation hangs off (priority 1) take the Dataverse pool before the other loads, while
    the file fetch (default priority, no pool) runs beside them: positive priorities order, never hold."""
    order: list[str] = []
    fetching = threading.Event()

    @dg.asset(pool="dataverse_api")
    def appointment_load() -> None:
        order.append("appointment_load")

    @dg.asset(pool="dataverse_api", op_tags={"dagster/priority": "1"})
    def email_load() -> None:
        order.append("email_load")
        assert fetching.wait(BARRIER_SECONDS), "the fetch was held back by a step of higher priority"

    @dg.asset
    def file_fetch() -> None:
        fetching.set()

    result = _run([appointment_load, email_load, file_fetch])
    assert result.success, _failed(result)
    assert order == ["email_load", "appointment_load"]


def test_a_failed_step_skips_what_follows_it_and_the_rest_of_the_run_goes_on() -> None:
    @dg.asset
    def broken() -> None:
        raise RuntimeError("the source is gone")

    @dg.asset(deps=[broken])
    def after_broken() -> None:
        pass

    @dg.asset
    def healthy() -> None:
        pass

    @dg.asset(op_tags={"dagster/priority": "-10"})
    def report() -> None:
        pass

    result = _run([broken, after_broken, healthy, report])
    assert not result.success
    assert _failed(result) == {"broken"}
    assert _started(result) == {"broken", "healthy", "report"}  # what follows the failure never starts
    done = {e.asset_key.path[-1] for e in result.get_asset_materialization_events()}
    assert done == {"healthy", "report"}  # the report runs after a failure too, as it must


def _pooled_steps_overlap_at_most(instance: dg.DagsterInstance | None) -> int:
    lock = threading.Lock()
    state = {"now": 0, "most": 0}

    def in_pool() -> None:
        with lock:
            state["now"] += 1
            state["most"] = max(state["most"], state["now"])
        threading.Event().wait(0.05)  # room for an overlap to show; the assertion does not time it
        with lock:
            state["now"] -= 1

    @dg.asset(pool="dataverse_api")
    def load_a() -> None:
        in_pool()

    @dg.asset(pool="dataverse_api")
    def load_b() -> None:
        in_pool()

    @dg.asset(pool="dataverse_api")
    def load_c() -> None:
        in_pool()

    @dg.asset
    def unpooled() -> None:
        pass

    result = _run([load_a, load_b, load_c, unpooled], threads=3, instance=instance)
    assert result.success, _failed(result)
    return state["most"]


def test_steps_of_one_pool_never_overlap_on_an_instance_without_pool_slots() -> None:
    assert not dg.DagsterInstance.ephemeral().event_log_storage.supports_global_concurrency_limits
    assert _pooled_steps_overlap_at_most(None) == 1


def test_steps_of_one_pool_take_the_instances_pool_slots(tmp_path: Path) -> None:
    # The project's instance settings (dagster.yaml): one step per pool at a time, slots per step.
    pools = {"concurrency": {"pools": {"default_limit": 1, "granularity": "op"}}}
    with dg.instance_for_test(temp_dir=str(tmp_path), overrides=pools) as instance:
        assert instance.event_log_storage.supports_global_concurrency_limits
        assert _pooled_steps_overlap_at_most(instance) == 1
        assert instance.event_log_storage.get_concurrency_info("dataverse_api").active_slot_count == 0


def test_a_selection_runs_only_the_selected_assets_with_the_jobs_executor() -> None:
    ran: list[str] = []

    @dg.asset
    def upstream() -> None:
        ran.append("upstream")

    @dg.asset(deps=[upstream])
    def downstream() -> None:
        ran.append("downstream")

    result = _run([upstream, downstream], selection=[dg.AssetKey("downstream")])
    assert result.success
    assert ran == ["downstream"]
    started = [e.message or "" for e in result.all_events if e.event_type_value == "ENGINE_EVENT"]
    assert any("at once in threads" in m for m in started), started


def test_a_bad_thread_count_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from migration_assets.step_threads import default_max_concurrent

    monkeypatch.setenv("CLOSE2D365_STEP_THREADS", "many")
    with pytest.raises(ValueError, match="CLOSE2D365_STEP_THREADS='many'"):
        default_max_concurrent()
    monkeypatch.setenv("CLOSE2D365_STEP_THREADS", "3")
    assert default_max_concurrent() == 3


def test_an_interrupt_stops_the_steps_under_way_at_their_next_progress_report() -> None:
    import signal

    from migration_assets.resources.progress import StepProgress

    loading = threading.Event()
    reports: list[int] = []

    @dg.asset
    def long_load() -> None:
        progress = StepProgress("loaded/long", None)
        for _ in range(2_000):  # 20 s at most: far past the interrupt, which the asserts below require
            progress.advance(1)
            reports.append(progress.done)
            loading.set()
            threading.Event().wait(0.01)

    @dg.asset
    def presses_ctrl_c() -> None:
        assert loading.wait(BARRIER_SECONDS)
        # A signal is handled by the main thread, which runs the run's loop; this step runs in another.
        signal.raise_signal(signal.SIGINT)

    @dg.asset(deps=[long_load])
    def after_the_load() -> None:
        pass

    result = _run([long_load, presses_ctrl_c, after_the_load])
    assert not result.success
    assert "long_load" in _failed(result)
    assert "after_the_load" not in _started(result)
    assert 0 < len(reports) < 2_000
