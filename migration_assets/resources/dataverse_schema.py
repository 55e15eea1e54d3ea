"""Metadata (schema) writes of the Dataverse client: tables, columns, keys, relationships, choices, publish
(reference §6). Thin wrappers over the Web API; every write drops the cached metadata it makes stale.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from migration_assets.lib.dv_batch import entity_id_from_url
from migration_assets.resources.dataverse_errors import DataverseApiError, DataverseError
from migration_assets.resources.dataverse_metadata import (
    EntityMeta,
    entity_path,
    label,
    parse_options,
    publish_xml_body,
)
from migration_assets.resources.dataverse_transport import CallStats


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
        return entity_id_from_url(resp.headers.get("OData-EntityId", "")) if resp is not None else None

    def _column_exists(self, table: str, column: str) -> bool:
        return self._exists(f"{entity_path(table)}/Attributes(LogicalName='{column}')?$select=LogicalName")

    def create_column(self, table: str, body: dict[str, Any], solution: str | None = None) -> None:
        column = str(body.get("SchemaName", "")).lower()
        self._create(
            f"{entity_path(table)}/Attributes",
            body,
            self._solution(solution),
            lambda: self._column_exists(table, column),
        )
        self._schema_changed(table)

    def create_key(
        self, table: str, schema_name: str, columns: list[str], display_name: str, solution: str | None = None
    ) -> None:
        body = {"SchemaName": schema_name, "DisplayName": label(display_name), "KeyAttributes": columns}

        def exists() -> bool:
            keys = self.get_json(f"{entity_path(table)}/Keys?$select=SchemaName")["value"]
            return any(k.get("SchemaName") == schema_name for k in keys)

        self._create(f"{entity_path(table)}/Keys", body, self._solution(solution), exists)
        self._schema_changed(table)

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

    def create_relationship(self, body: dict[str, Any], solution: str | None = None) -> None:
        """A 1:N relationship with its lookup column (OneToManyRelationshipMetadata body)."""
        self._create(
            "RelationshipDefinitions",
            body,
            self._solution(solution),
            lambda: self._lookup_exists(body.get("ReferencingEntity"), body.get("Lookup") or {}),
        )
        self._schema_changed(None)

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

        def exists() -> bool:
            cast = "Microsoft.Dynamics.CRM.PicklistAttributeMetadata?$select=LogicalName&$expand=OptionSet"
            raw = self.get_json(f"{entity_path(table)}/Attributes(LogicalName='{column}')/{cast}")
            return any(o.value == value for o in parse_options(raw.get("OptionSet")))

        self._create("InsertOptionValue", body, {}, exists)
        self._schema_changed(table)

    def publish_xml(self, tables: list[str]) -> None:
        self.request("POST", "PublishXml", json=publish_xml_body(tables))

    def publish_all_xml(self) -> None:
        self.request("POST", "PublishAllXml")
