"""The publisher and solution the migration creates its schema in: what to create, and each conflict with
the target as a sentence naming the fix."""

from __future__ import annotations

from typing import Any

from migration_assets.mapping.config import load_mapping_config
from migration_assets.target.solution import SolutionTarget, managed_solution_error, solution_state

TARGET = SolutionTarget("close2d365", "close2d365 migration", "c2d", 72700, "close2d365", "Close", "1.0.0.0")
DEFAULT_PUB = {
    "publisherid": "D21AAB71-79E7-11DD-8874-00188B01E34F",
    "uniquename": "DefaultPublisherorg1",
    "friendlyname": "Default Publisher for org1",
    "customizationprefix": "new",
    "customizationoptionvalueprefix": 10000,
}
OURS = {
    "publisherid": "AAAA0000-0000-0000-0000-000000000001",
    "uniquename": "close2d365",
    "friendlyname": "close2d365 migration",
    "customizationprefix": "c2d",
    "customizationoptionvalueprefix": 72700,
}


def sol(name: str, publisher: dict[str, Any], managed: bool = False) -> dict[str, Any]:
    return {
        "solutionid": "BBBB0000-0000-0000-0000-000000000002",
        "uniquename": name,
        "ismanaged": managed,
        "_publisherid_value": publisher["publisherid"].lower(),
    }


def test_target_comes_from_the_settings_and_builds_documented_bodies() -> None:
    target = SolutionTarget.from_settings(load_mapping_config().settings)
    assert (target.prefix, target.option_value_prefix, target.solution_unique_name) == (
        "c2d",
        72700,
        "close2d365",
    )
    body = target.publisher_body()
    assert body["customizationprefix"] == "c2d" and body["customizationoptionvalueprefix"] == 72700
    assert body["uniquename"] == target.publisher_unique_name
    sbody = target.solution_body("abc")
    assert sbody["publisherid@odata.bind"] == "/publishers(abc)"
    assert sbody["version"] == target.version and sbody["uniquename"] == "close2d365"


def test_an_empty_target_creates_both() -> None:
    state = solution_state([DEFAULT_PUB], [sol("Default", DEFAULT_PUB)], TARGET)
    assert (state.publisher_id, state.solution_id, state.conflicts) == (None, None, ())


def test_existing_publisher_and_solution_are_reused_case_insensitively() -> None:
    ours = {**OURS, "uniquename": "Close2D365", "customizationprefix": "C2D"}
    state = solution_state([DEFAULT_PUB, ours], [sol("CLOSE2D365", ours)], TARGET)
    assert state.ok
    assert state.publisher_id == OURS["publisherid"].lower()
    assert state.solution_id == "bbbb0000-0000-0000-0000-000000000002"


def test_existing_publisher_without_the_solution_creates_only_the_solution() -> None:
    state = solution_state([OURS], [], TARGET)
    assert state.ok and state.publisher_id and state.solution_id is None


def test_prefix_owned_by_another_publisher_names_both_fixes() -> None:
    other = {**OURS, "publisherid": "cccc", "uniquename": "contoso", "friendlyname": "Contoso"}
    state = solution_state([other], [], TARGET)
    (msg,) = state.conflicts
    assert "'c2d' already belongs to publisher 'Contoso' (unique name 'contoso'" in msg
    assert "set publisher_prefix in mappings/settings.yaml" in msg
    assert "or set publisher.unique_name to 'contoso'" in msg


def test_solution_of_another_publisher_is_a_conflict() -> None:
    state = solution_state([DEFAULT_PUB, OURS], [sol("close2d365", DEFAULT_PUB)], TARGET)
    (msg,) = state.conflicts
    assert "The solution 'close2d365' already exists in the target and belongs to publisher" in msg
    assert "'DefaultPublisherorg1'" in msg and "set solution_unique_name in mappings/settings.yaml" in msg
    assert state.solution_id is None


def test_our_solution_installed_managed_is_used_not_a_conflict() -> None:
    """Production after a managed import from the sandbox: nothing to create, the run goes on; a schema
    write it would need is refused by deploy with the fix (managed_solution_error)."""
    state = solution_state([OURS], [sol("close2d365", OURS, managed=True)], TARGET)
    assert state.ok and state.managed and state.solution_id is not None
    other = solution_state([DEFAULT_PUB, OURS], [sol("close2d365", DEFAULT_PUB, managed=True)], TARGET)
    assert (
        other.conflicts and "belongs to publisher" in other.conflicts[0]
    )  # someone else's: still a conflict
    msg = managed_solution_error("close2d365", ["column contact.c2d_x"])
    assert (
        "installed managed" in msg
        and "column contact.c2d_x" in msg
        and "export the solution as managed" in msg
    )


def test_our_publisher_with_other_prefixes_names_the_settings_to_change() -> None:
    ours = {**OURS, "customizationprefix": "abc", "customizationoptionvalueprefix": 12345}
    state = solution_state([ours], [], TARGET)
    assert len(state.conflicts) == 2
    prefix, ovp = state.conflicts
    assert "with customization prefix 'abc', not 'c2d': set publisher_prefix" in prefix
    assert "to 'abc'" in prefix
    assert "option value prefix 12345, not 72700: set option_value_prefix" in ovp
    assert "to 12345" in ovp


def test_default_publisher_prefix_is_not_ours() -> None:
    target = SolutionTarget("close2d365", "x", "new", 72700, "close2d365", "x", "1.0.0.0")
    state = solution_state([DEFAULT_PUB], [], target)
    assert len(state.conflicts) == 1 and "'new' already belongs to" in state.conflicts[0]
