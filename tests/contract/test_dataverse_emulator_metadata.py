"""DV-CORE contract: EntityDefinitions reads and schema writes (reference §6)."""

from __future__ import annotations

import time

import pytest
from test_dataverse_emulator_support import Dv, core_config, error_of, label, string_column

SEEDED = [
    "account",
    "contact",
    "lead",
    "opportunity",
    "systemuser",
    "team",
    "phonecall",
    "email",
    "task",
    "appointment",
    "annotation",
    "activityparty",
    "activitypointer",
    "organization",
]


@pytest.fixture
def dv() -> Dv:
    dv = Dv()
    dv.use_solution()  # the c2d_ names below belong to that publisher (test_dataverse_emulator_solutions.py)
    return dv


def test_entity_definitions_of_the_sales_tables(dv: Dv) -> None:
    body = dv.get(
        "EntityDefinitions?$select=LogicalName,EntitySetName,PrimaryIdAttribute,PrimaryNameAttribute,ObjectTypeCode,IsActivity"
    ).json()
    by_name = {e["LogicalName"]: e for e in body["value"]}
    for name in SEEDED:
        assert name in by_name
    assert by_name["opportunity"]["EntitySetName"] == "opportunities"
    assert by_name["activityparty"]["EntitySetName"] == "activityparties"
    assert (by_name["account"]["ObjectTypeCode"], by_name["contact"]["PrimaryNameAttribute"]) == (
        1,
        "fullname",
    )
    assert (
        by_name["phonecall"]["PrimaryIdAttribute"] == "activityid"
        and by_name["phonecall"]["IsActivity"] is True
    )
    assert by_name["account"]["IsActivity"] is False
    one = dv.get(
        "EntityDefinitions?$select=LogicalName,EntitySetName,PrimaryIdAttribute&$filter=LogicalName eq 'lead'"
    ).json()["value"]
    assert [(e["LogicalName"], e["EntitySetName"], e["PrimaryIdAttribute"]) for e in one] == [
        ("lead", "leads", "leadid")
    ]
    assert dv.get("EntityDefinitions?$filter=IsCustomEntity eq true").json()["value"] == []
    single = dv.get("EntityDefinitions(LogicalName='task')").json()
    assert single["ObjectTypeCode"] == 4212 and single["HasNotes"] is True
    assert (
        dv.get(f"EntityDefinitions({single['MetadataId']})?$select=LogicalName").json()["LogicalName"]
        == "task"
    )
    assert error_of(dv.get("EntityDefinitions(LogicalName='nosuch')"))[0] == 404


def test_attribute_metadata(dv: Dv) -> None:
    attrs = dv.get(
        "EntityDefinitions(LogicalName='lead')/Attributes?$select=LogicalName,AttributeType,RequiredLevel,IsValidForCreate"
    ).json()["value"]
    by_name = {a["LogicalName"]: a for a in attrs}
    assert by_name["lastname"]["RequiredLevel"]["Value"] == "ApplicationRequired"
    assert by_name["statecode"]["IsValidForCreate"] is False
    assert by_name["parentaccountid"]["AttributeType"] == "Lookup"
    strings = dv.get(
        "EntityDefinitions(LogicalName='lead')/Attributes/Microsoft.Dynamics.CRM.StringAttributeMetadata?$select=LogicalName,MaxLength"
    ).json()
    lengths = {a["LogicalName"]: a["MaxLength"] for a in strings["value"]}
    assert (lengths["subject"], lengths["mobilephone"], lengths["companyname"]) == (300, 20, 100)
    assert all(
        a["@odata.type"] == "#Microsoft.Dynamics.CRM.StringAttributeMetadata" for a in strings["value"]
    )
    one = dv.get("EntityDefinitions(LogicalName='account')/Attributes(LogicalName='name')").json()
    assert (one["AttributeType"], one["AttributeTypeName"], one["MaxLength"]) == (
        "String",
        {"Value": "StringType"},
        160,
    )
    assert (
        error_of(dv.get("EntityDefinitions(LogicalName='account')/Attributes(LogicalName='nosuch')"))[0]
        == 404
    )
    money = dv.get(
        "EntityDefinitions(LogicalName='opportunity')/Attributes/Microsoft.Dynamics.CRM.MoneyAttributeMetadata?$select=LogicalName,Precision,PrecisionSource,MinValue,MaxValue"
    ).json()
    est = next(a for a in money["value"] if a["LogicalName"] == "estimatedvalue")
    assert (est["Precision"], est["PrecisionSource"], est["MaxValue"]) == (2, 2, 1e12)
    dt = dv.get(
        "EntityDefinitions(LogicalName='opportunity')/Attributes(LogicalName='estimatedclosedate')"
    ).json()
    assert (dt["Format"], dt["DateTimeBehavior"]) == ("DateOnly", {"Value": "DateOnly"})


def test_picklist_state_status_options(dv: Dv) -> None:
    url = "EntityDefinitions(LogicalName='opportunity')/Attributes/Microsoft.Dynamics.CRM.PicklistAttributeMetadata?$select=LogicalName&$expand=OptionSet($select=Options),GlobalOptionSet"
    items = {a["LogicalName"]: a for a in dv.get(url).json()["value"]}
    stage = items["salesstage"]
    assert [
        (o["Value"], o["Label"]["LocalizedLabels"][0]["Label"]) for o in stage["OptionSet"]["Options"]
    ] == [
        (0, "Qualify"),
        (1, "Develop"),
        (2, "Propose"),
        (3, "Close"),
    ]
    assert stage["GlobalOptionSet"] is None
    status = dv.get(
        "EntityDefinitions(LogicalName='lead')/Attributes(LogicalName='statuscode')/Microsoft.Dynamics.CRM.StatusAttributeMetadata?$select=LogicalName&$expand=OptionSet"
    ).json()
    assert [(o["Value"], o["State"]) for o in status["OptionSet"]["Options"]] == [
        (1, 0),
        (2, 0),
        (3, 1),
        (4, 2),
        (5, 2),
        (6, 2),
        (7, 2),
    ]
    state = dv.get(
        "EntityDefinitions(LogicalName='lead')/Attributes(LogicalName='statecode')/Microsoft.Dynamics.CRM.StateAttributeMetadata?$expand=OptionSet"
    ).json()
    assert [(o["Value"], o["DefaultStatus"]) for o in state["OptionSet"]["Options"]] == [
        (0, 1),
        (1, 3),
        (2, 4),
    ]
    assert (
        "OptionSet"
        not in dv.get("EntityDefinitions(LogicalName='lead')/Attributes(LogicalName='statecode')").json()
    )


def test_relationships_and_navigation_names(dv: Dv) -> None:
    rels = dv.get(
        "EntityDefinitions(LogicalName='task')/ManyToOneRelationships?$select=ReferencingAttribute,ReferencedEntity,ReferencingEntityNavigationPropertyName"
    ).json()["value"]
    navs = {
        (r["ReferencingAttribute"], r["ReferencedEntity"]): r["ReferencingEntityNavigationPropertyName"]
        for r in rels
    }
    assert navs[("regardingobjectid", "lead")] == "regardingobjectid_lead_task"
    assert navs[("regardingobjectid", "account")] == "regardingobjectid_account_task"
    assert navs[("ownerid", "systemuser")] == "ownerid"
    contact = dv.get(
        "EntityDefinitions(LogicalName='contact')?$expand=ManyToOneRelationships($select=ReferencingEntityNavigationPropertyName)"
    ).json()
    names = {r["ReferencingEntityNavigationPropertyName"] for r in contact["ManyToOneRelationships"]}
    assert {"parentcustomerid_account", "parentcustomerid_contact"} <= names
    party = {
        r["ReferencingEntityNavigationPropertyName"]
        for r in dv.get("EntityDefinitions(LogicalName='activityparty')/ManyToOneRelationships").json()[
            "value"
        ]
    }
    assert {"partyid_systemuser", "partyid_contact", "partyid_account", "partyid_lead"} <= party
    notes = {
        r["ReferencingEntityNavigationPropertyName"]
        for r in dv.get("EntityDefinitions(LogicalName='annotation')/ManyToOneRelationships").json()["value"]
    }
    assert {
        "objectid_account",
        "objectid_lead",
        "objectid_opportunity",
        "objectid_contact",
        "objectid_phonecall",
    } <= notes
    expanded = dv.get(
        "EntityDefinitions?$select=LogicalName&$filter=LogicalName eq 'account'&$expand=Attributes($select=LogicalName),Keys"
    ).json()["value"][0]
    assert "name" in {a["LogicalName"] for a in expanded["Attributes"]} and expanded["Keys"] == []


def _col(odata: str, schema: str, **props: object) -> dict:
    return {
        "@odata.type": f"Microsoft.Dynamics.CRM.{odata}",
        "SchemaName": schema,
        "DisplayName": label(schema),
        **props,
    }


def test_create_columns_of_every_type(dv: Dv) -> None:
    options = {
        "@odata.type": "Microsoft.Dynamics.CRM.OptionSetMetadata",
        "IsGlobal": False,
        "OptionSetType": "Picklist",
        "Options": [
            {"Value": 727000000, "Label": label("Sales")},
            {"Value": 727000001, "Label": label("Renewals")},
        ],
    }
    columns = [
        string_column("c2d_CloseId", 40),
        _col("MemoAttributeMetadata", "c2d_Notes", MaxLength=500),
        _col("IntegerAttributeMetadata", "c2d_Seconds", MinValue=0, MaxValue=100),
        _col("DecimalAttributeMetadata", "c2d_Score", MinValue=0.0, MaxValue=10.0, Precision=1),
        _col("MoneyAttributeMetadata", "c2d_Balance", PrecisionSource=2),
        _col(
            "BooleanAttributeMetadata",
            "c2d_IsVip",
            DefaultValue=False,
            OptionSet={
                "TrueOption": {"Value": 1, "Label": label("Yes")},
                "FalseOption": {"Value": 0, "Label": label("No")},
                "OptionSetType": "Boolean",
            },
        ),
        _col(
            "DateTimeAttributeMetadata",
            "c2d_LastContacted",
            Format="DateOnly",
            DateTimeBehavior={"Value": "DateOnly"},
        ),
        _col("PicklistAttributeMetadata", "c2d_Pipeline", OptionSet=options),
        _col("MultiSelectPicklistAttributeMetadata", "c2d_Tags", OptionSet=options),
    ]
    # Before the column exists, writing it is the unknown-property error.
    assert error_of(dv.post("opportunities", {"name": "x", "c2d_closeid": "a"}))[:2] == (400, "0x80060888")
    for col in columns:
        resp = dv.add_column("opportunity", col)
        assert resp.status_code == 204, resp.text
        assert "/Attributes(" in resp.headers["OData-EntityId"]
    rid = dv.create(
        "opportunities",
        {
            "name": "x",
            "c2d_closeid": "opp_1",
            "c2d_notes": "n",
            "c2d_seconds": 5,
            "c2d_score": 2.25,
            "c2d_balance": 3.5,
            "c2d_isvip": True,
            "c2d_lastcontacted": "2024-01-02",
            "c2d_pipeline": 727000001,
            "c2d_tags": "727000000,727000001",
        },
    )
    row = dv.row("opportunity", rid)
    assert (row["c2d_score"], row["c2d_pipeline"], row["c2d_tags"], row["c2d_lastcontacted"]) == (
        2.2,
        727000001,
        "727000000,727000001",
        "2024-01-02",
    )
    assert error_of(dv.post("opportunities", {"c2d_closeid": "x" * 41}))[1] == "0x80044331"
    assert error_of(dv.post("opportunities", {"c2d_seconds": 101}))[1] == "0x80044330"
    assert error_of(dv.post("opportunities", {"c2d_score": 10.5}))[1] == "0x80044330"
    assert error_of(dv.post("opportunities", {"c2d_pipeline": 1}))[2].endswith(
        "Accepted Values: 727000000,727000001"
    )
    assert error_of(dv.post("opportunities", {"c2d_tags": "727000000,5"}))[1] == "0x80061005"
    meta = dv.get("EntityDefinitions(LogicalName='opportunity')/Attributes(LogicalName='c2d_tags')").json()
    assert (meta["AttributeType"], meta["AttributeTypeName"]["Value"], meta["IsCustomAttribute"]) == (
        "Virtual",
        "MultiSelectPicklistType",
        True,
    )
    # Duplicate, wrong prefix, bad MaxLength, SystemRequired, lookups through Attributes.
    assert error_of(dv.add_column("opportunity", string_column("c2d_CloseId")))[0] == 400
    status, code, message = error_of(dv.add_column("opportunity", string_column("new_CloseId")))
    # new_ is the Default Solution publisher's prefix, not the prefix of the solution named (InvalidNamePrefix).
    assert (status, code) == (400, "0x80044366") and message.startswith(
        "The schema name new_CloseId for type Attribute is invalid or missing."
    )
    assert error_of(dv.add_column("opportunity", string_column("c2d_Huge", 5000)))[0] == 400
    required = string_column("c2d_Req")
    required["RequiredLevel"] = {"Value": "SystemRequired"}
    assert error_of(dv.add_column("opportunity", required))[0] == 400
    assert error_of(dv.add_column("opportunity", _col("LookupAttributeMetadata", "c2d_Lk")))[0] == 400


def test_update_column_insert_option_and_publish(dv: Dv) -> None:
    assert dv.add_column("lead", string_column("c2d_Status", 50)).status_code == 204
    bigger = string_column("c2d_Status", 200)
    assert (
        dv.put(
            "EntityDefinitions(LogicalName='lead')/Attributes(LogicalName='c2d_status')",
            bigger,
            **{"MSCRM.MergeLabels": "true"},
        ).status_code
        == 204
    )
    assert dv.post("leads", {"c2d_status": "x" * 150}).status_code == 204
    opts = {"Options": [{"Value": 727000000, "Label": label("A")}]}
    assert (
        dv.add_column("lead", _col("PicklistAttributeMetadata", "c2d_Kind", OptionSet=opts)).status_code
        == 204
    )
    resp = dv.post(
        "InsertOptionValue",
        {"EntityLogicalName": "lead", "AttributeLogicalName": "c2d_kind", "Label": label("B")},
    )
    assert resp.status_code == 200 and resp.json()["NewOptionValue"] == 727000001
    assert dv.post("leads", {"c2d_kind": 727000001}).status_code == 204
    dup = {
        "EntityLogicalName": "lead",
        "AttributeLogicalName": "c2d_kind",
        "Value": 727000001,
        "Label": label("B"),
    }
    assert error_of(dv.post("InsertOptionValue", dup))[0] == 400
    assert (
        dv.post(
            "PublishXml",
            {"ParameterXml": "<importexportxml><entities><entity>lead</entity></entities></importexportxml>"},
        ).status_code
        == 204
    )
    assert dv.post("PublishAllXml").status_code == 204
    assert error_of(dv.post("PublishXml", {}))[0] == 400


def test_alternate_key_activation_and_upsert_by_key() -> None:
    dv = Dv(core_config(key_activation_seconds=0.2))
    dv.use_solution()
    assert dv.add_column("account", string_column("c2d_CloseId")).status_code == 204
    dv.create("accounts", {"name": "a", "c2d_closeid": "acct_1"})
    resp = dv.post(
        "EntityDefinitions(LogicalName='account')/Keys",
        {
            "SchemaName": "c2d_account_closeid",
            "DisplayName": label("Close id"),
            "KeyAttributes": ["c2d_closeid"],
        },
    )
    assert resp.status_code == 204 and "/Keys(" in resp.headers["OData-EntityId"]
    keys = dv.get(
        "EntityDefinitions(LogicalName='account')/Keys?$select=SchemaName,KeyAttributes,EntityKeyIndexStatus"
    ).json()["value"]
    assert [(k["SchemaName"], k["KeyAttributes"], k["EntityKeyIndexStatus"]) for k in keys] == [
        ("c2d_account_closeid", ["c2d_closeid"], "Pending")
    ]
    # Until the index is Active, the key cannot address records.
    assert error_of(dv.patch("accounts(c2d_closeid='acct_2')", {"name": "x"}))[2].startswith(
        "The key in the request URI is not valid"
    )
    deadline = time.monotonic() + 5
    while (
        dv.get("EntityDefinitions(LogicalName='account')/Keys").json()["value"][0]["EntityKeyIndexStatus"]
        != "Active"
    ):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert dv.patch("accounts(c2d_closeid='acct_2')", {"name": "created"}).status_code == 204
    assert dv.patch("accounts(c2d_closeid='ACCT_1')", {"name": "updated"}).status_code == 204
    names = sorted((r["c2d_closeid"], r["name"]) for r in dv.env.store.table("account").values())
    assert names == [("acct_1", "updated"), ("acct_2", "created")]
    assert dv.get("accounts(c2d_closeid='acct_2')?$select=name").json()["name"] == "created"
    assert error_of(dv.get("accounts(c2d_closeid='nope')")) == (
        404,
        "0x80048d02",
        "A record with the specified key values does not exist in account entity",
    )
    assert error_of(dv.patch("accounts(c2d_closeid='nope')", {"name": "x"}, **{"If-Match": "*"}))[:2] == (
        404,
        "0x80048d02",
    )
    status, code, message = error_of(dv.post("accounts", {"name": "dup", "c2d_closeid": "acct_2"}))
    assert (status, code) == (412, "0x80060892")
    assert message.startswith("A record that has the attribute values acct_2 already exists.")
    # Binds by alternate key.
    cid = dv.create(
        "contacts",
        {"lastname": "c", "parentcustomerid_account@odata.bind": "/accounts(c2d_closeid='acct_1')"},
    )
    assert dv.row("contact", cid)["parentcustomerid"][0] == "account"
    assert error_of(
        dv.post("contacts", {"parentcustomerid_account@odata.bind": "/accounts(c2d_closeid='zzz')"})
    )[:2] == (404, "0x80048d02")
    assert error_of(dv.get("accounts(name='x')"))[2].startswith(
        "The key in the request URI is not valid for resource 'Microsoft.Dynamics.CRM.account'."
    )


def test_alternate_key_fails_on_duplicates(dv: Dv) -> None:
    assert dv.add_column("contact", string_column("c2d_CloseId")).status_code == 204
    dv.create("contacts", {"c2d_closeid": "same"})
    dv.create("contacts", {"c2d_closeid": "SAME"})
    assert (
        dv.post(
            "EntityDefinitions(LogicalName='contact')/Keys",
            {"SchemaName": "c2d_contact_closeid", "KeyAttributes": ["c2d_closeid"]},
        ).status_code
        == 204
    )
    status = dv.get("EntityDefinitions(LogicalName='contact')/Keys").json()["value"][0][
        "EntityKeyIndexStatus"
    ]
    assert status == "Failed"
    assert (
        error_of(
            dv.post(
                "EntityDefinitions(LogicalName='contact')/Keys",
                {"SchemaName": "c2d_other", "KeyAttributes": ["nosuch"]},
            )
        )[0]
        == 400
    )
    assert (
        error_of(
            dv.post(
                "EntityDefinitions(LogicalName='contact')/Keys",
                {"SchemaName": "bad", "KeyAttributes": ["c2d_closeid"]},
            )
        )[0]
        == 400
    )


def test_custom_lookup_through_relationship_definitions(dv: Dv) -> None:
    body = {
        "@odata.type": "Microsoft.Dynamics.CRM.OneToManyRelationshipMetadata",
        "SchemaName": "c2d_systemuser_contact_closeowner",
        "ReferencedEntity": "systemuser",
        "ReferencedAttribute": "systemuserid",
        "ReferencingEntity": "contact",
        "Lookup": {
            "@odata.type": "Microsoft.Dynamics.CRM.LookupAttributeMetadata",
            "AttributeType": "Lookup",
            "AttributeTypeName": {"Value": "LookupType"},
            "SchemaName": "c2d_CloseOwner",
            "DisplayName": label("Close owner"),
        },
    }
    resp = dv.post("RelationshipDefinitions", body)
    assert resp.status_code == 204 and "RelationshipDefinitions(" in resp.headers["OData-EntityId"]
    rels = dv.get("EntityDefinitions(LogicalName='contact')/ManyToOneRelationships").json()["value"]
    rel = next(r for r in rels if r["SchemaName"] == "c2d_systemuser_contact_closeowner")
    assert (
        rel["ReferencingEntityNavigationPropertyName"] == "c2d_CloseOwner"
        and rel["ReferencingAttribute"] == "c2d_closeowner"
    )
    user = dv.env.config.app_users[0].systemuserid
    cid = dv.create("contacts", {"lastname": "x", "c2d_CloseOwner@odata.bind": f"/systemusers({user})"})
    assert dv.get(f"contacts({cid})?$select=_c2d_closeowner_value").json()["_c2d_closeowner_value"] == user
    assert (
        error_of(dv.post("contacts", {"c2d_closeowner@odata.bind": f"/systemusers({user})"}))[1]
        == "0x80048d19"
    )
    assert error_of(dv.post("RelationshipDefinitions", body))[0] == 400
    customer = {
        "OneToManyRelationships": [
            {
                "SchemaName": "c2d_account_task_customer",
                "ReferencedEntity": "account",
                "ReferencingEntity": "task",
            },
            {
                "SchemaName": "c2d_contact_task_customer",
                "ReferencedEntity": "contact",
                "ReferencingEntity": "task",
            },
        ],
        "Lookup": {
            "@odata.type": "Microsoft.Dynamics.CRM.ComplexLookupAttributeMetadata",
            "SchemaName": "c2d_CustomerId",
            "DisplayName": label("Customer"),
        },
    }
    resp = dv.post("CreateCustomerRelationships", customer)
    assert resp.status_code == 200 and len(resp.json()["RelationshipIds"]) == 2
    acct = dv.create("accounts", {"name": "a"})
    tid = dv.create("tasks", {"subject": "t", "c2d_CustomerId_account@odata.bind": f"/accounts({acct})"})
    assert dv.row("task", tid)["c2d_customerid"] == ["account", acct]


def test_custom_tables_and_activity_tables(dv: Dv) -> None:
    primary = string_column("c2d_Name", 100)
    primary["IsPrimaryName"] = True
    table = {
        "@odata.type": "Microsoft.Dynamics.CRM.EntityMetadata",
        "SchemaName": "c2d_Pipeline",
        "DisplayName": label("Pipeline"),
        "DisplayCollectionName": label("Pipelines"),
        "OwnershipType": "UserOwned",
        "IsActivity": False,
        "HasActivities": True,
        "HasNotes": True,
        "Attributes": [primary],
    }
    resp = dv.post("EntityDefinitions", table)
    assert resp.status_code == 204 and "EntityDefinitions(" in resp.headers["OData-EntityId"]
    meta = dv.get(
        "EntityDefinitions(LogicalName='c2d_pipeline')?$select=EntitySetName,PrimaryIdAttribute,PrimaryNameAttribute,IsCustomEntity"
    ).json()
    assert (
        meta["EntitySetName"],
        meta["PrimaryIdAttribute"],
        meta["PrimaryNameAttribute"],
        meta["IsCustomEntity"],
    ) == ("c2d_pipelines", "c2d_pipelineid", "c2d_name", True)
    pid = dv.create("c2d_pipelines", {"c2d_name": "Sales"})
    # HasActivities makes it a regarding target of every activity; HasNotes a note target.
    assert (
        dv.post(
            "tasks",
            {"subject": "t", "regardingobjectid_c2d_pipeline_task@odata.bind": f"/c2d_pipelines({pid})"},
        ).status_code
        == 204
    )
    assert (
        dv.post(
            "annotations", {"subject": "n", "objectid_c2d_pipeline@odata.bind": f"/c2d_pipelines({pid})"}
        ).status_code
        == 204
    )
    subject = string_column("Subject", 200)
    subject["IsPrimaryName"] = True
    activity = {
        **table,
        "SchemaName": "c2d_Sms",
        "DisplayName": label("SMS"),
        "IsActivity": True,
        "HasActivities": False,
        "Attributes": [subject],
    }
    assert dv.post("EntityDefinitions", activity).status_code == 204
    meta = dv.get("EntityDefinitions(LogicalName='c2d_sms')").json()
    assert (
        meta["EntitySetName"],
        meta["PrimaryIdAttribute"],
        meta["PrimaryNameAttribute"],
        meta["IsActivity"],
    ) == ("c2d_smses", "activityid", "subject", True)
    assert dv.add_column("c2d_sms", string_column("c2d_Direction", 20)).status_code == 204
    lead = dv.create("leads", {"lastname": "L"})
    sid = dv.create(
        "c2d_smses",
        {
            "subject": "hi",
            "c2d_direction": "inbound",
            "regardingobjectid_lead_c2d_sms@odata.bind": f"/leads({lead})",
            "c2d_sms_activity_parties": [{"addressused": "+1555", "participationtypemask": 1}],
        },
    )
    assert dv.patch(f"c2d_smses({sid})", {"statecode": 1, "statuscode": 2}).status_code == 204
    pointers = dv.get("activitypointers?$select=activitytypecode").json()["value"]
    assert {"task", "c2d_sms"} <= {p["activitytypecode"] for p in pointers}
    filters = dv.get(
        "sdkmessagefilters?$filter=sdkmessageid/name eq 'CreateMultiple' and primaryobjecttypecode eq 'c2d_pipeline'"
    ).json()["value"]
    assert len(filters) == 1
    assert (
        dv.get(
            "sdkmessagefilters?$filter=sdkmessageid/name eq 'CreateMultiple' and primaryobjecttypecode eq 'c2d_sms'"
        ).json()["value"]
        == []
    )
    # Activity table rules and the prefix rule.
    wrong_subject = {**activity, "SchemaName": "c2d_Call2", "Attributes": [primary]}
    assert "Subject" in error_of(dv.post("EntityDefinitions", wrong_subject))[2]
    assert (
        error_of(
            dv.post(
                "EntityDefinitions",
                {**activity, "SchemaName": "c2d_Org", "OwnershipType": "OrganizationOwned"},
            )
        )[0]
        == 400
    )
    assert (
        error_of(dv.post("EntityDefinitions", {**activity, "SchemaName": "c2d_Act", "HasActivities": True}))[
            0
        ]
        == 400
    )
    assert error_of(dv.post("EntityDefinitions", {**table, "SchemaName": "new_Thing"}))[:2] == (
        400,
        "0x80044366",
    )
    assert error_of(dv.post("EntityDefinitions", table))[0] == 400  # already exists
    assert (
        error_of(dv.post("EntityDefinitions", {**table, "SchemaName": "c2d_NoName", "Attributes": []}))[0]
        == 400
    )
    custom = dv.get("EntityDefinitions?$select=LogicalName&$filter=IsCustomEntity eq true").json()["value"]
    assert sorted(e["LogicalName"] for e in custom) == ["c2d_pipeline", "c2d_sms"]


def test_delete_custom_columns_and_tables(dv: Dv) -> None:
    assert dv.add_column("account", string_column("c2d_Temp")).status_code == 204
    rid = dv.create("accounts", {"name": "a", "c2d_temp": "v"})
    assert (
        dv.delete("EntityDefinitions(LogicalName='account')/Attributes(LogicalName='c2d_temp')").status_code
        == 204
    )
    assert "c2d_temp" not in dv.row("account", rid)
    assert error_of(dv.post("accounts", {"c2d_temp": "v"}))[1] == "0x80060888"
    assert (
        error_of(dv.delete("EntityDefinitions(LogicalName='account')/Attributes(LogicalName='name')"))[0]
        == 403
    )
    primary = string_column("c2d_Name")
    primary["IsPrimaryName"] = True
    assert (
        dv.post(
            "EntityDefinitions",
            {
                "SchemaName": "c2d_Thing",
                "OwnershipType": "UserOwned",
                "HasNotes": True,
                "Attributes": [primary],
            },
        ).status_code
        == 204
    )
    dv.create("c2d_things", {"c2d_name": "x"})
    assert dv.delete("EntityDefinitions(LogicalName='c2d_thing')").status_code == 204
    assert error_of(dv.get("c2d_things"))[:2] == (404, "0x8006088a")
    assert error_of(dv.delete("EntityDefinitions(LogicalName='account')"))[0] == 403
    notes = {
        r["ReferencingEntityNavigationPropertyName"]
        for r in dv.get("EntityDefinitions(LogicalName='annotation')/ManyToOneRelationships").json()["value"]
    }
    assert "objectid_c2d_thing" not in notes
