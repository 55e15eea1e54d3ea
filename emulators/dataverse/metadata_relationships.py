"""Lookup columns: POST RelationshipDefinitions (one-to-many) and CreateCustomerRelationships (§6.2)."""

from __future__ import annotations

from emulators.dataverse.config import deterministic_id
from emulators.dataverse.errors import DataverseError
from emulators.dataverse.metadata import Attribute, label_text
from emulators.dataverse.metadata_writes import check_prefix, invalid
from emulators.dataverse.state import Environment


def create_relationship(env: Environment, body: dict) -> tuple[str, Attribute]:
    """POST RelationshipDefinitions with a OneToManyRelationshipMetadata: adds the lookup column."""
    odata = str(body.get("@odata.type") or "").lstrip("#")
    if odata and not odata.endswith("OneToManyRelationshipMetadata"):
        raise DataverseError(
            501, "0x80040216", "Only one-to-many relationships (lookups) are supported by the emulator."
        )
    with env.metadata.lock:
        schema = str(body.get("SchemaName") or "")
        check_prefix(env, schema, "relationship")
        referenced, referencing = body.get("ReferencedEntity"), body.get("ReferencingEntity")
        target, ent = env.metadata.tables.get(str(referenced)), env.metadata.tables.get(str(referencing))
        if target is None or ent is None:
            raise invalid(
                f"ReferencedEntity '{referenced}' and ReferencingEntity '{referencing}' must be existing tables."
            )
        lookup = body.get("Lookup")
        if not isinstance(lookup, dict):
            raise invalid("A one-to-many relationship needs a Lookup (LookupAttributeMetadata) definition.")
        logical = check_prefix(env, lookup.get("SchemaName"), "column")
        if logical in ent.attributes:
            raise invalid(f"A column named '{logical}' already exists on the '{ent.logical_name}' table.")
        if schema.lower() in {r.lower() for r in env.metadata.relationships}:
            raise invalid(f"A relationship named '{schema}' already exists.")
        attr = Attribute(
            entity=ent.logical_name,
            logical_name=logical,
            schema_name=str(lookup["SchemaName"]),
            kind="Lookup",
            targets=[target.logical_name],
            is_custom=True,
            display_name=label_text(lookup.get("DisplayName")) or logical,
            metadata_id=deterministic_id("attribute", ent.logical_name, logical),
        )
        ent.attributes[logical] = attr
        rel_id = deterministic_id("relationship", schema.lower())
        env.metadata.custom_relationships.append(
            {
                "referencing": ent.logical_name,
                "attribute": logical,
                "referenced": target.logical_name,
                "schema": schema,
                # Custom lookups keep the SchemaName casing as navigation property (reference §6.1).
                "nav": body.get("ReferencingEntityNavigationPropertyName") or str(lookup["SchemaName"]),
                "collection": body.get("ReferencedEntityNavigationPropertyName") or schema,
                "metadata_id": rel_id,
            }
        )
        env.metadata.relink()
        env.schema_log.append({"op": "relationship", "body": body})
        return rel_id, attr


def create_customer_relationships(env: Environment, body: dict) -> tuple[list[str], Attribute]:
    with env.metadata.lock:
        lookup = body.get("Lookup")
        rels = body.get("OneToManyRelationships")
        if not isinstance(lookup, dict) or not isinstance(rels, list) or len(rels) != 2:
            raise invalid(
                "CreateCustomerRelationships needs a Lookup and two OneToManyRelationships (account, contact)."
            )
        referencing = {r.get("ReferencingEntity") for r in rels if isinstance(r, dict)}
        targets = sorted(str(r.get("ReferencedEntity")) for r in rels if isinstance(r, dict))
        if len(referencing) != 1 or targets != ["account", "contact"]:
            raise invalid("A customer lookup references account and contact from one referencing table.")
        ent = env.metadata.tables.get(str(next(iter(referencing))))
        if ent is None:
            raise invalid(f"The referencing table '{next(iter(referencing))}' does not exist.")
        logical = check_prefix(env, lookup.get("SchemaName"), "column")
        if logical in ent.attributes:
            raise invalid(f"A column named '{logical}' already exists on the '{ent.logical_name}' table.")
        attr = Attribute(
            entity=ent.logical_name,
            logical_name=logical,
            schema_name=str(lookup["SchemaName"]),
            kind="Customer",
            targets=["account", "contact"],
            is_custom=True,
            display_name=label_text(lookup.get("DisplayName")) or logical,
            metadata_id=deterministic_id("attribute", ent.logical_name, logical),
        )
        ent.attributes[logical] = attr
        ids = []
        for rel in rels:
            schema = str(rel.get("SchemaName") or "")
            check_prefix(env, schema, "relationship")
            rel_id = deterministic_id("relationship", schema.lower())
            ids.append(rel_id)
            env.metadata.custom_relationships.append(
                {
                    "referencing": ent.logical_name,
                    "attribute": logical,
                    "referenced": rel["ReferencedEntity"],
                    "schema": schema,
                    "nav": f"{lookup['SchemaName']}_{rel['ReferencedEntity']}",
                    "collection": schema,
                    "metadata_id": rel_id,
                }
            )
        env.metadata.relink()
        env.schema_log.append({"op": "customer", "body": body})
        return ids, attr
