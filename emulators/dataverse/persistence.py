"""Optional persistence of the emulated org to a JSON file (`config.persist_path`).

Saved atomically (write a temp file, then rename) by a background thread when rows or schema changed, and on
shutdown; loaded at start by replaying the schema writes and then restoring the rows.

File bodies (file_store.py) live in the directory `<state file>.bodies/` next to it; the state names them.
A body released since the last save is deleted only after a save without it is on disk, so the state file
never names a missing body, and bodies the loaded state does not name (written after its last save) go.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from pathlib import Path

from emulators.dataverse import metadata_relationships as relationships
from emulators.dataverse import metadata_writes as writes
from emulators.dataverse import solutions
from emulators.dataverse.file_store import StoredBody, delete
from emulators.dataverse.state import Environment

log = logging.getLogger(__name__)
FORMAT_VERSION = 1


class Persistence:
    def __init__(self, env: Environment, path: str, interval_seconds: float = 2.0):
        self.env = env
        self.path = Path(path)
        self.interval = interval_seconds
        self._saved_marker: tuple[int, int] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        env.store.bodies.keep_in(body_directory(self.path))

    def load(self) -> bool:
        if not self.path.exists():
            self.env.store.bodies.remove_unreferenced(set())
            return False
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise RuntimeError(
                f"Cannot read the Dataverse emulator state file {self.path}: {exc}. Delete it or fix it."
            ) from exc
        if data.get("format") != FORMAT_VERSION:
            raise RuntimeError(
                f"{self.path} was written by an incompatible emulator version; delete it to start fresh."
            )
        replay(self.env, data.get("schema", []))
        self.env.security.before_restore(data.get("store", {}).get("rows", {}))
        self.env.store.restore(data.get("store", {}))
        self.env.store.bodies.remove_unreferenced(self.env.store.body_names())
        self._saved_marker = self._marker()
        return True

    def _marker(self) -> tuple[int, int]:
        return (self.env.store.write_count, len(self.env.schema_log))

    def save(self, force: bool = False) -> bool:
        marker = self._marker()
        if not force and marker == self._saved_marker:
            return False
        released = self.env.store.bodies.take_released()  # the state dumped next no longer names them
        try:
            data = state_dump(self.env)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(self.path.suffix + ".tmp")
            with open(tmp, "w", encoding="utf-8") as fh:
                json.dump(data, fh, separators=(",", ":"), default=_stored_body_json)
            os.replace(tmp, self.path)
        except BaseException:
            self.env.store.bodies.give_back(released)
            raise
        delete(released)
        self._saved_marker = marker
        return True

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="dataverse-emulator-persist", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        wait = self.interval
        while not self._stop.wait(wait):
            started = time.monotonic()
            try:
                self.save()
            except OSError:
                log.exception("Saving the Dataverse emulator state to %s failed", self.path)
            # A large org takes a while to serialise: keep saving to at most ~20% of the time so that a
            # running load is not slowed down by its own snapshots.
            wait = max(self.interval, 4 * (time.monotonic() - started))

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        self.save()


def body_directory(state_file: Path) -> Path:
    return state_file.with_name(state_file.name + ".bodies")


def _stored_body_json(value: object) -> dict:
    if isinstance(value, StoredBody):
        return value.to_json()
    raise TypeError(f"Cannot save a {type(value).__name__} in the Dataverse emulator state.")


def state_dump(env: Environment, with_metadata: bool = False) -> dict:
    """The emulated org as JSON-able data: schema writes and every row (what `save` writes), and with
    `with_metadata` every table definition as read back, so tests can prove a run changed nothing."""
    env.security.sync()  # privileges of tables created since the last request, as any read would see them
    data: dict = {"format": FORMAT_VERSION, "schema": list(env.schema_log), "store": env.store.snapshot()}
    if with_metadata:
        with env.metadata.lock:
            data["metadata"] = {
                name: {
                    **ent.to_json(),
                    "Attributes": {a: attr.to_json() for a, attr in sorted(ent.attributes.items())},
                    "Keys": [key.to_json() for key in ent.keys],
                }
                for name, ent in sorted(env.metadata.tables.items())
            }
    return data


def replay(env: Environment, log: list[dict]) -> None:
    """Re-apply persisted schema writes (keys are activated against the rows loaded afterwards).

    Publishers, solutions and solution components are rows: they come back with the store, so the replay
    neither checks the solution of each write nor records components again."""
    token = solutions.REPLAYING.set(True)
    try:
        for item in log:
            _replay_one(env, item)
    finally:
        solutions.REPLAYING.reset(token)


def _replay_one(env: Environment, item: dict) -> None:
    op, body = item["op"], item["body"]
    if op == "table":
        writes.create_table(env, body)
    elif op == "attribute":
        writes.create_attribute(env, env.metadata.tables[item["entity"]], body)
    elif op == "put_attribute":
        ent = env.metadata.tables[item["entity"]]
        writes.update_attribute(env, ent, ent.attributes[item["attribute"]], body)
    elif op == "key":
        key = writes.create_key(env, env.metadata.tables[item["entity"]], body)
        key.created_at = float("-inf")
    elif op == "relationship":
        relationships.create_relationship(env, body)
    elif op == "customer":
        relationships.create_customer_relationships(env, body)
    elif op == "option":
        writes.insert_option_value(env, body)
    elif op == "delete_attribute":
        ent = env.metadata.tables[item["entity"]]
        writes.delete_attribute(env, ent, ent.attributes[item["attribute"]])
    elif op == "delete_table":
        writes.delete_table(env, env.metadata.tables[item["entity"]])
    elif op == "delete_option":
        writes.delete_option_value(env, body)
    elif op == "delete_key":
        ent = env.metadata.tables[item["entity"]]
        writes.delete_key(env, ent, next(k for k in ent.keys if k.schema_name == item["key"]))
