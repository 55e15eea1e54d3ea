"""Run the emulator as a real HTTP server: in a background thread (`CloseEmulatorServer`) or blocking (`serve`).

Sync clients (httpx.Client, requests, the official `closeio` client) need a real socket; tests use
`with CloseEmulatorServer(org) as server: httpx.Client(base_url=server.base_url, auth=(org.api_key, ""))`.
"""

from __future__ import annotations

import gc
import logging
import socket
import sys
import threading
import time
from typing import TYPE_CHECKING

import uvicorn

from .app import create_app
from .config import CloseEmulatorConfig
from .faults import DroppedConnection

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from emulators.close.state import EmulatorState
    from emulators.orgdata import CloseOrg

log = logging.getLogger(__name__)


class _HideInjectedDrops(logging.Filter):
    """A dropped connection is a fault we injected on purpose: do not log it as an application error."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, DroppedConnection)


def _freeze_heap() -> None:
    """Move the (large, long-lived) org out of the cyclic GC's reach: full collections otherwise walk
    millions of dicts while serving and halve throughput."""
    gc.collect()
    gc.freeze()


def _install_log_filter() -> None:
    logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _HideInjectedDrops) for f in logger.filters):
        logger.addFilter(_HideInjectedDrops())


class EmulatorServerError(RuntimeError):
    """The emulator server could not start (port in use, startup timeout)."""


class CloseEmulatorServer:
    """uvicorn serving `create_app(org, config)` in a daemon thread; `base_url` ends with /api/v1/."""

    def __init__(
        self, org: CloseOrg, config: CloseEmulatorConfig | None = None, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.org = org
        self.app: Starlette = create_app(org, config)
        self.host = host
        self._requested_port = port
        self.port: int | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None

    @property
    def state(self) -> EmulatorState:
        return self.app.state.emulator

    def reload(self, org: CloseOrg) -> None:
        """Serve `org` (typically the same org with edits) without restarting; see EmulatorState.reload."""
        self.org = org
        self.state.reload(org)

    @property
    def root_url(self) -> str:
        if self.port is None:
            raise EmulatorServerError(
                "the server is not started; call start() or use it as a context manager"
            )
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        return self.root_url + "/api/v1/"

    def start(self, timeout: float = 15.0) -> CloseEmulatorServer:
        if self._thread is not None:
            return self
        _install_log_filter()
        _freeze_heap()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self._requested_port))
        except OSError as exc:
            sock.close()
            raise EmulatorServerError(f"cannot bind {self.host}:{self._requested_port}: {exc}") from exc
        self._socket = sock
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app,
            log_level="warning",
            lifespan="off",
            access_log=False,
            timeout_keep_alive=30,
            date_header=False,  # the app dates every answer by the emulator's clock (app.ServerDate)
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run,
            kwargs={"sockets": [sock]},
            name=f"close-emulator-{self.port}",
            daemon=True,
        )
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise EmulatorServerError(f"the Close emulator did not start on {self.host}:{self.port}")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._socket is not None:
            self._socket.close()
        self._server = None
        self._thread = None
        self._socket = None

    def __enter__(self) -> CloseEmulatorServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve(size: str, seed: int, host: str, port: int, config: CloseEmulatorConfig | None = None) -> None:
    """Generate the org (`size`, `seed`) and serve it until interrupted (used by `close2d365 emulators`)."""
    from emulators.orgdata import generate

    org = generate(size, seed)
    app = create_app(org, config)
    _install_log_filter()
    _freeze_heap()
    shown_host = host if host not in ("0.0.0.0", "::") else "127.0.0.1"  # noqa: S104 - display only
    # The key is synthetic test data generated from the seed (not a credential of any real service).
    print(
        f"Close emulator ({size}, seed {seed}): http://{shown_host}:{port}/api/v1/  "
        f"API key (synthetic): {org.api_key}",
        file=sys.stderr,
        flush=True,
    )
    uvicorn.run(
        app, host=host, port=port, log_level="warning", access_log=False, lifespan="off", date_header=False
    )
