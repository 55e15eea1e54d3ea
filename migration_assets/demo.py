"""`close2d365 emulators`: both emulators on fixed ports, with the environment that points the tool at them."""

from __future__ import annotations

import threading

from emulators.orgdata import DEFAULT_SHAPE, generate


def serve_emulators(
    size: str, seed: int, host: str, close_port: int, dataverse_port: int, org: str = DEFAULT_SHAPE
) -> int:
    """Serve both emulators until Ctrl-C; prints where they are and the synthetic credentials."""
    from emulators.close.server import CloseEmulatorServer
    from emulators.dataverse.config import DataverseEmulatorConfig
    from emulators.dataverse.server import EmulatorServer
    from migration_assets.migration import demo_dataverse_env

    close_org = generate(size, seed, org=org)
    config = DataverseEmulatorConfig(seed_users=[dict(u) for u in close_org.dynamics_users])
    with (
        CloseEmulatorServer(close_org, host=host, port=close_port) as close_server,
        EmulatorServer(config, host=host, port=dataverse_port) as dv,
    ):
        env = {
            "CLOSE_API_KEY": close_org.api_key,
            "CLOSE_BASE_URL": close_server.base_url,
            **demo_dataverse_env(dv),
        }
        print(
            f"Close emulator ({org} org, {size}, seed {seed}): {close_server.base_url}\n"
            f"Dataverse emulator: {dv.base_url}/api/data/v9.2/   (what landed: {dv.base_url}/)\n"
            "Environment for `close2d365 extract|run` (synthetic credentials, generated for this emulator):\n"
            + "\n".join(f"  export {k}={v}" for k, v in env.items())
            + "\nCtrl-C to stop.",
            flush=True,
        )
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass
    return 0
