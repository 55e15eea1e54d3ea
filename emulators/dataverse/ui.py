"""A read-only HTML view of the emulated org: tables with record counts, and the records of one table.

No authentication (it is a local demo aid). Every value is HTML-escaped; pages hold 50 records.
"""

from __future__ import annotations

import html
import json
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route

from emulators.dataverse.file_store import plain
from emulators.dataverse.state import Environment

PAGE_SIZE = 50
STYLE = (
    "body{font-family:system-ui,sans-serif;margin:1.5rem;color:#222}table{border-collapse:collapse;font-size:13px}"
    "td,th{border:1px solid #ccc;padding:3px 6px;vertical-align:top;max-width:28rem;overflow-wrap:anywhere}"
    "th{background:#f0f3f7;text-align:left}a{color:#0b5cad}.muted{color:#888}"
)


def _page(title: str, body: str) -> HTMLResponse:
    return HTMLResponse(
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{STYLE}</style></head><body>{body}</body></html>"
    )


def _cell(value: Any) -> str:
    value = plain(value)
    if value is None:
        return ""
    if isinstance(value, list) and len(value) == 2:
        return f"<a href='/ui/{html.escape(str(value[0]))}?id={html.escape(str(value[1]))}'>{html.escape(str(value[0]))}</a> {html.escape(str(value[1]))}"
    text = value if isinstance(value, str) else json.dumps(value)
    if len(text) > 300:
        text = text[:300] + f"… ({len(text)} chars)"
    return html.escape(text)


def ui_routes(env: Environment) -> list[Route]:
    async def index(request: Request) -> HTMLResponse:
        rows = []
        for ent in sorted(env.metadata.tables.values(), key=lambda t: t.logical_name):
            count = len(env.store.table(ent.logical_name))
            kind = (
                "custom activity" if ent.is_custom and ent.is_activity else "custom" if ent.is_custom else ""
            )
            rows.append(
                f"<tr><td><a href='/ui/{html.escape(ent.logical_name)}'>{html.escape(ent.logical_name)}</a></td>"
                f"<td>{html.escape(ent.entity_set)}</td><td>{count}</td><td class='muted'>{kind}</td></tr>"
            )
        body = (
            f"<h1>Dataverse emulator: {html.escape(env.config.org_name)}</h1>"
            "<table><tr><th>Table</th><th>Entity set</th><th>Records</th><th></th></tr>"
            + "".join(rows)
            + "</table>"
        )
        return _page("Dataverse emulator", body)

    async def table(request: Request) -> HTMLResponse:
        name = request.path_params["table"]
        ent = env.metadata.tables.get(name)
        if ent is None:
            return HTMLResponse(
                f"<p>No table named {html.escape(name)}. <a href='/'>Back</a></p>", status_code=404
            )
        with env.store.lock:
            records = list(env.store.table(name).values())
        wanted = request.query_params.get("id")
        if wanted:
            records = [r for r in records if r.get(ent.primary_id) == wanted]
        try:
            page = max(1, int(request.query_params.get("page", "1")))
        except ValueError:
            page = 1
        chunk = records[(page - 1) * PAGE_SIZE : page * PAGE_SIZE]
        columns = [a for a in ent.attributes if any(r.get(a) is not None for r in chunk)]
        head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
        body_rows = "".join(
            "<tr>" + "".join(f"<td>{_cell(r.get(c))}</td>" for c in columns) + "</tr>" for r in chunk
        )
        pages = max(1, -(-len(records) // PAGE_SIZE))
        nav = []
        if page > 1:
            nav.append(f"<a href='/ui/{html.escape(name)}?page={page - 1}'>previous</a>")
        if page < pages:
            nav.append(f"<a href='/ui/{html.escape(name)}?page={page + 1}'>next</a>")
        body = (
            f"<p><a href='/'>All tables</a></p><h1>{html.escape(name)}</h1>"
            f"<p>{len(records)} records, page {page} of {pages} {' | '.join(nav)}</p>"
            f"<table><tr>{head}</tr>{body_rows}</table>"
        )
        return _page(f"{name}: Dataverse emulator", body)

    return [Route("/", index), Route("/ui/{table}", table)]
