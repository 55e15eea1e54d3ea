"""What a command checks before it starts a run: the mappings load, the Close key works, every Dataverse
application user gets a token and the environment answers. Each takes seconds; without these a wrong secret
or a broken YAML file showed only after the whole Close extraction, once per asset.

Every problem is one line that names the variable or file to change; all of them are reported at once.
"""

from __future__ import annotations

import os

from migration_assets.clients.close.client import CloseClient
from migration_assets.clients.close.http import CloseError
from migration_assets.clients.dataverse.errors import DataverseError
from migration_assets.mapping.yaml_loc import MappingError
from migration_assets.resources import CLOSE_API_URL, MissingEnvironmentError, dataverse_resource, env
from migration_assets.resources.warehouse import default_home

# Short, bounded attempts: an unreachable host must fail the check in seconds, not after a run's retries.
CHECK_TIMEOUT_SECONDS = 10.0
CHECK_ATTEMPTS = 2


class StartupCheckError(RuntimeError):
    """The run cannot start; the message has one line per problem."""


def mapping_problems() -> list[str]:
    from migration_assets.mapping.config import load_mapping_config

    try:
        load_mapping_config()
    except MappingError as exc:
        return [f"mappings: {exc}"]
    return []


CLOSE_SOURCES = ("api", "export", "file")


def home_problems() -> list[str]:
    """The working folder must be creatable and writable: the warehouse, the instance and reports live there."""
    home = default_home()
    probe = home / f".write-check-{os.getpid()}"
    try:
        home.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        return [f"CLOSE2D365_HOME ({home}) is not a writable folder: {exc.strerror or exc}"]
    return []


def close_problems() -> list[str]:
    source = env.close_source()
    if source not in CLOSE_SOURCES:
        return [f"CLOSE2D365_CLOSE_SOURCE is {source!r}: use one of {', '.join(CLOSE_SOURCES)}"]
    if source == "file":
        export = os.environ.get(env.CLOSE2D365_EXPORT_FILE)
        if not export or not os.path.isfile(export):
            return [f"CLOSE2D365_EXPORT_FILE ({export or 'not set'}) must name a Close JSON export file"]
        return []
    key = os.environ.get(env.CLOSE_API_KEY)
    if not key:
        return ["CLOSE_API_KEY is not set: export your Close API key (Settings > Developer > API Keys)."]
    base = os.environ.get(env.CLOSE_BASE_URL, CLOSE_API_URL)
    client = CloseClient(key, base, timeout_seconds=CHECK_TIMEOUT_SECONDS, max_attempts=CHECK_ATTEMPTS)
    try:
        client.check_connection()
    except CloseError as exc:
        return [f"Close ({base}, CLOSE_BASE_URL): {exc}"]
    finally:
        client.close()
    return []


def dataverse_problems() -> list[str]:
    ca = os.environ.get(env.DATAVERSE_CA_BUNDLE)
    if ca and not os.path.isfile(ca):
        return [
            f"DATAVERSE_CA_BUNDLE ({ca}) is not a file: give the CA certificate bundle's path or unset it"
        ]
    try:
        resource = dataverse_resource(resolved=True)
        client = resource.get_client()
    except (MissingEnvironmentError, DataverseError) as exc:
        return [f"Dataverse: {exc}"]
    problems: list[str] = []
    try:
        for lane in client.transport.lanes:  # every application user, not only the first
            try:
                lane.token()
            except DataverseError as exc:
                problems.append(f"Dataverse (DATAVERSE_CLIENT_IDS / DATAVERSE_CLIENT_SECRETS): {exc}")
        if not problems:
            try:
                client.whoami()
            except DataverseError as exc:
                problems.append(f"Dataverse ({resource.environment_url}, DATAVERSE_URL): {exc}")
    finally:
        client.close()
    return problems


def check_before_run(*, mappings: bool = True, close: bool = True, dataverse: bool = True) -> None:
    """Raise StartupCheckError listing every problem found; return when the run can start."""
    problems = [
        *home_problems(),
        *(mapping_problems() if mappings else []),
        *(close_problems() if close else []),
        *(dataverse_problems() if dataverse else []),
    ]
    if problems:
        raise StartupCheckError(
            "the run cannot start; fix these first:\n" + "\n".join(f"  - {p}" for p in problems)
        )
