"""The Web API dispatcher: one catch-all route under /api/data/v9.2/ that parses OData paths itself.

OData URLs (`accounts(c2d_closeid='x')`, `EntityDefinitions(LogicalName='lead')/Attributes/...`) do not fit
Starlette path patterns, so segments are parsed here and handed to the record, metadata and bulk modules.
"""

from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.responses import Response

from emulators.dataverse import processes
from emulators.dataverse.bulk import query_message_filters, run_bulk
from emulators.dataverse.bulk_delete import bulk_delete
from emulators.dataverse.csdl import csdl
from emulators.dataverse.errors import DataverseError, error_response
from emulators.dataverse.http import API_ROOT, base_url, json_response, no_content, read_json, service_headers
from emulators.dataverse.metadata import Entity
from emulators.dataverse.metadata_routes import METADATA_ROOTS, MetadataRoutes
from emulators.dataverse.odata import parse_key, split_path, split_segment
from emulators.dataverse.opportunity_actions import close_opportunity
from emulators.dataverse.query import Reader
from emulators.dataverse.records import Writer, privilege_denied
from emulators.dataverse.records_routes import RecordRoutes, method_not_allowed
from emulators.dataverse.security import SecurityRoutes
from emulators.dataverse.state import Caller, Environment

log = logging.getLogger(__name__)
BYPASS_HEADERS = {
    "MSCRM.BypassBusinessLogicExecution": "prvBypassCustomBusinessLogic",
    "MSCRM.BypassBusinessLogicExecutionStepIds": "prvBypassCustomBusinessLogic",
    "MSCRM.BypassCustomPluginExecution": "prvBypassCustomPlugins",
}


class Api:
    def __init__(self, env: Environment):
        self.env = env
        self.writer = Writer(env)
        self.reader = Reader(env)
        self.records = RecordRoutes(env, self.writer, self.reader)
        self.meta = MetadataRoutes(env)
        self.security = SecurityRoutes(env)

    def caller(self, request: Request) -> Caller:
        state = request.state
        caller = self.env.caller(
            getattr(state, "caller_systemuserid", None), getattr(state, "app_user", None)
        )
        by_id, by_object = request.headers.get("MSCRMCallerID"), request.headers.get("CallerObjectId")
        if not (by_id or by_object):
            return caller
        # Impersonation (reference §2.1): act as another systemuser; needs prvActOnBehalfOfAnotherUser.
        if caller.lacks("prvActOnBehalfOfAnotherUser", self.env.config):
            raise privilege_denied(
                caller, "prvActOnBehalfOfAnotherUser", self.env.metadata.tables["systemuser"]
            )
        users = self.env.store.table("systemuser")
        if by_id:
            user = users.get(by_id.strip().lower())
        else:
            wanted = (by_object or "").strip().lower()
            user = next((u for u in users.values() if u.get("azureactivedirectoryobjectid") == wanted), None)
        if user is None:
            raise DataverseError(
                404, "0x80040217", f"Entity 'systemuser' With Id = {by_id or by_object} Does Not Exist"
            )
        if user.get("isdisabled"):
            raise DataverseError(
                400,
                "0x80040225",
                "The specified user is either disabled or is not a member of any business unit",
            )
        return Caller(user["systemuserid"], caller.app_user, caller.security)

    async def __call__(self, request: Request) -> Response:
        try:
            response = await self.dispatch(request)
        except DataverseError as err:
            response = error_response(err)
        except Exception:  # a bug in the emulator must still answer like the service, never a bare traceback
            log.exception("Dataverse emulator failure on %s %s", request.method, request.url.path)
            response = error_response(
                DataverseError(
                    500, "0x80040216", "An unexpected error occurred in the Dataverse emulator (see its log)."
                )
            )
        response.headers.update(service_headers())
        return response

    async def dispatch(self, request: Request) -> Response:
        path = request.url.path.split(API_ROOT + "/", 1)[-1] if API_ROOT + "/" in request.url.path else ""
        segments = split_path(path)
        if not segments:
            return json_response(
                {
                    "@odata.context": f"{base_url(request, self.env.config.org_url)}{API_ROOT}/$metadata",
                    "value": [
                        {"name": e.entity_set, "kind": "EntitySet", "url": e.entity_set}
                        for e in self.env.metadata.tables.values()
                    ],
                }
            )
        if segments == ["$metadata"]:
            if request.method != "GET":
                raise method_not_allowed(request)
            return Response(
                csdl(self.env.metadata), media_type="application/xml", headers={"OData-Version": "4.0"}
            )
        name, key = split_segment(segments[0])
        caller = self.caller(request)
        method = request.method
        if method != "GET":
            for header, privilege in BYPASS_HEADERS.items():
                if request.headers.get(header) and caller.lacks(privilege, self.env.config):
                    raise privilege_denied(caller, privilege, self.env.metadata.tables["organization"])
        if name in ("WhoAmI", "WhoAmI()") or (name == "WhoAmI" and key == ""):
            if method != "GET":
                raise method_not_allowed(request)
            root = base_url(request, self.env.config.org_url) + API_ROOT
            return json_response(
                {
                    "@odata.context": f"{root}/$metadata#Microsoft.Dynamics.CRM.WhoAmIResponse",
                    "BusinessUnitId": self.env.businessunit_id,
                    "UserId": caller.systemuserid,
                    "OrganizationId": self.env.organization_id,
                }
            )
        if name in METADATA_ROOTS:
            return await self.meta.handle(request, name, key, segments[1:])
        if name in ("WinOpportunity", "LoseOpportunity"):
            if method != "POST":
                raise method_not_allowed(request)
            body = await read_json(request, name)
            close_opportunity(
                self.writer, body if isinstance(body, dict) else {}, name == "WinOpportunity", caller
            )
            return no_content()
        if name == "BulkDelete":
            if method != "POST":
                raise method_not_allowed(request)
            job_id = bulk_delete(self.writer, await read_json(request, name), caller)
            root = base_url(request, self.env.config.org_url) + API_ROOT
            return json_response(
                {
                    "@odata.context": f"{root}/$metadata#Microsoft.Dynamics.CRM.BulkDeleteResponse",
                    "JobId": job_id,
                }
            )
        if name == "sdkmessagefilters":
            if method != "GET" or key is not None:
                raise method_not_allowed(request)
            root = base_url(request, self.env.config.org_url) + API_ROOT
            rows = query_message_filters(self.env, dict(request.query_params))
            return json_response({"@odata.context": f"{root}/$metadata#sdkmessagefilters", "value": rows})
        if name in processes.FUNCTIONS:  # business process flow functions (emulators/dataverse/processes.py)
            if method != "GET":
                raise method_not_allowed(request)
            root = base_url(request, self.env.config.org_url) + API_ROOT
            query = dict(request.query_params)
            return json_response(processes.function_body(self.env, self.reader, name, key or "", query, root))
        ent = self.env.metadata.by_set.get(name)
        if ent is None:
            raise DataverseError(404, "0x8006088a", f"Resource not found for the segment '{name}'.")
        if len(segments) == 1:
            if key is None:
                return await self.records.collection(request, ent, caller)
            return await self.records.record(request, ent, key, caller)
        sub = segments[1]
        if key is not None:  # roles, privileges, RetrieveUserPrivileges (emulators/dataverse/security.py)
            handled = await self.security.handle(request, ent, key, segments[1:], caller)
            if handled is not None:
                return handled
        if key is None and sub.startswith("Microsoft.Dynamics.CRM.") and len(segments) == 2:
            if method != "POST":
                raise method_not_allowed(request)
            body = await read_json(request, ent.entity_set)
            ids = run_bulk(self.env, self.writer, ent, sub.split(".")[-1], body, caller)
            if ids is None:
                return no_content()
            root = base_url(request, self.env.config.org_url) + API_ROOT
            return json_response(
                {
                    "@odata.context": f"{root}/$metadata#Microsoft.Dynamics.CRM.CreateMultipleResponse",
                    "Ids": ids,
                }
            )
        if key is not None and len(segments) == 3 and segments[2] == "$ref" and sub in ent.nav_single:
            return await self.single_ref(request, ent, key, sub, caller)
        if key is not None and len(segments) in (2, 3):
            raw = len(segments) == 3 and segments[2] == "$value"
            if len(segments) == 3 and not raw:
                raise DataverseError(
                    404, "0x8006088a", f"Resource not found for the segment '{segments[2]}'."
                )
            return await self.records.property(request, ent, key, sub, caller, raw)
        raise DataverseError(404, "0x8006088a", f"Resource not found for the segment '{sub}'.")

    async def single_ref(self, request: Request, ent: Entity, key: str, nav: str, caller: Caller) -> Response:
        """PUT/DELETE /<set>(<id>)/<single-valued nav>/$ref: set or clear one lookup (reference §2.5)."""
        if request.method == "PUT":
            body = await read_json(request, ent.entity_set)
            target = body.get("@odata.id") if isinstance(body, dict) else None
            if not isinstance(target, str):
                raise DataverseError(
                    400, "0x80048d19", 'The body of a $ref PUT must be {"@odata.id": "<entityset>(<id>)"}.'
                )
        elif request.method == "DELETE":
            target = None
        else:
            raise method_not_allowed(request)
        record_id = self.writer.locate(ent, parse_key(key))
        if record_id is None:
            raise self.writer.missing(ent, parse_key(key))
        self.writer.update(ent, record_id, {f"{nav}@odata.bind": target}, caller)
        return no_content()
