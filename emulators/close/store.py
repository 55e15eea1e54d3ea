"""The org, pre-indexed once at start so that no request needs a full scan.

Indexes: every object by id; contacts/opportunities/tasks/activities by lead; activities by `_type`; and
time-sorted views (by `date_created`, `date_updated`, ...) whose ordering is stable (ties broken by id), so
offset paging on the static dataset never loses or repeats a row. Filtered result lists are memoised per
query.

Objects are serialised when they are served, not cached: orjson writes one in ~2 µs (about 1 GB/s), while
a cache of every object's JSON and every lead's export line cost more than the org itself (`large`:
3.8 GB of RSS on top of the org's 1 GB, orjson's result buffers being several times the text's length).

Writes (resources/write_*.py) go through `insert` / `remove_many` / `changed` / `add_event` under
`write_lock`: they update every index in place (a sorted view moves one row: bisect + list insert, no
rebuild) and drop exactly the caches the write made stale (the memoised result lists of the families it
can appear in, the lazily built activity_at views).
"""

from __future__ import annotations

import threading
from bisect import bisect_left, bisect_right
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Hashable, Iterable
from typing import TYPE_CHECKING, Any

from .jsonutil import dumps
from .timeutil import to_key

if TYPE_CHECKING:  # the generator package may still be in progress; only its data shape is needed here
    from emulators.orgdata import CloseOrg

# Activity `_type` served by each /activity/<kind>/ endpoint (close_api.md §4.7).
ACTIVITY_KINDS: dict[str, str] = {
    "call": "Call",
    "email": "Email",
    "emailthread": "EmailThread",
    "sms": "SMS",
    "meeting": "Meeting",
    "note": "Note",
    "status_change/lead": "LeadStatusChange",
    "status_change/opportunity": "OpportunityStatusChange",
    "custom": "CustomActivity",
    "task_completed": "TaskCompleted",
    "created": "Created",
    "lead_merge": "LeadMerge",
    "whatsapp_message": "WhatsAppMessage",
    "form_submission": "FormSubmission",
}

MISSING = -(2**62)  # sort key of a missing timestamp: before everything


def _time_key(value: object) -> int:
    key = to_key(value)
    return MISSING if key is None else key


class SortedView:
    """Objects sorted ascending by (time key, id). `keys[i]` is the time key of `items[i]`."""

    __slots__ = ("field", "items", "keys")

    def __init__(self, objects: Iterable[dict[str, Any]], field: str) -> None:
        self.field = field
        decorated = [(_time_key(obj.get(field)), obj["id"], obj) for obj in objects]
        decorated.sort(key=lambda t: (t[0], t[1]))
        self.items: list[dict[str, Any]] = [t[2] for t in decorated]
        self.keys: list[int] = [t[0] for t in decorated]

    def insert(self, obj: dict[str, Any]) -> None:
        """Add `obj` at its (key, id) position: O(log n) search plus one list insert."""
        key = _time_key(obj.get(self.field))
        i, hi = bisect_left(self.keys, key), bisect_right(self.keys, key)
        while i < hi and self.items[i]["id"] < obj["id"]:
            i += 1
        self.keys.insert(i, key)
        self.items.insert(i, obj)

    def remove(self, obj: dict[str, Any], old_value: object = None, *, use_old: bool = False) -> None:
        """Drop `obj`, found by its key (`old_value` of the field when the caller already changed it)."""
        key = _time_key(old_value if use_old else obj.get(self.field))
        lo, hi = bisect_left(self.keys, key), bisect_right(self.keys, key)
        for i in range(lo, hi):
            if self.items[i] is obj:
                del self.keys[i]
                del self.items[i]
                return
        for i, item in enumerate(self.items):  # key unknown (the field was edited elsewhere): scan
            if item is obj:
                del self.keys[i]
                del self.items[i]
                return

    def bounds(self, gt: int | None, gte: int | None, lt: int | None, lte: int | None) -> tuple[int, int]:
        """Index range [lo, hi) of the items whose key satisfies every given bound (missing keys excluded)."""
        lo = bisect_right(self.keys, MISSING)
        hi = len(self.keys)
        if gt is not None:
            lo = max(lo, bisect_right(self.keys, gt))
        if gte is not None:
            lo = max(lo, bisect_left(self.keys, gte))
        if lt is not None:
            hi = min(hi, bisect_left(self.keys, lt))
        if lte is not None:
            hi = min(hi, bisect_right(self.keys, lte))
        return lo, max(lo, hi)


class ResultCache:
    """A small LRU of computed result lists, keyed by the normalised query."""

    def __init__(self, capacity: int = 128) -> None:
        self._data: OrderedDict[Hashable, Any] = OrderedDict()
        self._capacity = capacity
        self._lock = threading.Lock()

    def drop(self, families: Iterable[str]) -> None:
        """Forget the results of these families (the first element of a key: "lead", "task", ...)."""
        names = frozenset(families)
        with self._lock:
            for key in [k for k in self._data if isinstance(k, tuple) and k and k[0] in names]:
                del self._data[key]

    def get_or_compute(self, key: Hashable, compute: Callable[[], Any]) -> Any:
        with self._lock:
            if key in self._data:
                self._data.move_to_end(key)
                return self._data[key]
        value = compute()
        with self._lock:
            self._data[key] = value
            if len(self._data) > self._capacity:
                self._data.popitem(last=False)
        return value


def _created_order(obj: dict[str, Any]) -> tuple[int, str]:
    return (to_key(obj.get("date_created")) or MISSING, obj["id"])


def _by_lead(objects: Iterable[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for obj in objects:
        lead_id = obj.get("lead_id")
        if lead_id:
            out[lead_id].append(obj)
    for items in out.values():
        items.sort(key=_created_order)
    return dict(out)


# Kinds of record a write can touch: the store attribute holding them by id, the org list, the per-lead
# index, and the result-cache families whose lists may contain them (resources/*.py cache keys).
KIND_BY_ID = {
    "lead": "leads_by_id",
    "contact": "contacts_by_id",
    "opportunity": "opportunities_by_id",
    "task": "tasks_by_id",
    "activity": "activities_by_id",
}
KIND_ORG_LIST = {
    "lead": "leads",
    "contact": "contacts",
    "opportunity": "opportunities",
    "task": "tasks",
    "activity": "activities",
}
KIND_FAMILIES = {
    "lead": ("lead",),
    "contact": ("contact",),
    "opportunity": ("opportunity",),
    "task": ("task",),
    "activity": ("activity", "activity-lead"),
}


class OrgStore:
    """Indexed view of a CloseOrg; the write endpoints change it through `insert`/`remove_many`/`changed`."""

    def __init__(self, org: CloseOrg) -> None:
        self.org = org
        self.organization_id: str = org.organization.get("id", "")
        self.users_by_id = {u["id"]: u for u in [*org.users, *org.inactive_users]}
        self.active_user_ids = {u["id"] for u in org.users}
        self.leads_by_id = {o["id"]: o for o in org.leads}
        self.contacts_by_id = {o["id"]: o for o in org.contacts}
        self.opportunities_by_id = {o["id"]: o for o in org.opportunities}
        self.activities_by_id = {o["id"]: o for o in org.activities}
        self.tasks_by_id = {o["id"]: o for o in org.tasks}
        self.lead_statuses_by_id = {o["id"]: o for o in org.lead_statuses}
        self.opportunity_statuses_by_id = {o["id"]: o for o in org.opportunity_statuses}
        self.pipelines_by_id = {o["id"]: o for o in org.pipelines}
        self.custom_fields_by_id = {f["id"]: f for fields in org.custom_fields.values() for f in fields}
        self.custom_activity_types_by_id = {o["id"]: o for o in org.custom_activity_types}
        self.sequences_by_id = {o["id"]: o for o in org.sequences}
        self.subscriptions_by_id = {o["id"]: o for o in org.sequence_subscriptions}
        self.smart_views_by_id = {o["id"]: o for o in org.smart_views}
        self.events_by_id = {o["id"]: o for o in org.events}

        self.contacts_by_lead = _by_lead(org.contacts)
        self.opportunities_by_lead = _by_lead(org.opportunities)
        self.activities_by_lead = _by_lead(org.activities)
        self.lead_tasks_by_lead = _by_lead(t for t in org.tasks if t.get("_type") == "lead")

        self.leads_by_created = SortedView(org.leads, "date_created")
        self.leads_by_updated = SortedView(org.leads, "date_updated")
        self.contacts_by_created = SortedView(org.contacts, "date_created")
        self.opportunities_by_created = SortedView(org.opportunities, "date_created")
        self.tasks_by_created = SortedView(org.tasks, "date_created")
        self.events_by_updated = SortedView(org.events, "date_updated")

        by_type: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for act in org.activities:
            by_type[act.get("_type", "")].append(act)
        self.activities_by_type = {t: SortedView(items, "date_created") for t, items in by_type.items()}
        # /activity/ without thread_emails returns one Email per message and no EmailThread objects.
        self.activities_no_threads = SortedView(
            (a for a in org.activities if a.get("_type") != "EmailThread"), "date_created"
        )
        self.activities_all = SortedView(org.activities, "date_created")

        self.results = ResultCache()
        self._views: dict[tuple[str, str], SortedView] = {}
        self._lock = threading.Lock()
        # Held by every write (and by an export build, which must see one state of the org).
        self.write_lock = threading.RLock()
        self.last_write_us = 0  # writes get strictly increasing timestamps (resources/write_session.py)

    # ----- derived objects -------------------------------------------------------------------------------
    def full_lead(self, lead: dict[str, Any]) -> dict[str, Any]:
        """The lead as GET /lead/{id}/ returns it: with contacts, contact_ids, opportunities and tasks."""
        lead_id = lead["id"]
        contacts = list(self.contacts_by_lead.get(lead_id, ()))
        full = dict(lead)
        full["contacts"] = contacts
        full["contact_ids"] = [c["id"] for c in contacts]
        full["opportunities"] = list(self.opportunities_by_lead.get(lead_id, ()))
        full["tasks"] = list(self.lead_tasks_by_lead.get(lead_id, ()))
        return full

    def object_bytes(self, obj: dict[str, Any]) -> bytes:
        """Serialised JSON of an object as the API returns it."""
        return dumps(obj)

    def lead_bytes(self, lead: dict[str, Any]) -> bytes:
        """Serialised JSON of a lead as GET /lead/{id}/ returns it."""
        return dumps(self.full_lead(lead))

    def view(self, name: str, objects: Callable[[], Iterable[dict[str, Any]]], field: str) -> SortedView:
        """A lazily built sorted view (for orderings that are rarely asked for), cached by (name, field)."""
        key = (name, field)
        view = self._views.get(key)
        if view is None:
            view = SortedView(objects(), field)
            with self._lock:
                self._views[key] = view
        return view

    # ----- writes (callers hold write_lock) ---------------------------------------------------------------
    def _sorted_views(self, kind: str, obj: dict[str, Any]) -> list[SortedView]:
        if kind == "lead":
            return [self.leads_by_created, self.leads_by_updated]
        if kind == "contact":
            return [self.contacts_by_created]
        if kind == "opportunity":
            return [self.opportunities_by_created]
        if kind == "task":
            return [self.tasks_by_created]
        kind_name = obj.get("_type", "")
        by_type = self.activities_by_type.get(kind_name)
        if by_type is None:
            by_type = self.activities_by_type[kind_name] = SortedView((), "date_created")
        views = [by_type, self.activities_all]
        if kind_name != "EmailThread":
            views.append(self.activities_no_threads)
        return views

    def _lead_index(self, kind: str, obj: dict[str, Any]) -> dict[str, list[dict[str, Any]]] | None:
        if kind == "contact":
            return self.contacts_by_lead
        if kind == "opportunity":
            return self.opportunities_by_lead
        if kind == "activity":
            return self.activities_by_lead
        if kind == "task" and obj.get("_type") == "lead":
            return self.lead_tasks_by_lead
        return None

    def _invalidate_lists(self, kind: str) -> None:
        self.results.drop(KIND_FAMILIES[kind])
        if kind == "activity":
            with self._lock:
                self._views.clear()  # the activity_at views: rebuilt once on the next read that needs one

    def _attach(self, kind: str, obj: dict[str, Any], lead_id: str | None) -> None:
        index = self._lead_index(kind, obj)
        if index is not None and lead_id:
            rows = index.setdefault(lead_id, [])
            rows.insert(bisect_right([_created_order(o) for o in rows], _created_order(obj)), obj)

    def _detach(self, kind: str, obj: dict[str, Any], lead_id: str | None) -> None:
        index = self._lead_index(kind, obj)
        if index is not None and lead_id:
            rows = index.get(lead_id, [])
            for i, item in enumerate(rows):
                if item is obj:
                    del rows[i]
                    break

    def insert(self, kind: str, obj: dict[str, Any]) -> None:
        """A new record of `kind` ("lead", "contact", "opportunity", "task", "activity")."""
        getattr(self, KIND_BY_ID[kind])[obj["id"]] = obj
        getattr(self.org, KIND_ORG_LIST[kind]).append(obj)
        lead_id = obj["id"] if kind == "lead" else obj.get("lead_id")
        self._attach(kind, obj, lead_id)
        for view in self._sorted_views(kind, obj):
            view.insert(obj)
        self._invalidate_lists(kind)

    def remove_many(self, kind: str, objs: list[dict[str, Any]]) -> None:
        """Delete records of one kind (one pass over the org list however many there are)."""
        if not objs:
            return
        by_id = getattr(self, KIND_BY_ID[kind])
        gone = {id(o) for o in objs}
        for obj in objs:
            by_id.pop(obj["id"], None)
            lead_id = obj["id"] if kind == "lead" else obj.get("lead_id")
            self._detach(kind, obj, lead_id)
            for view in self._sorted_views(kind, obj):
                view.remove(obj)
        org_list = getattr(self.org, KIND_ORG_LIST[kind])
        org_list[:] = [o for o in org_list if id(o) not in gone]
        if kind == "lead":
            for obj in objs:
                for index in (
                    self.contacts_by_lead,
                    self.opportunities_by_lead,
                    self.activities_by_lead,
                    self.lead_tasks_by_lead,
                ):
                    index.pop(obj["id"], None)
        self._invalidate_lists(kind)

    def changed(self, kind: str, obj: dict[str, Any], before: dict[str, Any]) -> None:
        """`obj` was edited in place; `before` is a shallow copy taken before the edit."""
        lead_id = obj["id"] if kind == "lead" else obj.get("lead_id")
        old_lead = before["id"] if kind == "lead" else before.get("lead_id")
        if old_lead != lead_id:  # moved to another lead (merge)
            self._detach(kind, obj, old_lead)
            self._attach(kind, obj, lead_id)
        for view in self._sorted_views(kind, obj):
            if before.get(view.field) != obj.get(view.field):
                view.remove(obj, before.get(view.field), use_old=True)
                view.insert(obj)
        self._invalidate_lists(kind)

    def add_event(self, event: dict[str, Any]) -> None:
        self.events_by_id[event["id"]] = event
        self.org.events.insert(0, event)  # the org's list is newest first, like the log
        self.events_by_updated.insert(event)
        self.results.drop(("event",))
