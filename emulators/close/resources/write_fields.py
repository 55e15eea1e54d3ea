"""Body handling shared by the write endpoints: PUT-as-PATCH, `custom.cf_X` keys, validation errors, and the
denormalised fields Close derives on write (names, labels, money, note <-> note_html).

Validation errors use the flask-mongorest shape (close_api.md §1.4): `{"errors": [], "field-errors": {..}}`
with "This field is required." / "Object does not exist." / "Not a valid choice.".
"""

from __future__ import annotations

import html
import re
from typing import TYPE_CHECKING, Any

from ..errors import ApiError, field_error

if TYPE_CHECKING:
    from ..store import OrgStore

REQUIRED = "This field is required."
NO_OBJECT = "Object does not exist."
BAD_CHOICE = "Not a valid choice."

# Set by the server only: a body value for them is ignored (PUT behaves as PATCH of the writable fields).
SERVER_FIELDS = frozenset(
    {
        "id",
        "organization_id",
        "date_created",
        "date_updated",
        "created_by",
        "created_by_name",
        "updated_by",
        "updated_by_name",
        "html_url",
        "_type",
    }
)

_TAG = re.compile(r"<[^>]+>")


def existing_lead(store: OrgStore, lead_id: Any) -> dict[str, Any]:
    """The lead a child record names; the error uses the model field name `lead` as Close does (§1.4)."""
    lead = store.leads_by_id.get(lead_id) if isinstance(lead_id, str) else None
    if lead is None:
        raise field_error("lead", NO_OBJECT)
    return lead


def optional_ref(store_index: dict[str, Any], body: dict[str, Any], field: str) -> None:
    """400 when `field` names an object that does not exist (null clears it)."""
    value = body.get(field)
    if value is not None and value not in store_index:
        raise field_error(field.removesuffix("_id"), NO_OBJECT)


def user_name(store: OrgStore, user_id: str | None) -> str | None:
    user = store.users_by_id.get(user_id or "")
    if user is None:
        return None
    return f"{user.get('first_name') or ''} {user.get('last_name') or ''}".strip()


def custom_field_ids(store: OrgStore, kinds: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    return {f["id"]: f for kind in kinds for f in store.org.custom_fields.get(kind, [])}


def apply_custom(obj: dict[str, Any], body: dict[str, Any]) -> None:
    """`custom.cf_X: value` sets, `null` unsets, `custom.cf_X.add` / `.remove` edit one value of a
    multi-value field (close_api.md §4.1 write semantics)."""
    for key, value in body.items():
        if not key.startswith("custom."):
            continue
        op = None
        for suffix in (".add", ".remove"):
            if key.endswith(suffix):
                op, key = suffix[1:], key[: -len(suffix)]
        if op is None:
            if value is None:
                obj.pop(key, None)
            else:
                obj[key] = value
            continue
        current = obj.get(key)
        values = list(current) if isinstance(current, list) else ([] if current is None else [current])
        if op == "add" and value not in values:
            values.append(value)
        elif op == "remove" and value in values:
            values.remove(value)
        if values:
            obj[key] = values
        else:
            obj.pop(key, None)


def named_custom(obj: dict[str, Any], fields: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The deprecated name-keyed `custom` dict of a lead (close_api.md §4.1), from its `custom.cf_*` keys."""
    out: dict[str, Any] = {}
    for field_id, field in fields.items():
        key = "custom." + field_id
        if key in obj:
            out[field["name"]] = obj[key]
    return out


def patch(obj: dict[str, Any], body: dict[str, Any], writable: frozenset[str] | None) -> None:
    """Copy the writable keys of `body` (all non-server ones when `writable` is None) onto `obj`."""
    for key, value in body.items():
        if key.startswith("custom.") or key in SERVER_FIELDS:
            continue
        if writable is None or key in writable:
            obj[key] = value


def note_pair(obj: dict[str, Any], body: dict[str, Any]) -> None:
    """`note_html` and `note`: setting one overwrites the other; `note_html` wins when both are given
    (close_api.md §4.7.1)."""
    if "note_html" in body:
        text = body.get("note_html") or ""
        obj["note_html"] = text
        obj["note"] = html.unescape(_TAG.sub("", text)).strip()
    elif "note" in body:
        text = body.get("note") or ""
        obj["note"] = text
        obj["note_html"] = f"<body><p>{html.escape(text)}</p></body>" if text else ""


def int_field(body: dict[str, Any], field: str, low: int | None = None, high: int | None = None) -> None:
    if field not in body or body[field] is None:
        return
    value = body[field]
    if isinstance(value, bool) or not isinstance(value, int | float) or int(value) != value:
        raise ApiError(400, {"errors": [], "field-errors": {field: "Not a valid integer."}})
    if (low is not None and value < low) or (high is not None and value > high):
        raise ApiError(
            400, {"errors": [], "field-errors": {field: f"Value must be between {low} and {high}."}}
        )
    body[field] = int(value)
