"""`create_app(config)`: the Dataverse Web API v9.2 emulator as a Starlette app (reference §12).

Routes: the read-only UI at `/` and `/ui/<table>`, DV-EDGE's routes and middleware (IdP, auth, limits,
faults, $batch) when `emulators.dataverse.edge` exists, then the catch-all Web API route. The catch-all goes
last so that DV-EDGE's explicit routes (e.g. `/api/data/v9.2/$batch`) win.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.routing import Route

from emulators.dataverse.api import Api
from emulators.dataverse.config import DataverseEmulatorConfig
from emulators.dataverse.latency import install_latency
from emulators.dataverse.persistence import Persistence
from emulators.dataverse.state import Environment
from emulators.dataverse.ui import ui_routes

API_METHODS = ["GET", "POST", "PATCH", "PUT", "DELETE"]


def create_app(config: DataverseEmulatorConfig | None = None) -> Starlette:
    config = config or DataverseEmulatorConfig()
    env = Environment(config)
    persistence = Persistence(env, config.persist_path) if config.persist_path else None
    if persistence is not None:
        persistence.load()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if persistence is not None:
            persistence.start()
        try:
            yield
        finally:
            if persistence is not None:
                persistence.stop()

    api = Api(env)
    app = Starlette(routes=ui_routes(env), lifespan=lifespan)
    app.state.config = config
    app.state.env = env
    app.state.store = env.store
    app.state.metadata = env.metadata
    app.state.api = api
    app.state.persistence = persistence
    if importlib.util.find_spec("emulators.dataverse.edge") is not None:
        edge = importlib.import_module("emulators.dataverse.edge")
        edge.install_edge(app, config, bodies_via_read_json=True)
    install_latency(app, config)  # off unless config.latency says otherwise
    app.router.routes.append(Route("/api/data/v9.2/{path:path}", api.__call__, methods=API_METHODS))
    app.router.routes.append(Route("/api/data/v9.2", api.__call__, methods=["GET"]))
    return app
