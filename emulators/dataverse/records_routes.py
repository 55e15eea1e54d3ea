"""Entity-set routes: GET/POST /<set>, GET/PATCH/DELETE /<set>(<key>), column and activity-party sub-routes."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import Response

from emulators.dataverse.errors import DataverseError
from emulators.dataverse.file_store import plain
from emulators.dataverse.http import (
    API_ROOT,
    Prefer,
    base_url,
    json_response,
    no_content,
    read_json,
    require_object,
)
from emulators.dataverse.metadata import LOOKUP_KINDS, Entity
from emulators.dataverse.odata import parse_expand, parse_key, parse_select
from emulators.dataverse.query import Reader, encode_skiptoken, etag
from emulators.dataverse.records import Writer, privilege_denied, table_privilege
from emulators.dataverse.state import Caller, Environment
from emulators.dataverse.store import Row

# Characters left readable in @odata.nextLink query values (spaces, '&', '#' and '%' are escaped).
SAFE = "$,()'@/:*=-_.~"


class RecordRoutes:
    def __init__(self, env: Environment, writer: Writer, reader: Reader):
        self.env, self.writer, self.reader = env, writer, reader

    def _root(self, request: Request) -> str:
        return base_url(request, self.env.config.org_url) + API_ROOT

    def entity_id_headers(self, request: Request, ent: Entity, record_id: str) -> dict[str, str]:
        url = f"{self._root(request)}/{ent.entity_set}({record_id})"
        return {"OData-EntityId": url, "Location": url}

    def _context(self, request: Request, ent: Entity, select: list[str] | None, single: bool) -> str:
        cols = f"({','.join(select)})" if select else ""
        return f"{self._root(request)}/$metadata#{ent.entity_set}{cols}{'/$entity' if single else ''}"

    def representation(self, request: Request, ent: Entity, row: Row, prefer: Prefer) -> dict:
        select = parse_select(request.query_params.get("$select"))
        body = {"@odata.context": self._context(request, ent, select, True)}
        body.update(
            self.reader.format_row(ent, row, self.reader.select_plan(ent, select), prefer.annotations)
        )
        return body

    def check_read(self, ent: Entity, caller: Caller) -> None:
        if caller.lacks(table_privilege("Read", ent), self.env.config):
            raise privilege_denied(caller, table_privilege("Read", ent), ent)

    # ---- collection --------------------------------------------------------------------------------------
    async def collection(self, request: Request, ent: Entity, caller: Caller) -> Response:
        prefer = Prefer.parse(request.headers.get("Prefer"))
        if request.method == "GET":
            self.check_read(ent, caller)
            params = dict(request.query_params)
            body = self.reader.collection(ent, params, prefer.max_page_size, prefer.annotations)
            out: dict[str, Any] = {
                "@odata.context": self._context(request, ent, parse_select(params.get("$select")), False)
            }
            next_offset = body.pop("_next_offset", None)
            out.update(body)
            headers = {}
            if next_offset is not None:
                keep = "&".join(f"{k}={quote(v, safe=SAFE)}" for k, v in params.items() if k != "$skiptoken")
                sep = "&" if keep else ""
                out["@odata.nextLink"] = (
                    f"{self._root(request)}/{ent.entity_set}?{keep}{sep}$skiptoken={encode_skiptoken(next_offset)}"
                )
            applied = []
            if prefer.max_page_size:
                applied.append(f"odata.maxpagesize={min(prefer.max_page_size, 5000)}")
            if prefer.annotations:
                applied.append(prefer.annotations.applied)
            if applied:
                headers["Preference-Applied"] = ",".join(applied)
            return json_response(out, headers=headers)
        if request.method == "POST":
            payload = require_object(await read_json(request, ent.entity_set), "a create request")
            record_id, row = self.writer.create(ent, payload, caller)
            if prefer.representation:
                return json_response(
                    self.representation(request, ent, row, prefer),
                    status=201,
                    headers={"Preference-Applied": "return=representation"},
                )
            return no_content(self.entity_id_headers(request, ent, record_id))
        raise method_not_allowed(request)

    # ---- single record -------------------------------------------------------------------------------------
    def locate(self, ent: Entity, key_text: str) -> tuple[str | None, str | dict]:
        key = parse_key(key_text)
        return self.writer.locate(ent, key), key

    def missing(self, ent: Entity, key: str | dict) -> DataverseError:
        return self.writer.missing(ent, key)

    async def record(self, request: Request, ent: Entity, key_text: str, caller: Caller) -> Response:
        prefer = Prefer.parse(request.headers.get("Prefer"))
        method = request.method
        if method == "GET":
            self.check_read(ent, caller)
            record_id, key = self.locate(ent, key_text)
            row = self.env.store.get(ent.logical_name, record_id) if record_id else None
            if row is None:
                raise self.missing(ent, key)
            params = request.query_params
            select = parse_select(params.get("$select"))
            body = {"@odata.context": self._context(request, ent, select, True)}
            body.update(
                self.reader.format_row(
                    ent,
                    row,
                    self.reader.select_plan(ent, select),
                    prefer.annotations,
                    parse_expand(params.get("$expand")),
                )
            )
            applied = {"Preference-Applied": prefer.annotations.applied} if prefer.annotations else None
            return json_response(body, headers=applied)
        if method == "PATCH":
            payload = require_object(await read_json(request, ent.entity_set), "an update request")
            return self.upsert(request, ent, key_text, payload, caller, prefer)
        if method == "DELETE":
            with self.env.store.lock:
                record_id, key = self.locate(ent, key_text)
                if record_id is None:
                    raise self.missing(ent, key)
                self._check_etag(request, ent, record_id)
                self.writer.delete(ent, record_id, caller)
            return no_content()
        raise method_not_allowed(request)

    def _check_etag(self, request: Request, ent: Entity, record_id: str) -> None:
        if_match = request.headers.get("If-Match")
        if if_match and if_match != "*":
            row = self.env.store.get(ent.logical_name, record_id) or {}
            if if_match != etag(row):
                raise DataverseError(
                    412,
                    "0x80060882",
                    "The version of the existing record doesn't match the RowVersion property provided.",
                )

    def upsert(
        self, request: Request, ent: Entity, key_text: str, payload: dict, caller: Caller, prefer: Prefer
    ) -> Response:
        record_id, row, created = self.writer.upsert(
            ent,
            parse_key(key_text),
            payload,
            caller,
            if_match=request.headers.get("If-Match"),
            if_none_match=request.headers.get("If-None-Match"),
        )
        if prefer.representation:
            return json_response(
                self.representation(request, ent, row, prefer),
                status=201 if created else 200,
                headers={"Preference-Applied": "return=representation"},
            )
        return no_content(self.entity_id_headers(request, ent, record_id))

    # ---- /<set>(<key>)/<property> ----------------------------------------------------------------------------
    async def property(
        self, request: Request, ent: Entity, key_text: str, prop: str, caller: Caller, raw: bool
    ) -> Response:
        with self.env.store.lock:
            record_id, key = self.locate(ent, key_text)
            if record_id is None:
                raise self.missing(ent, key)
        if ent.is_activity and prop == f"{ent.logical_name}_activity_parties":
            return await self.parties(request, ent, record_id, caller)
        many = self.env.security.is_many_to_many(ent.logical_name, prop)  # N:N (security.py)
        if request.method == "GET" and (many or any(r.collection_nav == prop for r in ent.one_to_many)):
            self.check_read(ent, caller)
            child, rows = self.reader.related_rows(ent, record_id, prop) or (ent, [])
            select = parse_select(request.query_params.get("$select"))
            plan = self.reader.select_plan(child, select)
            ctx = self._context(request, child, select, False)
            return json_response(
                {
                    "@odata.context": ctx,
                    "value": [self.reader.format_row(child, r, plan, False) for r in rows],
                }
            )
        attr = ent.attributes.get(prop)
        if attr is None or attr.kind in LOOKUP_KINDS:
            raise DataverseError(404, "0x8006088a", f"Resource not found for the segment '{prop}'.")
        if request.method == "GET":
            self.check_read(ent, caller)
            value = plain((self.env.store.get(ent.logical_name, record_id) or {}).get(prop))
            if raw:
                if value is None:
                    return no_content()
                return Response(str(value), media_type="text/plain", headers={"OData-Version": "4.0"})
            ctx = f"{self._root(request)}/$metadata#{ent.entity_set}({record_id})/{prop}"
            return json_response({"@odata.context": ctx, "value": value})
        if request.method == "PUT":
            body = require_object(await read_json(request, ent.entity_set), "a PUT of one column")
            if "value" not in body:
                raise DataverseError(
                    400, "0x80048d19", 'The body of a PUT to a column must be {"value": ...}.'
                )
            self.writer.update(ent, record_id, {prop: body["value"]}, caller)
            return no_content()
        if request.method == "DELETE":
            self.writer.update(ent, record_id, {prop: None}, caller)
            return no_content()
        raise method_not_allowed(request)

    async def parties(self, request: Request, ent: Entity, record_id: str, caller: Caller) -> Response:
        party_ent = self.env.metadata.tables["activityparty"]
        if request.method == "GET":
            plan = self.reader.select_plan(party_ent, parse_select(request.query_params.get("$select")))
            ids = self.env.store.parties_by_activity.get(record_id, ())
            rows = [r for r in (self.env.store.get("activityparty", p) for p in ids) if r is not None]
            ctx = f"{self._root(request)}/$metadata#activityparties"
            return json_response(
                {
                    "@odata.context": ctx,
                    "value": [self.reader.format_row(party_ent, r, plan, False) for r in rows],
                }
            )
        if request.method == "PUT":
            body = require_object(await read_json(request, ent.entity_set), "a PUT of activity parties")
            self.writer.update(
                ent, record_id, {f"{ent.logical_name}_activity_parties": body.get("value")}, caller
            )
            return no_content()
        raise method_not_allowed(request)


def method_not_allowed(request: Request) -> DataverseError:
    return DataverseError(
        404, "", f"No HTTP resource was found that matches the request URI '{request.url}'."
    )
