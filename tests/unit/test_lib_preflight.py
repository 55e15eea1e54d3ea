"""lib/preflight: the target's answers turned into blockers and warnings that name their fix."""

from __future__ import annotations

from migration_assets.target import preflight as pf

ACTIVITY = {
    k: f"prv{k}Activity" for k in ("Create", "Read", "Write", "Delete", "Append", "AppendTo", "Assign")
}
CONTACT = {k: f"prv{k}Contact" for k in ("Create", "Read", "Write", "Delete", "Append", "AppendTo", "Assign")}


def everything(needed: dict[str, pf.Need], depth: str = "Global") -> dict[str, str]:
    return dict.fromkeys(needed, depth)


def test_needed_privileges_cover_each_written_table_once_per_shared_privilege() -> None:
    needed = pf.needed_privileges(
        {"contact": CONTACT, "task": ACTIVITY, "phonecall": ACTIVITY},
        assigns_owner={"task"},
        override_created_on=True,
    )
    assert {
        "prvCreateContact",
        "prvAppendToContact",
        "prvCreateActivity",
        "prvAssignActivity",
        "prvOverrideCreatedOnCreatedBy",
        "prvDeleteActivity",
    } <= set(needed)
    assert "prvAssignContact" not in needed  # contact's owner is not mapped
    assert "prvBypassCustomBusinessLogic" not in needed  # no bypass headers
    assert "Create on phonecall" in needed["prvCreateActivity"].reason
    assert "Create on task" in needed["prvCreateActivity"].reason
    assert needed["prvDeleteActivity"].blocking is False  # only rollback needs it
    assert needed["prvCreateContact"].blocking is True
    assert "prvBypassCustomBusinessLogic" in pf.needed_privileges({}, bypass_custom_logic=True)


def test_a_missing_privilege_is_a_blocker_naming_the_privilege_and_the_role_setting() -> None:
    needed = pf.needed_privileges({"contact": CONTACT})
    held = everything(needed)
    del held["prvAppendToContact"]
    held["prvWriteContact"] = "Local"
    held["prvDeleteContact"] = "Basic"
    found = pf.privilege_findings([pf.AppUserAccess("client-1", "user-1", held)], needed)
    by_name = {next(w.rstrip(",") for w in f.finding.split() if w.startswith("prv")): f for f in found}
    assert set(by_name) == {"prvAppendToContact", "prvWriteContact", "prvDeleteContact"}
    append = by_name["prvAppendToContact"]
    assert append.severity == pf.BLOCKER and "lacks prvAppendToContact" in append.finding
    assert "Security roles" in append.fix and "AppendTo column" in append.fix and "Organization" in append.fix
    assert "holds only at Local depth" in by_name["prvWriteContact"].finding
    assert by_name["prvDeleteContact"].severity == pf.WARNING


def test_every_privilege_at_global_depth_finds_nothing_and_a_missing_app_user_is_a_blocker() -> None:
    needed = pf.needed_privileges({"contact": CONTACT}, override_created_on=True)
    assert pf.privilege_findings([pf.AppUserAccess("c", "u", everything(needed))], needed) == []
    (missing,) = pf.privilege_findings([pf.AppUserAccess("c-2", None)], needed)
    assert missing.severity == pf.BLOCKER and "c-2" in missing.finding and "New app user" in missing.fix
    held = everything(needed)
    del held["prvOverrideCreatedOnCreatedBy"]
    (found,) = pf.privilege_findings([pf.AppUserAccess("c", "u", held)], needed)
    assert "Override Created on or Created by" in found.fix


def test_business_required_columns_the_mapping_does_not_fill() -> None:
    columns = [
        pf.Column("contactid", "SystemRequired", is_primary_id=True),
        pf.Column("lastname", "ApplicationRequired"),
        pf.Column("jobtitle", "ApplicationRequired"),  # made required by the admin; not mapped
        pf.Column("ownerid", "SystemRequired", attribute_type="Owner"),  # the platform defaults it
        pf.Column("donotemail", "SystemRequired", attribute_type="Boolean", has_default=True),
        pf.Column("fullname", "ApplicationRequired", valid_for_create=False),
        pf.Column("statecode", "SystemRequired", attribute_type="State"),
        pf.Column("yominame", "ApplicationRequired", attribute_of="fullname"),
        pf.Column("c2d_region", "SystemRequired"),
        pf.Column("telephone1", "Recommended"),
    ]
    found = pf.required_column_findings("contact", columns, filled={"lastname", "contactid"})
    assert [f.finding.split(" ")[0] for f in found] == ["contact.jobtitle", "contact.c2d_region"]
    assert all(f.severity == pf.BLOCKER for f in found)
    assert "mappings/fields/contact.yaml (target: jobtitle)" in found[0].fix
    assert "ApplicationRequired" in found[0].finding


def test_custom_tables_against_the_edition() -> None:
    existing = [f"new_t{i}" for i in range(14)]
    assert pf.custom_table_findings(existing, ["c2d_demo"], "sales_professional") == []
    (found,) = pf.custom_table_findings(existing, ["c2d_demo", "c2d_visit"], "sales_professional")
    assert found.severity == pf.BLOCKER
    assert (
        "16 custom tables" in found.finding
        and "limit of 15" in found.finding
        and "c2d_visit" in found.finding
    )
    assert "target.edition in mappings/settings.yaml" in found.fix and "custom_activities.yaml" in found.fix
    # A table of the plan that an earlier run already created is counted once.
    assert pf.custom_table_findings([*existing, "c2d_demo"], ["c2d_demo"], "sales_professional") == []
    assert pf.custom_table_findings(existing * 3, ["c2d_x"] * 40, "sales_enterprise") == []


def test_entitlement_upload_currency_owner_and_solution_findings() -> None:
    assert pf.entitlement_findings(1000, 500_000) == []
    (ent,) = pf.entitlement_findings(1_200_000, 500_000)
    assert ent.severity == pf.WARNING and "3 days" in ent.finding
    assert pf.upload_findings([100, 200], 5_242_880) == []
    (big,) = pf.upload_findings([4_000_000, 10, 3_932_160], 5_242_880)  # base64 5,333,336 and 5,242,880
    assert (
        big.severity == pf.WARNING
        and big.finding.startswith("1 Close attachments")
        and "maxuploadfilesize" in big.finding
    )
    assert pf.currency_findings("USD", ["USD", "EUR"], {"usd": 3, "eur": 1}) == []
    (cur,) = pf.currency_findings("USD", ["USD"], {"USD": 3, "JPY": 2})
    assert "2 Close records are in JPY" in cur.finding and "Currencies" in cur.fix
    (owner,) = pf.disabled_owner_findings(
        [
            {
                "close_user_id": "user_1",
                "email": "dana@example.com",
                "systemuserid": "s1",
                "fullname": "Dana Former",
                "records_owned": 4,
            }
        ]
    )
    assert owner.severity == pf.BLOCKER and "Dana Former" in owner.finding and "owners.yaml" in owner.fix
    (sol,) = pf.solution_findings(["the prefix c2d belongs to publisher other; ..."])
    assert sol.severity == pf.BLOCKER and "publisher other" in sol.finding
    assert pf.blockers([ent, owner, sol]) == [owner, sol]


def test_the_dry_run_review_lists_each_preflight_blocker_with_its_fix() -> None:
    from migration_assets.audit.review_problems import check_problems, summary_lines

    blocker = pf.Finding(pf.BLOCKER, "privilege", "application user c lacks prvCreateContact", "set it")
    found = check_problems("target_ready", "schema/preflight", "x", {"blockers": [blocker.row()]})
    assert [(p.source, p.problem, p.fix, p.blocking) for p in found] == [
        ("preflight: privilege", "application user c lacks prvCreateContact", "set it", True)
    ]
    assert summary_lines(found) == [
        "preflight: privilege: application user c lacks prvCreateContact -> set it"
    ]
    (fallback,) = check_problems("target_ready", "schema/preflight", "the preflight did not run", {})
    assert "preflight.md" in fallback.fix
