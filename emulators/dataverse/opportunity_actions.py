"""WinOpportunity / LoseOpportunity (reference §7.4): closing an opportunity goes through these actions only."""

from __future__ import annotations

from emulators.dataverse.errors import DataverseError, not_found
from emulators.dataverse.records import Writer
from emulators.dataverse.state import Caller
from emulators.dataverse.values import now_iso, parse_datetime


def close_opportunity(writer: Writer, payload: dict, won: bool, caller: Caller) -> None:
    """WinOpportunity / LoseOpportunity: create the opportunityclose activity, then close the opportunity."""
    env = writer.env
    opp_ent = env.metadata.tables["opportunity"]
    close_ent = env.metadata.tables["opportunityclose"]
    status = payload.get("Status")
    close = payload.get("OpportunityClose")
    if not isinstance(close, dict):
        raise DataverseError(
            400,
            "0x80040203",
            "The 'OpportunityClose' parameter is required (an opportunityclose entity).",
        )
    ref = close.get("opportunityid@odata.bind")
    if ref is None:
        raise DataverseError(
            400, "0x80040203", "OpportunityClose must bind 'opportunityid@odata.bind' to the opportunity."
        )
    _, opp_id = writer.resolve_reference(ref, close_ent, "opportunityid@odata.bind")
    state = 1 if won else 2
    status_attr = opp_ent.attributes["statuscode"]
    valid = [o["Value"] for o in status_attr.options if o["State"] == state]
    if isinstance(status, bool) or not isinstance(status, int) or status not in valid:
        raise DataverseError(
            400,
            "0x80040203",
            f"{status} is not a valid status code for state code OpportunityState.{'Won' if won else 'Lost'} on "
            f"opportunity with Id {opp_id}.",
        )
    with env.store.lock:
        opp = env.store.get("opportunity", opp_id)
        if opp is None:
            raise not_found("opportunity", opp_id)
        if opp.get("statecode") != 0:
            raise DataverseError(
                400,
                "0x80040203",
                f"The opportunity {opp_id} is already closed. Reopen it (statecode 0) first.",
            )
        close_id, close_row = writer.create(close_ent, {**close, "statuscode": 1}, caller)
        done = dict(close_row)
        done["statecode"], done["statuscode"] = 1, 2
        env.store.put(close_ent, close_id, done)
        row = dict(opp)
        row["statecode"], row["statuscode"] = state, status
        actual_end = close_row.get("actualend")
        row["actualclosedate"] = parse_datetime(actual_end, True) if actual_end else now_iso()[:10]
        revenue = close_row.get("actualrevenue")
        row["actualvalue"] = revenue if revenue is not None else (opp.get("estimatedvalue") if won else 0.0)
        row["modifiedon"], row["modifiedby"] = now_iso(), ["systemuser", caller.systemuserid]
        row["versionnumber"] = env.store.next_version()
        env.store.put(opp_ent, opp_id, row)
