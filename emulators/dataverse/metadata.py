"""In-memory Dataverse metadata: tables, columns, relationships, navigation properties, alternate keys.

Built from the data in `seed_metadata` and grown by schema writes (`metadata_writes`). Record handlers use
`Metadata.version` to know when their pre-compiled validators are stale.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from emulators.dataverse import seed_metadata
from emulators.dataverse.config import deterministic_id
from emulators.dataverse.metadata_model import (
    LOOKUP_KINDS,
    OPTION_KINDS,
    TYPE_INFO,
    Attribute,
    Entity,
    Key,
    Relationship,
    label,
    label_text,
)

__all__ = [
    "LOOKUP_KINDS",
    "OPTION_KINDS",
    "TYPE_INFO",
    "Attribute",
    "Entity",
    "Key",
    "Metadata",
    "Relationship",
    "label",
    "label_text",
]


def _attr_from_seed(entity: str, spec: list, overrides: dict) -> Attribute:
    name, kind, opts = spec[0], spec[1], {**spec[2], **overrides.get(spec[0], {})}
    access = opts.get("access")
    attr = Attribute(
        entity=entity,
        logical_name=name,
        schema_name=name,
        kind=kind,
        required=opts.get("req", "None"),
        max_length=opts.get("max"),
        min_value=opts.get("min"),
        max_value=opts.get("maxv"),
        precision=opts.get("prec"),
        targets=list(opts.get("targets", [])),
        format=opts.get("fmt"),
        behavior=opts.get("behavior"),
        valid_create=access != "ro",
        valid_update=access is None,
        display_name=opts.get("name", name),
        default=opts.get("default"),
        true_label=opts.get("true", "Yes"),
        false_label=opts.get("false", "No"),
        metadata_id=deterministic_id("attribute", entity, name),
    )
    if kind in ("Integer",) and attr.min_value is None:
        attr.min_value, attr.max_value = -2147483648, 2147483647
    if kind == "BigInt":
        attr.min_value, attr.max_value = -9223372036854775808, 9223372036854775807
    attr.options = [{"Value": v, "Label": label(text)} for v, text in opts.get("opts", [])]
    return attr


class Metadata:
    """All table definitions of the emulated org. Mutations bump `version` (validators recompile)."""

    def __init__(self, key_activation_seconds: float):
        self.key_activation_seconds = key_activation_seconds
        self.lock = threading.RLock()
        self.version = 0
        self.tables: dict[str, Entity] = {}
        self.by_set: dict[str, Entity] = {}
        self.custom_relationships: list[dict] = []  # POST RelationshipDefinitions bodies, replayed on relink
        self.relationships: dict[str, Relationship] = {}
        self.key_checker: Any = None  # callable(entity, key) -> bool (True when existing data is unique)
        # Imported here: the security module reaches the HTTP helpers, which import this module.
        from emulators.dataverse.security import TABLES as SECURITY_TABLES

        for logical_name, spec in {**seed_metadata.TABLES, **SECURITY_TABLES}.items():
            self.add_table(self.entity_from_spec(logical_name, spec, custom=False))
        self.relink()

    # ---- construction -------------------------------------------------------------------------------
    def entity_from_spec(
        self, logical_name: str, spec: dict, custom: bool, schema_name: str | None = None
    ) -> Entity:
        ent = Entity(
            logical_name=logical_name,
            schema_name=schema_name or logical_name,
            entity_set=spec["set"],
            object_type_code=spec["otc"],
            primary_id=spec["id"],
            primary_name=spec["primary"],
            ownership=spec["ownership"],
            display=list(spec["display"]),
            metadata_id=deterministic_id("entity", logical_name),
            is_activity=bool(spec.get("is_activity")),
            is_pointer=bool(spec.get("pointer")),
            is_custom=custom,
            has_activities=bool(spec.get("has_activities")),
            has_notes=bool(spec.get("has_notes")),
            bulk=bool(spec.get("bulk")),
            parties=dict(spec.get("parties", {})),
        )
        overrides = spec.get("overrides", {})
        pk = Attribute(
            logical_name, ent.primary_id, ent.primary_id, "Uniqueidentifier", required="SystemRequired"
        )
        pk.is_primary_id, pk.valid_update, pk.metadata_id = (
            True,
            False,
            deterministic_id("attribute", logical_name, pk.logical_name),
        )
        pk.is_custom = custom
        ent.attributes[pk.logical_name] = pk
        specs: list = []
        for fam in spec.get("families", []):
            specs.extend(seed_metadata.FAMILIES[fam])
        specs.extend(spec.get("attrs", []))
        for s in specs:
            if s[0] == ent.primary_id:
                continue
            attr = _attr_from_seed(logical_name, s, overrides)
            ent.attributes[attr.logical_name] = attr
        for party_attr in ent.parties:
            pl = Attribute(
                logical_name,
                party_attr,
                party_attr,
                "PartyList",
                targets=["account", "contact", "lead", "systemuser"],
            )
            pl.metadata_id = deterministic_id("attribute", logical_name, party_attr)
            ent.attributes[party_attr] = pl
        if ent.primary_name in ent.attributes:
            ent.attributes[ent.primary_name].is_primary_name = True
        if "states" in spec:
            self._add_state_model(ent, spec["states"], spec["statuses"])
        return ent

    def _add_state_model(self, ent: Entity, states: list, statuses: list) -> None:
        state = Attribute(ent.logical_name, "statecode", "StateCode", "State", required="SystemRequired")
        state.options = [{"Value": v, "Label": label(t), "DefaultStatus": d} for v, t, d in states]
        # statecode is not valid for create (reference §7.7): a create always starts in the first state.
        state.valid_create, state.default = False, states[0][0]
        status = Attribute(ent.logical_name, "statuscode", "StatusCode", "Status")
        status.options = [{"Value": v, "Label": label(t), "State": s} for v, t, s in statuses]
        status.default = states[0][2]
        for a in (state, status):
            a.metadata_id = deterministic_id("attribute", ent.logical_name, a.logical_name)
            a.display_name = "Status" if a is state else "Status Reason"
            ent.attributes[a.logical_name] = a

    def add_table(self, ent: Entity) -> None:
        with self.lock:
            self.tables[ent.logical_name] = ent
            self.by_set[ent.entity_set] = ent
            self.version += 1

    # ---- relationships and navigation properties --------------------------------------------------------
    def relink(self) -> None:
        """Recompute the polymorphic lookup targets and every relationship / navigation property."""
        with self.lock:
            activities = [t for t in self.tables.values() if t.is_activity]
            with_activities = [t.logical_name for t in self.tables.values() if t.has_activities]
            with_notes = [t.logical_name for t in self.tables.values() if t.has_notes]
            for t in self.tables.values():
                t.many_to_one, t.one_to_many, t.nav_single = [], [], {}
                if (t.is_activity or t.is_pointer) and "regardingobjectid" in t.attributes:
                    t.attributes["regardingobjectid"].targets = list(with_activities)
            self.tables["annotation"].attributes["objectid"].targets = list(with_notes)
            self.tables["activityparty"].attributes["activityid"].targets = [
                t.logical_name for t in activities
            ] + ["activitypointer"]
            self.relationships = {}
            for t in list(self.tables.values()):
                for attr in t.attributes.values():
                    if attr.kind in LOOKUP_KINDS:
                        for target in attr.targets:
                            self._link(t, attr, target)
            self.version += 1

    def _link(self, ent: Entity, attr: Attribute, target: str) -> None:
        if target not in self.tables:
            return
        nav, schema = self._nav_name(ent, attr, target)
        tgt = self.tables[target]
        collection = schema if attr.logical_name != "activityid" else f"{target}_activity_parties"
        rel = Relationship(
            schema_name=schema,
            referenced_entity=target,
            referenced_attribute=tgt.primary_id,
            referencing_entity=ent.logical_name,
            referencing_attribute=attr.logical_name,
            nav_name=nav,
            collection_nav=collection,
            is_custom=attr.is_custom,
            metadata_id=deterministic_id("relationship", schema),
        )
        for custom in self.custom_relationships:
            if (
                custom["referencing"] == ent.logical_name
                and custom["attribute"] == attr.logical_name
                and custom["referenced"] == target
            ):
                rel.schema_name, rel.nav_name = custom["schema"], custom["nav"]
                rel.collection_nav = custom.get("collection") or custom["schema"]
                rel.metadata_id = custom["metadata_id"]
        ent.many_to_one.append(rel)
        tgt.one_to_many.append(rel)
        ent.nav_single[rel.nav_name] = (attr.logical_name, target)
        self.relationships[rel.schema_name] = rel

    @staticmethod
    def _nav_name(ent: Entity, attr: Attribute, target: str) -> tuple[str, str]:
        """The real naming patterns of reference §2.5 (navigation property, relationship SchemaName)."""
        key = f"{ent.logical_name}.{attr.logical_name}"
        for tgt, nav, schema in seed_metadata.NAV_OVERRIDES.get(key, []):
            if tgt == target:
                return nav, schema
        a, t = attr.logical_name, ent.logical_name
        if a == "regardingobjectid":
            return f"regardingobjectid_{target}_{t}", f"{target.capitalize()}_{t.capitalize()}s"
        if a == "objectid" and t == "annotation":
            return f"objectid_{target}", f"{target.capitalize()}_Annotation"
        if a == "partyid":
            return f"partyid_{target}", f"{target}_activity_parties"
        if a == "activityid" and t == "activityparty":
            return f"activityid_{target}", f"{target}_activity_parties"
        if attr.kind == "Customer":
            return f"{a}_{target}", f"{t}_customer_{target}s"
        if attr.kind == "Owner":
            return "ownerid", f"{'user' if target == 'systemuser' else target}_{t}"
        return a, f"{t}_{a}_{target}" if not attr.is_custom else attr.schema_name

    # ---- lookups --------------------------------------------------------------------------------------
    def table(self, logical_name: str) -> Entity | None:
        return self.tables.get(logical_name)

    def key_status(self, key: Key) -> str:
        """Alternate key index activation is asynchronous (reference §6.4): resolved when first observed."""
        if key.status == "Pending" and time.monotonic() - key.created_at >= self.key_activation_seconds:
            ok = self.key_checker(self.tables[key.entity], key) if self.key_checker else True
            key.status = "Active" if ok else "Failed"
            self.version += 1
        return key.status

    def active_keys(self, ent: Entity) -> list[Key]:
        return [k for k in ent.keys if self.key_status(k) == "Active"]
