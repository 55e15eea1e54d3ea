"""Emulator contract: the shipped "Opportunity Sales Process" business process flow as the Web API exposes it
(workflows, processstages, the opportunitysalesprocesses instance table, RetrieveProcessInstances,
RetrieveActivePath) and the instance rules of business-process-flows-code.md, refusals included."""

from __future__ import annotations

import pytest
from test_dataverse_emulator_support import Dv, error_of

from emulators.dataverse.processes import EMPTY_GUID, PROCESS_ID, STAGES

QUALIFY, DEVELOP, PROPOSE, CLOSE = (stage_id for stage_id, _, _ in STAGES)
INSTANCES = "opportunitysalesprocesses"


@pytest.fixture
def dv() -> Dv:
    return Dv()


def new_opportunity(dv: Dv, **extra: object) -> str:
    account = dv.create("accounts", {"name": "Acme"})
    return dv.create(
        "opportunities", {"name": "Deal", "customerid_account@odata.bind": f"/accounts({account})", **extra}
    )


def instances(dv: Dv, opportunity: str) -> list[dict]:
    resp = dv.get(f"RetrieveProcessInstances(EntityLogicalName='opportunity',EntityId={opportunity})")
    assert resp.status_code == 200, resp.text
    assert resp.json()["@odata.context"].endswith("$metadata#businessprocessflowinstances")
    return list(resp.json()["value"])


def stage(stage_id: str) -> dict:
    return {"activestageid@odata.bind": f"/processstages({stage_id})"}


def path(*stage_ids: str) -> dict:
    return {"traversedpath": ",".join(stage_ids)}


def fresh_instance_body(opportunity: str, *stage_ids: str) -> dict:
    return {
        "opportunityid@odata.bind": f"/opportunities({opportunity})",
        "processid@odata.bind": f"/workflows({PROCESS_ID})",
        **stage(stage_ids[-1]),
        **path(*stage_ids),
    }


def test_the_shipped_process_and_its_ordered_stages_are_queryable(dv: Dv) -> None:
    flows = dv.get(
        "workflows?$select=name,uniquename,category,primaryentity,statecode,type"
        "&$filter=category eq 4 and primaryentity eq 'opportunity'"
    ).json()["value"]
    assert [(f["workflowid"], f["uniquename"], f["name"]) for f in flows] == [
        (PROCESS_ID, "opportunitysalesprocess", "Opportunity Sales Process")
    ]
    assert (flows[0]["statecode"], flows[0]["type"]) == (1, 1)  # Activated definition
    stages = dv.get(
        f"processstages?$select=stagename,stagecategory,primaryentitytypecode,_processid_value"
        f"&$filter=_processid_value eq {PROCESS_ID}"
    ).json()["value"]
    assert [(s["processstageid"], s["stagename"], s["stagecategory"]) for s in stages] == list(STAGES)
    assert {(s["primaryentitytypecode"], s["_processid_value"]) for s in stages} == {
        ("opportunity", PROCESS_ID)
    }


def test_the_instance_table_has_metadata_like_any_table(dv: Dv) -> None:
    ent = dv.get(
        "EntityDefinitions(LogicalName='opportunitysalesprocess')"
        "?$select=EntitySetName,PrimaryIdAttribute,PrimaryNameAttribute,OwnershipType"
    ).json()
    assert (ent["EntitySetName"], ent["PrimaryIdAttribute"], ent["PrimaryNameAttribute"]) == (
        INSTANCES,
        "businessprocessflowinstanceid",
        "name",
    )
    assert ent["OwnershipType"] == "OrganizationOwned"
    status = dv.get(
        "EntityDefinitions(LogicalName='opportunitysalesprocess')/Attributes(LogicalName='statuscode')"
        "/Microsoft.Dynamics.CRM.StatusAttributeMetadata?$expand=OptionSet"
    ).json()
    options = {o["Value"]: o["State"] for o in status["OptionSet"]["Options"]}
    assert options == {1: 0, 2: 1, 3: 1}  # Active; Finished and Aborted are Inactive


def test_a_new_opportunity_gets_the_process_at_its_first_stage(dv: Dv) -> None:
    opportunity = new_opportunity(dv)
    [instance] = instances(dv, opportunity)
    assert (instance["processid"], instance["processstageid"], instance["traversedpath"]) == (
        PROCESS_ID,
        QUALIFY,
        QUALIFY,
    )
    assert (instance["statecode"], instance["statuscode"], instance["name"]) == (
        0,
        1,
        "Opportunity Sales Process",
    )
    row = dv.get(
        f"{INSTANCES}?$select=_activestageid_value,traversedpath,activestagestartedon"
        f"&$filter=_opportunityid_value eq {opportunity}"
    ).json()["value"]
    assert [(r["businessprocessflowinstanceid"], r["_activestageid_value"]) for r in row] == [
        (instance["businessprocessflowinstanceid"], QUALIFY)
    ]
    assert row[0]["activestagestartedon"]
    active = dv.get(
        f"RetrieveActivePath(ProcessInstanceId={instance['businessprocessflowinstanceid']})"
    ).json()
    assert active["@odata.context"].endswith("$metadata#processstages")
    assert [(s["processstageid"], s["stagename"]) for s in active["value"]] == [(s, n) for s, n, _ in STAGES]


def test_processid_guid_empty_skips_the_process_and_an_instance_is_created_at_a_later_stage(dv: Dv) -> None:
    opportunity = new_opportunity(dv, processid=EMPTY_GUID)
    assert instances(dv, opportunity) == []
    created = dv.post(INSTANCES, fresh_instance_body(opportunity, QUALIFY, DEVELOP, PROPOSE))
    assert created.status_code == 204, created.text
    instance_id = created.headers["OData-EntityId"].rsplit("(", 1)[1].rstrip(")")
    [instance] = instances(dv, opportunity)
    assert (instance["businessprocessflowinstanceid"], instance["processstageid"]) == (instance_id, PROPOSE)
    # Parameter aliases, as clients send them.
    aliased = dv.get(
        f"RetrieveProcessInstances(EntityLogicalName=@e,EntityId=@id)?@e='opportunity'&@id={opportunity}"
    )
    assert [i["businessprocessflowinstanceid"] for i in aliased.json()["value"]] == [instance_id]


def test_an_unknown_processid_on_the_opportunity_is_refused(dv: Dv) -> None:
    account = dv.create("accounts", {"name": "Acme"})
    resp = dv.post(
        "opportunities",
        {
            "name": "Deal",
            "customerid_account@odata.bind": f"/accounts({account})",
            "processid": "0b5e2a83-0000-4000-8000-000000000001",
        },
    )
    assert error_of(resp)[:2] == (404, "0x80040217")


def test_create_refuses_a_stage_path_that_does_not_lead_to_the_stage(dv: Dv) -> None:
    opportunity = new_opportunity(dv, processid=EMPTY_GUID)
    body = fresh_instance_body(opportunity, QUALIFY, DEVELOP)
    no_path = {k: v for k, v in body.items() if k != "traversedpath"}
    status, code, message = error_of(dv.post(INSTANCES, no_path))
    assert (status, code) == (400, "0x80040203") and "traversedpath is required" in message
    skipping = {**body, **path(QUALIFY, PROPOSE, DEVELOP)}
    assert error_of(dv.post(INSTANCES, skipping))[:2] == (400, "0x80040203")
    short = {**body, **path(QUALIFY)}
    assert error_of(dv.post(INSTANCES, short))[:2] == (400, "0x80040203")
    assert instances(dv, opportunity) == []  # nothing was written by the refusals
    assert dv.post(INSTANCES, body).status_code == 204


def test_create_refuses_a_stage_of_another_process(dv: Dv) -> None:
    other = dv.create(
        "workflows",
        {"name": "Lead flow", "category": 4, "primaryentity": "lead", "type": 1, "uniquename": "leadflow"},
    )
    foreign = dv.create(
        "processstages",
        {"stagename": "Elsewhere", "stagecategory": 0, "processid@odata.bind": f"/workflows({other})"},
    )
    opportunity = new_opportunity(dv, processid=EMPTY_GUID)
    body = {"opportunityid@odata.bind": f"/opportunities({opportunity})", **stage(foreign), **path(foreign)}
    status, code, message = error_of(dv.post(INSTANCES, body))
    assert (status, code) == (400, "0x80040203") and "is not a stage of the process" in message
    foreign_process = {**body, "processid@odata.bind": f"/workflows({other})"}
    status, code, message = error_of(dv.post(INSTANCES, foreign_process))
    assert (status, code) == (400, "0x80040203") and "does not keep its instances" in message
    unknown = {**body, **stage("7a1c0000-0000-4000-8000-000000000009")}
    assert error_of(dv.post(INSTANCES, unknown))[0] == 404


def test_one_active_instance_per_opportunity_and_process(dv: Dv) -> None:
    opportunity = new_opportunity(dv)
    [first] = instances(dv, opportunity)
    second = fresh_instance_body(opportunity, QUALIFY)
    assert error_of(dv.post(INSTANCES, second))[:2] == (412, "0x80040237")
    aborted = dv.patch(
        f"{INSTANCES}({first['businessprocessflowinstanceid']})", {"statecode": 1, "statuscode": 3}
    )
    assert aborted.status_code == 204, aborted.text
    assert dv.post(INSTANCES, second).status_code == 204
    reactivate = {"statecode": 0, "statuscode": 1}
    resp = dv.patch(f"{INSTANCES}({first['businessprocessflowinstanceid']})", reactivate)
    assert error_of(resp)[:2] == (412, "0x80040237")


def test_a_patch_moves_one_stage_at_a_time_and_finishes_only_at_the_last(dv: Dv) -> None:
    opportunity = new_opportunity(dv)
    [instance] = instances(dv, opportunity)
    url = f"{INSTANCES}({instance['businessprocessflowinstanceid']})"
    skip = dv.patch(url, {**stage(PROPOSE), **path(QUALIFY, DEVELOP, PROPOSE)})
    status, code, message = error_of(skip)
    assert (status, code) == (400, "0x80040203") and "next or the previous stage" in message
    assert error_of(dv.patch(url, stage(DEVELOP)))[:2] == (400, "0x80040203")  # stale traversedpath
    assert dv.patch(url, {**stage(DEVELOP), **path(QUALIFY, DEVELOP)}).status_code == 204
    finish_early = dv.patch(url, {"statecode": 1, "statuscode": 2})
    assert error_of(finish_early)[:2] == (400, "0x80040203")
    assert dv.patch(url, {**stage(QUALIFY), **path(QUALIFY)}).status_code == 204  # back one stage
    for reached in (DEVELOP, PROPOSE, CLOSE):
        walked = [s for s, _, _ in STAGES][: [s for s, _, _ in STAGES].index(reached) + 1]
        assert dv.patch(url, {**stage(reached), **path(*walked)}).status_code == 204
    assert dv.patch(url, {"statecode": 1, "statuscode": 2}).status_code == 204
    row = dv.get(f"{url}?$select=_activestageid_value,traversedpath,statecode,statuscode,completedon").json()
    assert (row["_activestageid_value"], row["statecode"], row["statuscode"]) == (CLOSE, 1, 2)
    assert row["traversedpath"] == ",".join(s for s, _, _ in STAGES) and row["completedon"]
    [read_back] = instances(dv, opportunity)
    assert (read_back["processstageid"], read_back["statuscode"]) == (CLOSE, 2)


def test_process_instances_come_most_recently_modified_first(dv: Dv) -> None:
    opportunity = new_opportunity(dv)
    [first] = instances(dv, opportunity)
    dv.patch(f"{INSTANCES}({first['businessprocessflowinstanceid']})", {"statecode": 1, "statuscode": 3})
    second = dv.post(INSTANCES, fresh_instance_body(opportunity, QUALIFY, DEVELOP))
    second_id = second.headers["OData-EntityId"].rsplit("(", 1)[1].rstrip(")")
    assert [i["businessprocessflowinstanceid"] for i in instances(dv, opportunity)] == [
        second_id,
        first["businessprocessflowinstanceid"],
    ]


def test_deleting_an_instance_and_function_refusals(dv: Dv) -> None:
    opportunity = new_opportunity(dv)
    [instance] = instances(dv, opportunity)
    assert dv.delete(f"{INSTANCES}({instance['businessprocessflowinstanceid']})").status_code == 204
    assert instances(dv, opportunity) == []
    gone = dv.get(f"RetrieveActivePath(ProcessInstanceId={instance['businessprocessflowinstanceid']})")
    assert error_of(gone)[:2] == (404, "0x80040217")
    missing = dv.get(
        "RetrieveProcessInstances(EntityLogicalName='opportunity',EntityId=5d0e0000-0000-4000-8000-000000000001)"
    )
    assert error_of(missing)[:2] == (404, "0x80040217")
    assert error_of(dv.get("RetrieveActivePath()"))[:2] == (400, "0x80040203")
    assert (
        dv.post(
            f"RetrieveActivePath(ProcessInstanceId={instance['businessprocessflowinstanceid']})"
        ).status_code
        == 404
    )


def test_bulk_created_opportunities_get_the_process_until_it_is_deactivated(dv: Dv) -> None:
    account = dv.create("accounts", {"name": "Acme"})
    targets = [
        {
            "@odata.type": "Microsoft.Dynamics.CRM.opportunity",
            "name": f"Deal {n}",
            "customerid_account@odata.bind": f"/accounts({account})",
        }
        for n in range(2)
    ]
    resp = dv.post("opportunities/Microsoft.Dynamics.CRM.CreateMultiple", {"Targets": targets})
    assert resp.status_code == 200, resp.text
    assert [len(instances(dv, opp)) for opp in resp.json()["Ids"]] == [1, 1]
    assert dv.patch(f"workflows({PROCESS_ID})", {"statecode": 0, "statuscode": 1}).status_code == 204
    assert instances(dv, new_opportunity(dv)) == []
