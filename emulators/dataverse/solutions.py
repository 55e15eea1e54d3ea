"""Publishers, solutions and solution components, modelled on the real service (issue 10, contract §1).

Sources (MicrosoftDocs/powerapps-docs unless noted):
- Tables and columns: developer/data-platform/reference/entities/publisher.md, solution.md,
  solutioncomponent.md (componenttype 1 Entity, 2 Attribute, 9 Option Set, 10 Entity Relationship,
  14 Entity Key; solutioncomponent supports Retrieve/RetrieveMultiple only).
- Every environment has the Default Solution (unique name `Default`, id fd140aaf-4df4-11dd-bd17-0019b9312238)
  owned by "Default Publisher for <org>" (constant id d21aab71-79e7-11dd-8874-00188b01e34f, prefix `new`,
  option value prefix 10000): Dynamics 365 CE SDK "Work with solutions" ("The default publisher has a constant
  GUID value") and change-solution-publisher-prefix.md ("The default value of this prefix is new"); and the
  Common Data Services Default Solution owned by the Dataverse default publisher, whose prefix is random,
  e.g. `cr8a3` (maker/data-platform/create-solution.md, "Solution publisher").
- Metadata writes name their solution with the `MSCRM.SolutionUniqueName` header, or the action's
  `SolutionUniqueName` parameter (webapi/create-update-entity-definitions-using-web-api.md tip;
  MetadataOperations sample). Without it the component goes to the Default Solution, whose publisher's
  prefix is then the one required (reference §6.1).
- Errors (developer/data-platform/includes/data-service-errors.md):
  InvalidNamePrefix 0x80044366, CannotDeleteDueToAssociation 0x80040227, CannotDeleteRestrictedPublisher
  0x8004F006, CannotDeleteRestrictedSolution 0x8004F005, InvalidSolutionUniqueName 0x8004F002,
  InvalidSolutionVersion 0x8004F01E, InvalidPublisherUniqueName 0x8004F01C. An unknown solution name answers
  404 0x80040217 "The given solution unique name (X) is not valid" (CrmObjectNotFoundException, as reported in
  microsoft/coe-starter-kit#924 and #8868; "a bogus name returns 404" per a public dv.ps1 README).
  POST/PATCH/DELETE of solutioncomponents: SdkEntityDoesNotSupportGenericMethod 0x80040800, "The 'Delete'
  method does not support entities of type 'solutioncomponent'." (as reported by public ALM notes).
- Deleting an unmanaged solution removes the container only; its components stay (create-solution.md,
  "Delete an unmanaged solution").
- A component whose table is already a root component of the solution with "include subcomponents" gets no
  row of its own: the table's row carries it (observed on the real service; a public dv.ps1 README).
"""

from __future__ import annotations

import contextvars
import hashlib
import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from emulators.dataverse.errors import DataverseError
from emulators.dataverse.metadata import Entity
from emulators.dataverse.values import now_iso

if TYPE_CHECKING:
    from emulators.dataverse.state import Environment
    from emulators.dataverse.store import Row

DEFAULT_PUBLISHER_ID = "d21aab71-79e7-11dd-8874-00188b01e34f"
DEFAULT_SOLUTION_ID = "fd140aaf-4df4-11dd-bd17-0019b9312238"
DEFAULT_SOLUTION = "Default"
SOLUTION_TABLES = frozenset({"publisher", "solution", "solutioncomponent"})

ENTITY, ATTRIBUTE, OPTION_SET, ENTITY_RELATIONSHIP, ENTITY_KEY = 1, 2, 9, 10, 14
INCLUDE_SUBCOMPONENTS = 0

# Publisher prefix: 2-8 alphanumerics starting with a letter, not starting with "mscrm" (CE developer guide,
# "Introduction to solutions", publisher fields). Solution unique names: InvalidSolutionUniqueName's message.
_PREFIX = re.compile(r"^[A-Za-z][A-Za-z0-9]{1,7}$")
_UNIQUE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_VERSION = re.compile(r"^\d+(\.\d+){1,3}$")

# Set while persistence replays the schema log: the rows (publishers, solutions, components) come back from
# the saved store afterwards, so replay neither checks solutions nor records components.
REPLAYING: contextvars.ContextVar[bool] = contextvars.ContextVar("dv_solutions_replaying", default=False)


@dataclass(frozen=True)
class Target:
    """The solution a metadata write lands in, with its publisher's prefixes."""

    solution_id: str
    unique_name: str
    prefix: str
    option_value_prefix: int


# ---- seeding ---------------------------------------------------------------------------------------------
def cds_default_names(org_name: str) -> tuple[str, str, int]:
    """(prefix, unique name, option value prefix) of the Dataverse default publisher: random on the real
    service (e.g. cr8a3), derived from the org name here so a seeded environment is reproducible."""
    digest = hashlib.sha256(org_name.encode()).hexdigest()
    return f"cr{digest[:3]}", f"Cr{digest[:5]}", 10000 + int(digest[5:10], 16) % 90000


def seed(env: Environment) -> None:
    """The publishers and solutions every environment has (module docstring)."""
    org = env.config.org_name
    cds_prefix, cds_unique, cds_option = cds_default_names(org)
    cds_publisher = env_id(env, "publisher", "cds")
    publishers = [
        (DEFAULT_PUBLISHER_ID, f"DefaultPublisher{org}", f"Default Publisher for {org}", "new", 10000),
        (cds_publisher, cds_unique, "CDS Default Publisher", cds_prefix, cds_option),
    ]
    for pid, unique, friendly, prefix, option in publishers:
        env._row(
            "publisher",
            pid,
            {
                "uniquename": unique,
                "friendlyname": friendly,
                "customizationprefix": prefix,
                "customizationoptionvalueprefix": option,
                "description": f"{friendly}.",
                "isreadonly": False,
            },
        )
    solutions = [
        (DEFAULT_SOLUTION_ID, DEFAULT_SOLUTION, "Default Solution", DEFAULT_PUBLISHER_ID),
        (env_id(env, "solution", "cds"), cds_unique, "Common Data Services Default Solution", cds_publisher),
    ]
    for sid, unique, friendly, publisher in solutions:
        env._row(
            "solution",
            sid,
            {
                "uniquename": unique,
                "friendlyname": friendly,
                "version": "1.0",
                "publisherid": ["publisher", publisher],
                "ismanaged": False,
                "isvisible": True,
            },
        )


def env_id(env: Environment, *parts: str) -> str:
    return str(uuid.uuid5(uuid.UUID(env.organization_id), "/".join(parts)))


def restricted(env: Environment) -> frozenset[str]:
    """Ids of the system publishers and solutions, which cannot be deleted."""
    return frozenset(
        {
            DEFAULT_PUBLISHER_ID,
            DEFAULT_SOLUTION_ID,
            env_id(env, "publisher", "cds"),
            env_id(env, "solution", "cds"),
        }
    )


# ---- the solution of a metadata write --------------------------------------------------------------------
def find_solution(env: Environment, unique_name: str) -> Row | None:
    wanted = unique_name.lower()  # SQL Server's default collation: unique names compare case-insensitively
    return next(
        (r for r in env.store.table("solution").values() if str(r.get("uniquename", "")).lower() == wanted),
        None,
    )


def target(env: Environment, unique_name: str | None) -> Target | None:
    """The named solution (the Default Solution when none is named); None while replaying the schema log.

    Unknown name -> 404 0x80040217 "The given solution unique name (X) is not valid" (module docstring)."""
    if REPLAYING.get():
        return None
    name = (unique_name or "").strip() or DEFAULT_SOLUTION
    solution = find_solution(env, name)
    if solution is None:
        raise DataverseError(
            404, "0x80040217", f"The given solution unique name ({unique_name}) is not valid"
        )
    publisher_ref = solution.get("publisherid") or ["publisher", DEFAULT_PUBLISHER_ID]
    publisher = env.store.get("publisher", publisher_ref[1]) or {}
    return Target(
        solution_id=solution["solutionid"],
        unique_name=str(solution["uniquename"]),
        prefix=str(publisher.get("customizationprefix") or ""),
        option_value_prefix=int(publisher.get("customizationoptionvalueprefix") or 10000),
    )


def check_prefix(target: Target | None, schema_name: Any, type_name: str) -> str:
    """A custom SchemaName must start with '<publisher prefix>_' (InvalidNamePrefix); returns the logical name.

    type_name is the metadata type the service names in the message: Attribute, Entity, EntityKey,
    Relationship."""
    if not isinstance(schema_name, str):
        schema_name = ""
    ok = bool(schema_name)
    if ok and target is not None:
        prefix = target.prefix.lower() + "_"
        ok = schema_name.lower().startswith(prefix) and len(schema_name) > len(prefix)
    if not ok:
        # The message as the service words it, missing spaces included (data-service-errors.md).
        raise DataverseError(
            400,
            "0x80044366",
            f"The schema name {schema_name} for type {type_name} is invalid or missing.Custom attribute, "
            "entity, entitykey, option set and relationship names must start with a valid customization "
            "prefix.The prefix for a solution component should match the prefix that is specified for the "
            "publisher of the solution.",
        )
    return schema_name.lower()


def next_option_value(target: Target | None, existing: Iterable[int]) -> int:
    """The value InsertOptionValue gives a new option: the publisher's option value prefix x 10,000 plus the
    next free number (reference §6.1; e.g. prefix 10000 gives 100000000, 100000001, ...)."""
    base = (target.option_value_prefix if target else 10000) * 10000
    taken = [v for v in existing if base <= v < base + 10000]
    return max(taken, default=base - 1) + 1


# ---- solution components ---------------------------------------------------------------------------------
def _components(env: Environment) -> dict[str, Row]:
    return env.store.table("solutioncomponent")


def _row_of(env: Environment, solution_id: str, objectid: str) -> Row | None:
    for row in _components(env).values():
        if row.get("objectid") == objectid and (row.get("solutionid") or [None, None])[1] == solution_id:
            return row
    return None


def record(
    env: Environment, target: Target | None, componenttype: int, objectid: str, table: Entity | None = None
) -> None:
    """Add a component to the named solution and to the Default Solution (which holds every component).

    `table` is the table a subcomponent belongs to: when that table is a root component of a solution with
    "include subcomponents", the table's row already carries it and no row is added there."""
    if target is None:
        return
    ent = env.metadata.tables["solutioncomponent"]
    for solution_id in dict.fromkeys((target.solution_id, DEFAULT_SOLUTION_ID)):
        if _row_of(env, solution_id, objectid) is not None:
            continue
        if table is not None:
            parent = _row_of(env, solution_id, table.metadata_id)
            if parent is not None and parent.get("rootcomponentbehavior") == INCLUDE_SUBCOMPONENTS:
                continue
        now = now_iso()
        row_id = str(uuid.uuid4())
        actor = ["systemuser", env.config.app_users[0].systemuserid] if env.config.app_users else None
        env.store.put(
            ent,
            row_id,
            {
                "solutioncomponentid": row_id,
                "componenttype": componenttype,
                "objectid": objectid,
                "solutionid": ["solution", solution_id],
                "rootcomponentbehavior": INCLUDE_SUBCOMPONENTS if componenttype == ENTITY else None,
                "rootsolutioncomponentid": None,
                "ismetadata": True,
                "createdon": now,
                "modifiedon": now,
                "createdby": actor,
                "modifiedby": actor,
                "versionnumber": env.store.next_version(),
            },
        )


def forget(env: Environment, objectids: Iterable[str]) -> None:
    """A deleted component leaves every solution (its rows go with it)."""
    gone = {o for o in objectids if o}
    if not gone:
        return
    ent = env.metadata.tables["solutioncomponent"]
    for row_id, row in list(_components(env).items()):
        if row.get("objectid") in gone:
            env.store.put(ent, row_id, None)


# ---- record writes to the solution tables (called by records.Writer) ---------------------------------------
def check_write(env: Environment, ent: Entity, record_id: str, row: Row | None, method: str) -> None:
    """Service rules for writes to publishers, solutions and solutioncomponents; row None = delete.

    `method` is the SDK message name (Create, Update, Delete) as the service names it in its errors."""
    name = ent.logical_name
    if name not in SOLUTION_TABLES:
        return
    if name == "solutioncomponent":
        # Components come and go with the metadata (AddSolutionComponent/RemoveSolutionComponent on the
        # real service); the table itself only answers Retrieve/RetrieveMultiple (solutioncomponent.md).
        raise DataverseError(
            400,
            "0x80040800",
            f"The '{method}' method does not support entities of type 'solutioncomponent'.",
        )
    if row is None:
        _check_delete(env, name, record_id)
    elif name == "publisher":
        _check_publisher(env, record_id, row, method == "Create")
    else:
        _check_solution(env, record_id, row)


def _duplicate(env: Environment, table: str, record_id: str, unique_name: str) -> None:
    wanted = unique_name.lower()
    for other_id, other in env.store.table(table).items():
        if other_id != record_id and str(other.get("uniquename", "")).lower() == wanted:
            # DuplicateRecord, as the emulator answers every duplicate key (reference §2.6).
            raise DataverseError(
                412,
                "0x80040237",
                "Operation failed due to a SQL integrity violation. Cannot insert duplicate key.",
            )


def _check_publisher(env: Environment, record_id: str, row: Row, creating: bool) -> None:
    unique = str(row.get("uniquename") or "").strip()
    if not unique:
        raise DataverseError(400, "0x8004F01C", "Publisher uniquename is required.")
    prefix = str(row.get("customizationprefix") or "")
    if not _PREFIX.match(prefix) or prefix.lower().startswith("mscrm"):
        # [INFERENCE] the service refuses such a prefix; its error name is not in the published list, so the
        # emulator answers with the generic invalid-argument code and the documented rule.
        raise DataverseError(
            400,
            "0x80040203",
            f"The customization prefix '{prefix}' is not valid: it must be 2 to 8 alphanumeric characters, "
            "start with a letter and not start with 'mscrm'.",
        )
    if creating and row.get("customizationoptionvalueprefix") is None:
        # Microsoft's samples create publishers without it; the maker form derives it from the prefix.
        digest = hashlib.sha256(prefix.lower().encode()).hexdigest()
        row["customizationoptionvalueprefix"] = 10000 + int(digest[:8], 16) % 90000
    _duplicate(env, "publisher", record_id, unique)


def _check_solution(env: Environment, record_id: str, row: Row) -> None:
    unique = str(row.get("uniquename") or "")
    if not _UNIQUE_NAME.match(unique):
        raise DataverseError(
            400,
            "0x8004F002",
            "Invalid character specified for solution unique name. Only characters within the ranges [A-Z], "
            "[a-z], [0-9] or _ are allowed. The first character may only be in the ranges [A-Z], [a-z] or _.",
        )
    if not _VERSION.match(str(row.get("version") or "")):
        raise DataverseError(400, "0x8004F01E", "An invalid solution version was specified.")
    _duplicate(env, "solution", record_id, unique)


def _check_delete(env: Environment, table: str, record_id: str) -> None:
    if record_id in restricted(env):
        if table == "publisher":
            raise DataverseError(400, "0x8004F006", "Attempting to delete a restricted publisher.")
        raise DataverseError(400, "0x8004F005", "Attempting to delete a restricted solution.")
    if table == "publisher":
        if any(
            (s.get("publisherid") or [None, None])[1] == record_id
            for s in env.store.table("solution").values()
        ):
            raise DataverseError(
                400,
                "0x80040227",
                "The object you tried to delete is associated with another object and cannot be deleted.",
            )
        return
    # Deleting an unmanaged solution removes the container only: its component rows go, the components stay.
    ent = env.metadata.tables["solutioncomponent"]
    for row_id, row in list(_components(env).items()):
        if (row.get("solutionid") or [None, None])[1] == record_id:
            env.store.put(ent, row_id, None)
