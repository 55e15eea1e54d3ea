"""The table registry (mapping/tables.py): every table list comes from mappings/objects.yaml, and adding a
standard Dataverse table is one entry there plus its field file."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from migration_assets.load.ledger import Entry
from migration_assets.load.rollback_plan import plan_rollback
from migration_assets.mapping.config import MappingError, load_mapping_config
from migration_assets.mapping.tables import table_registry

WRITTEN = datetime(2026, 1, 1, tzinfo=UTC)
# The lists the registry replaced, as they were written by hand before it (annotation since: only the tables
# its rows hang off, so that tasks and appointments may load beside it).
LOAD_DEPS = {
    "account": (),
    "contact": ("account",),
    "lead": ("account", "contact"),
    "opportunity": ("account", "contact"),
    "phonecall": ("lead", "contact", "opportunity"),
    "email": ("lead", "contact", "opportunity"),
    "task": ("lead", "contact", "opportunity"),
    "appointment": ("lead", "contact", "opportunity"),
    "annotation": ("account", "lead", "contact", "opportunity", "email", "phonecall"),
}
DELETE_RANK = {
    "annotation": 0,
    "phonecall": 1,
    "email": 1,
    "task": 1,
    "appointment": 1,
    "opportunity": 2,
    "lead": 3,
    "contact": 4,
    "account": 5,
}

QUOTE_ENTRY = """
  - name: quote
    close_object: opportunity (as a draft quote)
    source: opportunities
    table: quote
    entity_set: quotes
    primary_key: quoteid
    natural_key: "quote:<oppo_id>"
    depends_on: [account, opportunity]
    staged_description: "Draft quotes, one per Close opportunity."
    loaded_description: "Draft quotes for their opportunity."
    joins:
      - {source: leads, left_on: lead_id, prefix: "lead.", columns: [name]}
"""
QUOTE_FIELDS = """# Close opportunity -> quote: one draft quote per deal, for the lead's Account.
table: quote
maps:
  quote:
    fields:
      - {target: quoteid, source: id, transform: record_id, args: {kind: quote}}
      - {target: name, source: note, transform: text, max_length: 300}
      - {target: customerid_account, source: "lead.name", transform: account_id, lookup: account}
      - {target: opportunityid, source: id, transform: record_id, args: {kind: opportunity}, lookup: opportunity}
      - {target: ownerid, source: user_id, transform: owner, lookup: systemuser}
      - target: "{prefix}_closeid"
        source: id
        transform: text
        required: true
        custom: {type: String, max_length: 100, display_name: Close id}
      - {target: overriddencreatedon, source: date_created, transform: datetime_utc}
"""


def test_the_registry_gives_the_load_order_deps_and_rollback_ranks_written_before_by_hand() -> None:
    registry = table_registry()
    assert registry.names == tuple(LOAD_DEPS)
    assert {t.name: t.depends_on for t in registry.tables} == LOAD_DEPS
    assert registry.delete_ranks() == DELETE_RANK and registry.activity_rank() == 1
    assert registry.activities == ("phonecall", "email", "task", "appointment")
    assert registry.activity_parents == (
        "contact",
        "lead",
        "opportunity",
    )  # custom activities load after them
    assert registry.keyed == tuple(t for t in LOAD_DEPS if t != "annotation")
    task = registry.table("task")
    assert task.objects == ("task", "sms") and task.sources == ("tasks", "sms")
    assert registry.table("annotation").stage_after == (
        "account",
        "lead",
        "contact",
        "opportunity",
        "email",
        "phonecall",
    )


def _lookups(node: object) -> set[str]:
    """Every `lookup:` target a field file names, at any depth."""
    if isinstance(node, dict):
        own = {str(node["lookup"])} if "lookup" in node else set()
        return own.union(*(_lookups(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(_lookups(v) for v in node))
    return set()


def test_every_lookup_a_table_can_write_points_at_a_table_loaded_before_it() -> None:
    """A row whose lookup names a record not loaded yet is refused by Dataverse ("Does Not Exist") and
    quarantined: a load dependency left out loses rows whenever the two tables load in the other order.
    Any org: the lookups of the field files, and those a confirmed custom field may add (a Close field of
    type `contact` on a lead, contact or opportunity is a lookup to contact; `user`, to systemuser)."""
    import yaml

    from migration_assets.mapping.config import DEFAULT_ROOT
    from migration_assets.target.proposal import OBJECT_TABLES

    registry = table_registry()
    before: dict[str, set[str]] = {}
    for table in registry.tables:  # in load order: what each table waits for, directly or not
        before[table.name] = set(table.depends_on).union(*(before[d] for d in table.depends_on))
    unloaded = {"systemuser", "team", "businessunit", "transactioncurrency"}  # mapped, never loaded
    missing = {}
    for table in registry.tables:
        field_file = DEFAULT_ROOT / "fields" / f"{table.name}.yaml"
        targets = _lookups(yaml.safe_load(field_file.read_text())) if field_file.is_file() else set()
        if table.name in OBJECT_TABLES.values():
            targets |= {"contact", "systemuser"}
        late = targets - before[table.name] - unloaded - {table.name}  # itself: the loader's second pass
        if late:
            missing[table.name] = sorted(late)
    assert not missing, missing


def test_a_dependency_cycle_is_a_mapping_error(reviewed_mappings: Path, tmp_path: Path) -> None:
    root = shutil.copytree(reviewed_mappings, tmp_path / "mappings")
    objects = root / "objects.yaml"
    # Leads are staged after contacts (their lookups read staged contacts): contacts after leads is a cycle.
    objects.write_text(
        objects.read_text().replace("  - name: contact\n", "  - name: contact\n    stage_after: [lead]\n", 1)
    )
    with pytest.raises(MappingError, match="cycle among tables"):
        table_registry(root)


def _describe(root: Path) -> dict[str, dict[str, object]]:
    """staged/* and loaded/* assets of the definitions built for `root`, in a fresh process (definitions are
    built once per process, from the mappings root in effect)."""
    code = (
        "import json; from migration_assets.definitions import defs; "
        "graph = defs.get_repository_def().asset_graph; "
        "print(json.dumps({k.to_user_string(): {"
        "'deps': sorted(p.to_user_string() for p in graph.get(k).parent_keys), "
        "'checks': sorted(c.name for c in graph.asset_check_keys if c.asset_key == k)} "
        "for k in graph.get_all_asset_keys() if k.path[0] in ('staged', 'loaded')}))"
    )
    env = {**os.environ, "CLOSE2D365_MAPPINGS": str(root)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_a_new_standard_table_is_one_objects_entry_and_its_field_file(
    reviewed_mappings: Path, tmp_path: Path
) -> None:
    root = shutil.copytree(reviewed_mappings, tmp_path / "mappings")
    (root / "objects.yaml").write_text((root / "objects.yaml").read_text() + QUOTE_ENTRY)
    (root / "fields" / "quote.yaml").write_text(QUOTE_FIELDS)
    assert load_mapping_config(root).field_map("quote").table == "quote"  # a valid mapping

    assets = _describe(root)
    assert assets["staged/quote"] == {
        "deps": sorted(
            [
                "close/opportunities",
                "close/leads",
                "staged/account",
                "staged/opportunity",
                "staged/owner_map",
                "staged/target_metadata",
            ]
        ),
        "checks": ["quote_target_valid"],
    }
    loaded = assets["loaded/quote"]["deps"]
    assert {"staged/quote", "loaded/account", "loaded/opportunity"} <= set(loaded)  # type: ignore[operator]
    assert not any(
        d.startswith("loaded/") and d not in ("loaded/account", "loaded/opportunity") for d in loaded
    )  # type: ignore[union-attr]
    # The nine standard tables are unchanged.
    assert assets["loaded/annotation"]["deps"] == _describe(reviewed_mappings)["loaded/annotation"]["deps"]

    # Loaded after its parents; rolled back before them, the others keeping their order.
    registry = table_registry(root)
    assert registry.names == (*LOAD_DEPS, "quote")
    ranks = registry.delete_ranks()
    assert ranks["quote"] < ranks["opportunity"] < ranks["account"]
    assert sorted(DELETE_RANK, key=ranks.__getitem__) == sorted(DELETE_RANK, key=DELETE_RANK.__getitem__)
    entries = [
        Entry("r", n, table, f"{table}-1", f"close-{n}", "created", "done", None, WRITTEN, None)
        for n, table in enumerate(["account", "opportunity", "quote", "annotation"])
    ]
    order = [s.table for s in plan_rollback(entries, registry)]
    assert order.index("quote") < order.index("opportunity") < order.index("account")
