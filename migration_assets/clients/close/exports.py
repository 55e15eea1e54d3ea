"""Close JSON lead exports: request, poll, download (to a file or streamed into the parser).

A mixin of `CloseClient` (it uses the client's `get`/`post`/`http` and export settings).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from migration_assets.clients.close.export_file import CloseExportError, iter_export_leads, iter_export_stream
from migration_assets.clients.close.http import CloseAPIError

if TYPE_CHECKING:
    from migration_assets.clients.close.http import CloseHttp


class CloseExportsMixin:
    http: CloseHttp
    export_poll_seconds: float
    export_timeout_seconds: float

    def get(self, path: str, params: dict[str, Any] | None = None) -> Any:  # pragma: no cover - provided
        raise NotImplementedError

    def post(self, path: str, body: Any) -> Any:  # pragma: no cover - provided by CloseClient
        raise NotImplementedError

    def request_export(self, include_activities: bool = True) -> dict[str, Any]:
        return self.post(
            "export/lead/",
            {
                "format": "json",
                "type": "leads",
                "include_activities": include_activities,
                "send_done_email": False,
            },
        )

    def wait_export(self, export_id: str, stop: threading.Event | None = None) -> dict[str, Any]:
        """Poll the export until it is done; `stop` (set by another thread) abandons the wait."""
        deadline = time.monotonic() + self.export_timeout_seconds
        delay = self.export_poll_seconds
        while True:
            export = self.get(f"export/{export_id}/")
            status = export.get("status")
            if status == "done" and export.get("download_url"):
                return export
            if status == "error":
                raise CloseExportError(f"Close reported an error building export {export_id}: {export}")
            if time.monotonic() > deadline:  # pragma: no cover - needs a stuck export
                raise CloseExportError(
                    f"Close export {export_id} not ready after {self.export_timeout_seconds:.0f} s "
                    f"(status={status}, processed {export.get('n_docs_processed')}/{export.get('n_docs')})"
                )
            if stop is None:
                time.sleep(delay)
            elif stop.wait(delay):
                raise CloseExportError(f"Stopped waiting for Close export {export_id}: the run ended")
            delay = min(delay * 2, 10.0)

    def download_export(self, dest: Path, include_activities: bool = True) -> Path:
        """Request a JSON lead export, wait for it and stream it (still gzip-compressed) to `dest`."""
        export = self.wait_export(self.request_export(include_activities)["id"])
        tmp = dest.with_name(dest.name + ".part")
        for attempt in range(3):
            try:
                with tmp.open("wb") as fh:
                    for chunk in self.http.stream_download(export["download_url"], decode=False):
                        fh.write(chunk)
                break
            except CloseAPIError as exc:
                # Signed download URLs expire after 60 s: fetch a fresh one and try again.
                if attempt == 2 or exc.status not in (400, 403, 404, 410):
                    raise
                export = self.wait_export(export["id"])
        tmp.replace(dest)
        return dest

    def export_chunks(
        self,
        include_activities: bool = True,
        export_file: str | None = None,
        stop: threading.Event | None = None,
    ) -> Iterator[bytes]:
        """The raw bytes of a JSON export (as stored: usually gzip), from `export_file` or requested
        through the API and streamed as it downloads (the request is made on first iteration).
        `stop` abandons the wait for the export (the reading side stops by ceasing to iterate)."""
        if export_file:
            path = Path(export_file)
            if not path.exists():
                raise CloseExportError(f"Close export file not found: {path}")
            with path.open("rb") as fh:
                while chunk := fh.read(1 << 20):
                    yield chunk
            return
        export = self.wait_export(self.request_export(include_activities)["id"], stop)
        yield from self.http.stream_download(export["download_url"], decode=False)

    def export_leads(self, include_activities: bool = True, export_file: str | None = None) -> Iterator[dict]:
        """Lead documents of a JSON export, streamed one at a time.

        With `export_file` the file on disk is read (JSON-lines or array, optionally .gz; CSV refused);
        otherwise an export is requested through the API and parsed as it downloads.
        """
        if export_file:
            yield from iter_export_leads(export_file)
            return
        export = self.wait_export(self.request_export(include_activities)["id"])
        # Parse while downloading: nothing touches the disk and parsing overlaps the transfer.
        yield from iter_export_stream(
            self.http.stream_download(export["download_url"], decode=False),
            name=f"Close export {export['id']}",
        )
