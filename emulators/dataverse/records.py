"""Record writes: create, update, upsert, delete, binds, activity parties, state rules (reference §2, §7, §12.3).

A `WritePlan` per table (recompiled when the metadata version moves) maps every accepted payload key to a
pre-bound handler, so a bulk load validates a record without touching metadata.
"""

from __future__ import annotations

import binascii
import uuid
from dataclasses import dataclass, field
from typing import Any

from emulators.dataverse import processes, solutions
from emulators.dataverse.errors import DataverseError, not_found
from emulators.dataverse.file_store import decoded_size
from emulators.dataverse.metadata import LOOKUP_KINDS, Attribute, Entity
from emulators.dataverse.odata import parse_key, split_segment
from emulators.dataverse.record_states import apply_state
from emulators.dataverse.security import privilege_id, table_privilege
from emulators.dataverse.state import Caller, Environment
from emulators.dataverse.store import Row
from emulators.dataverse.values import Converter, converter, now_iso

API_PREFIX = "/api/data/v9.2/"
SYSTEM_SET = frozenset({"createdon", "modifiedon", "createdby", "modifiedby", "versionnumber", "ownerid"})


@dataclass
class WritePlan:
    version: int
    columns: dict[str, tuple[Attribute, Converter]] = field(default_factory=dict)
    binds: dict[str, tuple[Attribute, str]] = field(
        default_factory=dict
    )  # "nav@odata.bind" -> (attr, target)
    direct_lookups: set[str] = field(default_factory=set)
    defaults: dict[str, Any] = field(default_factory=dict)
    required: list[Attribute] = field(default_factory=list)
    party_nav: str | None = None


def unknown_property(ent: Entity, name: str) -> DataverseError:
    return DataverseError(
        400, "0x80060888", f"Could not find a property named '{name}' on type '{ent.odata_type}'."
    )


def privilege_denied(caller: Caller, privilege: str, ent: Entity) -> DataverseError:
    return DataverseError(
        403,
        "0x80040220",
        f"Principal user (Id={caller.systemuserid}, type=8, roleCount=1, privilegeCount=0, accessMode='4'), is "
        f"missing {privilege} privilege (Id={privilege_id(privilege)}) on "
        f"OTC={ent.object_type_code} for entity '{ent.logical_name}'. Context: Method=Create.",
    )


class Writer:
    def __init__(self, env: Environment):
        self.env = env
        self.plans: dict[str, WritePlan] = {}
        self._references: dict[tuple[str, str], list] = {}

    def reference(self, table: str, record_id: str) -> list:
        """The lookup value [table, id] of a system reference every row carries (its creator, the business
        unit), one list shared by all rows: rows replace a lookup value, never change one in place, and a
        large load would otherwise keep hundreds of thousands of equal lists."""
        key = (table, record_id)
        value = self._references.get(key)
        if value is None:
            value = self._references[key] = [table, record_id]
        return value

    # ---- plans ----------------------------------------------------------------------------------------
    def plan(self, ent: Entity) -> WritePlan:
        plan = self.plans.get(ent.logical_name)
        if plan is not None and plan.version == self.env.metadata.version:
            return plan
        plan = WritePlan(version=self.env.metadata.version)
        for attr in ent.attributes.values():
            if attr.kind in LOOKUP_KINDS or attr.kind == "PartyList":
                plan.direct_lookups.add(attr.logical_name)
                plan.direct_lookups.add(f"_{attr.logical_name}_value")
            else:
                plan.columns[attr.logical_name] = (attr, converter(ent.logical_name, attr))
            if attr.default is not None and attr.logical_name != "statecode":
                plan.defaults[attr.logical_name] = attr.default
            if (
                attr.required == "SystemRequired"
                and attr.valid_create
                and attr.default is None
                and not attr.is_primary_id
                and attr.logical_name not in SYSTEM_SET
                and attr.kind != "EntityName"
            ):
                plan.required.append(attr)
        for nav, (attr_name, target) in ent.nav_single.items():
            plan.binds[f"{nav}@odata.bind"] = (ent.attributes[attr_name], target)
        if ent.is_activity:
            plan.party_nav = f"{ent.logical_name}_activity_parties"
        self.plans[ent.logical_name] = plan
        return plan

    # ---- binds ----------------------------------------------------------------------------------------
    def resolve_reference(self, text: Any, ent: Entity, prop: str) -> tuple[Entity, str]:
        """'/accounts(<id>)', 'accounts(k='v')' or a full URL -> (table, existing record id)."""
        if not isinstance(text, str) or not text:
            raise DataverseError(
                400,
                "0x80048d19",
                f"Error identified in Payload provided by the user for Entity :'{ent.entity_set}'  ---->  "
                f"InnerException : Microsoft.OData.ODataException: The value of '{prop}' must be an entity "
                "reference URL such as '/accounts(<guid>)'.",
            )
        ref = text.split(API_PREFIX, 1)[-1].lstrip("/")
        set_name, key = split_segment(ref)
        target = self.env.metadata.by_set.get(set_name)
        if target is None or key is None:
            raise DataverseError(400, "0x80060888", f"Resource not found for the segment '{ref}'.")
        return target, self.find_record(target, parse_key(key))

    def find_record(self, target: Entity, key: str | dict[str, Any]) -> str:
        if isinstance(key, str):
            if self.env.store.get(target.logical_name, key) is None:
                raise not_found(target.logical_name, key)
            return key
        record_id = self.find_by_alternate_key(target, key)
        if record_id is None:
            raise DataverseError(
                404,
                "0x80048d02",
                f"A record with the specified key values does not exist in {target.logical_name} entity",
            )
        return record_id

    def find_by_alternate_key(self, ent: Entity, values: dict[str, Any]) -> str | None:
        # A lookup column is spelled _x_value in a key segment: accounts(_primarycontactid_value=<guid>).
        values = {k[1:-6] if k.startswith("_") and k.endswith("_value") else k: v for k, v in values.items()}
        key = self.key_for(ent, values)
        if key is None:  # the primary key spelled as name=value
            pk = values.get(ent.primary_id)
            return (
                pk.lower()
                if isinstance(pk, str) and self.env.store.get(ent.logical_name, pk.lower())
                else None
            )
        return self.env.store.find_by_key(ent, key, values)

    def key_for(self, ent: Entity, values: dict[str, Any]) -> Any:
        names = set(values)
        if names == {ent.primary_id}:
            return None
        for key in self.env.metadata.active_keys(ent):
            if set(key.key_attributes) == names:
                return key
        t = ent.odata_type
        raise DataverseError(
            400,
            "0x80060888",
            f"The key in the request URI is not valid for resource '{t}'. Ensure that the names and number of key "
            f"properties match the declared or alternate key properties for the resource '{t}'.",
        )

    def _bind(self, ent: Entity, attr: Attribute, target: str, value: Any, key: str) -> list | None:
        if value is None:
            return None
        tgt, record_id = self.resolve_reference(value, ent, key)
        if tgt.logical_name != target and not (attr.kind == "Owner" and tgt.logical_name in attr.targets):
            raise DataverseError(
                400,
                "0x80048d19",
                f"Error identified in Payload provided by the user for Entity :'{ent.entity_set}'  ---->  "
                f"InnerException : Microsoft.OData.ODataException: The navigation property '{key[:-11]}' expects "
                f"'{self.env.metadata.tables[target].entity_set}' but the reference is to '{tgt.entity_set}'.",
            )
        if attr.logical_name == "ownerid" and tgt.logical_name == "systemuser":
            owner = self.env.store.get("systemuser", record_id)
            if owner and owner.get("isdisabled"):
                raise DataverseError(
                    400,
                    "0x80040225",
                    "The specified user is either disabled or is not a member of any business unit",
                )
        return [tgt.logical_name, record_id]

    # ---- payload -> row ----------------------------------------------------------------------------------
    def apply(
        self, ent: Entity, payload: dict, row: Row, creating: bool, caller: Caller
    ) -> tuple[list | None, dict[str, Any]]:
        """Validate `payload` and write its values into `row`. Returns (activity parties or None, state change)."""
        plan = self.plan(ent)
        parties: list | None = None
        state: dict[str, Any] = {}
        for key, value in payload.items():
            col = plan.columns.get(key)
            if col is not None:
                attr, conv = col
                if key in ("statecode", "statuscode"):
                    if key == "statuscode" or not creating:
                        state[key] = conv(value)
                    continue
                if not (attr.valid_create if creating else attr.valid_update) or attr.is_primary_id:
                    continue  # not valid for this operation: silently ignored (reference §2.6)
                converted = conv(value)
                if converted is None and attr.required == "SystemRequired":
                    raise self.required_missing(ent, attr)
                row[key] = converted
                continue
            bind = plan.binds.get(key)
            if bind is not None:
                attr, target = bind
                if attr.valid_create if creating else attr.valid_update:
                    ref = self._bind(ent, attr, target, value, key)
                    if ref is not None and attr.kind != "Owner":
                        self.check_append(ent, ref[0], caller)
                    row[attr.logical_name] = ref
                continue
            if key[:1] == "@" or ("@" in key and not key.endswith("@odata.bind")):
                continue  # instance annotations (@odata.type, @odata.etag, FormattedValue, ...)
            if key == plan.party_nav:
                parties = self.party_rows(ent, value, caller)
                continue
            if key in plan.direct_lookups:
                if value is None and not key.startswith("_"):
                    row[key] = None
                    continue
                raise DataverseError(
                    400,
                    "0x80048d19",
                    f"Error identified in Payload provided by the user for Entity :'{ent.entity_set}'  ---->  "
                    "InnerException : CRM do not support direct update of Entity Reference properties, Use "
                    f"Navigation properties instead. (write '{key}' through its navigation property with @odata.bind)",
                )
            if key.endswith("@odata.bind"):
                prop = key[: -len("@odata.bind")]
                raise DataverseError(
                    400,
                    "0x80048d19",
                    f"Error identified in Payload provided by the user for Entity :'{ent.entity_set}'  ---->  "
                    f"InnerException : Microsoft.OData.ODataException: An undeclared property '{prop}' which only "
                    "has property annotations in the payload but no property value was found in the payload. In "
                    "OData, only declared navigation properties and declared named streams can be represented as "
                    "properties without values.",
                )
            raise unknown_property(ent, key)
        return parties, state

    def check_append(self, ent: Entity, target: str, caller: Caller) -> None:
        """Setting a lookup needs Append on the record's table and AppendTo on the table it points to."""
        for privilege, table in (("Append", ent), ("AppendTo", self.env.metadata.tables[target])):
            name = table_privilege(privilege, table)
            if caller.lacks(name, self.env.config):
                raise privilege_denied(caller, name, table)

    @staticmethod
    def required_missing(ent: Entity, attr: Attribute) -> DataverseError:
        return DataverseError(
            400,
            "0x80040200",
            f"Required field missing. The '{attr.logical_name}' attribute of the '{ent.logical_name}' entity is "
            "SystemRequired and must have a value.",
        )

    def party_rows(self, activity: Entity, value: Any, caller: Caller) -> list[Row]:
        if not isinstance(value, list):
            raise DataverseError(
                400, "0x80048d19", f"'{activity.logical_name}_activity_parties' must be a JSON array."
            )
        party_ent = self.env.metadata.tables["activityparty"]
        out = []
        for item in value:
            if not isinstance(item, dict):
                raise DataverseError(400, "0x80048d19", "Each activity party must be a JSON object.")
            row: Row = {}
            self.apply(party_ent, item, row, True, caller)
            if row.get("participationtypemask") is None:
                raise self.required_missing(party_ent, party_ent.attributes["participationtypemask"])
            out.append(row)
        return out

    # ---- operations ------------------------------------------------------------------------------------
    def create(
        self, ent: Entity, payload: dict, caller: Caller, record_id: str | None = None
    ) -> tuple[str, Row]:
        self.check_writable(ent)
        if caller.lacks(table_privilege("Create", ent), self.env.config):
            raise privilege_denied(caller, table_privilege("Create", ent), ent)
        plan = self.plan(ent)
        pk = payload.get(ent.primary_id)
        if pk is not None:
            pk = plan.columns[ent.primary_id][1](pk)
            if record_id is not None and pk != record_id:
                raise DataverseError(
                    400,
                    "0x80040203",
                    f"The id in the URL ({record_id}) does not match '{ent.primary_id}' in the body ({pk}).",
                )
        record_id = (record_id or pk or str(uuid.uuid4())).lower()
        row: Row = dict(plan.defaults)
        row[ent.primary_id] = record_id
        parties, state = self.apply(ent, payload, row, True, caller)
        for attr in plan.required:
            if row.get(attr.logical_name) is None:
                raise self.required_missing(ent, attr)
        solutions.check_write(self.env, ent, record_id, row, "Create")  # publisher/solution rules
        now = now_iso()
        row["createdon"] = row["modifiedon"] = now
        row["createdby"] = row["modifiedby"] = self.reference("systemuser", caller.systemuserid)
        if "overriddencreatedon" in row and row["overriddencreatedon"] is not None:
            if caller.lacks("prvOverrideCreatedOnCreatedBy", self.env.config):
                raise privilege_denied(caller, "prvOverrideCreatedOnCreatedBy", ent)
            # After create, createdon holds the historical date and overriddencreatedon the import time (§7.12).
            row["createdon"], row["overriddencreatedon"] = row["overriddencreatedon"], now
        if "ownerid" in ent.attributes:
            if row.get("ownerid") is None:
                row["ownerid"] = self.reference("systemuser", caller.systemuserid)
            owner = row["ownerid"]
            row["owninguser"] = owner if owner[0] == "systemuser" else None
            row["owningteam"] = owner if owner[0] == "team" else None
            row["owningbusinessunit"] = self.reference("businessunit", self.env.businessunit_id)
        if "statecode" in ent.attributes:
            apply_state(ent, row, state, record_id, creating=True)
        self.derive(ent, row)
        processes.check_write(self.env, ent, record_id, row, None)  # business process flow rules
        row["versionnumber"] = self.env.store.next_version()
        with self.env.store.lock:
            if self.env.store.get(ent.logical_name, record_id) is not None:
                raise DataverseError(
                    412,
                    "0x80040237",
                    "Operation failed due to a SQL integrity violation. Cannot insert duplicate key.",
                )
            self.env.store.put(ent, record_id, row)
            processes.after_create(self.env, ent, record_id, row)  # applies the default process
            if parties is not None:
                self.replace_parties(ent, record_id, parties)
        return record_id, row

    def update(self, ent: Entity, record_id: str, payload: dict, caller: Caller) -> Row:
        self.check_writable(ent)
        if caller.lacks(table_privilege("Write", ent), self.env.config):
            raise privilege_denied(caller, table_privilege("Write", ent), ent)
        with self.env.store.lock:
            existing = self.env.store.get(ent.logical_name, record_id)
            if existing is None:
                raise not_found(ent.logical_name, record_id)
            row = dict(existing)
            parties, state = self.apply(ent, payload, row, False, caller)
            solutions.check_write(self.env, ent, record_id, row, "Update")
            if state:
                apply_state(ent, row, state, record_id, creating=False)
            row["modifiedon"] = now_iso()
            row["modifiedby"] = self.reference("systemuser", caller.systemuserid)
            if "ownerid" in payload or "ownerid@odata.bind" in payload:
                owner = row.get("ownerid") or ["systemuser", caller.systemuserid]
                row["ownerid"] = owner
                row["owninguser"] = owner if owner[0] == "systemuser" else None
                row["owningteam"] = owner if owner[0] == "team" else None
            self.derive(ent, row)
            processes.check_write(self.env, ent, record_id, row, existing)
            row["versionnumber"] = self.env.store.next_version()
            self.env.store.put(ent, record_id, row)
            if parties is not None:
                self.replace_parties(ent, record_id, parties)
            return row

    def delete(self, ent: Entity, record_id: str, caller: Caller) -> None:
        self.check_writable(ent)
        if caller.lacks(table_privilege("Delete", ent), self.env.config):
            raise privilege_denied(caller, table_privilege("Delete", ent), ent)
        with self.env.store.lock:
            if self.env.store.get(ent.logical_name, record_id) is None:
                raise not_found(ent.logical_name, record_id)
            solutions.check_write(self.env, ent, record_id, None, "Delete")
            if ent.is_activity:
                self.replace_parties(ent, record_id, [])
            self.env.store.put(ent, record_id, None)

    @staticmethod
    def check_writable(ent: Entity) -> None:
        if ent.is_pointer:
            raise DataverseError(
                405,
                "0x80040216",
                "The 'activitypointer' table is read-only: create and update through each activity's own entity set.",
            )

    # ---- derived values and rules -------------------------------------------------------------------------
    def derive(self, ent: Entity, row: Row) -> None:
        name = ent.logical_name
        if name in ("contact", "lead", "systemuser"):
            row["fullname"] = " ".join(p for p in (row.get("firstname"), row.get("lastname")) if p) or None
        if ent.is_activity:
            row["activitytypecode"] = name
            row["isregularactivity"] = True
        if name == "annotation":
            obj = row.get("objectid")
            row["objecttypecode"] = obj[0] if obj else None
            body = row.get("documentbody")
            if isinstance(body, str) and body:  # a body kept from before is on disk, checked when written
                limit = self.env.store.get("organization", self.env.organization_id) or {}
                if len(body) > int(limit.get("maxuploadfilesize") or self.env.config.max_upload_file_size):
                    raise DataverseError(400, "0x80044a02", "Attachment file size is too big.")
                try:
                    row["filesize"] = decoded_size(body)  # as len(b64decode(body, validate=True))
                except (binascii.Error, ValueError):
                    raise DataverseError(
                        400, "0x80040203", "The documentbody of an annotation must be base64-encoded."
                    ) from None
            elif not body:
                row["filesize"] = 0 if row.get("isdocument") else None
        if "transactioncurrencyid" in ent.attributes and row.get("transactioncurrencyid") is None:
            if any(
                a.kind == "Money" and row.get(a.logical_name) is not None for a in ent.attributes.values()
            ):
                # A money value without a currency gets the organization's base currency (reference §6.2).
                row["transactioncurrencyid"] = ["transactioncurrency", self.env.currency_id]
                row["exchangerate"] = 1.0

    def replace_parties(self, activity: Entity, activity_id: str, parties: list[Row]) -> None:
        store = self.env.store
        party_ent = self.env.metadata.tables["activityparty"]
        for pid in list(store.parties_by_activity.get(activity_id, ())):
            store.put(party_ent, pid, None)
        for party in parties:
            pid = str(uuid.uuid4())
            row = dict(party)
            row["activitypartyid"] = pid
            row["activityid"] = [activity.logical_name, activity_id]
            store.put(party_ent, pid, row)

    # ---- upsert (reference §2.4) ----------------------------------------------------------------------------
    def locate(self, ent: Entity, key: str | dict[str, Any]) -> str | None:
        if isinstance(key, str):
            return key if self.env.store.get(ent.logical_name, key) is not None else None
        return self.find_by_alternate_key(ent, key)

    @staticmethod
    def missing(ent: Entity, key: str | dict) -> DataverseError:
        if isinstance(key, str):
            return not_found(ent.logical_name, key)
        return DataverseError(
            404,
            "0x80048d02",
            f"A record with the specified key values does not exist in {ent.logical_name} entity",
        )

    def upsert(
        self,
        ent: Entity,
        key: str | dict[str, Any],
        payload: dict,
        caller: Caller,
        if_match: str | None = None,
        if_none_match: str | None = None,
    ) -> tuple[str, Row, bool]:
        """PATCH semantics: update when the record exists, else create it (with the id or key values)."""
        with self.env.store.lock:
            record_id = self.locate(ent, key)
            if record_id is not None:
                if if_none_match == "*":
                    raise DataverseError(
                        412, "0x80040237", "A record with matching key values already exists."
                    )
                if if_match and if_match != "*":
                    current = self.env.store.get(ent.logical_name, record_id) or {}
                    if if_match != f'W/"{current.get("versionnumber", 0)}"':
                        raise DataverseError(
                            412,
                            "0x80060882",
                            "The version of the existing record doesn't match the RowVersion property provided.",
                        )
                return record_id, self.update(ent, record_id, payload, caller), False
            if if_match:
                raise self.missing(ent, key)
            if isinstance(key, str):
                record_id, row = self.create(ent, payload, caller, record_id=key)
            else:
                values = {k: v for k, v in key.items() if k in ent.attributes}
                record_id, row = self.create(ent, {**payload, **values}, caller)
            return record_id, row, True
