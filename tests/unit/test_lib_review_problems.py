"""The dry run's problem list: rejection rows grouped by what is wrong, each with the file and setting that
fixes it; the terminal summary; the rows of rejected_<table>.csv."""

from __future__ import annotations

import polars as pl

from migration_assets.audit.review_problems import (
    REJECTED_COLUMNS,
    Problem,
    check_problems,
    classify,
    rejected_rows,
    row_problems,
    summary_lines,
)


def _rejected(
    rows: list[tuple[str, str, str | None, str, str]], cascade: list[str | None] | None = None
) -> pl.DataFrame:
    frame = pl.DataFrame(rows, schema=["_close_id", "column", "value", "reason", "check_name"], orient="row")
    return (
        frame.with_columns(pl.Series("cascade", cascade, dtype=pl.String)) if cascade is not None else frame
    )


UNKNOWN = "unknown choice 'Do Not Contact' for lead status (statecode) (known: 'New')"


def test_an_unmapped_lead_status_counts_leads_not_rows_and_names_the_file() -> None:
    frame = _rejected(
        [
            ("lead_1", "statecode", "Do Not Contact", UNKNOWN, "mapping"),
            ("lead_1", "statuscode", "Do Not Contact", UNKNOWN, "mapping"),
            ("lead_2", "statecode", "Do Not Contact", UNKNOWN, "mapping"),
            ("lead_3", "statecode", "Lost", UNKNOWN.replace("Do Not Contact", "Lost"), "mapping"),
        ]
    )
    found = row_problems("lead", frame, blocking=True)
    assert [p.line() for p in found] == [
        "lead: 2 rows: Close lead status 'Do Not Contact' is not in mappings/lead_status.yaml -> add it there "
        "(or set unmapped:)",
        "lead: 1 row: Close lead status 'Lost' is not in mappings/lead_status.yaml -> add it there (or set unmapped:)",
    ]


def test_each_reason_class_has_its_fix() -> None:
    assert classify(
        "custom_activity_c2d_x", "custom.cf_1", "v", "column ... does not exist", "column_exists"
    )[2] == ("mappings/custom_activities.yaml orphaned_values: drop|column (for this type)")
    kind, _, fix = classify(
        "email", "ownerid@odata.bind", "user_1", "Close user has no enabled Dataverse user", "mapping"
    )
    assert kind == "owner_rows" and "owners.yaml" in fix and "fallback_owner" in fix
    kind, what, fix = classify(
        "account", "name", "x" * 200, "longer than MaxLength 160 (200 characters)", "mapping"
    )
    assert kind == "max_length" and "truncation.columns: {account.name: truncate}" in fix
    kind, _, fix = classify(
        "opportunity", "c2d_closestatus", "Sales / Won", "unknown choice 'Sales / Won'", "mapping"
    )
    assert kind == "pipeline" and "pipelines.yaml" in fix
    kind, what, fix = classify("contact", "emailaddress1", "a@b", "not an email address", "email_shape")
    assert kind == "value" and what == "emailaddress1: not an email address" and "rejection_thresholds" in fix
    assert classify("contact", "firstname", None, "required value is missing", "required")[0] == "required"


def test_a_cascade_names_the_rejected_parent_from_staging_or_from_the_lookup() -> None:
    bind = "regardingobjectid_lead_phonecall@odata.bind"
    frame = _rejected(
        [
            ("call_1", bind, "/leads(1)", "refers to a lead that is neither staged", "lookup_resolves"),
            ("call_2", bind, "/leads(2)", "refers to a lead ...", "lookup_resolves"),
            ("call_3", "description", "x", "longer than MaxLength 10", "max_length"),
        ],
        cascade=["because lead lead_1 was rejected", None, None],
    )
    rows = rejected_rows("phonecall", frame)
    assert list(rows[0]) == list(REJECTED_COLUMNS)
    assert [r["cascade"] for r in rows] == [
        "because lead lead_1 was rejected",
        "because the lead it refers to was rejected (or is not staged)",
        "",
    ]
    cascade = [p for p in row_problems("phonecall", frame, True) if p.kind == "cascade"]
    assert [(p.rows, p.problem) for p in cascade] == [
        (2, "rejected because the lead it belongs to was rejected")
    ]


def test_failed_gates_say_what_fixes_them() -> None:
    [threshold] = check_problems(
        "account_target_valid",
        "staged/account",
        "2 of 43 rows rejected, above the threshold (max_rows=0, max_fraction=0.0)",
        {"rejected_rows": 2, "staged_rows": 41},
    )
    assert threshold.line() == (
        "account: 2 rows: rejection threshold: 2 of 43 rows rejected -> fix the rows above, or raise "
        "mappings/settings.yaml rejection_thresholds"
    )
    [owner] = check_problems(
        "owners_resolved",
        "staged/owner_map",
        "owners.yaml: 1 Close users owning 14 records map to a disabled Dataverse user: set "
        "`disabled_users: fallback`",
        {"unresolved_users": 1},
    )
    assert (
        owner.source == "owner"
        and owner.fix.startswith("mappings/owners.yaml: ")
        and "disabled_users" in owner.fix
    )
    [mapping] = check_problems(
        "mapping_confirmed",
        "staged/mapping",
        "open decision: mappings/a.yaml:3 x: review; open decision: mappings/b.yaml:9 y",
        {},
    )
    assert mapping.problem.startswith("2 open decisions, e.g. open decision: mappings/a.yaml:3")
    assert (
        check_problems(
            "x_target_valid", "staged/x", "columns not in the target ... (this table is halted)", {}
        )
        == []
    )


def test_the_summary_is_one_line_per_problem_with_repeated_kinds_summed_over_tables() -> None:
    problems = [
        Problem(
            "phonecall",
            "rejected because the lead it belongs to was rejected",
            "fix the lead",
            38,
            kind="cascade",
        ),
        Problem(
            "email",
            "rejected because the lead it belongs to was rejected",
            "fix the lead",
            19,
            kind="cascade",
        ),
        Problem(
            "lead",
            "Close lead status 'X' is not in mappings/lead_status.yaml",
            "add it there",
            12,
            kind="lead_status",
        ),
        Problem("account", "rejection threshold: 2 of 43 rows rejected", "raise", 2, kind="threshold"),
        Problem(
            "owner",
            "2 Close users owning records have no enabled Dataverse user",
            "mappings/owners.yaml",
            kind="owner",
        ),
        Problem(
            "annotation", "attachment above the upload size", "settings", 1, blocking=False, kind="excluded"
        ),
    ]
    assert summary_lines(problems) == [
        "owner: 2 Close users owning records have no enabled Dataverse user -> mappings/owners.yaml",
        "lead: 12 rows: Close lead status 'X' is not in mappings/lead_status.yaml -> add it there",
        "rows rejected only because a record they belong to was rejected: 57 rows in phonecall, email -> fixed "
        "with the problems above",
        "account: 2 rows: rejection threshold: 2 of 43 rows rejected -> raise",
        "within the thresholds: 1 rejected rows in annotation (not loaded; listed in the review)",
    ]


def test_a_field_map_target_the_target_lacks_is_one_mapping_line_with_its_own_fix() -> None:
    """Issue 11 #4: the mapping gate's item for an unknown target column keeps its fix (not the review's
    "decide each `review:` item"); the table's own check adds no second line; a row rejected for such a column
    (a custom field mapped to an existing column that is not there) points at the field map, not at
    custom_activities.yaml."""
    item = (
        "mappings/fields/contact.yaml line 9: key 'target': column 'jobtitlee' is neither on table contact "
        "in the target nor created by the schema plan -> correct the name, or add `custom: {type: ...}`"
    )
    decision = "open decision: mappings/custom_fields.yaml:3 fields[0]: confirmed: false -> maybe"
    found = check_problems("mapping_confirmed", "staged/mapping", f"{item}; {decision}", {})
    assert [p.line() for p in found] == [
        "mapping: mappings/fields/contact.yaml line 9: key 'target': column 'jobtitlee' is neither on table "
        "contact in the target nor created by the schema plan -> correct the name, or add `custom: {type: ...}`",
        f"mapping: {decision} -> decide each `review:` item (and `confirmed: false`) in the file named, then "
        "remove it",
    ]
    assert (
        check_problems("contact_target_valid", "staged/contact", f"{item} (this table is halted)", {}) == []
    )
    kind, what, fix = classify(
        "contact", "c2d_x@odata.bind", "v", "column ... does not exist", "column_exists"
    )
    assert kind == "mapping" and "c2d_x is neither a column of contact" in what
    assert "mappings/fields/contact.yaml" in fix and "custom_activities" not in fix
