"""What every write request shares: its timestamp, acting user, request id, and the events it records.

Time comes from `CloseEmulatorConfig.clock` (the one injectable clock), so tests move time without sleeping.
Each write gets a timestamp strictly after the previous write's (1 µs later when the clock has not moved,
e.g. a frozen test clock), so the event log's newest-first order is the order the writes happened in.

Events follow close_api.md §4.14 and Close's "List of Event Types" page (developer.close.com
/api/resources/events/list-of-event-types): `data` is the object after the change, `previous_data` the old
values of the changed fields ({} on create, the whole object on delete), `changed_fields` the changed keys,
`meta` {request_method, request_path} plus the merge ids on every event a merge causes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..ids import new_id
from ..jsonutil import dumps, loads
from ..timeutil import iso_naive_us, iso_us

if TYPE_CHECKING:
    from ..store import OrgStore
    from .base import Ctx

# Event object types of activities (close_api.md §4.14 catalog: `activity.<snake_case type>`).
ACTIVITY_OBJECT_TYPES = {
    "Call": "activity.call",
    "Email": "activity.email",
    "EmailThread": "activity.email_thread",
    "SMS": "activity.sms",
    "Meeting": "activity.meeting",
    "Note": "activity.note",
    "CustomActivity": "activity.custom_activity",
    "WhatsAppMessage": "activity.whatsapp_message",
    "LeadStatusChange": "activity.lead_status_change",
    "OpportunityStatusChange": "activity.opportunity_status_change",
    "TaskCompleted": "activity.task_completed",
    "LeadMerge": "activity.lead_merge",
    "FormSubmission": "activity.form_submission",
}


def snapshot(obj: dict[str, Any]) -> dict[str, Any]:
    """A deep copy (JSON round trip): later writes to the object must not change a recorded event."""
    return loads(dumps(obj))


def object_type(kind: str, obj: dict[str, Any]) -> str:
    """The event `object_type` of a record: lead, contact, opportunity, task.<_type>, activity.<type>."""
    if kind == "task":
        return f"task.{obj.get('_type') or 'lead'}"
    if kind == "activity":
        return ACTIVITY_OBJECT_TYPES[obj["_type"]]
    return kind


def changed_keys(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    return sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))


class WriteSession:
    """One write request. Use under `store.write_lock`; events are appended as they are recorded."""

    def __init__(self, ctx: Ctx) -> None:
        self.ctx = ctx
        self.store: OrgStore = ctx.store
        store = self.store
        self._us = max(int(ctx.config.clock() * 1_000_000), store.last_write_us + 1)
        store.last_write_us = self._us
        self.now = iso_us(self._us)  # date_created / date_updated of what this request writes
        users = store.org.users
        self.user: dict[str, Any] = users[0] if users else {}  # the API key acts as the first (admin) user
        self.request_id = new_id("req")
        self.merge_meta: dict[str, str] = {}
        self._recorded = 0

    @property
    def user_id(self) -> str | None:
        return self.user.get("id")

    @property
    def user_name(self) -> str:
        return f"{self.user.get('first_name') or ''} {self.user.get('last_name') or ''}".strip()

    def stamp_created(self, obj: dict[str, Any], *, names: bool = True) -> None:
        obj.update(
            date_created=self.now, date_updated=self.now, created_by=self.user_id, updated_by=self.user_id
        )
        if names:
            obj.update(created_by_name=self.user_name, updated_by_name=self.user_name)

    def stamp_updated(self, obj: dict[str, Any]) -> None:
        obj["date_updated"] = self.now
        obj["updated_by"] = self.user_id
        if "updated_by_name" in obj:
            obj["updated_by_name"] = self.user_name

    def new_activity(self, type_name: str, lead_id: str | None, **fields: Any) -> dict[str, Any]:
        """A new activity of `type_name` by the acting user, happening now (the common fields of §4.7)."""
        act: dict[str, Any] = {
            "id": new_id("acti"),
            "_type": type_name,
            "lead_id": lead_id,
            "contact_id": None,
            "organization_id": self.store.organization_id,
            "activity_at": self.now,
            "user_id": self.user_id,
            "user_name": self.user_name,
            "users": [],
            **fields,
        }
        self.stamp_created(act)
        return act

    def _event_time(self) -> str:
        # Every event gets its own µs tick so that the events of one request keep their order too.
        us = self.store.last_write_us + 1 if self._recorded else self._us
        self._recorded += 1
        self.store.last_write_us = max(self.store.last_write_us, us)
        return iso_naive_us(us)

    def record(
        self,
        action: str,
        kind: str,
        obj: dict[str, Any],
        before: dict[str, Any] | None = None,
        *,
        object_type_name: str | None = None,
    ) -> dict[str, Any]:
        """Append the event of `action` on `obj` (`before`: its state before an update)."""
        if action == "deleted":
            data: dict[str, Any] = {}
            previous = snapshot(obj)
            changed: list[str] = []
        elif action in ("created", "merged"):  # a `merged` event carries the destination lead's data
            data, previous, changed = snapshot(obj), {}, []
        else:
            base = before or {}
            changed = changed_keys(base, obj)
            data = snapshot(obj)
            previous = snapshot({k: base.get(k) for k in changed})
        stamp = self._event_time()
        meta: dict[str, Any] = {
            "request_method": self.ctx.method,
            "request_path": f"/api/v1/{self.ctx.path}/",
        }
        meta.update(self.merge_meta)
        event = {
            "id": new_id("ev"),
            "action": action,
            "object_type": object_type_name or object_type(kind, obj),
            "object_id": obj["id"],
            "organization_id": self.store.organization_id,
            "lead_id": obj["id"] if kind == "lead" else obj.get("lead_id"),
            "user_id": self.user_id,
            "request_id": self.request_id,
            # Close sets the id of the API key used; the emulator's keys have no ids (close_api.md §1.6: (U)).
            "api_key_id": None,
            "oauth_client_id": None,
            "oauth_scope": None,
            "date_created": stamp,
            "date_updated": stamp,
            "changed_fields": changed,
            "data": data,
            "previous_data": previous,
            "meta": meta,
        }
        self.store.add_event(event)
        return event
