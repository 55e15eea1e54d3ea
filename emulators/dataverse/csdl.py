"""GET /api/data/v9.2/$metadata: the CSDL document, generated from the live table metadata.

Clients read navigation property names and property types from it (reference §2.5); it mirrors the shape of
the real document (namespace Microsoft.Dynamics.CRM, alias mscrm) for the tables the emulator knows.
"""

from __future__ import annotations

from xml.sax.saxutils import quoteattr

from emulators.dataverse.metadata import LOOKUP_KINDS, Metadata

EDM = {
    "String": "Edm.String",
    "Memo": "Edm.String",
    "Integer": "Edm.Int32",
    "BigInt": "Edm.Int64",
    "Decimal": "Edm.Decimal",
    "Money": "Edm.Decimal",
    "Double": "Edm.Double",
    "Boolean": "Edm.Boolean",
    "DateTime": "Edm.DateTimeOffset",
    "Picklist": "Edm.Int32",
    "State": "Edm.Int32",
    "Status": "Edm.Int32",
    "MultiSelectPicklist": "Edm.String",
    "Uniqueidentifier": "Edm.Guid",
    "EntityName": "Edm.String",
}


def csdl(metadata: Metadata) -> str:
    types, sets = [], []
    for ent in metadata.tables.values():
        props = []
        for attr in ent.attributes.values():
            if attr.kind == "PartyList":
                continue
            if attr.kind in LOOKUP_KINDS:
                props.append(f'<Property Name="_{attr.logical_name}_value" Type="Edm.Guid" />')
                continue
            edm = "Edm.Date" if attr.kind == "DateTime" and attr.format == "DateOnly" else EDM[attr.kind]
            props.append(f"<Property Name={quoteattr(attr.logical_name)} Type={quoteattr(edm)} />")
        for rel in ent.many_to_one:
            props.append(
                f"<NavigationProperty Name={quoteattr(rel.nav_name)} Type={quoteattr('mscrm.' + rel.referenced_entity)} "
                f'Nullable="false" Partner={quoteattr(rel.collection_nav)}>'
                f"<ReferentialConstraint Property={quoteattr('_' + rel.referencing_attribute + '_value')} "
                f"ReferencedProperty={quoteattr(rel.referenced_attribute)} /></NavigationProperty>"
            )
        for rel in ent.one_to_many:
            props.append(
                f"<NavigationProperty Name={quoteattr(rel.collection_nav)} "
                f"Type={quoteattr('Collection(mscrm.' + rel.referencing_entity + ')')} Partner={quoteattr(rel.nav_name)} />"
            )
        types.append(
            f'<EntityType Name={quoteattr(ent.logical_name)} BaseType="mscrm.crmbaseentity">'
            f"<Key><PropertyRef Name={quoteattr(ent.primary_id)} /></Key>{''.join(props)}</EntityType>"
        )
        sets.append(
            f"<EntitySet Name={quoteattr(ent.entity_set)} EntityType={quoteattr('Microsoft.Dynamics.CRM.' + ent.logical_name)} />"
        )
    return (
        '<?xml version="1.0" encoding="utf-8"?>'
        '<edmx:Edmx Version="4.0" xmlns:edmx="http://docs.oasis-open.org/odata/ns/edmx"><edmx:DataServices>'
        '<Schema Namespace="Microsoft.Dynamics.CRM" Alias="mscrm" xmlns="http://docs.oasis-open.org/odata/ns/edm">'
        '<EntityType Name="crmbaseentity" Abstract="true" />'
        + "".join(types)
        + '<EntityContainer Name="System">'
        + "".join(sets)
        + "</EntityContainer></Schema></edmx:DataServices></edmx:Edmx>"
    )
