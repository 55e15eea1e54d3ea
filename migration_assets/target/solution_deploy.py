"""The publisher and solution of the migration in the target: read them (`inspect_solution`, also used by the
preflight) and create what is missing (`ensure_solution`, used by schema/solution). Rows and columns:
reference/entities/publisher.md, solution.md, solutioncomponent.md (MicrosoftDocs/powerapps-docs)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from migration_assets.clients.dataverse.client import DataverseClient, DataverseError
from migration_assets.clients.dataverse.odata import odata_string
from migration_assets.load.ledger import SchemaLedger
from migration_assets.target.deploy import SchemaDeployError
from migration_assets.target.solution import (
    PUBLISHER_COLUMNS,
    SOLUTION_COLUMNS,
    SolutionState,
    SolutionTarget,
    solution_state,
)


class SolutionSetupError(SchemaDeployError):
    """The target's publishers or solutions conflict with the settings (each conflict names its fix)."""


def inspect_solution(client: DataverseClient, target: SolutionTarget) -> SolutionState:
    """What the target holds of our publisher and solution, with the conflicts that stop schema writes.
    Reads only: our publisher, any publisher owning our prefix, our solution and the publisher owning it."""
    publishers = client.rows(
        "publishers",
        list(PUBLISHER_COLUMNS),
        f"uniquename eq {odata_string(target.publisher_unique_name)} "
        f"or customizationprefix eq {odata_string(target.prefix)}",
    )
    solutions = client.rows(
        "solutions", list(SOLUTION_COLUMNS), f"uniquename eq {odata_string(target.solution_unique_name)}"
    )
    known = {str(p.get("publisherid") or "").lower() for p in publishers}
    for owner in {str(s.get("_publisherid_value") or "").lower() for s in solutions} - known - {""}:
        # The owner of a same-named solution, so that the conflict can name it.
        publishers += client.rows("publishers", list(PUBLISHER_COLUMNS), f"publisherid eq {owner}")
    return solution_state(publishers, solutions, target)


@dataclass(frozen=True)
class Ensured:
    publisher_id: str
    solution_id: str
    created_publisher: bool
    created_solution: bool


def _ledgered_create(
    client: DataverseClient,
    ledger: SchemaLedger | None,
    kind: str,
    name: str,
    create: Callable[[], str],
) -> str:
    """Create a publisher or solution, written ahead to the ledger. A create that failed after its first
    attempt landed (a dropped connection, then a duplicate on the resend) counts as ours: the row was not
    there when we looked just before."""
    seq = ledger.begin(kind, None, name) if ledger is not None else 0
    try:
        new_id = create()
    except DataverseError:
        entity_set, key = (
            ("publishers", "publisherid") if kind == "publisher" else ("solutions", "solutionid")
        )
        rows = client.rows(entity_set, [key], f"uniquename eq {odata_string(name)}")
        if not rows:
            if ledger is not None:
                ledger.rejected(seq)
            raise
        new_id = str(rows[0][key]).lower()
    if ledger is not None:
        ledger.done(seq, new_id)
    return new_id


def ensure_solution(
    client: DataverseClient,
    target: SolutionTarget,
    ledger: SchemaLedger | None,
    log: Callable[[str], None],
) -> Ensured:
    """Create the publisher and the solution when missing, each written ahead to the run's ledger.
    Conflicts raise before any change."""
    state = inspect_solution(client, target)
    if state.conflicts:
        raise SolutionSetupError(
            "the target's publishers or solutions conflict with mappings/settings.yaml; nothing was "
            "changed:\n- " + "\n- ".join(state.conflicts)
        )
    publisher_id, solution_id = state.publisher_id, state.solution_id
    if publisher_id is None:
        log(f"creating publisher {target.publisher_unique_name} (prefix {target.prefix})")
        body = target.publisher_body()
        publisher_id = _ledgered_create(
            client, ledger, "publisher", target.publisher_unique_name, lambda: client.create_publisher(body)
        )
    if solution_id is None:
        log(f"creating solution {target.solution_unique_name} {target.version}")
        body = target.solution_body(publisher_id)
        solution_id = _ledgered_create(
            client, ledger, "solution", target.solution_unique_name, lambda: client.create_solution(body)
        )
    return Ensured(publisher_id, solution_id, state.publisher_id is None, state.solution_id is None)


def solution_components(client: DataverseClient, solution_id: str) -> list[dict[str, object]]:
    """The rows of `solutioncomponents` of a solution (componenttype, objectid, rootcomponentbehavior)."""
    return client.rows(
        "solutioncomponents",
        ["solutioncomponentid", "componenttype", "objectid", "rootcomponentbehavior"],
        f"_solutionid_value eq {solution_id}",
    )
