"""Lookup columns: POST RelationshipDefinitions (one-to-many), CreateCustomerRelationships (§6.2), and
DELETE RelationshipDefinitions (PAD webapi/create-update-entity-relationships-using-web-api.md).

`solution` is the unique name the request names (see metadata_writes and solutions)."""

from __future__ import annotations

from emulators.dataverse import solutions
from emulators.dataverse.config import deterministic_id
from emulators.dataverse.errors import DataverseError
from emulators.dataverse.metadata import Attribute, label_text
from emulators.dataverse.metadata_writes import delete_attribute, invalid
from emulators.dataverse.state import Environment


def create_relationship(env: Environment, body: dict, solution: str | None = None) -> tuple[str, Attribute]:
    """POST RelationshipDefinitions with a OneToManyRelationshipMetadata: adds the lookup column."""
    odata = str(body.get("@odata.type") or "").lstrip("#")
    if odata and not odata.endswith("OneToManyRelationshipMetadata"):
        raise DataverseError(
            501, "0x80040216", "Only one-to-many relationships (lookups) are supported by the emulator."
        )
    with env.metadata.lock:
        lands_in = solutions.target(env, solution)
        schema = str(body.get("SchemaName") or "")
        solutions.check_prefix(lands_in, schema, "Relationship")
        referenced, referencing = body.get("ReferencedEntity"), body.get("ReferencingEntity")
        target, ent = env.metadata.tables.get(str(referenced)), env.metadata.tables.get(str(referencing))
        if target is None or ent is None:
            raise invalid(
                f"ReferencedEntity '{referenced}' and ReferencingEntity '{referencing}' must be existing tables."
            )
        lookup = body.get("Lookup")
        if not isinstance(lookup, dict):
            raise invalid("A one-to-many relationship needs a Lookup (LookupAttributeMetadata) definition.")
        logical = solutions.check_prefix(lands_in, lookup.get("SchemaName"), "Attribute")
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
        solutions.record(env, lands_in, solutions.ENTITY_RELATIONSHIP, rel_id, table=ent)
        solutions.record(env, lands_in, solutions.ATTRIBUTE, attr.metadata_id, table=ent)
        env.schema_log.append({"op": "relationship", "body": body, "solution": solution})
        return rel_id, attr


def create_customer_relationships(
    env: Environment, body: dict, solution: str | None = None
) -> tuple[list[str], Attribute]:
    """The action's SolutionUniqueName parameter names the solution (the header otherwise)."""
    with env.metadata.lock:
        named = body.get("SolutionUniqueName") or solution
        lands_in = solutions.target(env, str(named) if named else None)
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
        logical = solutions.check_prefix(lands_in, lookup.get("SchemaName"), "Attribute")
        for rel in rels:
            solutions.check_prefix(
                lands_in, rel.get("SchemaName") if isinstance(rel, dict) else None, "Relationship"
            )
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
        for rel_id in ids:
            solutions.record(env, lands_in, solutions.ENTITY_RELATIONSHIP, rel_id, table=ent)
        solutions.record(env, lands_in, solutions.ATTRIBUTE, attr.metadata_id, table=ent)
        env.schema_log.append({"op": "customer", "body": body, "solution": solution})
        return ids, attr


def delete_relationship(env: Environment, schema_or_id: str) -> None:
    """DELETE RelationshipDefinitions(<id>) or (SchemaName='x'): a custom one-to-many relationship goes with
    its lookup column. A customer lookup's relationships go only with the lookup (CustomerRelationshipCannot
    BeDeleted 0x8004847d, data-service-errors.md)."""
    with env.metadata.lock:
        wanted = schema_or_id.lower()
        rel = next(
            (
                r
                for r in env.metadata.relationships.values()
                if wanted in (r.metadata_id.lower(), r.schema_name.lower())
            ),
            None,
        )
        if rel is None:
            raise DataverseError(404, "0x80040217", f"Could not find relationship with key {schema_or_id}.")
        if not rel.is_custom:
            raise DataverseError(
                403, "0x80040220", f"The system relationship '{rel.schema_name}' cannot be deleted."
            )
        ent = env.metadata.tables[rel.referencing_entity]
        attr = ent.attributes[rel.referencing_attribute]
        if attr.kind == "Customer":
            raise DataverseError(
                400,
                "0x8004847d",
                f"This relationship {rel.schema_name} is required by the {attr.logical_name} attribute and "
                "can't be deleted. To delete this relationship, first delete the lookup attribute.",
            )
        delete_attribute(env, ent, attr)
