"""`close2d365 propose-mapping`: reviewable mapping proposals for the extracted Close org.

Custom fields get a proposed Dataverse column each (`mappings/custom_fields.yaml`, unconfirmed). Lead statuses
and pipelines are org-specific too: their proposals are written beside the reviewed files as
`*.proposed.yaml` (or over them with --force), so a reviewed mapping is never overwritten silently.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from migration_assets.lib.mapping_config import load_mapping_config
from migration_assets.lib.proposal_statuses import render_lead_status, render_pipelines
from migration_assets.resources.warehouse import WarehouseResource


class ProposalInputError(RuntimeError):
    """The proposal cannot be made from what has been extracted."""


@dataclass
class ProposalFiles:
    custom_fields: Path
    written: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _raw_objects(warehouse: WarehouseResource, table: str) -> list[dict[str, Any]]:
    if not warehouse.table_exists("close", table):
        raise ProposalInputError(
            f"close.{table} has not been extracted yet: run `close2d365 extract` (or the extract job) first"
        )
    return [json.loads(raw) for raw in warehouse.read(f'SELECT raw FROM close."{table}" ORDER BY id')["raw"]]


def _dataverse_client() -> Any | None:
    """The target's client when DATAVERSE_URL is configured (to propose existing columns), else None."""
    if not os.environ.get("DATAVERSE_URL"):
        return None
    from migration_assets.resources import dataverse_resource

    return dataverse_resource(resolved=True).get_client()


def propose_all(force: bool = False, mappings_root: Path | None = None) -> ProposalFiles:
    from migration_assets.defs.staged.mapping import propose_mapping

    warehouse = WarehouseResource()
    lead_statuses = _raw_objects(warehouse, "lead_statuses")
    pipelines = _raw_objects(warehouse, "pipelines")
    custom_fields = propose_mapping(
        warehouse=warehouse, dataverse=_dataverse_client(), mappings_root=mappings_root, force=force
    )
    files = ProposalFiles(custom_fields=custom_fields, written=[custom_fields])
    root = load_mapping_config(mappings_root).root
    prefix = load_mapping_config(mappings_root).settings.option_value_prefix
    for name, text in (
        ("lead_status.yaml", render_lead_status(lead_statuses)),
        ("pipelines.yaml", render_pipelines(pipelines, prefix)),
    ):
        target = root / name
        if target.exists() and not force:
            if target.read_text(encoding="utf-8") == text:
                continue
            target = root / name.replace(".yaml", ".proposed.yaml")
            files.notes.append(f"{root / name} was kept; compare it with {target} and merge what applies")
        target.write_text(text, encoding="utf-8")
        files.written.append(target)
    return files
