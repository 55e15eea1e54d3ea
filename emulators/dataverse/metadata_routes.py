"""Metadata routes: EntityDefinitions reads with $select/$filter/$expand and typed casts, schema writes (§6)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from emulators.dataverse import metadata_relationships as relationships
from emulators.dataverse import metadata_writes as writes
from emulators.dataverse import solutions
from emulators.dataverse.errors import DataverseError
from emulators.dataverse.http import API_ROOT, base_url, json_response, no_content, read_json, require_object
from emulators.dataverse.metadata import TYPE_INFO, Attribute, Entity
from emulators.dataverse.odata import (
    ExpandItem,
    parse_expand,
    parse_filter,
    parse_key,
    parse_select,
    split_segment,
)
from emulators.dataverse.security import metadata_privileges
from emulators.dataverse.state import Environment

METADATA_ROOTS = frozenset(
    {
        "EntityDefinitions",
        "RelationshipDefinitions",
        "GlobalOptionSetDefinitions",
        "PublishXml",
        "PublishAllXml",
        "InsertOptionValue",
        "DeleteOptionValue",
        "CreateCustomerRelationships",
    }
)
# Navigation properties of metadata types: returned only when expanded, as on the real service.
NAV_PROPS = frozenset(
    {"Attributes", "Keys", "ManyToOneRelationships", "OneToManyRelationships", "OptionSet", "GlobalOptionSet"}
)
CAST_PREFIX = "Microsoft.Dynamics.CRM."
# The solution a metadata write lands in (webapi/create-update-entity-definitions-using-web-api.md, tip).
SOLUTION_HEADER = "MSCRM.SolutionUniqueName"


def not_found_segment(segment: str) -> DataverseError:
    return DataverseError(404, "0x8006088a", f"Resource not found for the segment '{segment}'.")


def project(obj: dict, select: list[str] | None, expand: dict[str, Any]) -> dict:
    out = {}
    for key, value in obj.items():
        if key in NAV_PROPS:
            continue
        if select is None or key in select or key in ("MetadataId", "@odata.type"):
            out[key] = value
    if select:
        for name in select:
            if name not in obj and name not in NAV_PROPS:
                raise DataverseError(
                    400,
                    "0x0",
                    f"Could not find a property named '{name}' on type 'Microsoft.Dynamics.CRM.{obj.get('@odata.type', '').split('.')[-1]}'.",
                )
    for name, value in expand.items():
        out[name] = value
    return out


def matches(node: tuple | None, obj: dict) -> bool:
    if node is None:
        return True
    op = node[0]
    if op == "and":
        return matches(node[1], obj) and matches(node[2], obj)
    if op == "or":
        return matches(node[1], obj) or matches(node[2], obj)
    if op == "not":
        return not matches(node[1], obj)
    if op == "fn":
        value = obj.get(node[2])
        needle = str(node[3]).lower()
        text = str(value).lower() if value is not None else ""
        return {
            "contains": needle in text,
            "startswith": text.startswith(needle),
            "endswith": text.endswith(needle),
        }[node[1]]
    if op == "cmp":
        _, cmp, prop, literal = node
        value: Any = obj
        for part in prop.split("/"):
            value = value.get(part) if isinstance(value, dict) else None
        if isinstance(value, str) and isinstance(literal, str):
            value, literal = value.lower(), literal.lower()
        if cmp == "eq":
            return value == literal
        if cmp == "ne":
            return value != literal
        try:
            return {
                "gt": value > literal,
                "ge": value >= literal,
                "lt": value < literal,
                "le": value <= literal,
            }[cmp]
        except TypeError:
            return False
    raise DataverseError(
        400,
        "0x0",
        "The metadata $filter supports eq, ne, gt, ge, lt, le, and, or, not, contains, startswith, endswith.",
    )


class MetadataRoutes:
    def __init__(self, env: Environment):
        self.env = env

    def _root(self, request: Request) -> str:
        return base_url(request, self.env.config.org_url) + API_ROOT

    @staticmethod
    def solution(request: Request) -> str | None:
        return request.headers.get(SOLUTION_HEADER)

    # ---- lookups --------------------------------------------------------------------------------------
    def entity(self, key: str) -> Entity:
        parsed = parse_key(key)
        tables = self.env.metadata.tables
        if isinstance(parsed, str):
            ent = next((t for t in tables.values() if t.metadata_id == parsed), None)
        elif set(parsed) == {"LogicalName"}:
            ent = tables.get(str(parsed["LogicalName"]))
        else:
            ent = None
        if ent is None:
            raise DataverseError(404, "0x80040217", f"Could not find entity with key {key}.")
        return ent

    @staticmethod
    def attribute(ent: Entity, key: str) -> Attribute:
        parsed = parse_key(key)
        if isinstance(parsed, str):
            attr = next((a for a in ent.attributes.values() if a.metadata_id == parsed), None)
        else:
            attr = ent.attributes.get(str(parsed.get("LogicalName")))
        if attr is None:
            raise DataverseError(
                404, "0x80040217", f"Could not find attribute with key {key} on entity {ent.logical_name}."
            )
        return attr

    # ---- serialisation ---------------------------------------------------------------------------------
    def attribute_json(self, attr: Attribute, select: list[str] | None, expand: list[ExpandItem]) -> dict:
        full = attr.to_json()
        expanded: dict[str, Any] = {}
        for item in expand:
            if item.name == "OptionSet":
                value = full.get("OptionSet")
                expanded["OptionSet"] = project(value, item.select, {}) if isinstance(value, dict) else None
            elif item.name == "GlobalOptionSet":
                expanded["GlobalOptionSet"] = None  # every emulated choice column uses a local option set
            else:
                raise DataverseError(
                    400,
                    "0x0",
                    f"Could not find a property named '{item.name}' on type '{full['@odata.type'][1:]}'.",
                )
        return project(full, select, expanded)

    def entity_json(self, ent: Entity, select: list[str] | None, expand: list[ExpandItem]) -> dict:
        expanded: dict[str, Any] = {}
        for item in expand:
            nested = parse_expand(item.options.get("$expand"))
            if item.name == "Attributes":
                node = parse_filter(item.options.get("$filter"), {})
                expanded["Attributes"] = [
                    self.attribute_json(a, item.select, nested)
                    for a in ent.attributes.values()
                    if matches(node, a.to_json())
                ]
            elif item.name == "Keys":
                expanded["Keys"] = [project(self.key_json(k), item.select, {}) for k in ent.keys]
            elif item.name == "ManyToOneRelationships":
                expanded[item.name] = [project(r.to_json(), item.select, {}) for r in ent.many_to_one]
            elif item.name == "OneToManyRelationships":
                expanded[item.name] = [project(r.to_json(), item.select, {}) for r in ent.one_to_many]
            else:
                raise DataverseError(
                    400,
                    "0x0",
                    f"Could not find a property named '{item.name}' on type 'Microsoft.Dynamics.CRM.EntityMetadata'.",
                )
        return project({**ent.to_json(), "Privileges": metadata_privileges(ent)}, select, expanded)

    def key_json(self, key: Any) -> dict:
        self.env.metadata.key_status(key)
        return key.to_json()

    # ---- dispatch --------------------------------------------------------------------------------------
    async def handle(self, request: Request, name: str, key: str | None, rest: list[str]) -> Response:
        method = request.method
        if name in ("PublishXml", "PublishAllXml"):
            if method != "POST":
                raise not_found_segment(name)
            body = await read_json(request, name)
            if name == "PublishXml" and not (
                isinstance(body, dict) and isinstance(body.get("ParameterXml"), str)
            ):
                raise writes.invalid(
                    "PublishXml needs a ParameterXml string (<importexportxml>...</importexportxml>)."
                )
            return no_content()
        if name == "InsertOptionValue":
            body = require_object(await read_json(request, name), "InsertOptionValue")
            value = writes.insert_option_value(self.env, body, self.solution(request))
            return json_response(
                {
                    "@odata.context": f"{self._root(request)}/$metadata#Microsoft.Dynamics.CRM.InsertOptionValueResponse",
                    "NewOptionValue": value,
                }
            )
        if name == "DeleteOptionValue":
            if method != "POST":
                raise not_found_segment(name)
            body = require_object(await read_json(request, name), "DeleteOptionValue")
            writes.delete_option_value(self.env, body, self.solution(request))
            return no_content()
        if name == "CreateCustomerRelationships":
            body = require_object(await read_json(request, name), "CreateCustomerRelationships")
            ids, attr = relationships.create_customer_relationships(self.env, body, self.solution(request))
            return json_response(
                {
                    "@odata.context": f"{self._root(request)}/$metadata#Microsoft.Dynamics.CRM.CreateCustomerRelationshipsResponse",
                    "RelationshipIds": ids,
                    "AttributeId": attr.metadata_id,
                }
            )
        if name == "GlobalOptionSetDefinitions":
            if key is not None:  # every emulated choice column has a local option set
                raise DataverseError(404, "0x80040217", f"Could not find optionset with key {key}.")
            return json_response(
                {"@odata.context": f"{self._root(request)}/$metadata#GlobalOptionSetDefinitions", "value": []}
            )
        if name == "RelationshipDefinitions":
            return await self.relationships(request, key)
        return await self.entity_definitions(request, key, rest)

    async def relationships(self, request: Request, key: str | None) -> Response:
        if request.method == "POST" and key is None:
            body = require_object(
                await read_json(request, "RelationshipDefinitions"), "RelationshipDefinitions"
            )
            rel_id, _ = relationships.create_relationship(self.env, body, self.solution(request))
            return no_content({"OData-EntityId": f"{self._root(request)}/RelationshipDefinitions({rel_id})"})
        if request.method == "DELETE" and key is not None:
            parsed = parse_key(key)
            relationships.delete_relationship(
                self.env, parsed if isinstance(parsed, str) else str(parsed.get("SchemaName"))
            )
            return no_content()
        if request.method == "GET":
            rels = list(self.env.metadata.relationships.values())
            if key is not None:
                parsed = parse_key(key)
                wanted = parsed if isinstance(parsed, str) else str(parsed.get("SchemaName"))
                rel = next((r for r in rels if wanted in (r.metadata_id, r.schema_name)), None)
                if rel is None:
                    raise DataverseError(404, "0x80040217", f"Could not find relationship with key {key}.")
                return json_response(rel.to_json())
            return json_response({"value": [r.to_json() for r in rels]})
        raise not_found_segment("RelationshipDefinitions")

    async def entity_definitions(self, request: Request, key: str | None, rest: list[str]) -> Response:
        params = request.query_params
        select, expand = parse_select(params.get("$select")), parse_expand(params.get("$expand"))
        method = request.method
        root = self._root(request)
        if key is None:
            if rest:
                raise not_found_segment(rest[0])
            if method == "POST":
                ent = writes.create_table(
                    self.env,
                    require_object(await read_json(request, "EntityDefinitions"), "EntityDefinitions"),
                    self.solution(request),
                )
                return no_content({"OData-EntityId": f"{root}/EntityDefinitions({ent.metadata_id})"})
            if method != "GET":
                raise not_found_segment("EntityDefinitions")
            node = parse_filter(params.get("$filter"), {k: v for k, v in params.items() if k.startswith("@")})
            value = [
                self.entity_json(t, select, expand)
                for t in self.env.metadata.tables.values()
                if matches(node, t.to_json())
            ]
            return json_response({"@odata.context": f"{root}/$metadata#EntityDefinitions", "value": value})
        ent = self.entity(key)
        if not rest:
            if method == "GET":
                body = {
                    "@odata.context": f"{root}/$metadata#EntityDefinitions/$entity",
                    **self.entity_json(ent, select, expand),
                }
                return json_response(body)
            if method == "DELETE":
                writes.delete_table(self.env, ent)
                return no_content()
            if method == "PUT":
                body = require_object(await read_json(request, "EntityDefinitions"), "EntityDefinitions")
                target = writes.named_target(self.env, self.solution(request))
                ent.display[0] = writes.label_text(body.get("DisplayName")) or ent.display[0]
                self.env.metadata.version += 1
                solutions.record(self.env, target, solutions.ENTITY, ent.metadata_id)
                return no_content()
            raise not_found_segment("EntityDefinitions")
        sub, sub_key = split_segment(rest[0])
        if sub == "Attributes":
            return await self.attributes(request, ent, sub_key, rest[1:], select, expand)
        if sub == "Keys":
            if method == "POST" and sub_key is None:
                key_obj = writes.create_key(
                    self.env,
                    ent,
                    require_object(await read_json(request, "Keys"), "Keys"),
                    self.solution(request),
                )
                return no_content(
                    {
                        "OData-EntityId": f"{root}/EntityDefinitions({ent.metadata_id})/Keys({key_obj.metadata_id})"
                    }
                )
            keys = ent.keys
            if sub_key is not None:
                parsed = parse_key(sub_key)
                wanted = parsed if isinstance(parsed, str) else str(parsed.get("LogicalName", "")).lower()
                keys = [k for k in keys if wanted in (k.metadata_id, k.logical_name)]
                if not keys:
                    raise DataverseError(
                        404, "0x80040217", f"Could not find key {sub_key} on entity {ent.logical_name}."
                    )
                if method == "DELETE":
                    writes.delete_key(self.env, ent, keys[0])
                    return no_content()
                return json_response(project(self.key_json(keys[0]), select, {}))
            return json_response(
                {
                    "@odata.context": f"{root}/$metadata#EntityDefinitions({ent.metadata_id})/Keys",
                    "value": [project(self.key_json(k), select, {}) for k in keys],
                }
            )
        if sub in ("ManyToOneRelationships", "OneToManyRelationships") and method == "GET":
            rels = ent.many_to_one if sub == "ManyToOneRelationships" else ent.one_to_many
            node = parse_filter(params.get("$filter"), {})
            value = [project(r.to_json(), select, {}) for r in rels if matches(node, r.to_json())]
            return json_response(
                {
                    "@odata.context": f"{root}/$metadata#EntityDefinitions({ent.metadata_id})/{sub}",
                    "value": value,
                }
            )
        raise not_found_segment(rest[0])

    async def attributes(
        self,
        request: Request,
        ent: Entity,
        sub_key: str | None,
        rest: list[str],
        select: list[str] | None,
        expand: list[ExpandItem],
    ) -> Response:
        root = self._root(request)
        method = request.method
        cast = None
        if rest:
            if len(rest) > 1 or not rest[0].startswith(CAST_PREFIX):
                raise not_found_segment(rest[-1])
            cast = rest[0][len(CAST_PREFIX) :]
            if cast not in {suffix for _, suffix in TYPE_INFO.values()}:
                raise not_found_segment(rest[0])
        if sub_key is None:
            if method == "POST" and cast is None:
                attr = writes.create_attribute(
                    self.env,
                    ent,
                    require_object(await read_json(request, "Attributes"), "Attributes"),
                    self.solution(request),
                )
                return no_content(
                    {
                        "OData-EntityId": f"{root}/EntityDefinitions(LogicalName='{ent.logical_name}')/Attributes({attr.metadata_id})"
                    }
                )
            if method != "GET":
                raise not_found_segment("Attributes")
            node = parse_filter(request.query_params.get("$filter"), {})
            attrs = [
                a
                for a in ent.attributes.values()
                if cast is None or a.to_json()["@odata.type"].endswith("." + cast)
            ]
            value = [self.attribute_json(a, select, expand) for a in attrs if matches(node, a.to_json())]
            suffix = f"/{CAST_PREFIX}{cast}" if cast else ""
            return json_response(
                {
                    "@odata.context": f"{root}/$metadata#EntityDefinitions({ent.metadata_id})/Attributes{suffix}",
                    "value": value,
                }
            )
        attr = self.attribute(ent, sub_key)
        if cast is not None and not attr.to_json()["@odata.type"].endswith("." + cast):
            raise DataverseError(
                404, "0x80040217", f"The attribute {attr.logical_name} is not of type {cast}."
            )
        if method == "GET":
            return json_response(self.attribute_json(attr, select, expand))
        if method == "PUT":
            body = require_object(await read_json(request, "Attributes"), "Attributes")
            writes.update_attribute(self.env, ent, attr, body, self.solution(request))
            return no_content()
        if method == "DELETE":
            writes.delete_attribute(self.env, ent, attr)
            return no_content()
        raise not_found_segment("Attributes")
