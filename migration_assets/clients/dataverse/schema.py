"""Metadata (schema) writes of the Dataverse client: publishers and solutions, tables, columns, keys,
relationships, choices, publish, and their deletes for rollbacks (reference §6). Thin wrappers over the Web
API; every write drops the cached metadata it makes stale. Creates return the new component's MetadataId
(or record id) so that the ledger can name exactly what a run created.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from migration_assets.clients.dataverse.batch import entity_id_from_url
from migration_assets.clients.dataverse.errors import DataverseApiError, DataverseError
from migration_assets.clients.dataverse.metadata import (
    EntityMeta,
    entity_path,
    label,
    parse_options,
    publish_xml_body,
)
from migration_assets.clients.dataverse.odata import query_string
from migration_assets.clients.dataverse.transport import CallStats


def rows_url(entity_set: str, select: list[str], filter: str | None = None) -> str:
    """The first page's url of `rows` (what `read_together` takes to fetch it ahead)."""
    params = {"$select": ",".join(select)}
    if filter:
        params["$filter"] = filter
    return f"{entity_set}?{query_string(params)}"


class SchemaWritesMixin:
    """Mixed into DataverseClient, which provides `request`, `get_json` and the `_meta` cache."""

    _meta: dict[str, EntityMeta]
    request: Callable[..., Any]
    get_json: Callable[[str], Any]

    def _schema_changed(self, table: str | None) -> None:
        if table is None:
            self._meta.clear()
        else:
            self._meta.pop(table, None)

    def _solution(self, solution: str | None) -> dict[str, str]:
        return {"MSCRM.SolutionUniqueName": solution} if solution else {}

    def _exists(self, url: str) -> bool:
        try:
            self.get_json(url)
        except DataverseApiError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def _create(
        self, url: str, body: dict[str, Any], headers: dict[str, str], exists: Callable[[], bool]
    ) -> Any:
        """POST a metadata create. Schema creates are not idempotent: when the first attempt may have landed
        (dropped connection, gateway timeout) and the resend says "already exists", check and accept it."""
        call = CallStats()
        try:
            return self.request("POST", url, json=body, headers=headers, expect_json=False, call=call)
        except DataverseApiError:
            if call.ambiguous and exists():
                return None
            raise

    def create_table(self, body: dict[str, Any], solution: str | None = None) -> str | None:
        logical = str(body.get("SchemaName", "")).lower()
        resp = self._create(
            "EntityDefinitions",
            body,
            self._solution(solution),
            lambda: self._exists(f"{entity_path(logical)}?$select=LogicalName"),
        )
        self._schema_changed(None)
        return self._new_id(resp, f"{entity_path(logical)}?$select=MetadataId")

    def _new_id(self, resp: Any, lookup: str) -> str | None:
        """The MetadataId of what a create made: from OData-EntityId, or read back when the create was the
        accepted resend of one that had landed (no response to read it from)."""
        if resp is not None:
            found = entity_id_from_url(resp.headers.get("OData-EntityId", ""))
            if found:
                return found
        try:
            value = self.get_json(lookup).get("MetadataId")
        except DataverseApiError as exc:
            if exc.status == 404:
                return None
            raise
        return str(value).lower() if value else None

    def _column_exists(self, table: str, column: str) -> bool:
        return self._exists(f"{entity_path(table)}/Attributes(LogicalName='{column}')?$select=LogicalName")

    def create_column(self, table: str, body: dict[str, Any], solution: str | None = None) -> str | None:
        column = str(body.get("SchemaName", "")).lower()
        resp = self._create(
            f"{entity_path(table)}/Attributes",
            body,
            self._solution(solution),
            lambda: self._column_exists(table, column),
        )
        self._schema_changed(table)
        return self._new_id(
            resp, f"{entity_path(table)}/Attributes(LogicalName='{column}')?$select=MetadataId"
        )

    def create_key(
        self, table: str, schema_name: str, columns: list[str], display_name: str, solution: str | None = None
    ) -> str | None:
        body = {"SchemaName": schema_name, "DisplayName": label(display_name), "KeyAttributes": columns}

        def exists() -> bool:
            keys = self.get_json(f"{entity_path(table)}/Keys?$select=SchemaName")["value"]
            return any(k.get("SchemaName") == schema_name for k in keys)

        resp = self._create(f"{entity_path(table)}/Keys", body, self._solution(solution), exists)
        self._schema_changed(table)
        found = entity_id_from_url(resp.headers.get("OData-EntityId", "")) if resp is not None else None
        return found or self.key_id(table, schema_name)

    def key_id(self, table: str, schema_name: str) -> str | None:
        """MetadataId of an alternate key (keys have no documented alternate key of their own: reference
        retrieve-metadata-name-metadataid.md lists Entity, Attribute, Relationship and Global Option Set)."""
        try:
            keys = self.get_json(f"{entity_path(table)}/Keys?$select=SchemaName,MetadataId")["value"]
        except DataverseApiError as exc:
            if exc.status == 404:
                return None
            raise
        found = next((k.get("MetadataId") for k in keys if k.get("SchemaName") == schema_name), None)
        return str(found).lower() if found else None

    def wait_for_key(self, table: str, schema_name: str, timeout: float = 600.0, poll: float = 0.5) -> str:
        """Poll a key until its index is Active (returned) or Failed (raises); keys build asynchronously."""
        deadline = time.monotonic() + timeout
        while True:
            keys = self.get_json(f"{entity_path(table)}/Keys?$select=SchemaName,EntityKeyIndexStatus")[
                "value"
            ]
            status = next(
                (k.get("EntityKeyIndexStatus") for k in keys if k["SchemaName"] == schema_name), None
            )
            if status == "Active":
                self._schema_changed(table)
                return status
            if status in (None, "Failed"):
                raise DataverseError(
                    f"alternate key {schema_name} on '{table}' is {status or 'missing'}; "
                    f"fix duplicate values and reactivate it (ReactivateEntityKey)"
                )
            if time.monotonic() > deadline:
                raise DataverseError(
                    f"alternate key {schema_name} on '{table}' still {status} after {timeout} s"
                )
            time.sleep(poll)

    def _lookup_exists(self, table: Any, lookup: dict[str, Any]) -> bool:
        name = str(lookup.get("SchemaName", "")).lower()
        return bool(table and name) and self._column_exists(str(table), name)

    def create_relationship(self, body: dict[str, Any], solution: str | None = None) -> str | None:
        """A 1:N relationship with its lookup column (OneToManyRelationshipMetadata body); its MetadataId."""
        resp = self._create(
            "RelationshipDefinitions",
            body,
            self._solution(solution),
            lambda: self._lookup_exists(body.get("ReferencingEntity"), body.get("Lookup") or {}),
        )
        self._schema_changed(None)
        return self._new_id(
            resp, f"RelationshipDefinitions(SchemaName='{body.get('SchemaName')}')?$select=MetadataId"
        )

    def create_customer_relationships(
        self, body: dict[str, Any], solution: str | None = None
    ) -> dict[str, Any]:
        rels = body.get("OneToManyRelationships") or [{}]
        resp = self._create(
            "CreateCustomerRelationships",
            body,
            self._solution(solution),
            lambda: self._lookup_exists(rels[0].get("ReferencingEntity"), body.get("Lookup") or {}),
        )
        self._schema_changed(None)
        if resp is None or not resp.content:
            return {}
        out = resp.json()
        return out if isinstance(out, dict) else {}

    def insert_option_value(
        self, table: str, column: str, value: int, text: str, solution: str | None = None
    ) -> None:
        body: dict[str, Any] = {
            "EntityLogicalName": table,
            "AttributeLogicalName": column,
            "Value": value,
            "Label": label(text),
        }
        if solution:
            body["SolutionUniqueName"] = solution

        self._create("InsertOptionValue", body, {}, lambda: self._option_exists(table, column, value))
        self._schema_changed(table)

    def publish_xml(self, tables: list[str]) -> None:
        self.request("POST", "PublishXml", json=publish_xml_body(tables))

    # -- publishers and solutions (reference/entities/publisher.md, solution.md, solutioncomponent.md) --
    def rows(self, entity_set: str, select: list[str], filter: str | None = None) -> list[dict[str, Any]]:
        """Every row of a system entity set (publishers, solutions, solutioncomponents), all pages."""
        url: str | None = rows_url(entity_set, select, filter)
        out: list[dict[str, Any]] = []
        while url:
            page = self.get_json(url)
            out += page.get("value", [])
            url = page.get("@odata.nextLink")
        return out

    def _create_row(self, entity_set: str, body: dict[str, Any]) -> str:
        resp = self.request("POST", entity_set, json=body, expect_json=False)
        new_id = entity_id_from_url(resp.headers.get("OData-EntityId") or resp.headers.get("Location") or "")
        if not new_id:
            raise DataverseError(
                f"POST {entity_set} answered without OData-EntityId: the new row's id is unknown"
            )
        return new_id

    def create_publisher(self, body: dict[str, Any]) -> str:
        return self._create_row("publishers", body)

    def create_solution(self, body: dict[str, Any]) -> str:
        return self._create_row("solutions", body)

    def _delete(self, url: str, body: dict[str, Any] | None = None) -> bool:
        """DELETE (or a delete action when `body` is given); False when it was already gone, so removing a
        component twice is fine."""
        try:
            if body is None:
                self.request("DELETE", url, expect_json=False)
            else:
                self.request("POST", url, json=body, expect_json=False)
        except DataverseApiError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def delete_publisher(self, publisher_id: str) -> bool:
        return self._delete(f"publishers({publisher_id})")

    def delete_solution(self, solution_id: str) -> bool:
        """Deletes the (unmanaged) solution container only; its components must be deleted first."""
        return self._delete(f"solutions({solution_id})")

    def delete_table(self, table: str) -> bool:
        """DELETE EntityDefinitions(LogicalName=...): a custom table with its rows, columns and keys."""
        gone = self._delete(entity_path(table))
        self._schema_changed(None)
        return gone

    def delete_column(self, table: str, column: str) -> bool:
        gone = self._delete(f"{entity_path(table)}/Attributes(LogicalName='{column}')")
        self._schema_changed(table)
        return gone

    def delete_key(self, table: str, schema_name: str, metadata_id: str | None = None) -> bool:
        key_id = metadata_id or self.key_id(table, schema_name)
        if key_id is None:
            return False
        gone = self._delete(f"{entity_path(table)}/Keys({key_id})")
        self._schema_changed(table)
        return gone

    def delete_relationship(self, schema_name: str, metadata_id: str | None = None) -> bool:
        """DELETE RelationshipDefinitions(...): the 1:N relationship and its lookup column."""
        key = metadata_id or f"SchemaName='{schema_name}'"
        gone = self._delete(f"RelationshipDefinitions({key})")
        self._schema_changed(None)
        return gone

    def delete_option_value(self, table: str, column: str, value: int, solution: str | None = None) -> bool:
        """DeleteOptionValue on a local choice; False (nothing sent) when the column or the value is already
        gone, so removing it twice is fine."""
        if not self._option_exists(table, column, value):
            return False
        body: dict[str, Any] = {"EntityLogicalName": table, "AttributeLogicalName": column, "Value": value}
        if solution:
            body["SolutionUniqueName"] = solution
        gone = self._delete("DeleteOptionValue", body)
        self._schema_changed(table)
        return gone

    def _option_exists(self, table: str, column: str, value: int) -> bool:
        """Whether a choice (or choices) column holds this option value; False when the column is gone."""
        for kind in ("PicklistAttributeMetadata", "MultiSelectPicklistAttributeMetadata"):
            cast = f"Microsoft.Dynamics.CRM.{kind}?$select=LogicalName&$expand=OptionSet"
            try:
                raw = self.get_json(f"{entity_path(table)}/Attributes(LogicalName='{column}')/{cast}")
            except DataverseApiError as exc:
                if exc.status == 404:
                    continue  # not this type (or no such column): try the other cast
                raise
            return any(o.value == value for o in parse_options(raw.get("OptionSet")))
        return False
