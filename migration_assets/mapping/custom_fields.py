"""Close custom fields of leads, contacts and opportunities, as confirmed in `mappings/custom_fields.yaml`
(written by `close2d365 propose-mapping`): extra field-map entries for THE mapping engine, and the new
columns they plan (created by schema/* before loading).

Until every entry of a table is confirmed, staging leaves that table's custom fields out (the preview of
the standard columns still runs) and the blocking `mapping_confirmed` check keeps loading closed.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from migration_assets.mapping.config import MappingConfig
from migration_assets.mapping.fields import FieldMap, parse_field
from migration_assets.target.proposal import FieldProposal, field_entries, parse_proposal
from migration_assets.target.rules import TableRules, add_planned_column
from migration_assets.target.schema_build import proposal_column

PROPOSAL_FILE = "custom_fields.yaml"


# (path, prefix) -> (the file's bytes, its proposals): read for every staged table and its rules; parsed once
# per content (FieldProposal is immutable).
_PARSED: dict[tuple[Path, str], tuple[bytes, tuple[FieldProposal, ...]]] = {}


def load_proposals(cfg: MappingConfig) -> list[FieldProposal] | None:
    path = cfg.root / PROPOSAL_FILE
    if not path.is_file():
        return None
    key, content = (path, cfg.settings.publisher_prefix), path.read_bytes()
    cached = _PARSED.get(key)
    if cached is None or cached[0] != content:
        parsed = parse_proposal(path, f"{cfg.root.name}/{PROPOSAL_FILE}", cfg.settings.publisher_prefix)
        cached = _PARSED[key] = (content, tuple(parsed))
    return list(cached[1])


def confirmed_for(cfg: MappingConfig, table: str) -> list[FieldProposal]:
    """The table's proposals when all of them are confirmed, else [] (nothing half-applied)."""
    proposals = [p for p in load_proposals(cfg) or [] if p.table == table]
    return proposals if proposals and all(p.confirmed for p in proposals) else []


def with_custom_fields(cfg: MappingConfig, object_name: str) -> MappingConfig:
    """`cfg` with the confirmed custom fields of the object's table appended to its field map."""
    fmap = cfg.field_map(object_name)
    proposals = confirmed_for(cfg, fmap.table)
    if not proposals:
        return cfg
    entries = field_entries(proposals, cfg.settings.option_value_prefix).get(fmap.table, [])
    file = f"{cfg.root.name}/{PROPOSAL_FILE}"
    taken = {s.target for s in fmap.fields}
    specs = list(fmap.fields)
    for n, entry in enumerate(entries):
        if entry["target"] in taken:
            continue  # a standard map already writes that column: the field map wins
        specs.append(
            parse_field(
                entry, file, f"fields[{n}]", None, cfg.settings.publisher_prefix, fmap.table, cfg.choice_sets
            )
        )
    maps = dict(cfg.field_maps)
    maps[object_name] = FieldMap(fmap.object, fmap.table, fmap.file, tuple(specs))
    return replace(cfg, field_maps=maps)


def plan_custom_fields(rules: TableRules, cfg: MappingConfig) -> TableRules:
    """Add the new columns of the table's confirmed proposals to its rules, built by the function the schema
    plan builds them with (`schema_build.proposal_column`): same types, same option values."""
    for p in confirmed_for(cfg, rules.table):
        if p.action != "new":
            continue
        spec = proposal_column(p, cfg.settings.option_value_prefix)
        options = [v for v, _ in spec.options] if spec.type in ("Picklist", "MultiSelectPicklist") else None
        fmt = spec.format if spec.type == "DateTime" else None
        add_planned_column(
            rules, spec.logical_name, spec.type, spec.max_length, options, fmt, spec.lookup_target
        )
    return rules
