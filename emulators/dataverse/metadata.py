"""In-memory Dataverse metadata: tables, columns, relationships, navigation properties, alternate keys.

Built from the data in `seed_metadata` and grown by schema writes (`metadata_writes`). Record handlers use
`Metadata.version` to know when their pre-compiled validators are stale.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from emulators.dataverse import seed_metadata
from emulators.dataverse.config import deterministic_id

# AttributeType -> (AttributeTypeName, @odata.type suffix). MultiSelectPicklist is AttributeType "Virtual".
TYPE_INFO: dict[str, tuple[str, str]] = {
    "String": ("StringType", "StringAttributeMetadata"),
    "Memo": ("MemoType", "MemoAttributeMetadata"),
    "Integer": ("IntegerType", "IntegerAttributeMetadata"),
    "BigInt": ("BigIntType", "BigIntAttributeMetadata"),
    "Decimal": ("DecimalType", "DecimalAttributeMetadata"),
    "Double": ("DoubleType", "DoubleAttributeMetadata"),
    "Money": ("MoneyType", "MoneyAttributeMetadata"),
    "Boolean": ("BooleanType", "BooleanAttributeMetadata"),
    "DateTime": ("DateTimeType", "DateTimeAttributeMetadata"),
    "Picklist": ("PicklistType", "PicklistAttributeMetadata"),
    "MultiSelectPicklist": ("MultiSelectPicklistType", "MultiSelectPicklistAttributeMetadata"),
    "State": ("StateType", "StateAttributeMetadata"),
    "Status": ("StatusType", "StatusAttributeMetadata"),
    "Lookup": ("LookupType", "LookupAttributeMetadata"),
    "Customer": ("CustomerType", "LookupAttributeMetadata"),
    "Owner": ("OwnerType", "LookupAttributeMetadata"),
    "PartyList": ("PartyListType", "LookupAttributeMetadata"),
    "Uniqueidentifier": ("UniqueidentifierType", "UniqueIdentifierAttributeMetadata"),
    "EntityName": ("EntityNameType", "EntityNameAttributeMetadata"),
}
LOOKUP_KINDS = frozenset({"Lookup", "Customer", "Owner"})
OPTION_KINDS = frozenset({"Picklist", "MultiSelectPicklist", "State", "Status"})


def label(text: str | None) -> dict:
    """The Label complex type of the metadata API (reference §6.1)."""
    if not text:
        return {"LocalizedLabels": [], "UserLocalizedLabel": None}
    loc = {"Label": text, "LanguageCode": 1033, "IsManaged": False}
    return {"LocalizedLabels": [loc], "UserLocalizedLabel": loc}


def label_text(value: Any) -> str | None:
    """The first localized label of a Label object sent by a client (or a plain string)."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        for loc in value.get("LocalizedLabels") or []:
            if isinstance(loc, dict) and loc.get("Label"):
                return str(loc["Label"])
    return None


@dataclass(eq=False)
class Attribute:
    entity: str
    logical_name: str
    schema_name: str
    kind: str  # a TYPE_INFO key
    required: str = "None"
    max_length: int | None = None
    min_value: float | None = None
    max_value: float | None = None
    precision: int | None = None
    options: list[dict] = field(default_factory=list)  # {"Value", "Label", and State/DefaultStatus}
    targets: list[str] = field(default_factory=list)
    format: str | None = None
    behavior: str | None = None
    valid_create: bool = True
    valid_update: bool = True
    is_custom: bool = False
    display_name: str | None = None
    description: str | None = None
    default: Any = None
    true_label: str = "Yes"
    false_label: str = "No"
    is_primary_id: bool = False
    is_primary_name: bool = False
    metadata_id: str = ""
    extra: dict = field(default_factory=dict)  # client-supplied properties echoed back on reads

    @property
    def option_values(self) -> list[int]:
        return [int(o["Value"]) for o in self.options]

    def option_label(self, value: int) -> str | None:
        for o in self.options:
            if o["Value"] == value:
                return label_text(o["Label"])
        return None

    def to_json(self) -> dict:
        type_name, odata = TYPE_INFO[self.kind]
        out: dict[str, Any] = {
            "@odata.type": f"#Microsoft.Dynamics.CRM.{odata}",
            "MetadataId": self.metadata_id,
            "LogicalName": self.logical_name,
            "SchemaName": self.schema_name,
            "EntityLogicalName": self.entity,
            "AttributeType": "Virtual" if self.kind == "MultiSelectPicklist" else self.kind,
            "AttributeTypeName": {"Value": type_name},
            "IsCustomAttribute": self.is_custom,
            "IsPrimaryId": self.is_primary_id,
            "IsPrimaryName": self.is_primary_name,
            "IsValidForCreate": self.valid_create,
            "IsValidForUpdate": self.valid_update,
            "IsValidForRead": True,
            "IsLogical": False,
            "RequiredLevel": {
                "Value": self.required,
                "CanBeChanged": not self.is_primary_id,
                "ManagedPropertyLogicalName": "canmodifyrequirementlevelsettings",
            },
            "DisplayName": label(self.display_name),
            "Description": label(self.description),
            "AttributeOf": None,
        }
        if self.kind in ("String", "Memo"):
            out["MaxLength"] = self.max_length
            out["DatabaseLength"] = (self.max_length or 0) * 2
            if self.kind == "String":
                out["FormatName"] = {"Value": self.format or "Text"}
                out["Format"] = self.format or "Text"
            else:
                out["Format"] = self.format or "TextArea"
        elif self.kind in ("Integer", "BigInt", "Decimal", "Double", "Money"):
            out["MinValue"] = self.min_value
            out["MaxValue"] = self.max_value
            if self.kind in ("Decimal", "Double", "Money"):
                out["Precision"] = self.precision
            if self.kind == "Money":
                out["PrecisionSource"] = self.extra.get("PrecisionSource", 2)
            if self.kind == "Integer":
                out["Format"] = self.format or "None"
        elif self.kind == "DateTime":
            out["Format"] = self.format or "DateAndTime"
            out["DateTimeBehavior"] = {"Value": self.behavior or "UserLocal"}
        elif self.kind == "Boolean":
            out["DefaultValue"] = bool(self.default)
            out["OptionSet"] = {
                "OptionSetType": "Boolean",
                "TrueOption": {"Value": 1, "Label": label(self.true_label)},
                "FalseOption": {"Value": 0, "Label": label(self.false_label)},
            }
        elif self.kind in OPTION_KINDS:
            out["DefaultFormValue"] = self.default if isinstance(self.default, int) else -1
            out["OptionSet"] = self.option_set_json()
        elif self.kind in LOOKUP_KINDS or self.kind == "PartyList":
            out["Targets"] = list(self.targets)
        for k, v in self.extra.items():
            out.setdefault(k, v)
        return out

    def option_set_json(self) -> dict:
        opts = []
        for o in self.options:
            item = {"Value": o["Value"], "Label": o["Label"], "Description": label(None), "Color": None}
            if "State" in o:
                item["State"] = o["State"]
            if "DefaultStatus" in o:
                item["DefaultStatus"] = o["DefaultStatus"]
            opts.append(item)
        return {
            "MetadataId": deterministic_id("optionset", self.entity, self.logical_name),
            "Name": f"{self.entity}_{self.logical_name}",
            "IsGlobal": False,
            "IsCustomOptionSet": self.is_custom,
            "OptionSetType": {"MultiSelectPicklist": "Picklist"}.get(self.kind, self.kind),
            "Options": opts,
        }


@dataclass(eq=False)
class Relationship:
    schema_name: str
    referenced_entity: str
    referenced_attribute: str
    referencing_entity: str
    referencing_attribute: str
    nav_name: str  # ReferencingEntityNavigationPropertyName (single-valued, used in binds)
    collection_nav: str  # ReferencedEntityNavigationPropertyName
    is_custom: bool = False
    metadata_id: str = ""

    def to_json(self) -> dict:
        return {
            "@odata.type": "#Microsoft.Dynamics.CRM.OneToManyRelationshipMetadata",
            "MetadataId": self.metadata_id,
            "SchemaName": self.schema_name,
            "RelationshipType": "OneToManyRelationship",
            "IsCustomRelationship": self.is_custom,
            "ReferencedEntity": self.referenced_entity,
            "ReferencedAttribute": self.referenced_attribute,
            "ReferencingEntity": self.referencing_entity,
            "ReferencingAttribute": self.referencing_attribute,
            "ReferencingEntityNavigationPropertyName": self.nav_name,
            "ReferencedEntityNavigationPropertyName": self.collection_nav,
        }


@dataclass(eq=False)
class Key:
    entity: str
    schema_name: str
    key_attributes: list[str]
    display_name: str | None
    metadata_id: str
    created_at: float
    status: str = "Pending"  # Pending -> Active | Failed (resolved lazily by Metadata.key_status)

    @property
    def logical_name(self) -> str:
        return self.schema_name.lower()

    def to_json(self) -> dict:
        return {
            "@odata.type": "#Microsoft.Dynamics.CRM.EntityKeyMetadata",
            "MetadataId": self.metadata_id,
            "SchemaName": self.schema_name,
            "LogicalName": self.logical_name,
            "EntityLogicalName": self.entity,
            "KeyAttributes": list(self.key_attributes),
            "DisplayName": label(self.display_name),
            "EntityKeyIndexStatus": self.status,
            "IsCustomizable": {"Value": True, "CanBeChanged": True},
            "AsyncJob": None,
        }


@dataclass(eq=False)
class Entity:
    logical_name: str
    schema_name: str
    entity_set: str
    object_type_code: int
    primary_id: str
    primary_name: str
    ownership: str
    display: list[str]
    metadata_id: str
    is_activity: bool = False
    is_pointer: bool = False
    is_custom: bool = False
    has_activities: bool = False
    has_notes: bool = False
    bulk: bool = False
    parties: dict[str, int] = field(default_factory=dict)  # PartyList attribute -> participation mask
    attributes: dict[str, Attribute] = field(default_factory=dict)
    keys: list[Key] = field(default_factory=list)
    many_to_one: list[Relationship] = field(default_factory=list)
    one_to_many: list[Relationship] = field(default_factory=list)
    nav_single: dict[str, tuple[str, str]] = field(default_factory=dict)  # nav -> (lookup attribute, target)
    extra: dict = field(default_factory=dict)

    @property
    def odata_type(self) -> str:
        return f"Microsoft.Dynamics.CRM.{self.logical_name}"

    def state_attr(self) -> Attribute | None:
        return self.attributes.get("statecode")

    def to_json(self) -> dict:
        out = {
            "@odata.type": "#Microsoft.Dynamics.CRM.EntityMetadata",
            "MetadataId": self.metadata_id,
            "LogicalName": self.logical_name,
            "SchemaName": self.schema_name,
            "EntitySetName": self.entity_set,
            "LogicalCollectionName": self.entity_set,
            "CollectionSchemaName": self.schema_name + "s",
            "ObjectTypeCode": self.object_type_code,
            "PrimaryIdAttribute": self.primary_id,
            "PrimaryNameAttribute": self.primary_name,
            "OwnershipType": self.ownership,
            "IsActivity": self.is_activity,
            "IsActivityParty": self.logical_name in ("account", "contact", "lead", "systemuser"),
            "IsCustomEntity": self.is_custom,
            "IsManaged": not self.is_custom,
            "HasActivities": self.has_activities,
            "HasNotes": self.has_notes,
            "IsValidForAdvancedFind": True,
            "DisplayName": label(self.display[0]),
            "DisplayCollectionName": label(self.display[1]),
            "Description": label(None),
        }
        for k, v in self.extra.items():
            out.setdefault(k, v)
        return out


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

    def __init__(self, publisher_prefix: str, key_activation_seconds: float):
        self.publisher_prefix = publisher_prefix
        self.key_activation_seconds = key_activation_seconds
        self.lock = threading.RLock()
        self.version = 0
        self.tables: dict[str, Entity] = {}
        self.by_set: dict[str, Entity] = {}
        self.custom_relationships: list[dict] = []  # POST RelationshipDefinitions bodies, replayed on relink
        self.relationships: dict[str, Relationship] = {}
        self.key_checker: Any = None  # callable(entity, key) -> bool (True when existing data is unique)
        for logical_name, spec in seed_metadata.TABLES.items():
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
