"""Running a run's ready steps at the same time, in threads of the run's process (the Definitions' executor).

Why: Dagster's in-process executor runs one step at a time, and most of a step is fixed cost or waiting:
a delta is about 75 steps of ~125 ms each (DuckDB and Polars, which release the GIL, small queries, API
round trips), and a load's file transfer leaves the cores idle while it waits on the network. Why threads and
not the multiprocess executor: the warehouse is one DuckDB file that one process alone may write, the run's
API clients are shared (one token, one throttle budget per application user), and a step's start-up would
cost a process and a Dagster import each.

Dagster's own `ActiveExecution` decides what runs: a step starts once its inputs are there, at most
`max_concurrent` at once; pools (the instance's `concurrency.pools`, one asset of `close_api` and one of
`dataverse_api` at a time) and the run's `tag_concurrency_limits` are honoured as by the multiprocess
executor. Each step runs through Dagster's own step execution; its events reach the run's thread, which
yields them in the order they arrive, so the run's event log, hooks, retries and skips are Dagster's.

A Ctrl-C or SIGTERM (delivered to the run's thread) starts no further step; a step under way, which no signal
can stop from outside its thread, stops at its next progress report (resources/progress.py), and the run
then stops as interrupted, as the multiprocess executor's does.
"""

from __future__ import annotations

import contextvars
import os
import queue
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack
from typing import Any

import dagster as dg
from dagster._core.definitions.job_base import InMemoryJob
from dagster._core.errors import DagsterExecutionInterruptedError
from dagster._core.events import DagsterEvent, EngineEventData
from dagster._core.execution.api import ExecuteRunWithPlanIterable
from dagster._core.execution.context.system import PlanExecutionContext, PlanOrchestrationContext
from dagster._core.execution.context_creation_job import PlanExecutionContextManager
from dagster._core.execution.execute_in_process import core_execute_in_process, merge_run_tags
from dagster._core.execution.plan.active import ActiveExecution
from dagster._core.execution.plan.execute_plan import _trigger_hook, dagster_event_sequence_for_step
from dagster._core.execution.plan.instance_concurrency_context import InstanceConcurrencyContext
from dagster._core.execution.plan.plan import ExecutionPlan
from dagster._core.execution.plan.step import ExecutionStep
from dagster._core.execution.retries import RetryMode, get_retries_config
from dagster._core.executor.base import Executor
from dagster._core.instance.config import PoolGranularity
from dagster._core.storage.tags import PRIORITY_TAG
from dagster._utils.interrupts import check_captured_interrupt

from migration_assets.resources import env

# Steps at once by default. Two: the machine the figures were measured on has two cores, and a third
# thread gained nothing there.
DEFAULT_MAX_CONCURRENT = 2
_DONE = object()  # a worker's last message for its step


def default_max_concurrent() -> int:
    """CLOSE2D365_STEP_THREADS when set (1 runs one step at a time, as Dagster's in-process executor), else
    DEFAULT_MAX_CONCURRENT."""
    raw = os.environ.get(env.CLOSE2D365_STEP_THREADS, "").strip()
    if not raw:
        return DEFAULT_MAX_CONCURRENT
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(
            f"{env.CLOSE2D365_STEP_THREADS}={raw!r}: give a whole number of steps to run at once (1 or more)"
        )
    return value


class RunPools(InstanceConcurrencyContext):
    """The instance's pool claims when it enforces them per step (`concurrency.pools`, granularity `op`);
    otherwise one step per pool at a time within this run. The project's pools mean "one asset at a time
    per API" (dagster.yaml), and an instance that keeps no pool slots (an ephemeral one, as tests and
    `dg.materialize` use, or granularity `run`, which checks pools only when a run is launched) would
    otherwise let two loads share one API's limits."""

    def __init__(self, instance: dg.DagsterInstance, dagster_run: Any) -> None:
        super().__init__(instance, dagster_run)
        storage = instance.event_log_storage
        self._per_step = bool(storage.supports_global_concurrency_limits) and (
            self._pool_config.pool_granularity != PoolGranularity.RUN
        )
        self._held: dict[str, str] = {}  # pool -> the step of this run holding it

    def claim(self, concurrency_key: str, step_key: str, step_priority: int = 0) -> bool:
        if self._per_step:
            return super().claim(concurrency_key, step_key, step_priority)
        holder = self._held.setdefault(concurrency_key, step_key)
        return holder == step_key

    def free_step(self, step_key: str) -> None:
        if self._per_step:
            super().free_step(step_key)
            return
        for pool in [pool for pool, holder in self._held.items() if holder == step_key]:
            del self._held[pool]


def step_priority(step: Any) -> int:
    try:
        return int(step.tags.get(PRIORITY_TAG, 0))
    except ValueError:
        return 0


class PriorityOrderedExecution(ActiveExecution):
    """Dagster's ActiveExecution, with negative priorities kept as ordering: a step of negative priority
    starts only once every step of a higher priority has ended (or will never run). A positive priority
    only puts a step first among the ready ones, as Dagster orders them, and holds no other step back (the
    loads an annotation hangs off go first in their pool while the file fetch runs beside them).

    The run's last steps (the reports, the audit pack, the deletions after every load) depend on nothing
    they follow, on purpose: Dagster skips what follows a failed step, and a reconciliation or audit pack
    must describe a failed run too. One step at a time, priority alone put them last; with several at once
    a free thread would start them with the run (a reconciliation of a load that has not happened)."""

    _downstream: dict[str, set[str]] | None = None

    def _after(self, key: str) -> set[str]:
        """Every step that waits (directly or not) for step `key`."""
        if self._downstream is None:
            children: dict[str, set[str]] = {}
            for step, deps in self._plan.get_executable_step_deps().items():
                for dep in deps:
                    children.setdefault(dep, set()).add(step)
            closure: dict[str, set[str]] = {}

            def after(k: str) -> set[str]:
                if k not in closure:
                    closure[k] = set()
                    for child in children.get(k, ()):
                        closure[k] |= {child, *after(child)}
                return closure[k]

            for k in list(children):
                after(k)
            self._downstream = closure
        return self._downstream.get(key, set())

    def get_steps_to_execute(self, limit: int | None = None) -> Sequence[ExecutionStep]:
        self._update()
        unfinished = {
            *self._in_flight,
            *self._executable,
            *self._pending,
            *self._pending_retry,
            *self._waiting_to_retry,
        }
        priority = {k: step_priority(self.get_step_by_key(k)) for k in unfinished}
        # Held: a ready step of negative priority while a step of higher priority that does not wait for it
        # has not ended (one that waits for it, such as its own check, would wait forever).
        held = [
            k
            for k in self._executable
            if priority[k] < 0
            and any(p > priority[k] for o, p in priority.items() if o not in self._after(k))
        ]
        if not held:
            return super().get_steps_to_execute(limit)
        self._executable = [k for k in self._executable if k not in held]
        try:
            return super().get_steps_to_execute(limit)
        finally:
            self._executable.extend(held)


def _step_worker(step_context: Any, out: queue.SimpleQueue[tuple[str, Any]]) -> None:
    key = step_context.step.key
    try:
        for event in dagster_event_sequence_for_step(step_context):
            out.put((key, event))
    except BaseException as exc:  # noqa: BLE001 - handed to the run's thread, which raises it there
        out.put((key, exc))
    finally:
        out.put((key, _DONE))


def threaded_plan_iterator(
    job_context: PlanExecutionContext,
    execution_plan: ExecutionPlan,
    max_concurrent: int,
    tag_concurrency_limits: Sequence[Mapping[str, Any]],
) -> Iterator[DagsterEvent]:
    """inner_plan_execution_iterator's loop (Dagster's in-process executor) with up to `max_concurrent`
    steps under way, each in its own thread."""
    compute_log_manager = job_context.instance.compute_log_manager
    step_keys = [step.key for step in execution_plan.get_steps_to_execute_in_topo_order()]
    events: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
    running: dict[str, tuple[Any, list[DagsterEvent]]] = {}
    failure: BaseException | None = None
    interrupted = False
    with ExitStack() as stack:
        concurrency = stack.enter_context(RunPools(job_context.instance, job_context.dagster_run))
        active = stack.enter_context(
            PriorityOrderedExecution(
                execution_plan,
                retry_mode=job_context.retry_mode,
                max_concurrent=max_concurrent,
                tag_concurrency_limits=[dict(limit) for limit in tag_concurrency_limits],
                instance_concurrency_context=concurrency,
                step_dependency_config=job_context.step_dependency_config,
            )
        )
        # The process's output goes to the run's compute log, as Dagster's in-process executor captures it.
        file_key = f"threads_{job_context.run_id[:8]}"
        log_key = compute_log_manager.build_log_key_for_run(job_context.run_id, file_key)
        try:
            log_context = stack.enter_context(compute_log_manager.capture_logs(log_key))
            yield DagsterEvent.capture_logs(job_context, step_keys, log_key, log_context)
        except Exception:  # noqa: BLE001 - Dagster's executor goes on without a compute log too
            yield DagsterEvent.engine_event(
                job_context, "Could not capture the run's compute log", EngineEventData()
            )

        while running or (not interrupted and failure is None and not active.is_complete):
            if not interrupted and check_captured_interrupt():
                interrupted = True
                active.mark_interrupted()
                yield DagsterEvent.engine_event(
                    job_context,
                    "Interrupted: no further step starts; the steps under way finish first",
                    EngineEventData.interrupted(list(running)),
                )
            if not interrupted and failure is None and len(running) < max_concurrent:
                for step in active.get_steps_to_execute(limit=max_concurrent - len(running)):
                    step_context = job_context.for_step(step, active.get_known_state())
                    running[step.key] = (step_context, [])
                    context = contextvars.copy_context()  # the run thread's context variables go along
                    threading.Thread(
                        target=context.run,
                        args=(_step_worker, step_context, events),
                        name=f"step {step.key}",
                        daemon=True,  # a step still under way when the process exits does not hold it
                    ).start()
                yield from active.concurrency_event_iterator(job_context)
            if not running:
                yield from active.plan_events_iterator(job_context)  # skips after a failure
                if not interrupted and failure is None and not active.is_complete:
                    active.sleep_til_ready()  # waiting for a pool slot another run holds
                continue
            try:
                # Back within half a second at most: a step waiting for a pool slot is asked again.
                wait = active.sleep_interval()
                key, message = events.get(timeout=min(wait, 0.5) if wait > 0 else 0.5)
            except queue.Empty:
                continue
            step_context, step_events = running[key]
            if message is _DONE:
                del running[key]
                if failure is not None or interrupted:
                    continue
                active.verify_complete(job_context, key)
                for event in active.plan_events_iterator(job_context):
                    step_events.append(event)
                    yield event
                yield from _trigger_hook(step_context, step_events)
            elif isinstance(message, BaseException):
                failure = failure or message
            else:
                step_events.append(message)
                yield message
                active.handle_event(message)
        if failure is not None:
            raise failure
        if interrupted:
            raise DagsterExecutionInterruptedError()


class StepThreadsExecutor(Executor):
    def __init__(
        self,
        retries: RetryMode,
        max_concurrent: int,
        tag_concurrency_limits: Sequence[Mapping[str, Any]],
    ) -> None:
        self._retries = retries
        self.max_concurrent = max_concurrent
        self.tag_concurrency_limits = list(tag_concurrency_limits)

    @property
    def retries(self) -> RetryMode:
        return self._retries

    def execute(
        self, plan_context: PlanOrchestrationContext, execution_plan: ExecutionPlan
    ) -> Iterator[DagsterEvent]:
        yield DagsterEvent.engine_event(
            plan_context,
            f"Executing steps in process (pid: {os.getpid()}), up to {self.max_concurrent} at once in threads",
            event_specific_data=EngineEventData.in_process(os.getpid(), execution_plan.step_keys_to_execute),
        )

        def iterator(
            job_context: PlanExecutionContext, execution_plan: ExecutionPlan
        ) -> Iterator[DagsterEvent]:
            return threaded_plan_iterator(
                job_context, execution_plan, self.max_concurrent, self.tag_concurrency_limits
            )

        yield from iter(
            ExecuteRunWithPlanIterable(
                execution_plan=plan_context.execution_plan,
                iterator=iterator,
                execution_context_manager=PlanExecutionContextManager(
                    job=plan_context.job,
                    retry_mode=plan_context.retry_mode,
                    execution_plan=plan_context.execution_plan,
                    run_config=plan_context.run_config,
                    dagster_run=plan_context.dagster_run,
                    instance=plan_context.instance,
                    raise_on_error=plan_context.raise_on_error,
                    output_capture=plan_context.output_capture,
                ),
            )
        )


@dg.executor(
    name="step_threads",
    config_schema={
        "max_concurrent": dg.Field(
            int,
            is_required=False,
            description="Steps under way at once (default: CLOSE2D365_STEP_THREADS, else 2).",
        ),
        "tag_concurrency_limits": dg.Field(
            list,
            is_required=False,
            description="Limits by step tag within the run, as the multiprocess executor takes them.",
        ),
        "retries": get_retries_config(),
    },
)
def step_threads_executor(init_context: dg.InitExecutorContext) -> StepThreadsExecutor:
    config = init_context.executor_config
    return StepThreadsExecutor(
        retries=RetryMode.from_config(config["retries"]) or RetryMode.DISABLED,
        max_concurrent=int(config.get("max_concurrent") or default_max_concurrent()),
        tag_concurrency_limits=config.get("tag_concurrency_limits") or [],
    )


def execute_in_this_process(
    job: dg.JobDefinition,
    *,
    instance: dg.DagsterInstance | None = None,
    tags: Mapping[str, str] | None = None,
    run_config: Mapping[str, Any] | None = None,
    asset_selection: Sequence[dg.AssetKey] | None = None,
    raise_on_error: bool = False,
) -> dg.ExecuteInProcessResult:
    """`job.execute_in_process`, but with the job's own executor: execute_in_process always swaps in
    Dagster's in-process executor, which runs one step at a time. Same result object (its events, outputs
    and checks), same run on the instance."""
    if instance is None:  # as execute_in_process: an instance of the run's own, disposed of after it
        with dg.DagsterInstance.ephemeral() as owned:
            return execute_in_this_process(
                job,
                instance=owned,
                tags=tags,
                run_config=run_config,
                asset_selection=asset_selection,
                raise_on_error=raise_on_error,
            )
    selection = list(asset_selection) if asset_selection is not None else None
    ephemeral = job.as_ephemeral_job(resource_defs={}, input_values={}, asset_selection=selection)
    ephemeral = ephemeral.with_executor_def(job.executor_def)
    inst = instance
    return core_execute_in_process(
        job=InMemoryJob(job_def=ephemeral),
        run_config=run_config or {},
        instance=inst,
        output_capturing_enabled=True,
        raise_on_error=raise_on_error,
        run_tags=merge_run_tags(
            job_def=job,
            partition_key=None,
            tags=tags,
            asset_selection=selection,
            instance=inst,
            run_config=run_config,
        ),
        run_id=None,
        asset_selection=frozenset(selection or ()),
    )
