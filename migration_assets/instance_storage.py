"""The Dagster instance of close2d365: Dagster's own SQLite storages, each keeping its SQLAlchemy engines.

Dagster's SQLite run, event-log and schedule storages build a new engine for every connection they open,
and a new engine compiles every statement afresh. A run opens one for each event it stores (and a second
for an asset event's index row), and the staleness the UI and `close2d365 observe` read asks for every
asset's record on its own: a tenth of a tiny org's migration went to building engines. Here the engine of
each database file is built once per process and kept; everything else is Dagster's: the same files, the
same schema and migrations, and still one connection per use (NullPool), so nothing holds a database open
between uses and the UI, the daemon and a command-line run keep sharing the files.

`dagster.yaml` selects it (`instance_class`); the storages' base folders are the instance folder's, as
Dagster lays them out by default, so an instance created before keeps its history.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import dagster as dg
import yaml
from dagster._core.instance.ref import InstanceRef
from dagster._core.storage.base_storage import DagsterStorage
from dagster._core.storage.event_log.sqlite.sqlite_event_log import (
    INDEX_SHARD_NAME,
    SQLITE_BUSY_TIMEOUT_SECONDS,
    SqliteEventLogStorage,
)
from dagster._core.storage.runs.sqlite.sqlite_run_storage import SqliteRunStorage
from dagster._core.storage.schedules.sqlite.sqlite_schedule_storage import SqliteScheduleStorage
from dagster._core.storage.sql import create_engine
from dagster._core.storage.sqlite_storage import DagsterSqliteStorage
from dagster._serdes import ConfigurableClassData
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import NullPool

# A UI showing many runs opens many run shards: the least recently used engines are let go beyond this.
MAX_ENGINES = 64
_engines: OrderedDict[tuple[str, float | None], Engine] = OrderedDict()
_engines_lock = threading.Lock()


def kept_engine(conn_string: str, busy_timeout: float | None = None) -> Engine:
    """The process's one engine for a SQLite database (a connection per use: NullPool)."""
    key = (conn_string, busy_timeout)
    with _engines_lock:
        engine = _engines.get(key)
        if engine is not None:
            _engines.move_to_end(key)
            return engine
        connect_args = {"timeout": busy_timeout} if busy_timeout is not None else {}
        engine = create_engine(conn_string, poolclass=NullPool, connect_args=connect_args)
        _engines[key] = engine
        while len(_engines) > MAX_ENGINES:
            _engines.popitem(last=False)
        return engine


@contextmanager
def _transaction(engine: Engine) -> Iterator[Connection]:
    with engine.connect() as conn, conn.begin():
        yield conn


class _KeptEngineConnect:
    """`connect` of Dagster's single-file SQLite storages (runs, schedules), on the file's kept engine."""

    _conn_string: str

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        with _transaction(kept_engine(self._conn_string)) as conn:
            yield conn


class KeptEngineSqliteRunStorage(_KeptEngineConnect, SqliteRunStorage):
    pass


class KeptEngineSqliteScheduleStorage(_KeptEngineConnect, SqliteScheduleStorage):
    pass


class KeptEngineSqliteEventLogStorage(SqliteEventLogStorage):
    def __init__(self, base_dir: str, inst_data: ConfigurableClassData | None = None) -> None:
        self._tables_seen: set[str] = set()
        super().__init__(base_dir, inst_data=inst_data)

    def has_table(self, table_name: str) -> bool:
        # Asked for every asset check event stored (whether the index has the checks' table): a table, once
        # there, stays (migrations add tables, none drops one).
        if table_name in self._tables_seen:
            return True
        with _transaction(self._index_engine()) as conn:
            found = bool(conn.dialect.has_table(conn, table_name))
        if found:
            self._tables_seen.add(table_name)
        return found

    def _index_engine(self) -> Engine:
        return kept_engine(self.conn_string_for_shard(INDEX_SHARD_NAME), SQLITE_BUSY_TIMEOUT_SECONDS)

    @contextmanager
    def _connect(self, shard: str) -> Iterator[Connection]:
        # Dagster's busy timeout for the event log (the UI's watcher and a run write the same shards), and
        # its lock: a shard's database is created once, by the first connection to it.
        with self._db_lock:
            engine = kept_engine(self.conn_string_for_shard(shard), SQLITE_BUSY_TIMEOUT_SECONDS)
            if shard not in self._initialized_dbs:
                self._initdb(engine)
                self._initialized_dbs.add(shard)
            with _transaction(engine) as conn:
                yield conn


class KeptEngineSqliteStorage(DagsterSqliteStorage):
    """Dagster's default SQLite storage (same folders under the instance's), with kept engines."""

    def __init__(self, base_dir: str, inst_data: ConfigurableClassData | None = None) -> None:
        # Not DagsterSqliteStorage.__init__: it would open Dagster's own three storages first.
        self.base_dir = base_dir
        self._inst_data = inst_data
        defaults = InstanceRef.config_defaults(base_dir)
        self._run_storage = KeptEngineSqliteRunStorage.from_local(_folder(defaults["run_storage"]))
        self._event_log_storage = KeptEngineSqliteEventLogStorage(_folder(defaults["event_log_storage"]))
        self._schedule_storage = KeptEngineSqliteScheduleStorage.from_local(
            _folder(defaults["schedule_storage"])
        )
        DagsterStorage.__init__(self)

    @classmethod
    def from_config_value(  # type: ignore[override]
        cls, inst_data: ConfigurableClassData, config_value: Mapping[str, Any]
    ) -> KeptEngineSqliteStorage:
        return cls.from_local(inst_data=inst_data, **config_value)


def _folder(data: ConfigurableClassData | None) -> str:
    assert data is not None
    return str(data.config_dict["base_dir"])


class MigrationInstance(dg.DagsterInstance):
    """The instance `dagster.yaml` names: Dagster's defaults, with the kept-engine SQLite storage. Storage
    configured explicitly in `dagster.yaml` (Postgres, say) still takes precedence, as for any instance."""

    @classmethod
    def config_schema(cls) -> dict[str, Any]:
        return {}

    @staticmethod
    def config_defaults(base_dir: str) -> Mapping[str, ConfigurableClassData | None]:
        return {
            **InstanceRef.config_defaults(base_dir),
            "storage": ConfigurableClassData(
                __name__, KeptEngineSqliteStorage.__name__, yaml.dump({"base_dir": base_dir})
            ),
        }
