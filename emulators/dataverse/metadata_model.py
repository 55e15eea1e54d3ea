"""Metadata model types: Entity, Attribute, Relationship, Key, and their EntityMetadata JSON (§6.5)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

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
