"""Field-map targets against the target table (mapping/targets.py): an entry whose column neither the target
nor the schema plan has is a mapping error naming its file, line and fix (issue 11 #4)."""

from __future__ import annotations

from pathlib import Path

from migration_assets.mapping.fields import FieldMap, parse_field
from migration_assets.mapping.targets import column_errors, unknown_columns, unknown_targets
from migration_assets.mapping.yaml_loc import load_located
from migration_assets.target.rules import ColumnRule, TableRules, add_planned_column

FIELDS = """\
fields:
  - {target: contactid, source: id, transform: record_id, args: {kind: contact}}
  - {target: jobtitlee, source: title, transform: text}
  - {target: jobtitle, source: title, transform: text}
  - {target: "{prefix}_closeid", source: id, transform: text}
  - {target: "{prefix}_nosuchcolumn", source: name, transform: text}
  - {target: "{prefix}_closephones", source: phones, transform: join_list, args: {field: phone}, custom: {type: Memo}}
  - {target: parentcustomerid_account, source: lead_id, transform: text, lookup: account}
  - {target: parentcustomerid_acount, source: lead_id, transform: text, lookup: account}
"""
FIX = (
    "-> correct the name, or add `custom: {type: ...}` to this entry to create the column "
    "(a Close custom field: propose it in custom_fields.yaml)"
)


def field_map(tmp_path: Path, table: str = "contact") -> FieldMap:
    path = tmp_path / "contact.yaml"
    path.write_text(FIELDS, encoding="utf-8")
    data = load_located(path, "mappings/fields/contact.yaml")
    specs = [
        parse_field(item, "mappings/fields/contact.yaml", f"fields[{n}]", line, "c2d", table, {})
        for n, (item, line) in enumerate(zip(data["fields"], data["fields"].lines, strict=True))
    ]
    return FieldMap("contact", table, "mappings/fields/contact.yaml", tuple(specs))


def contact_rules() -> TableRules:
    rules = TableRules(
        "contact",
        "contacts",
        "contactid",
        columns={
            "contactid": ColumnRule("contactid", "Uniqueidentifier"),
            "jobtitle": ColumnRule("jobtitle", "String", max_length=100),
            "parentcustomerid": ColumnRule("parentcustomerid", "Customer", targets=["account", "contact"]),
        },
        navigation={"parentcustomerid_account": ["account"], "parentcustomerid_contact": ["contact"]},
    )
    add_planned_column(rules, "c2d_closeid", "String", 100)  # what plan_columns adds for `custom:` entries
    add_planned_column(rules, "c2d_closephones", "Memo", 4000)
    return rules


def test_each_entry_whose_target_neither_the_target_nor_the_plan_has_is_named_by_file_and_line(
    tmp_path: Path,
) -> None:
    found = [str(e) for e in unknown_targets(field_map(tmp_path), contact_rules())]
    assert found == [
        "mappings/fields/contact.yaml line 3: key 'target': column 'jobtitlee' is neither on table contact in "
        f"the target nor created by the schema plan (did you mean 'jobtitle'?) {FIX}",
        "mappings/fields/contact.yaml line 6: key 'target': column 'c2d_nosuchcolumn' is neither on table "
        f"contact in the target nor created by the schema plan {FIX}",
        "mappings/fields/contact.yaml line 9: key 'target': lookup 'parentcustomerid_acount' is neither on "
        "table contact in the target nor created by the schema plan (did you mean 'parentcustomerid_account'?) "
        f"{FIX}",
    ]
    assert all("\n" not in line and "; " not in line for line in found)  # one line, one gate item each


def test_staging_leaves_out_exactly_those_columns_and_a_rejection_is_traced_to_its_line(
    tmp_path: Path,
) -> None:
    fmap, rules = field_map(tmp_path), contact_rules()
    assert unknown_columns([fmap], rules) == [
        "jobtitlee",
        "c2d_nosuchcolumn",
        "parentcustomerid_acount@odata.bind",
    ]
    # Another table's field map is not this table's business.
    assert unknown_columns([field_map(tmp_path, table="lead")], rules) == []
    errors, others = column_errors([fmap], rules, ["custom.cf_gone", "parentcustomerid_acount@odata.bind"])
    assert others == ["custom.cf_gone"]  # no entry writes it (a custom activity's orphaned field)
    assert len(errors) == 1 and errors[0].startswith(
        "mappings/fields/contact.yaml line 9: key 'target': lookup"
    )
