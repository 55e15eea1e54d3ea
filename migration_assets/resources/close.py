"""The Dagster face of the Close client: `CloseResource` configures one `CloseClient` per run."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import dagster as dg
from pydantic import PrivateAttr

from migration_assets.clients.close.client import DEFAULT_BASE_URL, DEFAULT_MAX_SKIP, CloseClient, Page
from migration_assets.clients.close.export_file import CloseExportError
from migration_assets.clients.close.http import CLOSE_FILE_HOSTS
from migration_assets.resources.warehouse import default_home

# Guards the creation of a resource's client (rare: once per run); see CloseResource.get_client.
_CLIENT_LOCK = threading.Lock()


class CloseResource(dg.ConfigurableResource):
    """Dagster resource for the Close source org.

    `api_key` comes from the CLOSE_API_KEY variable (a `dg.EnvVar`) and is never logged. `source` picks where the
    big objects (leads, contacts, opportunities, activities, tasks) come from: "api" (paged list
    endpoints), "export" (a JSON export requested through the API) or "file" (`export_file`, a JSON
    export on disk). Small configuration objects always come from the API.
    """

    api_key: str
    base_url: str = "https://api.close.com/api/v1/"
    source: Literal["api", "export", "file"] = "api"
    export_file: str | None = None
    export_cache_dir: str | None = None
    page_size: int | None = None
    concurrency: int = 4
    timeout_seconds: float = 60.0
    max_attempts: int = 6
    requests_per_second: float | None = None
    max_skip: int = DEFAULT_MAX_SKIP
    activity_lookback_hours: float = 24.0
    # Worker processes parsing a JSON-lines export in parallel (0: parse in the asset's own process).
    export_split_workers: int = 2
    # Hosts (exact names, https only) that get the API key when a file or recording URL points there;
    # add one only if Close serves your org's files from another host of its own.
    file_hosts: list[str] = list(CLOSE_FILE_HOSTS)

    _client: CloseClient | None = PrivateAttr(default=None)
    _scratch: list[Path] = PrivateAttr(default_factory=list)

    def get_client(self) -> CloseClient:
        # Locked: an export split ahead (export_split.ExportSplit) asks for the client from its own
        # threads while the assets use it; there must be one client (one rate gate, one set of stats).
        with _CLIENT_LOCK:
            if self._client is None:
                self._client = CloseClient(
                    self.api_key,
                    self.base_url or DEFAULT_BASE_URL,
                    concurrency=self.concurrency,
                    page_size=self.page_size,
                    max_skip=self.max_skip,
                    timeout_seconds=self.timeout_seconds,
                    max_attempts=self.max_attempts,
                    requests_per_second=self.requests_per_second,
                    file_hosts=self.file_hosts,
                )
            return self._client

    def call_counts(self) -> dict[str, int]:
        """Requests, retries and 429s of this run's client so far (zeros before any call)."""
        if self._client is None:
            return {"requests": 0, "retries": 0, "throttled_429": 0}
        s = self._client.stats
        return {
            "requests": int(s["requests"]),
            "retries": int(s["retries"]),
            "throttled_429": int(s["rate_limited_429"]),
        }

    def scratch_dir(self, name: str) -> Path:
        """An owner-only working folder (exports hold PII), removed when the run's resources tear down."""
        base = Path(self.export_cache_dir) if self.export_cache_dir else default_home() / "close_export"
        base.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = base / name
        path.mkdir(exist_ok=True, mode=0o700)
        if path not in self._scratch:
            self._scratch.append(path)
        return path

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
        for path in self._scratch:
            shutil.rmtree(path, ignore_errors=True)
        self._scratch.clear()

    # Thin delegations so assets can write `close.iter_pages(...)`.
    def iter_pages(self, path: str, params: dict[str, Any] | None = None) -> Iterator[Page]:
        return self.get_client().iter_pages(path, params)

    def iter_date_windows(
        self, path: str, params: dict[str, Any] | None = None, field: str = "date_created"
    ) -> Iterator[Page]:
        return self.get_client().iter_window_pages(path, params, field=field)

    def iter_events(self, **kwargs: Any) -> Iterator[Page]:
        return self.get_client().iter_events(**kwargs)

    def _export_file(self) -> str | None:
        """The export file to read (source "file"), None to request an export through the API."""
        if self.source != "file":
            return None
        if not self.export_file:
            raise CloseExportError(
                "CloseResource.source is 'file' but no export_file is configured: set export_file to the "
                "path of a Close JSON export (.json, .jsonl or .gz), or use source 'export' to request one "
                "through the API."
            )
        return self.export_file

    def export_leads(self, include_activities: bool = True) -> Iterator[dict]:
        return self.get_client().export_leads(include_activities, self._export_file())

    def export_chunks(
        self, include_activities: bool = True, stop: threading.Event | None = None
    ) -> Iterator[bytes]:
        """Raw bytes of the JSON export (`export_file`, or one requested through the API); `stop`
        abandons the wait for a requested export."""
        return self.get_client().export_chunks(include_activities, self._export_file(), stop)

    def download(self, url: str) -> Iterator[bytes]:
        return self.get_client().download(url)

    @property
    def stats(self) -> dict[str, float]:
        return self.get_client().stats
