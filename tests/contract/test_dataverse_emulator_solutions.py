"""Contract: publishers, solutions and solution components, as the real service models them (issue 10).

Each rule, its source and the error chosen are in emulators/dataverse/solutions.py. The requests here are the
ones Microsoft documents: POST publishers / POST solutions with publisherid@odata.bind, then metadata writes
naming the solution in MSCRM.SolutionUniqueName (webapi/create-update-column-definitions-using-web-api.md,
MetadataOperations sample).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from test_dataverse_emulator_support import Dv, core_config, error_of, label, string_column

from emulators.dataverse.solutions import DEFAULT_PUBLISHER_ID, DEFAULT_SOLUTION_ID

SOLUTION = {"MSCRM.SolutionUniqueName": "close2d365"}
INVALID_PREFIX = (
    "The schema name {name} for type {type} is invalid or missing.Custom attribute, entity, entitykey, option "
    "set and relationship names must start with a valid customization prefix.The prefix for a solution "
    "component should match the prefix that is specified for the publisher of the solution."
)


@pytest.fixture
def dv() -> Dv:
    return Dv()


def _id(resp_header: str) -> str:
    return resp_header.rsplit("(", 1)[1].rstrip(")")


def _publisher_and_solution(dv: Dv, prefix: str = "c2d", option_value_prefix: int = 72700) -> tuple[str, str]:
    resp = dv.post(
        "publishers",
        {
            "uniquename": "close2d365publisher",
            "friendlyname": "close2d365",
            "customizationprefix": prefix,
            "customizationoptionvalueprefix": option_value_prefix,
            "description": "Publisher of the Close migration",
        },
    )
    assert resp.status_code == 204, resp.text
    publisher = _id(resp.headers["OData-EntityId"])
    resp = dv.post(
        "solutions",
        {
            "uniquename": "close2d365",
            "friendlyname": "Close migration",
            "version": "1.0.0.0",
            "publisherid@odata.bind": f"/publishers({publisher})",
        },
        Prefer="return=representation",
    )
    assert resp.status_code == 201, resp.text
    body = resp.json()
    assert (body["uniquename"], body["_publisherid_value"], body["ismanaged"]) == (
        "close2d365",
        publisher,
        False,
    )
    return publisher, body["solutionid"]


def _components(dv: Dv, solution_id: str) -> set[tuple[int, str]]:
    rows = dv.get(
        f"solutioncomponents?$select=componenttype,objectid&$filter=_solutionid_value eq {solution_id}"
    ).json()["value"]
    return {(r["componenttype"], r["objectid"]) for r in rows}


def _picklist(schema: str, values: list[int]) -> dict:
    return {
        "@odata.type": "Microsoft.Dynamics.CRM.PicklistAttributeMetadata",
        "SchemaName": schema,
        "DisplayName": label(schema),
        "OptionSet": {"Options": [{"Value": v, "Label": label(str(v))} for v in values]},
    }


def _lookup_body(schema: str, referenced: str, referencing: str, lookup: str) -> dict:
    return {
        "@odata.type": "Microsoft.Dynamics.CRM.OneToManyRelationshipMetadata",
        "SchemaName": schema,
        "ReferencedEntity": referenced,
        "ReferencingEntity": referencing,
        "Lookup": {
            "@odata.type": "Microsoft.Dynamics.CRM.LookupAttributeMetadata",
            "SchemaName": lookup,
            "DisplayName": label(lookup),
        },
    }


def _table_body(schema: str, primary: str) -> dict:
    name = string_column(primary)
    name["IsPrimaryName"] = True
    return {
        "@odata.type": "Microsoft.Dynamics.CRM.EntityMetadata",
        "SchemaName": schema,
        "DisplayName": label(schema),
        "DisplayCollectionName": label(schema + "s"),
        "OwnershipType": "UserOwned",
        "HasActivities": False,
        "HasNotes": False,
        "Attributes": [name],
    }


def test_every_environment_has_the_default_publishers_and_solutions(dv: Dv) -> None:
    publishers = dv.get(
        "publishers?$select=uniquename,friendlyname,customizationprefix,customizationoptionvalueprefix"
    ).json()["value"]
    default = next(p for p in publishers if p["publisherid"] == DEFAULT_PUBLISHER_ID)
    assert (default["customizationprefix"], default["customizationoptionvalueprefix"]) == ("new", 10000)
    assert default["friendlyname"] == f"Default Publisher for {dv.config.org_name}"
    cds = next(p for p in publishers if p["friendlyname"] == "CDS Default Publisher")
    assert cds["customizationprefix"].startswith("cr") and len(cds["customizationprefix"]) == 5
    solutions = dv.get(
        "solutions?$select=uniquename,friendlyname,version,ismanaged,_publisherid_value&$filter=uniquename eq 'Default'"
    ).json()["value"]
    assert solutions == [
        {
            "@odata.etag": solutions[0]["@odata.etag"],
            "solutionid": DEFAULT_SOLUTION_ID,
            "uniquename": "Default",
            "friendlyname": "Default Solution",
            "version": "1.0",
            "ismanaged": False,
            "_publisherid_value": DEFAULT_PUBLISHER_ID,
        }
    ]
    cds_solution = dv.get(
        "solutions?$select=uniquename,_publisherid_value&$filter=friendlyname eq 'Common Data Services Default Solution'"
    ).json()["value"]
    assert [s["_publisherid_value"] for s in cds_solution] == [cds["publisherid"]]
    assert len(dv.get("solutions?$select=uniquename&$top=1").json()["value"]) == 1
    assert dv.get("solutioncomponents?$select=componenttype").json()["value"] == []


def test_column_with_the_default_publisher_prefix_as_documented(dv: Dv) -> None:
    # The documented request: no solution named, so the Default Solution's publisher (prefix new) applies.
    resp = dv.add_column("account", string_column("new_CloseId"))
    assert resp.status_code == 204, resp.text
    column_id = _id(resp.headers["OData-EntityId"])
    assert dv.post("accounts", {"name": "a", "new_closeid": "x"}).status_code == 204
    assert _components(dv, DEFAULT_SOLUTION_ID) == {(2, column_id)}
    # Any other prefix is refused with the service's InvalidNamePrefix error.
    assert error_of(dv.add_column("account", string_column("c2d_CloseId"))) == (
        400,
        "0x80044366",
        INVALID_PREFIX.format(name="c2d_CloseId", type="Attribute"),
    )
    assert error_of(dv.add_column("account", string_column("new_")))[1] == "0x80044366"
    # InsertOptionValue numbers new options from the default publisher's option value prefix (10000).
    assert dv.add_column("lead", _picklist("new_Kind", [])).status_code == 204
    resp = dv.post(
        "InsertOptionValue",
        {"EntityLogicalName": "lead", "AttributeLogicalName": "new_kind", "Label": label("A")},
    )
    assert resp.json()["NewOptionValue"] == 100000000


def test_components_land_in_the_named_solution_with_its_publisher_prefix(dv: Dv) -> None:
    _, solution = _publisher_and_solution(dv)
    column = dv.post(
        "EntityDefinitions(LogicalName='account')/Attributes", string_column("c2d_CloseId"), **SOLUTION
    )
    assert column.status_code == 204, column.text
    table = dv.post("EntityDefinitions", _table_body("c2d_Pipeline", "c2d_Name"), **SOLUTION)
    assert table.status_code == 204, table.text
    key = dv.post(
        "EntityDefinitions(LogicalName='account')/Keys",
        {
            "SchemaName": "c2d_account_closeid",
            "DisplayName": label("Close id"),
            "KeyAttributes": ["c2d_closeid"],
        },
        **SOLUTION,
    )
    assert key.status_code == 204, key.text
    relationship = dv.post(
        "RelationshipDefinitions",
        _lookup_body("c2d_pipeline_contact", "c2d_pipeline", "contact", "c2d_PipelineId"),
        **SOLUTION,
    )
    assert relationship.status_code == 204, relationship.text
    lookup_id = dv.get(
        "EntityDefinitions(LogicalName='contact')/Attributes(LogicalName='c2d_pipelineid')"
    ).json()["MetadataId"]
    expected = {
        (2, _id(column.headers["OData-EntityId"])),
        (1, _id(table.headers["OData-EntityId"])),
        (14, _id(key.headers["OData-EntityId"])),
        (10, _id(relationship.headers["OData-EntityId"])),
        (2, lookup_id),
    }
    assert _components(dv, solution) == expected
    assert _components(dv, DEFAULT_SOLUTION_ID) == expected  # the Default Solution holds every component
    entity_row = dv.get(
        f"solutioncomponents?$select=rootcomponentbehavior&$filter=_solutionid_value eq {solution} and componenttype eq 1"
    ).json()["value"]
    assert [r["rootcomponentbehavior"] for r in entity_row] == [0]  # include subcomponents
    # A column of a table the solution already includes with its subcomponents gets no row of its own.
    assert (
        dv.post(
            "EntityDefinitions(LogicalName='c2d_pipeline')/Attributes", string_column("c2d_Stage"), **SOLUTION
        )
    ).status_code == 204
    assert _components(dv, solution) == expected
    # The default publisher's prefix is not this publisher's.
    wrong = dv.post(
        "EntityDefinitions(LogicalName='account')/Attributes", string_column("new_Other"), **SOLUTION
    )
    assert error_of(wrong) == (400, "0x80044366", INVALID_PREFIX.format(name="new_Other", type="Attribute"))
    assert error_of(dv.post("EntityDefinitions", _table_body("new_Thing", "new_Name"), **SOLUTION))[2] == (
        INVALID_PREFIX.format(name="new_Thing", type="Entity")
    )
    wrong_key = {"SchemaName": "new_key", "KeyAttributes": ["c2d_closeid"]}
    assert (
        error_of(dv.post("EntityDefinitions(LogicalName='lead')/Keys", wrong_key, **SOLUTION))[1]
        == "0x80044366"
    )
    wrong_rel = _lookup_body("new_pipeline_lead", "c2d_pipeline", "lead", "c2d_PipelineId")
    assert error_of(dv.post("RelationshipDefinitions", wrong_rel, **SOLUTION))[2] == INVALID_PREFIX.format(
        name="new_pipeline_lead", type="Relationship"
    )
    # Options added in the solution take its publisher's option value prefix (72700 -> 727000000, ...).
    picklist = dv.post(
        "EntityDefinitions(LogicalName='lead')/Attributes", _picklist("c2d_Kind", [727000000]), **SOLUTION
    )
    assert picklist.status_code == 204
    added = dv.post(
        "InsertOptionValue",
        {
            "EntityLogicalName": "lead",
            "AttributeLogicalName": "c2d_kind",
            "Label": label("B"),
            "SolutionUniqueName": "close2d365",
        },
    )
    assert added.json()["NewOptionValue"] == 727000001


def test_unknown_solution_is_refused_and_nothing_is_created(dv: Dv) -> None:
    unknown = {"MSCRM.SolutionUniqueName": "nosuch"}
    refused = (404, "0x80040217", "The given solution unique name (nosuch) is not valid")
    assert (
        error_of(
            dv.post("EntityDefinitions(LogicalName='account')/Attributes", string_column("new_X"), **unknown)
        )
        == refused
    )
    assert error_of(dv.post("EntityDefinitions", _table_body("new_Thing", "new_Name"), **unknown)) == refused
    key = {"SchemaName": "new_key", "KeyAttributes": ["name"]}
    assert error_of(dv.post("EntityDefinitions(LogicalName='account')/Keys", key, **unknown)) == refused
    rel = _lookup_body("new_account_lead", "account", "lead", "new_AccountId")
    assert error_of(dv.post("RelationshipDefinitions", rel, **unknown)) == refused
    option = {
        "EntityLogicalName": "lead",
        "AttributeLogicalName": "leadsourcecode",
        "Label": label("Webinar"),
        "SolutionUniqueName": "nosuch",
    }
    assert error_of(dv.post("InsertOptionValue", option)) == refused
    assert (
        error_of(
            dv.put(
                "EntityDefinitions(LogicalName='account')/Attributes(LogicalName='name')",
                string_column("name"),
                **unknown,
            )
        )
        == refused
    )
    attrs = {
        a["LogicalName"]
        for a in dv.get("EntityDefinitions(LogicalName='account')/Attributes?$select=LogicalName").json()[
            "value"
        ]
    }
    assert "new_x" not in attrs
    assert error_of(dv.get("EntityDefinitions(LogicalName='new_thing')"))[0] == 404
    assert dv.get("solutioncomponents?$select=objectid").json()["value"] == []


def test_publisher_and_solution_rules(dv: Dv) -> None:
    publisher, solution = _publisher_and_solution(dv)
    # A publisher that still owns a solution cannot be deleted; the system ones never.
    assert error_of(dv.delete(f"publishers({publisher})")) == (
        400,
        "0x80040227",
        "The object you tried to delete is associated with another object and cannot be deleted.",
    )
    assert error_of(dv.delete(f"publishers({DEFAULT_PUBLISHER_ID})"))[1:] == (
        "0x8004F006",
        "Attempting to delete a restricted publisher.",
    )
    assert error_of(dv.delete(f"solutions({DEFAULT_SOLUTION_ID})"))[1] == "0x8004F005"
    # solutioncomponents is read-only: components come and go with the metadata.
    assert error_of(dv.post("solutioncomponents", {"componenttype": 1})) == (
        400,
        "0x80040800",
        "The 'Create' method does not support entities of type 'solutioncomponent'.",
    )
    # Unique names and versions as the service validates them.
    bind = f"/publishers({publisher})"
    duplicate = {
        "uniquename": "CLOSE2D365",
        "friendlyname": "x",
        "version": "1.0",
        "publisherid@odata.bind": bind,
    }
    assert error_of(dv.post("solutions", duplicate))[:2] == (412, "0x80040237")
    bad_name = {**duplicate, "uniquename": "close 2d365"}
    assert error_of(dv.post("solutions", bad_name))[1] == "0x8004F002"
    bad_version = {**duplicate, "uniquename": "other", "version": "one"}
    assert error_of(dv.post("solutions", bad_version))[1:] == (
        "0x8004F01E",
        "An invalid solution version was specified.",
    )
    no_publisher = {"uniquename": "other", "friendlyname": "x", "version": "1.0"}
    assert error_of(dv.post("solutions", no_publisher))[:2] == (400, "0x80040200")
    # A publisher created without an option value prefix gets one in the documented range.
    other = dv.create(
        "publishers", {"uniquename": "other", "friendlyname": "Other", "customizationprefix": "oth"}
    )
    assert 10000 <= dv.get(f"publishers({other})").json()["customizationoptionvalueprefix"] <= 99999
    assert (
        error_of(
            dv.post("publishers", {"uniquename": "x", "friendlyname": "x", "customizationprefix": "1x"})
        )[0]
        == 400
    )
    assert (
        error_of(
            dv.post("publishers", {"uniquename": "y", "friendlyname": "y", "customizationprefix": "mscrmy"})
        )[0]
        == 400
    )
    assert dv.delete(f"publishers({other})").status_code == 204
    # Deleting an unmanaged solution removes the container only: the components stay, in Default too.
    column = dv.post(
        "EntityDefinitions(LogicalName='account')/Attributes", string_column("c2d_Kept"), **SOLUTION
    )
    column_id = _id(column.headers["OData-EntityId"])
    assert dv.delete(f"solutions({solution})").status_code == 204
    assert (
        dv.get("EntityDefinitions(LogicalName='account')/Attributes(LogicalName='c2d_kept')").status_code
        == 200
    )
    assert _components(dv, solution) == set()
    assert (2, column_id) in _components(dv, DEFAULT_SOLUTION_ID)
    assert dv.delete(f"publishers({publisher})").status_code == 204
    # With the solution gone, naming it is refused again.
    again = dv.post(
        "EntityDefinitions(LogicalName='account')/Attributes", string_column("c2d_More"), **SOLUTION
    )
    assert error_of(again)[:2] == (404, "0x80040217")


def test_deleting_a_component_removes_its_rows(dv: Dv) -> None:
    _, solution = _publisher_and_solution(dv)
    assert (
        dv.post(
            "EntityDefinitions(LogicalName='account')/Attributes", string_column("c2d_CloseId"), **SOLUTION
        ).status_code
        == 204
    )
    key = {"SchemaName": "c2d_account_closeid", "KeyAttributes": ["c2d_closeid"]}
    assert dv.post("EntityDefinitions(LogicalName='account')/Keys", key, **SOLUTION).status_code == 204
    assert (
        dv.post("EntityDefinitions", _table_body("c2d_Pipeline", "c2d_Name"), **SOLUTION).status_code == 204
    )
    rel = _lookup_body("c2d_pipeline_contact", "c2d_pipeline", "contact", "c2d_PipelineId")
    assert dv.post("RelationshipDefinitions", rel, **SOLUTION).status_code == 204
    assert {t for t, _ in _components(dv, solution)} == {1, 2, 10, 14}
    # Keys and relationships are deleted as documented; a relationship takes its lookup column with it.
    assert (
        dv.delete(
            "EntityDefinitions(LogicalName='account')/Keys(LogicalName='c2d_account_closeid')"
        ).status_code
        == 204
    )
    assert dv.get("EntityDefinitions(LogicalName='account')/Keys").json()["value"] == []
    assert dv.delete("RelationshipDefinitions(SchemaName='c2d_pipeline_contact')").status_code == 204
    assert (
        dv.get(
            "EntityDefinitions(LogicalName='contact')/Attributes(LogicalName='c2d_pipelineid')"
        ).status_code
        == 404
    )
    assert {t for t, _ in _components(dv, solution)} == {1, 2}
    assert (
        dv.delete(
            "EntityDefinitions(LogicalName='account')/Attributes(LogicalName='c2d_closeid')"
        ).status_code
        == 204
    )
    assert dv.delete("EntityDefinitions(LogicalName='c2d_pipeline')").status_code == 204
    assert _components(dv, solution) == set() and _components(dv, DEFAULT_SOLUTION_ID) == set()
    assert error_of(dv.delete("RelationshipDefinitions(SchemaName='contact_customer_accounts')"))[0] == 403
    # What is already gone answers 404 (a rollback re-run treats that as removed).
    assert (
        dv.delete(
            "EntityDefinitions(LogicalName='account')/Keys(LogicalName='c2d_account_closeid')"
        ).status_code
        == 404
    )
    assert dv.delete("RelationshipDefinitions(SchemaName='c2d_pipeline_contact')").status_code == 404
    assert dv.delete("EntityDefinitions(LogicalName='c2d_pipeline')").status_code == 404


def test_delete_option_value(dv: Dv) -> None:
    _publisher_and_solution(dv)
    column = _picklist("c2d_Kind", [727000000, 727000001])
    assert dv.post("EntityDefinitions(LogicalName='lead')/Attributes", column, **SOLUTION).status_code == 204
    body = {"EntityLogicalName": "lead", "AttributeLogicalName": "c2d_kind", "Value": 727000001}
    assert dv.post("DeleteOptionValue", {**body, "SolutionUniqueName": "close2d365"}).status_code == 204
    assert error_of(dv.post("leads", {"c2d_kind": 727000001}))[0] == 400
    assert dv.post("leads", {"c2d_kind": 727000000}).status_code == 204
    assert error_of(dv.post("DeleteOptionValue", body))[:2] == (404, "0x80040217")
    assert error_of(dv.post("DeleteOptionValue", {**body, "SolutionUniqueName": "nosuch"}))[0] == 404


def test_publishers_solutions_and_components_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "dv_state.json"
    dv = Dv(core_config(persist_path=str(path)))
    _, solution = _publisher_and_solution(dv)
    assert (
        dv.post(
            "EntityDefinitions(LogicalName='account')/Attributes", string_column("c2d_CloseId"), **SOLUTION
        ).status_code
        == 204
    )
    assert (
        dv.post("EntityDefinitions", _table_body("c2d_Pipeline", "c2d_Name"), **SOLUTION).status_code == 204
    )
    # Deletes replay too: a key created and deleted, an option added and deleted.
    key = {"SchemaName": "c2d_account_closeid", "KeyAttributes": ["c2d_closeid"]}
    assert dv.post("EntityDefinitions(LogicalName='account')/Keys", key, **SOLUTION).status_code == 204
    assert (
        dv.delete(
            "EntityDefinitions(LogicalName='account')/Keys(LogicalName='c2d_account_closeid')"
        ).status_code
        == 204
    )
    picklist = _picklist("c2d_Kind", [727000000, 727000001])
    assert (
        dv.post("EntityDefinitions(LogicalName='lead')/Attributes", picklist, **SOLUTION).status_code == 204
    )
    option = {"EntityLogicalName": "lead", "AttributeLogicalName": "c2d_kind", "Value": 727000001}
    assert dv.post("DeleteOptionValue", option).status_code == 204
    before = _components(dv, solution)
    assert dv.app.state.persistence.save() is True

    again = Dv(core_config(persist_path=str(path)))
    assert _components(again, solution) == before and len(before) == 3
    assert again.get("EntityDefinitions(LogicalName='account')/Keys").json()["value"] == []
    assert error_of(again.post("leads", {"c2d_kind": 727000001}))[0] == 400
    # The restored solution still decides the prefix; a delete still removes the component's rows.
    extra = again.post(
        "EntityDefinitions(LogicalName='lead')/Attributes", string_column("c2d_Extra"), **SOLUTION
    )
    assert extra.status_code == 204
    assert (
        error_of(
            again.post(
                "EntityDefinitions(LogicalName='lead')/Attributes", string_column("new_Extra"), **SOLUTION
            )
        )[1]
        == "0x80044366"
    )
    assert again.delete("EntityDefinitions(LogicalName='c2d_pipeline')").status_code == 204
    assert {t for t, _ in _components(again, solution)} == {2}
    assert len(_components(again, solution)) == 3  # account.c2d_closeid, lead.c2d_kind, lead.c2d_extra
