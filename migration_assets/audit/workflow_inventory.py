"""Inventory of what cannot be migrated as data: Close Workflows (sequences), Smart Views and Custom Activity
types, each with the Dynamics 365 / Power Automate equivalent an admin should build, and the sales process
design (a business process flow per Close pipeline: audit/sales_process_design.py) (pure).

Input is the raw Close JSON of each object (`close.<table>.raw`); output is one row per item (for CSV) and
a Markdown document (for the Dagster UI and the report folder).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from migration_assets.audit.sales_process_design import PipelineDesign, render_design
from migration_assets.resources.markdown import markdown_table

# Close Smart View type -> the Dataverse table its view would live on.
VIEW_TABLES = {
    "lead": "lead (or account)",
    "contact": "contact",
    "opportunity": "opportunity",
    "call": "phonecall",
    "email": "email",
    "sms": "task (SMS)",
    "meeting": "appointment",
    "note": "annotation",
    "custom_activity": "the custom activity table",
    "whatsapp_message": "custom activity",
    "form_submission": "lead",
}
STEP_EQUIVALENT = {
    "email": "Sales accelerator sequence step 'Send an email' (with the email template recreated)",
    "call": "Sales accelerator sequence step 'Make a phone call'",
    "sms": "Sales accelerator sequence step 'Send a text message' (needs an SMS provider), or a Power Automate flow",
}
WEEKDAYS = {0: "Sun", 1: "Mon", 2: "Tue", 3: "Wed", 4: "Thu", 5: "Fri", 6: "Sat", 7: "Sun"}


@dataclass(frozen=True)
class InventoryItem:
    kind: str  # workflow | smart_view | custom_activity_type | pipeline
    close_id: str
    name: str
    status: str
    trigger: str
    steps: str
    conditions: str
    recommendation: str

    def row(self) -> dict[str, str]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def _delay(seconds: Any) -> str:
    try:
        s = int(seconds or 0)
    except (TypeError, ValueError):
        return str(seconds)
    if s == 0:
        return "immediately"
    days, rest = divmod(s, 86400)
    hours = rest // 3600
    parts = ([f"{days} day{'s' if days != 1 else ''}"] if days else []) + ([f"{hours} h"] if hours else [])
    return "after " + (" ".join(parts) or f"{s} s")


def _schedule(seq: Mapping[str, Any]) -> str:
    ranges = (seq.get("schedule") or {}).get("ranges") or []
    if not ranges:
        return "no sending window"
    days = ", ".join(
        f"{WEEKDAYS.get(r.get('weekday'), r.get('weekday'))} {r.get('start')}-{r.get('end')}" for r in ranges
    )
    return f"{days} ({seq.get('timezone') or 'org time zone'})"


def describe_query(node: Any, depth: int = 0) -> str:
    """A readable one-line rendering of a Close structured (`s_query`) query tree."""
    if not isinstance(node, Mapping) or depth > 20:
        return str(node)
    neg = "NOT " if node.get("negate") else ""
    kind = node.get("type")
    if kind in ("and", "or"):
        parts = [describe_query(q, depth + 1) for q in node.get("queries") or []]
        parts = [p for p in parts if p]
        if not parts:
            return ""
        inner = f" {kind.upper()} ".join(parts)
        return f"{neg}({inner})" if len(parts) > 1 else f"{neg}{inner}"
    if kind == "object_type":
        return ""  # implied by the view's table
    if kind == "field_condition":
        f = node.get("field") or {}
        name = f.get("field_name") or f.get("custom_field_id") or "field"
        return f"{neg}{f.get('object_type', '')}.{name} {_condition(node.get('condition') or {})}".strip()
    if kind == "has_related":
        return f"{neg}has {node.get('related_object_type')} where {describe_query(node.get('related_query'), depth + 1)}"
    if kind == "match_all":
        return f"{neg}all records"
    if kind == "text":
        return f"{neg}text contains '{node.get('value')}'"
    return f"{neg}{kind}"


def _condition(c: Mapping[str, Any]) -> str:
    kind = c.get("type")
    if kind == "reference":
        return f"in [{', '.join(map(str, c.get('object_ids') or []))}]"
    if kind == "term":
        return f"in [{', '.join(map(str, c.get('values') or []))}]"
    if kind == "text":
        return f"contains '{c.get('value')}'"
    if kind == "moment_range":
        bounds = [
            f"{k} {_moment(c[k])}" for k in ("on_or_after", "before", "after", "on_or_before") if c.get(k)
        ]
        return " and ".join(bounds) or "any date"
    if kind == "number_range":
        return " and ".join(f"{k} {c[k]}" for k in ("gt", "gte", "lt", "lte") if c.get(k) is not None)
    if kind == "exists":
        return "is set"
    return str(kind)


def _moment(m: Any) -> str:
    if isinstance(m, Mapping):
        if m.get("type") == "fixed_local_date":
            return str(m.get("value"))
        if m.get("range"):
            return f"{m.get('which', '')} of {m.get('range')}"
    return str(m)


def workflow_item(seq: Mapping[str, Any]) -> InventoryItem:
    steps = sorted(seq.get("steps") or [], key=lambda s: s.get("position", 0))
    step_text = "; ".join(
        f"{n}. {s.get('step_type')} {_delay(s.get('delay'))}"
        + (
            f" (template {s.get('email_template_id') or s.get('sms_template_id')})"
            if s.get("email_template_id") or s.get("sms_template_id")
            else ""
        )
        + (f", {s.get('threading')}" if s.get("threading") else "")
        for n, s in enumerate(steps, 1)
    )
    trigger_query = seq.get("trigger_query")
    if trigger_query:
        trigger = f"automatic enrollment when a record matches: {describe_query(trigger_query) if isinstance(trigger_query, Mapping) else trigger_query}"
    elif seq.get("allow_manual_enrollment", True):
        trigger = "manual enrollment (subscribe contacts by hand or by bulk action)"
    else:
        trigger = "enrollment by API only"
    conditions = f"sending window {_schedule(seq)}; stops on reply, meeting booked, unsubscribe, bounce"
    kinds = {s.get("step_type") for s in steps}
    rec = ["Rebuild as a Dynamics 365 Sales sequence (Sales accelerator):"]
    rec += [STEP_EQUIVALENT[k] for k in ("email", "call", "sms") if k in kinds]
    rec.append(
        "Enrollment: a Power Automate cloud flow 'When a row is added, modified or deleted' (Dataverse) with the "
        "trigger filter, calling 'Connect sequence'"
        if trigger_query
        else "Enrollment: 'Connect sequence' on records or views by hand"
    )
    rec.append("Sending window: the sequence's working hours; exit conditions: sequence 'exit' settings")
    return InventoryItem(
        "workflow",
        str(seq.get("id")),
        str(seq.get("name") or ""),
        str(seq.get("status") or ""),
        trigger,
        step_text or "(no steps)",
        conditions,
        " ".join(rec),
    )


def smart_view_item(view: Mapping[str, Any]) -> InventoryItem:
    vtype = str(view.get("type") or "lead")
    if view.get("s_query"):
        query = describe_query((view["s_query"] or {}).get("query")) or "all records"
        sort = (view["s_query"] or {}).get("sort") or []
        if sort:
            query += "; sort " + ", ".join(
                str((s.get("field") or {}).get("field_name", s)) for s in sort if isinstance(s, Mapping)
            )
    else:
        query = str(view.get("query") or "all records")
    shared = bool(view.get("is_shared"))
    table = VIEW_TABLES.get(vtype, vtype)
    rec = (
        f"A {'system (public)' if shared else 'personal'} view on {table} built in the view designer "
        f"(or Advanced find) with the same filter; queries on related activity counts (calls:0, "
        f"times_communicated, last_communication_date) need a rollup column or a Power Automate flow that maintains one"
    )
    return InventoryItem(
        "smart_view",
        str(view.get("id")),
        str(view.get("name") or ""),
        "shared" if shared else "private",
        f"{vtype} view",
        "",
        query,
        rec,
    )


def custom_activity_item(t: Mapping[str, Any], table: str | None = None) -> InventoryItem:
    fields = t.get("fields") or []
    field_text = ", ".join(
        f"{f.get('name')} ({f.get('type')}{', required' if f.get('required') else ''})" for f in fields
    )
    rec = (
        f"Migrated as the custom activity table {table or '(see schema plan)'} with one column per field; "
        "required fields become business-required on the form; any automation on it: a Power Automate flow "
        "triggered on the table"
    )
    status = "archived" if t.get("is_archived") else "active"
    trigger = "API only" if t.get("api_create_only") else "created by users or the API"
    return InventoryItem(
        "custom_activity_type",
        str(t.get("id")),
        str(t.get("name") or ""),
        status,
        trigger,
        field_text,
        str(t.get("description") or ""),
        rec,
    )


def pipeline_item(design: PipelineDesign) -> InventoryItem:
    """A Close pipeline as an inventory row (the CSV): its statuses in order and the BPF to build."""
    steps = "; ".join(
        f"{n}. {s.label} ({s.type}{', ' + s.probability if s.probability else ''}, {s.open} open) -> {s.stage}"
        for n, s in enumerate(design.statuses, 1)
    )
    return InventoryItem(
        "pipeline",
        design.close_id,
        design.name,
        "fits the shipped sales process" if design.fits_shipped else "wants a BPF of its own",
        "opportunity status changes",
        steps,
        f"{design.open} open opportunities",
        design.recommendation,
    )


def build_inventory(
    sequences: Sequence[Mapping[str, Any]],
    smart_views: Sequence[Mapping[str, Any]],
    custom_activity_types: Sequence[Mapping[str, Any]],
    activity_tables: Mapping[str, str] | None = None,
) -> list[InventoryItem]:
    tables = activity_tables or {}
    items = [workflow_item(s) for s in sorted(sequences, key=lambda x: str(x.get("name")))]
    items += [
        smart_view_item(v)
        for v in sorted(smart_views, key=lambda x: (str(x.get("type")), str(x.get("name"))))
    ]
    items += [
        custom_activity_item(t, tables.get(str(t.get("id"))))
        for t in sorted(custom_activity_types, key=lambda x: str(x.get("name")))
    ]
    return items


# The inventory's table: every value in full (the admin rebuilds from it), pipes escaped.
COLUMNS = ("name", "status", "trigger", "steps / fields", "conditions / query", "recommended equivalent")
FULL_WIDTH = 1 << 30


def _table_row(item: InventoryItem) -> dict[str, str]:
    values = (item.status, item.trigger, item.steps, item.conditions, item.recommendation)
    return {"name": f"{item.name} (`{item.close_id}`)", **dict(zip(COLUMNS[1:], values, strict=True))}


def render_markdown(items: Sequence[InventoryItem], designs: Sequence[PipelineDesign] | None = None) -> str:
    """The inventory document; with `designs`, its sales process design section last."""
    titles = {
        "workflow": "Workflows (sequences)",
        "smart_view": "Smart Views",
        "custom_activity_type": "Custom Activity types",
    }
    out = [
        "# Close automation inventory",
        "",
        "Close Workflows, Smart Views and Custom Activity types are configuration, not data: rebuild them in "
        "Dynamics 365 with the recommended equivalent.",
        "",
    ]
    for kind, title in titles.items():
        group = [i for i in items if i.kind == kind]
        out += [f"## {title} ({len(group)})", ""]
        if not group:
            out += ["None.", ""]
            continue
        out += [markdown_table([_table_row(i) for i in group], COLUMNS, max_width=FULL_WIDTH), ""]
    if designs is not None:
        out.append(render_design(designs))
    return "\n".join(out)
