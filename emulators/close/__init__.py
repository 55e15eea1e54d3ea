"""Close REST API v1 emulator (Starlette), serving a synthetic `CloseOrg` from `emulators.orgdata`.

In process: `create_app(org, config)` (an ASGI app; `app.state.emulator` holds the state, e.g.
`app.state.emulator.faults.inject("503")`). As a server: `CloseEmulatorServer(org, config)` (a context
manager running uvicorn in a thread; `base_url` ends with `/api/v1/`), or `serve(size, seed, host, port,
config)` (blocking, used by `close2d365 emulators`). Clients authenticate with HTTP Basic: `org.api_key`
as the username and an empty password. Besides reads, it takes the writes Close documents (POST/PUT/DELETE
of leads, contacts, opportunities, tasks and activities, `POST /lead/merge/`, the Files API) and records
each in its event log (resources/write_*.py, uploads.py).
"""

from .app import create_app
from .config import CloseEmulatorConfig, EmulatorConfigError, FaultConfig, RateLimitConfig
from .faults import DroppedConnection
from .server import CloseEmulatorServer, EmulatorServerError, serve

__all__ = [
    "CloseEmulatorConfig",
    "CloseEmulatorServer",
    "DroppedConnection",
    "EmulatorConfigError",
    "EmulatorServerError",
    "FaultConfig",
    "RateLimitConfig",
    "create_app",
    "serve",
]
