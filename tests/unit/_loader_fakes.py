"""Table metadata for the loader's unit tests: a primary key and a primary name column, nothing else."""

from __future__ import annotations

from migration_assets.clients.dataverse.metadata import AttributeMeta, EntityMeta


def entity_meta(table: str, schema: str, entity_set: str, object_type_code: int) -> EntityMeta:
    pk = f"{table}id"
    attrs = {
        pk: AttributeMeta(pk, f"{schema}Id", "Uniqueidentifier", "UniqueidentifierType"),
        "name": AttributeMeta("name", "Name", "String", "StringType"),
    }
    return EntityMeta(table, schema, entity_set, pk, "name", object_type_code, False, attrs)
