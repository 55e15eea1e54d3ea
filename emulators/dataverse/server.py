"""Run the Dataverse emulator over HTTPS with uvicorn: in a background thread (tests) or blocking (CLI).

with EmulatorServer(DataverseEmulatorConfig()) as server:
    app = msal.ConfidentialClientApplication(client_id, client_credential=secret,
                                             authority=server.authority, instance_discovery=False,
                                             verify=server.ca_bundle)
    token = app.acquire_token_for_client([server.base_url + "/.default"])["access_token"]
    httpx.get(server.base_url + "/api/data/v9.2/WhoAmI", verify=server.ca_bundle,
              headers={"Authorization": "Bearer " + token})
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import TracebackType

import uvicorn
from starlette.applications import Starlette

from emulators.dataverse.config import DataverseEmulatorConfig
from emulators.dataverse.heap import return_large_blocks_to_system
from emulators.dataverse.tls import DEFAULT_HOSTNAMES, TlsFiles, generate_ca_and_cert

DEFAULT_TLS_DIR = Path(tempfile.gettempdir()) / "close2d365-dataverse-tls"
_START_TIMEOUT = 30.0


class EmulatorStartError(RuntimeError):
    """The HTTPS server did not come up (port in use, TLS files unusable, app failed to start)."""


def _public_host(host: str) -> str:
    # the certificate names localhost; clients should use that name for 127.0.0.1 / all-interfaces binds
    return "localhost" if host in ("127.0.0.1", "0.0.0.0", "::", "::1", "localhost") else host


def _tls(host: str, tls_dir: Path | None) -> TlsFiles:
    names = list(DEFAULT_HOSTNAMES)
    if _public_host(host) not in names:
        names.append(_public_host(host))
    return generate_ca_and_cert(Path(tls_dir) if tls_dir else DEFAULT_TLS_DIR, names)


def _build_app(config: DataverseEmulatorConfig) -> Starlette:
    from emulators.dataverse.app import create_app  # late: app.py imports this package's edge modules

    return create_app(config)


class _Server(uvicorn.Server):
    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        # An idle keep-alive TLS connection closes only after the client answers close_notify, which a
        # pooled client never does: abort idle connections so stop() does not wait for the grace timeout.
        for connection in list(self.server_state.connections):
            cycle = getattr(connection, "cycle", None)
            transport = getattr(connection, "transport", None)
            if transport is not None and (cycle is None or getattr(cycle, "response_complete", False)):
                transport.abort()
        await super().shutdown(sockets)


def _uvicorn_config(app: Starlette, host: str, port: int, tls: TlsFiles) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        ssl_certfile=str(tls.cert),
        ssl_keyfile=str(tls.key),
        log_level="warning",
        log_config=None,  # keep the host application's (or pytest's) logging setup untouched
        access_log=False,
        lifespan="auto",
        timeout_graceful_shutdown=2,
    )


def _listening_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Inherited by accepted connections: without it Nagle holds a response's body until the client
    # acknowledges its headers, which a client delays by 40 ms (every request took 44 ms on loopback).
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise EmulatorStartError(f"cannot listen on {host}:{port}: {exc}") from exc
    return sock


class EmulatorServer:
    """The emulator served over HTTPS on `host` and a free (or given) port, in a background thread."""

    def __init__(
        self,
        config: DataverseEmulatorConfig,
        host: str = "127.0.0.1",
        port: int = 0,
        tls_dir: Path | None = None,
        app: Starlette | None = None,  # default: create_app(config); tests may pass their own app
    ) -> None:
        self.config = config
        self.host = host
        self._requested_port = port
        self._tls_dir = tls_dir
        self.app: Starlette = app if app is not None else _build_app(config)
        self.port = 0
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self.tls: TlsFiles | None = None

    @property
    def base_url(self) -> str:
        """The environment URL, e.g. https://localhost:PORT (Web API at base_url + "/api/data/v9.2/")."""
        return f"https://{_public_host(self.host)}:{self.port}"

    @property
    def authority(self) -> str:
        return f"{self.base_url}/{self.config.tenant_id}"

    @property
    def ca_bundle(self) -> str:
        if self.tls is None:
            raise EmulatorStartError(
                "the server is not started: call start() (or use it as a context manager)"
            )
        return str(self.tls.ca_cert)

    def ssl_context(self) -> ssl.SSLContext:
        """A client SSLContext trusting the emulator's CA (httpx >= 0.28 prefers it to verify=<path>)."""
        return ssl.create_default_context(cafile=self.ca_bundle)

    def start(self) -> EmulatorServer:
        if self._thread is not None:
            return self
        return_large_blocks_to_system()  # file uploads must not leave the process holding freed heap
        self.tls = _tls(self.host, self._tls_dir)
        sock = _listening_socket(self.host, self._requested_port)
        self.port = sock.getsockname()[1]
        config = _uvicorn_config(self.app, self.host, self.port, self.tls)
        self._server = _Server(config)

        def run() -> None:
            try:
                asyncio.run(self._server.serve(sockets=[sock]))  # type: ignore[union-attr]
            except BaseException as exc:  # noqa: BLE001 - reported to the starting thread
                self._error = exc
            finally:
                sock.close()

        self._thread = threading.Thread(target=run, name=f"dataverse-emulator-{self.port}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + _START_TIMEOUT
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise EmulatorStartError(
                    f"the Dataverse emulator did not start on {self.host}:{self.port}: {self._error!r}"
                )
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
            if self._thread.is_alive() and self._server is not None:
                self._server.force_exit = True
                self._thread.join(timeout=5)
        self._thread = None
        self._server = None

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def serve(
    config: DataverseEmulatorConfig,
    host: str = "127.0.0.1",
    port: int = 8443,
    tls_dir: Path | None = None,
) -> None:
    """Serve the emulator over HTTPS until interrupted (the `close2d365 emulators` command)."""
    return_large_blocks_to_system()  # file uploads must not leave the process holding freed heap
    tls = _tls(host, tls_dir)
    app = _build_app(config)
    base = f"https://{_public_host(host)}:{port}"
    print(
        f"Dataverse emulator: {base}/api/data/v9.2/\n"
        f"  authority (msal, instance_discovery=False): {base}/{config.tenant_id}\n"
        f"  CA bundle (verify=): {tls.ca_cert}\n"
        f"  runtime faults/limits: {base}/_emulator/faults",
        file=sys.stderr,
        flush=True,
    )
    sock = _listening_socket(host, port)
    try:
        _Server(_uvicorn_config(app, host, port, tls)).run(sockets=[sock])
    finally:
        sock.close()
