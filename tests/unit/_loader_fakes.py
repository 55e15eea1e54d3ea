"""Fakes for the loader's unit tests: table metadata (a primary key and a primary name column, nothing
else) and an empty annotation target."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from migration_assets.clients.dataverse.metadata import AttributeMeta, EntityMeta


def entity_meta(table: str, schema: str, entity_set: str, object_type_code: int) -> EntityMeta:
    pk = f"{table}id"
    attrs = {
        pk: AttributeMeta(pk, f"{schema}Id", "Uniqueidentifier", "UniqueidentifierType"),
        "name": AttributeMeta("name", "Name", "String", "StringType"),
    }
    return EntityMeta(table, schema, entity_set, pk, "name", object_type_code, False, attrs)


class EmptyAnnotationTarget:
    """An empty annotation table behind the Dataverse client's surface the loader uses: every read finds
    nothing, every bulk message is supported. Tests subclass it to record or hold what they look at."""

    use_bulk_messages = True
    batch_request_size = 100
    write_headers: dict[str, str] = {}

    def metadata(self, table: str) -> EntityMeta:
        return entity_meta("annotation", "Annotation", "annotations", 5)

    def entity_set(self, table: str) -> str:
        return "annotations"

    def supports_bulk(self, message: str, table: str) -> bool:
        return True

    def stats(self) -> dict[str, dict[str, int]]:
        return {}

    def query(self, table: str, **kw: Any) -> list[dict[str, Any]]:
        return []

    def query_each(self, table: str, filters: Sequence[str], **kw: Any) -> Iterator[dict[str, Any]]:
        for flt in filters:
            yield from self.query(table, filter=flt, **kw)

    def query_pages(self, table: str, **kw: Any) -> Iterator[list[dict[str, Any]]]:
        yield []
