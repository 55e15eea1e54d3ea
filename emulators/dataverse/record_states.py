"""State model rules: valid statecode/statuscode pairs per table (status options carry their State, §6.5, §7)."""

from __future__ import annotations

from typing import Any

from emulators.dataverse.errors import DataverseError
from emulators.dataverse.metadata import Entity
from emulators.dataverse.store import Row


def apply_state(ent: Entity, row: Row, change: dict[str, Any], record_id: str, creating: bool) -> None:
    state_attr, status_attr = ent.attributes["statecode"], ent.attributes["statuscode"]
    state = row.get("statecode") if not creating else state_attr.default
    if "statecode" in change and change["statecode"] is not None:
        state = change["statecode"]
        if ent.logical_name == "opportunity" and state in (1, 2) and row.get("statecode") != state:
            verb, msg = ("Won", "WinOpportunityRequest") if state == 1 else ("Lost", "LoseOpportunityRequest")
            raise DataverseError(
                400,
                "0x80040203",
                f"This message can not be used to set the state of opportunity to {verb}. In order to set the "
                f"state of opportunity to {verb}, use the {msg} message instead.",
            )
    status = change.get("statuscode")
    state_opt = next(o for o in state_attr.options if o["Value"] == state)
    if status is None:
        status = state_opt["DefaultStatus"] if "statecode" in change or creating else row.get("statuscode")
    status_opt = next((o for o in status_attr.options if o["Value"] == status), None)
    if status_opt is None or status_opt["State"] != state:
        state_label = (state_attr.option_label(state) or str(state)).replace(" ", "")
        entity_label = ent.schema_name[:1].upper() + ent.schema_name[1:]
        raise DataverseError(
            400,
            "0x80040203",
            f"{status} is not a valid status code for state code {entity_label}State.{state_label} on "
            f"{ent.logical_name} with Id {record_id}.",
        )
    row["statecode"], row["statuscode"] = state, status
