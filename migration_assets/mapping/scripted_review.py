"""The scripted review of a proposed mapping (contract B): for the demo, the tests and the benchmarks.

A real migration has a human go through every `review:` item and `confirmed: false` that propose-mapping
wrote. `accept_proposals` does what that human would do when every proposal is right: it applies the
decisions it is given (by file, then entry or setting), accepts everything else as proposed
(`confirmed: true`) and removes the `review:` keys, so the blocking check mapping_confirmed passes.

decisions, by file name:
  owners.yaml:            {"fallback_owner": "x@y", "disabled_users": "fallback", "overrides": {...}}
  settings.yaml:          {"rejection_thresholds": {"default": {"max_rows": None, "max_fraction": 0.5}}}
  lead_status.yaml:       {"<label>": {"statecode": 2, "statuscode": 5}} (or a top-level key: "unmapped")
  pipelines.yaml:         {"<pipeline name>": {...}} or a top-level key (won, lost)
  custom_activities.yaml: {"<type name>": {"orphaned_values": "drop"}}
  custom_fields.yaml:     {"<close field id or name>": {"action": "new", ...}}
A setting or entry that does not exist is an error: a scripted decision never goes silently unused.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from migration_assets.mapping.normalise import fold_label
from migration_assets.mapping.review_markers import strip_reviews

# file -> (key of its entry list, entry keys that identify an entry)
ENTRY_LISTS = {
    "custom_activities.yaml": ("types", ("name", "close_id")),
    "custom_fields.yaml": ("fields", ("close_field_id", "close_name")),
    "pipelines.yaml": ("pipelines", ("name", "close_id")),
    "owners.yaml": ("users", ("close_user_id", "email")),
}
ENTRY_MAPS = {"lead_status.yaml": "statuses"}  # file -> key of its {label: entry} mapping
BODY_MARK = "# ---"
STALE_HEADER = ("need a decision", "needs a decision", "Loading is blocked until")


class ReviewError(ValueError):
    """A scripted decision names a file, entry or setting that is not there."""


def _merge(target: Any, value: Any) -> Any:
    if isinstance(target, dict) and isinstance(value, Mapping):
        out = dict(target)
        for k, v in value.items():
            out[k] = _merge(out.get(k), v)
        return out
    return value


def apply_decision(data: dict[str, Any], file: str, key: str, value: Any) -> None:
    """Set one decision in a file's data: a top-level setting, else the entry `key` identifies."""
    if key in data:
        data[key] = _merge(data[key], value)
        return
    if file in ENTRY_MAPS:
        entries = data.get(ENTRY_MAPS[file]) or {}
        for label in entries:
            if fold_label(label) == fold_label(key):
                entries[label] = _merge(entries[label], value)
                return
    if file in ENTRY_LISTS:
        list_key, ids = ENTRY_LISTS[file]
        for n, entry in enumerate(data.get(list_key) or []):
            if any(fold_label(entry.get(i)) == fold_label(key) for i in ids):
                data[list_key][n] = _merge(entry, value)
                return
    raise ReviewError(f"{file}: no setting or entry {key!r} to decide")


def _confirm(data: Any) -> Any:
    """Every `confirmed: false` accepted."""
    if isinstance(data, dict):
        return {k: (True if k == "confirmed" and v is False else _confirm(v)) for k, v in data.items()}
    if isinstance(data, list):
        return [_confirm(v) for v in data]
    return data


def _header(text: str) -> str:
    if BODY_MARK + "\n" not in text:
        return (
            "# Reviewed by the scripted review (migration_assets.mapping.scripted_review.accept_proposals).\n"
        )
    head = text.split(BODY_MARK + "\n", 1)[0]
    kept = [line for line in head.splitlines() if not any(s in line for s in STALE_HEADER)]
    kept.insert(
        1, "# Reviewed by the scripted review (migration_assets.mapping.scripted_review.accept_proposals)."
    )
    return "\n".join(kept) + "\n" + BODY_MARK + "\n"


def accept_proposals(root: Path, decisions: Mapping[str, Mapping[str, Any]] | None = None) -> list[Path]:
    """Accept every proposal in the mappings root `root`, applying `decisions` first (see the module doc).
    Returns the files it rewrote. A file with nothing to decide or accept is left as it is."""
    decisions = dict(decisions or {})
    missing = [f for f in decisions if not (root / f).is_file()]
    if missing:
        raise ReviewError(f"decisions for files that are not in {root}: {', '.join(missing)}")
    written = []
    for path in sorted(root.glob("*.yaml")):
        text = path.read_text(encoding="utf-8")
        data = yaml.safe_load(text)
        if not isinstance(data, dict):
            continue
        for key, value in (decisions.get(path.name) or {}).items():
            apply_decision(data, path.name, str(key), value)
        reviewed = _confirm(strip_reviews(data))
        if reviewed == yaml.safe_load(text):
            continue
        body = yaml.safe_dump(
            reviewed, sort_keys=False, allow_unicode=True, width=110, default_flow_style=None
        )
        path.write_text(_header(text) + body, encoding="utf-8")
        written.append(path)
    return written
