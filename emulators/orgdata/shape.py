"""`OrgShape`: every org-level dimension of a synthetic Close org (who works there, how it is configured).

The generator draws records from a shape; nothing else in the package may assume a label, a count or an index
of one particular org. The shapes themselves live in `shapes.py`.
"""

from __future__ import annotations

from dataclasses import dataclass

from .model import OrgDataError
from .util import CURRENCY_SYMBOLS

CF_TYPES = ("text", "textarea", "number", "date", "datetime", "choices", "user", "contact", "hidden")
OBJECT_KINDS = ("lead", "contact", "opportunity")
STATUS_TYPES = ("active", "won", "lost")


@dataclass(frozen=True)
class UserSpec:
    """A Close user and their Dynamics counterpart (e-mails are templates: {d} domain, {D} title-cased)."""

    first: str
    last: str
    email: str
    dynamics_email: str | None  # None: the user has no Dynamics counterpart (a contractor, say)
    dynamics_disabled: bool = False  # left the company: disabled in Dynamics
    close_active: bool = True  # False: deactivated in Close, still owns records
    owner_weight: int = 1  # relative share of the records this user owns


@dataclass(frozen=True)
class FieldSpec:
    """A custom field of a lead, contact or opportunity."""

    name: str
    type: str
    multiple: bool = False
    choices: tuple[str, ...] | None = None
    description: str | None = None


@dataclass(frozen=True)
class ActivityFieldSpec:
    """A field of a custom activity type."""

    name: str
    type: str
    multiple: bool = False
    choices: tuple[str, ...] | None = None
    required: bool = False


@dataclass(frozen=True)
class ActivityTypeSpec:
    """A custom activity type; `share` weighs how many instances it gets (0: none)."""

    name: str
    description: str
    archived: bool
    fields: tuple[ActivityFieldSpec, ...]
    share: float = 0.0
    # Non-empty: the type's instances still carry a value (one of these) of a field deleted from the type.
    orphaned_values: tuple[str, ...] = ()


@dataclass(frozen=True)
class PipelineSpec:
    """A pipeline with its statuses as (label, type) in Close display order; `weight` shares the deals."""

    name: str
    statuses: tuple[tuple[str, str], ...]
    weight: int


@dataclass(frozen=True)
class OrgShape:
    """All org-level dimensions; `generate(..., org=<name>)` picks one by `name`."""

    name: str
    org_name: str
    domain: str
    brand: str  # how the org names itself in e-mail subjects
    currencies: tuple[str, str, str]  # deal currencies, most used first; the first is the org currency
    users: tuple[UserSpec, ...]
    lead_statuses: tuple[tuple[str, int], ...]  # (label, relative share of the leads), Close order
    pipelines: tuple[PipelineSpec, ...]
    custom_fields: tuple[tuple[str, tuple[FieldSpec, ...]], ...]  # (object kind, its fields)
    activity_types: tuple[ActivityTypeSpec, ...]

    def __post_init__(self) -> None:
        problems = _problems(self)
        if problems:
            raise OrgDataError(f"org shape {self.name!r} is invalid: " + "; ".join(problems))

    @property
    def lead_status_labels(self) -> tuple[str, ...]:
        return tuple(label for label, _ in self.lead_statuses)

    @property
    def orphaned_type(self) -> ActivityTypeSpec:
        return next(t for t in self.activity_types if t.orphaned_values)

    def fields_of(self, kind: str) -> tuple[FieldSpec, ...]:
        return dict(self.custom_fields).get(kind, ())


def _unique(names: list[str], what: str) -> list[str]:
    seen: set[str] = set()
    dupes = []
    for n in names:
        key = " ".join(n.casefold().split())
        if key in seen:
            dupes.append(f"duplicate {what} {n!r}")
        seen.add(key)
    return dupes


def _field_problems(owner: str, name: str, kind: str, choices: tuple[str, ...] | None) -> list[str]:
    if kind not in CF_TYPES:
        return [f"{owner} field {name!r} has unknown type {kind!r}"]
    if (kind == "choices") != bool(choices):
        return [f"{owner} field {name!r}: choices are required exactly for type 'choices'"]
    return []


def _problems(shape: OrgShape) -> list[str]:
    """Every way the shape would make the generator (or the truth it computes) wrong."""
    out: list[str] = []
    users = shape.users
    if sum(u.close_active for u in users) < 2:
        out.append("needs at least two users active in Close")
    if not users[0].close_active:
        out.append("the first user is the org admin and must be active in Close")
    if not any(u.dynamics_email is None for u in users):
        out.append("needs a user without a Dynamics counterpart")
    if not any(u.dynamics_disabled and u.dynamics_email for u in users):
        out.append("needs a user disabled in Dynamics")
    if not any(not u.close_active for u in users):
        out.append("needs a user deactivated in Close")
    out += _unique([u.email for u in users], "user e-mail")
    if sorted(shape.currencies) != sorted(CURRENCY_SYMBOLS):
        out.append(f"currencies must order {', '.join(CURRENCY_SYMBOLS)}")
    if not shape.lead_statuses:
        out.append("needs lead statuses")
    out += _unique(list(shape.lead_status_labels), "lead status")
    out += _unique([p.name for p in shape.pipelines], "pipeline")
    if not shape.pipelines:
        out.append("needs a pipeline")
    for p in shape.pipelines:
        kinds = {k for _, k in p.statuses}
        if kinds != set(STATUS_TYPES):
            out.append(f"pipeline {p.name!r} needs statuses of each type {STATUS_TYPES}, has {sorted(kinds)}")
        out += _unique([label for label, _ in p.statuses], f"status of pipeline {p.name!r}")
    for kind, fields in shape.custom_fields:
        if kind not in OBJECT_KINDS:
            out.append(f"unknown custom field object kind {kind!r}")
        out += _unique([f.name for f in fields], f"{kind} custom field")
        for f in fields:
            out += _field_problems(kind, f.name, f.type, f.choices)
    out += _unique([t.name for t in shape.activity_types], "custom activity type")
    for t in shape.activity_types:
        out += _unique([f.name for f in t.fields], f"field of {t.name!r}")
        for af in t.fields:
            out += _field_problems(t.name, af.name, af.type, af.choices)
    orphaned = [t for t in shape.activity_types if t.orphaned_values]
    if len(orphaned) != 1:
        out.append(f"exactly one custom activity type must have orphaned values, found {len(orphaned)}")
    elif orphaned[0].share <= 0:
        out.append(f"the orphaned-values type {orphaned[0].name!r} needs instances (share > 0)")
    if not any(t.archived for t in shape.activity_types):
        out.append("needs an archived custom activity type")
    return out
