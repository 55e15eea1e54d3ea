"""Typed model of Dataverse table metadata (EntityDefinitions), read with the real metadata queries of
reference §6.5, for the code that validates and maps data (MaxLength, choices, keys, bind names).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from migration_assets.clients.dataverse.errors import (
    DataverseApiError,
    DataverseError,
    DataverseTableMissingError,
)

GetJson = Callable[[str], Any]


@dataclass(frozen=True)
class OptionMeta:
    value: int
    label: str | None
    state: int | None = None  # on status options: the statecode this statuscode belongs to
    default_status: int | None = None  # on state options


@dataclass
class AttributeMeta:
    logical_name: str
    schema_name: str
    attribute_type: str  # String, Memo, Picklist, Lookup, Customer, Virtual, ...
    type_name: str  # AttributeTypeName.Value, e.g. MultiSelectPicklistType
    required_level: str = "None"
    max_length: int | None = None
    min_value: float | None = None
    max_value: float | None = None
    precision: int | None = None
    is_custom: bool = False
    valid_for_create: bool = True
    valid_for_update: bool = True
    targets: list[str] = field(default_factory=list)
    options: list[OptionMeta] = field(default_factory=list)
    format: str | None = None

    @property
    def option_values(self) -> set[int]:
        return {o.value for o in self.options}


@dataclass(frozen=True)
class KeyMeta:
    schema_name: str
    key_attributes: tuple[str, ...]
    status: str  # Pending, InProgress, Active, Failed


@dataclass(frozen=True)
class RelationshipMeta:
    schema_name: str
    referencing_attribute: str
    referenced_entity: str
    navigation_property: str  # the name to use in "<nav>@odata.bind"
    referenced_attribute: str = ""  # the referenced table's key column (its primary id, for a lookup)


@dataclass
class EntityMeta:
    logical_name: str
    schema_name: str
    entity_set_name: str
    primary_id: str
    primary_name: str | None
    object_type_code: int | None
    is_activity: bool
    attributes: dict[str, AttributeMeta] = field(default_factory=dict)
    keys: list[KeyMeta] = field(default_factory=list)
    many_to_one: list[RelationshipMeta] = field(default_factory=list)

    @property
    def odata_type(self) -> str:
        return f"Microsoft.Dynamics.CRM.{self.logical_name}"

    def attribute(self, name: str) -> AttributeMeta:
        try:
            return self.attributes[name]
        except KeyError:
            raise DataverseError(
                f"table '{self.logical_name}' has no column '{name}' (known: {len(self.attributes)} columns); "
                f"create it in the schema step first"
            ) from None

    def bind_name(self, lookup: str, target: str) -> str:
        """Navigation property for writing `lookup` pointing at table `target` (multi-table aware)."""
        for rel in self.many_to_one:
            if rel.referencing_attribute == lookup and rel.referenced_entity == target:
                return rel.navigation_property
        raise DataverseError(
            f"no relationship from {self.logical_name}.{lookup} to table '{target}'; targets are "
            f"{sorted(r.referenced_entity for r in self.many_to_one if r.referencing_attribute == lookup)}"
        )


def _label(value: Any) -> str | None:
    if isinstance(value, dict):
        user = value.get("UserLocalizedLabel")
        if isinstance(user, dict) and user.get("Label"):
            return str(user["Label"])
        for loc in value.get("LocalizedLabels") or []:
            if isinstance(loc, dict) and loc.get("Label"):
                return str(loc["Label"])
    return None


def parse_options(option_set: Any) -> list[OptionMeta]:
    if not isinstance(option_set, dict):
        return []
    out = []
    for opt in option_set.get("Options") or []:
        out.append(
            OptionMeta(
                value=int(opt["Value"]),
                label=_label(opt.get("Label")),
                state=opt.get("State"),
                default_status=opt.get("DefaultStatus"),
            )
        )
    return out


def parse_attribute(raw: dict[str, Any]) -> AttributeMeta:
    fmt = raw.get("FormatName")
    return AttributeMeta(
        logical_name=raw["LogicalName"],
        schema_name=raw.get("SchemaName") or raw["LogicalName"],
        attribute_type=raw.get("AttributeType") or "",
        type_name=((raw.get("AttributeTypeName") or {}).get("Value")) or "",
        required_level=((raw.get("RequiredLevel") or {}).get("Value")) or "None",
        max_length=raw.get("MaxLength"),
        min_value=raw.get("MinValue"),
        max_value=raw.get("MaxValue"),
        precision=raw.get("Precision"),
        is_custom=bool(raw.get("IsCustomAttribute", False)),
        valid_for_create=raw.get("IsValidForCreate") is not False,
        valid_for_update=raw.get("IsValidForUpdate") is not False,
        targets=list(raw.get("Targets") or []),
        options=parse_options(raw.get("OptionSet")),
        format=(fmt.get("Value") if isinstance(fmt, dict) else None) or raw.get("Format"),
    )


_ENTITY_SELECT = (
    "LogicalName,SchemaName,EntitySetName,PrimaryIdAttribute,PrimaryNameAttribute,ObjectTypeCode,IsActivity"
)
# Option sets are navigation properties: only the typed casts can expand them (reference §6.5).
_OPTION_CASTS = (
    "PicklistAttributeMetadata?$select=LogicalName&$expand=OptionSet($select=Options),GlobalOptionSet($select=Options)",
    "MultiSelectPicklistAttributeMetadata?$select=LogicalName&$expand=OptionSet($select=Options),GlobalOptionSet($select=Options)",
    "StatusAttributeMetadata?$select=LogicalName&$expand=OptionSet",
    "StateAttributeMetadata?$select=LogicalName&$expand=OptionSet",
)


def entity_path(logical_name: str) -> str:
    return f"EntityDefinitions(LogicalName='{logical_name}')"


def load_entity(get_json: GetJson, logical_name: str) -> EntityMeta:
    """Read one table's definition, columns, choices, keys and N:1 relationships (8 GET requests)."""
    base = entity_path(logical_name)
    try:
        head = get_json(f"{base}?$select={_ENTITY_SELECT}")
    except DataverseApiError as exc:
        if exc.status == 404:
            raise DataverseTableMissingError(
                f"table '{logical_name}' does not exist in the Dataverse environment ({exc.message})"
            ) from exc
        raise
    entity = EntityMeta(
        logical_name=head["LogicalName"],
        schema_name=head.get("SchemaName") or head["LogicalName"],
        entity_set_name=head["EntitySetName"],
        primary_id=head["PrimaryIdAttribute"],
        primary_name=head.get("PrimaryNameAttribute"),
        object_type_code=head.get("ObjectTypeCode"),
        is_activity=bool(head.get("IsActivity", False)),
    )
    for raw in get_json(f"{base}/Attributes")["value"]:
        attr = parse_attribute(raw)
        entity.attributes[attr.logical_name] = attr
    for cast in _OPTION_CASTS:
        for raw in get_json(f"{base}/Attributes/Microsoft.Dynamics.CRM.{cast}")["value"]:
            attr = entity.attributes.get(raw["LogicalName"])
            options = parse_options(raw.get("OptionSet")) or parse_options(raw.get("GlobalOptionSet"))
            if attr is not None and options:
                attr.options = options
    for raw in get_json(f"{base}/Keys")["value"]:
        entity.keys.append(
            KeyMeta(
                raw["SchemaName"], tuple(raw.get("KeyAttributes") or ()), raw.get("EntityKeyIndexStatus", "")
            )
        )
    rel_select = (
        "SchemaName,ReferencingAttribute,ReferencedEntity,ReferencedAttribute,"
        "ReferencingEntityNavigationPropertyName"
    )
    for raw in get_json(f"{base}/ManyToOneRelationships?$select={rel_select}")["value"]:
        entity.many_to_one.append(
            RelationshipMeta(
                raw.get("SchemaName", ""),
                raw["ReferencingAttribute"],
                raw["ReferencedEntity"],
                raw["ReferencingEntityNavigationPropertyName"],
                raw.get("ReferencedAttribute") or "",
            )
        )
    return entity


# -- bodies of metadata writes (reference §6.1–§6.4) -----------------------------------------------------
def label(text: str, language_code: int = 1033) -> dict[str, Any]:
    return {
        "@odata.type": "Microsoft.Dynamics.CRM.Label",
        "LocalizedLabels": [
            {
                "@odata.type": "Microsoft.Dynamics.CRM.LocalizedLabel",
                "Label": text,
                "LanguageCode": language_code,
            }
        ],
    }


def publish_xml_body(tables: list[str]) -> dict[str, str]:
    entities = "".join(f"<entity>{t}</entity>" for t in tables)
    return {"ParameterXml": f"<importexportxml><entities>{entities}</entities></importexportxml>"}
