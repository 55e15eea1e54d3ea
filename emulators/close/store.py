"""The org, pre-indexed once at start so that no request needs a full scan.

Indexes: every object by id; contacts/opportunities/tasks/activities by lead; activities by `_type`; and
time-sorted views (by `date_created`, `date_updated`, ...) whose ordering is stable (ties broken by id), so
offset paging on the static dataset never loses or repeats a row. Serialised JSON of each object is cached
(the data is read-only for the life of the app), and filtered result lists are memoised per query.
"""

from __future__ import annotations

import threading
from bisect import bisect_left, bisect_right
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Hashable, Iterable
from typing import TYPE_CHECKING, Any

from .jsonutil import _API_CALLS, _APP_FILES, dumps
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

# The file URL prefixes `rewrite_hosts` points at the emulator; an export line is kept split around
# them (`OrgStore.export_line`), index i standing for FILE_URL_PREFIXES[i].
FILE_URL_PREFIXES = (_APP_FILES, _API_CALLS)


class SortedView:
    """Objects sorted ascending by (time key, id). `keys[i]` is the time key of `items[i]`."""

    __slots__ = ("items", "keys")

    def __init__(self, objects: Iterable[dict[str, Any]], field: str) -> None:
        decorated = []
        for obj in objects:
            key = to_key(obj.get(field))
            decorated.append((MISSING if key is None else key, obj["id"], obj))
        decorated.sort(key=lambda t: (t[0], t[1]))
        self.items: list[dict[str, Any]] = [t[2] for t in decorated]
        self.keys: list[int] = [t[0] for t in decorated]

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


def _by_lead(objects: Iterable[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for obj in objects:
        lead_id = obj.get("lead_id")
        if lead_id:
            out[lead_id].append(obj)
    for items in out.values():
        items.sort(key=lambda o: (to_key(o.get("date_created")) or MISSING, o["id"]))
    return dict(out)


class OrgStore:
    """Read-only, indexed view of a CloseOrg."""

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
        self._bytes: dict[str, bytes] = {}
        self._full_leads: dict[str, dict[str, Any]] = {}
        self._export_lines: dict[str, tuple[bytes | int, ...]] = {}
        self._lock = threading.Lock()

    def prewarm(self) -> None:
        """Serialise every list-served object and export line now (~1 s for `typical`) so the first
        scan or export is as fast as later ones."""
        for objects in (self.org.activities, self.org.contacts, self.org.opportunities, self.org.tasks):
            for obj in objects:
                self.object_bytes(obj)
        for lead in self.org.leads:
            self.export_line(lead)

    # ----- derived objects -------------------------------------------------------------------------------
    def full_lead(self, lead: dict[str, Any]) -> dict[str, Any]:
        """The lead as GET /lead/{id}/ returns it: with contacts, contact_ids, opportunities and tasks."""
        lead_id = lead["id"]
        cached = self._full_leads.get(lead_id)
        if cached is not None:
            return cached
        contacts = self.contacts_by_lead.get(lead_id, [])
        full = dict(lead)
        full["contacts"] = contacts
        full["contact_ids"] = [c["id"] for c in contacts]
        full["opportunities"] = self.opportunities_by_lead.get(lead_id, [])
        full["tasks"] = self.lead_tasks_by_lead.get(lead_id, [])
        self._full_leads[lead_id] = full
        return full

    def object_bytes(self, obj: dict[str, Any]) -> bytes:
        """Serialised JSON of a (read-only) object, cached by id."""
        key = obj.get("id")
        if not isinstance(key, str):
            return dumps(obj)
        cached = self._bytes.get(key)
        if cached is None:
            cached = dumps(obj)
            self._bytes[key] = cached
        return cached

    def lead_bytes(self, lead: dict[str, Any]) -> bytes:
        key = "full:" + lead["id"]
        cached = self._bytes.get(key)
        if cached is None:
            cached = dumps(self.full_lead(lead))
            self._bytes[key] = cached
        return cached

    def export_line(self, lead: dict[str, Any]) -> tuple[bytes | int, ...]:
        """The lead's line in a JSON leads export with activities, newline included: the lead as
        GET /lead/{id}/ returns it plus `activities` (oldest first). Split around the file URL
        prefixes, which become ints (indexes in FILE_URL_PREFIXES): the export replaces them with the
        host it is downloaded from in one join, as `rewrite_hosts` would. Cached by lead id."""
        cached = self._export_lines.get(lead["id"])
        if cached is None:
            acts = self.activities_by_lead.get(lead["id"], ())
            body = b",".join([self.object_bytes(a) for a in acts])
            line = b"".join((self.lead_bytes(lead)[:-1], b',"activities":[', body, b"]}\n"))
            pieces: list[bytes | int] = []
            for i, chunk in enumerate(line.split(_APP_FILES)):
                if i:
                    pieces.append(0)
                for j, piece in enumerate(chunk.split(_API_CALLS)):
                    if j:
                        pieces.append(1)
                    pieces.append(piece)
            cached = tuple(pieces)
            self._export_lines[lead["id"]] = cached
        return cached

    def view(self, name: str, objects: Callable[[], Iterable[dict[str, Any]]], field: str) -> SortedView:
        """A lazily built sorted view (for orderings that are rarely asked for), cached by (name, field)."""
        key = (name, field)
        view = self._views.get(key)
        if view is None:
            view = SortedView(objects(), field)
            with self._lock:
                self._views[key] = view
        return view
