"""The statecode/statuscode of a COMPLETED activity, per Dataverse activity table (pure).

The Completed status reason differs per table (task 5, appointment 3, phonecall/email and every custom
activity table 2; reference §6.3, §7.7-§7.10), and a field map's table can follow a routing choice:
activities.yaml sends Close SMS to `task` or to a custom activity table. So field maps say
`{completed_statecode}` / `{completed_statuscode}` and the mapping config loader puts in the numbers of
the table the map writes to, instead of a number that is valid for one table only.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

STATE, STATUS = "{completed_statecode}", "{completed_statuscode}"
# Standard activity tables: (statecode Completed, its default statuscode).
STANDARD_COMPLETED: Mapping[str, tuple[int, int]] = {
    "task": (1, 5),
    "phonecall": (1, 2),
    "email": (1, 2),
    "appointment": (1, 3),
}
# A custom activity table (schema/custom_activity_tables) gets the platform's activity states:
# 0 Open (status 1), 1 Completed (status 2), 2 Canceled (status 3).
CUSTOM_ACTIVITY_COMPLETED = (1, 2)


class ActivityStateError(ValueError):
    """A completed-status placeholder is used for a table that has no known Completed state."""


def completed_state(table: str, prefix: str) -> tuple[int, int]:
    """(statecode, statuscode) of a completed record of `table`; custom tables start with `prefix`_."""
    if table in STANDARD_COMPLETED:
        return STANDARD_COMPLETED[table]
    if table.startswith(prefix + "_"):
        return CUSTOM_ACTIVITY_COMPLETED
    raise ActivityStateError(
        f"no Completed state known for table {table!r}: {STATE}/{STATUS} work for "
        f"{', '.join(STANDARD_COMPLETED)} and custom activity tables ({prefix}_...)"
    )


def resolve_completed(value: Any, table: str, prefix: str) -> Any:
    """`value` with every `{completed_statecode}` / `{completed_statuscode}` string (also inside lists and
    mappings, e.g. a choice map) replaced by the number for `table`; other values are returned unchanged."""
    if isinstance(value, str) and value in (STATE, STATUS):
        state, status = completed_state(table, prefix)
        return state if value == STATE else status
    if isinstance(value, Mapping):
        return {k: resolve_completed(v, table, prefix) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve_completed(v, table, prefix) for v in value]
    return value
