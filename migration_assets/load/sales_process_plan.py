"""Where each migrated opportunity stands on its business process flow (BPF), and the writes that put its
instance there (pure; `load/sales_process.py` reads the target and sends them).

The reviewed `pipelines.yaml` names the BPF (`sales_process`, a workflow uniquename) and, per Close status, the
stage (`stage`, a stage name of that BPF). An open opportunity's instance is Active at its status's stage; a
won or lost one is at the last stage, Finished (statecode 1, statuscode 2: "only possible at the last stage").
`traversedpath` lists the stages from the first up to the active one, in process order.

Dataverse lets an update move an instance only to the next or the previous stage ("you must only move to the
next or previous stage while updating a business process flow instance"), while a create may start at any
stage given its traversedpath; a finished instance is reactivated (statecode 0, statuscode 1) before it
moves. So an existing instance gets one write per stage crossed; a missing one, one create (+ the finish).
The writes of all instances go out as the parts of one `$batch` (of at most 1000), round after round: its
parts run in order, and with `Prefer: odata.continue-on-error` a refused part does not stop the others
(reference §3.1, §3.5), so each answer says exactly which write landed (`settle`).
Source: power-automate-docs articles/developer/business-process-flows-code.md; reference §9.1.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from migration_assets.mapping.files import PipelinesMap

ACTIVE = (0, 1)  # statecode Active, statuscode Active
FINISHED = (1, 2)  # statecode Inactive, statuscode Finished
STAGE_BIND = "activestageid@odata.bind"
STAGE_SET = "processstages"


@dataclass(frozen=True)
class Stage:
    id: str  # processstageid, lower case
    name: str
    category: int | None = None


@dataclass(frozen=True)
class Placement:
    """Where one opportunity's instance must be: the stage's position in the process, finished or not."""

    stage: int
    finished: bool

    @property
    def state(self) -> tuple[int, int]:
        return FINISHED if self.finished else ACTIVE


@dataclass(frozen=True)
class Instance:
    """An instance read back: its id, the opportunity it belongs to, its active stage, path and state."""

    id: str
    opportunity_id: str
    stage_id: str | None
    path: tuple[str, ...]
    statecode: int | None
    statuscode: int | None

    def before_image(self) -> dict[str, Any]:
        """What a rollback puts back (payload form, as the loader's diff records it)."""
        return {
            STAGE_BIND: f"/{STAGE_SET}({self.stage_id})" if self.stage_id else None,
            "traversedpath": ",".join(self.path) or None,
            "statecode": self.statecode,
            "statuscode": self.statuscode,
        }


@dataclass(frozen=True)
class Write:
    kind: str  # create | update
    body: dict[str, Any]


@dataclass
class InstancePlan:
    """The writes, in order, that put one opportunity's instance where its Close status says."""

    opportunity_id: str
    instance_id: str
    create: bool
    writes: list[Write] = field(default_factory=list)
    before: dict[str, Any] | None = None  # of an existing instance


def order_stages(stages: Sequence[Stage], active_path: Sequence[str] = ()) -> list[Stage]:
    """Stages in process order: the order RetrieveActivePath answered (`active_path`, stage ids) when it
    covers every stage; else by stage category (Qualify 0 .. Close 3: the shipped sales process's order), in
    the server's order where categories are missing or repeat."""
    by_id = {s.id: s for s in stages}
    path = [p.lower() for p in active_path]
    if path and sorted(path) == sorted(by_id):
        return [by_id[p] for p in path]
    cats = [s.category for s in stages]
    if None in cats or len(set(cats)) != len(cats):
        return list(stages)
    return sorted(stages, key=lambda s: int(s.category or 0))


def status_stages(pipes: PipelinesMap) -> dict[int, tuple[str, str, str]]:
    """Status option value -> (stage name, status type, "pipeline / status" label) from the mapping."""
    return {s.option: (s.stage, s.type, f"{p.name} / {s.label}") for p in pipes.pipelines for s in p.statuses}


def placement(stage_name: str, kind: str, stages: Sequence[Stage]) -> Placement | str:
    """The placement of an opportunity whose status maps to `stage_name` with type `kind` (active, won,
    lost), or why it cannot be placed. Won/lost: the last stage, finished, whatever stage is named."""
    if not stages:
        return "the business process flow has no stages"
    if kind in ("won", "lost"):
        return Placement(len(stages) - 1, True)
    wanted = " ".join(stage_name.split()).casefold()
    for n, s in enumerate(stages):
        if " ".join(s.name.split()).casefold() == wanted:
            return Placement(n, False)
    names = ", ".join(s.name for s in stages)
    return f"stage {stage_name!r} is not a stage of the business process flow (its stages: {names})"


def path_to(stages: Sequence[Stage], index: int) -> str:
    """traversedpath of an instance at stage `index`: every stage id from the first, comma-separated."""
    return ",".join(s.id for s in stages[: index + 1])


def stage_body(stages: Sequence[Stage], index: int) -> dict[str, Any]:
    return {STAGE_BIND: f"/{STAGE_SET}({stages[index].id})", "traversedpath": path_to(stages, index)}


def moves(stages: Sequence[Stage], current: int, target: int) -> list[dict[str, Any]]:
    """One update per stage crossed from `current` to `target` (either way), each with its path."""
    step = 1 if target > current else -1
    return [stage_body(stages, i) for i in range(current + step, target + step, step)]


def plan_instance(
    opportunity_id: str,
    want: Placement,
    stages: Sequence[Stage],
    current: Instance | None,
    new_id: str,
    create_links: Mapping[str, Any],
) -> InstancePlan | str | None:
    """The writes for one opportunity (None: already right), or why they cannot be planned. `create_links`:
    the binds a create carries (the opportunity and the process)."""
    if current is None:
        body = {"businessprocessflowinstanceid": new_id, **create_links, **stage_body(stages, want.stage)}
        plan = InstancePlan(opportunity_id, new_id, True, [Write("create", body)])
        if want.finished:
            plan.writes.append(Write("update", _state(FINISHED)))
        return plan
    ids = [s.id for s in stages]
    if current.stage_id not in ids:
        return (
            f"its instance {current.id} is at stage {current.stage_id}, which is not a stage of the business "
            "process flow"
        )
    at = ids.index(current.stage_id)
    state = (current.statecode, current.statuscode)
    right_path = ",".join(current.path) == path_to(stages, want.stage)
    if at == want.stage and right_path and state == want.state:
        return None
    moving = at != want.stage or not right_path
    writes: list[Write] = []
    if state != ACTIVE and (moving or state != want.state):
        writes.append(Write("update", _state(ACTIVE)))  # reactivated before it moves (or to stay open)
    writes += [Write("update", body) for body in moves(stages, at, want.stage)]
    if at == want.stage and not right_path:
        writes.append(Write("update", {"traversedpath": path_to(stages, want.stage)}))
    if want.finished and (moving or state != FINISHED):
        writes.append(Write("update", _state(FINISHED)))
    return InstancePlan(opportunity_id, current.id, False, writes, current.before_image())


def _state(pair: tuple[int, int]) -> dict[str, Any]:
    return {"statecode": pair[0], "statuscode": pair[1]}


def rounds(plans: Sequence[InstancePlan]) -> list[list[tuple[InstancePlan, Write]]]:
    """The writes grouped by position: round k holds every plan's k-th write, so that each instance's writes
    go in order while the instances move together."""
    depth = max((len(p.writes) for p in plans), default=0)
    return [[(p, p.writes[k]) for p in plans if len(p.writes) > k] for k in range(depth)]


def batch_order(plans: Sequence[InstancePlan]) -> list[tuple[InstancePlan, int]]:
    """Every write of these plans as (plan, its position in the plan), round after round: the parts of one
    `$batch`. A `$batch` without changesets runs its parts one after another, in order (reference §3.1), so
    each instance's writes land in order (one stage per PATCH) while all rounds cost one request."""
    return [(p, k) for k, batch in enumerate(rounds(plans)) for p, _ in batch]


def pack(plans: Sequence[InstancePlan], limit: int) -> list[list[InstancePlan]]:
    """The plans, in order, in groups of at most `limit` writes (a `$batch` holds at most 1000 parts); a plan
    is never split, so that each group is one `$batch` that does not depend on another."""
    groups: list[list[InstancePlan]] = []
    size = 0
    for plan in plans:
        if len(plan.writes) > limit:
            raise ValueError(f"the instance {plan.instance_id} needs {len(plan.writes)} writes, over {limit}")
        if not groups or size + len(plan.writes) > limit:
            groups.append([])
            size = 0
        groups[-1].append(plan)
        size += len(plan.writes)
    return groups


def describe(write: Write, stages: Sequence[Stage]) -> str:
    """What one write does, in words (a refusal's reason names it)."""
    bind = str(write.body.get(STAGE_BIND) or "")
    stage_id = bind.rsplit("(", 1)[-1].rstrip(")").lower() if bind else None
    stage = next((s.name for s in stages if s.id == stage_id), stage_id)
    if write.kind == "create":
        return f"create at stage {stage!r}"
    if stage is not None:
        return f"move to stage {stage!r}"
    state = (write.body.get("statecode"), write.body.get("statuscode"))
    if state == FINISHED:
        return "finish"
    if state == ACTIVE:
        return "reactivate"
    return "set traversedpath"


@dataclass(frozen=True)
class Refusal:
    """The target's refusal of one instance write."""

    operation: str  # create | update
    status: int | None
    code: str | None
    message: str


@dataclass(frozen=True)
class Settlement:
    """How one instance's writes ended: how many landed, and the refusal that keeps it from its place (None:
    placed), its message naming the first refused write and what became of the writes after it."""

    landed: int
    refusal: Refusal | None


def settle(plan: InstancePlan, stages: Sequence[Stage], answers: Sequence[Refusal | None]) -> Settlement:
    """The outcome of one plan from the answer to each of its writes (None: landed). Its writes were all
    sent (continue-on-error): those after a refused one were refused in turn (a move two stages away, an
    update of an instance never created) or, had the server taken them, landed on an instance that is not
    where it should be. Either way the instance is not placed, and the first refusal is the reason."""
    if len(answers) != len(plan.writes):
        raise ValueError(f"{len(answers)} answers for the {len(plan.writes)} writes of {plan.instance_id}")
    landed = sum(a is None for a in answers)
    found = next(((k, a) for k, a in enumerate(answers) if a is not None), None)
    if found is None:
        return Settlement(landed, None)
    first, refused = found
    reason = f"{describe(plan.writes[first], stages)} refused: {refused.message}"
    after = list(zip(plan.writes[first + 1 :], answers[first + 1 :], strict=True))
    not_applied = [describe(w, stages) for w, a in after if a is not None]
    applied = [describe(w, stages) for w, a in after if a is None]
    if not_applied:
        reason += f" (so not applied after it: {', '.join(not_applied)})"
    if applied:
        reason += f" (applied after it nonetheless: {', '.join(applied)})"
    return Settlement(landed, Refusal(refused.operation, refused.status, refused.code, reason))


def restore_writes(
    stages: Sequence[Stage], current: Instance, before: Mapping[str, Any]
) -> list[dict[str, Any]] | str:
    """The updates that put an instance back where its before-image says (a rollback): reactivated, moved a
    stage at a time, then its previous state; or why it cannot be restored."""
    ids = [s.id for s in stages]
    bind = str(before.get(STAGE_BIND) or "")
    target_id = bind.rsplit("(", 1)[-1].rstrip(")").lower() if bind else None
    if current.stage_id not in ids or target_id not in ids:
        return f"stage {target_id or current.stage_id} is not a stage of the business process flow"
    want_state = (before.get("statecode"), before.get("statuscode"))
    state = (current.statecode, current.statuscode)
    at, target = ids.index(current.stage_id), ids.index(target_id)
    path = before.get("traversedpath")
    path_differs = bool(path) and path != ",".join(current.path)
    moving = at != target or path_differs
    writes: list[dict[str, Any]] = []
    if state != ACTIVE and (moving or want_state != state):
        writes.append(_state(ACTIVE))
    writes += moves(stages, at, target)
    if path and path != path_to(stages, target) and path_differs:
        writes.append({"traversedpath": path})
    if want_state[0] is not None and want_state != ACTIVE and (moving or want_state != state):
        writes.append(_state((int(want_state[0]), int(want_state[1] or 0))))
    return writes
