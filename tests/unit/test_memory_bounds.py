"""The run process's memory is bounded by design: glibc gives large blocks back (heap.py), DuckDB works under
a memory cap and spills beside the warehouse, encrypted when the warehouse is (resources/warehouse.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from migration_assets.resources import heap
from migration_assets.resources.warehouse import (
    DEFAULT_MEMORY_LIMIT,
    WarehouseError,
    WarehouseResource,
    bound_memory,
)

MEMORY = "CLOSE2D365_WAREHOUSE_MEMORY"

# In a fresh process: free an 8 MiB block (glibc's dynamic threshold then rises to 8 MiB), allocate 2 MiB,
# print by how much the memory glibc holds in mappings of their own grew (0: the block came from the heap).
_PROBE = """
import ctypes, sys
from migration_assets.resources import heap
if sys.argv[1] == "tuned":
    assert heap.return_large_blocks_to_system().applied
class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                               "fsmblks", "uordblks", "fordblks", "keepcost")]
libc = ctypes.CDLL(None)
libc.mallinfo2.restype = Info
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
libc.free(libc.malloc(8 << 20))
before = libc.mallinfo2().hblkhd
block = libc.malloc(2 << 20)
print(libc.mallinfo2().hblkhd - before)
libc.free(block)
"""


def _mapped_growth(mode: str) -> int:
    done = subprocess.run([sys.executable, "-c", _PROBE, mode], capture_output=True, text=True, check=True)
    return int(done.stdout)


@pytest.mark.skipif(heap._glibc() is None, reason="glibc only: other C libraries are left as they are")
def test_large_blocks_get_their_own_mapping_after_a_larger_one_was_freed() -> None:
    assert _mapped_growth("default") == 0  # glibc's own policy: from the heap, kept by the process
    assert _mapped_growth("tuned") >= 2 << 20  # mapped apart: unmapped when freed


@pytest.mark.skipif(heap._glibc() is None, reason="glibc only")
def test_tuning_reports_what_it_set() -> None:
    tuning = heap.return_large_blocks_to_system()
    assert tuning.applied and "glibc" in tuning.detail and "1024 KiB" in tuning.detail


def test_other_c_libraries_are_left_alone_with_a_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(heap, "_glibc", lambda: None)
    tuning = heap.return_large_blocks_to_system()
    assert not tuning.applied and "not glibc" in tuning.detail


def test_every_run_tunes_its_process_heap_when_it_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from migration_assets.resources import warehouse

    calls: list[str] = []

    def tune() -> heap.HeapTuning:
        calls.append("tuned")
        return heap.HeapTuning(False, "recorded")

    monkeypatch.setattr(warehouse, "return_large_blocks_to_system", tune)

    @dg.asset
    def any_step(warehouse: WarehouseResource) -> None:
        calls.append("step")

    resource = WarehouseResource(path=str(tmp_path / "w.duckdb"))
    assert dg.materialize([any_step], resources={"warehouse": resource}).success
    assert calls == ["tuned", "step"]


def _settings(con: duckdb.DuckDBPyConnection) -> tuple[str, str]:
    row = con.execute("SELECT current_setting('memory_limit'), current_setting('temp_directory')").fetchall()
    return row[0][0], row[0][1]


def _mib(size: str) -> str:
    """DuckDB's rendering of a size, e.g. 512MB -> '488.2 MiB'."""
    con = duckdb.connect()
    con.execute(f"SET memory_limit = '{size}'")
    return str(con.execute("SELECT current_setting('memory_limit')").fetchall()[0][0])


def test_connections_have_the_default_cap_and_spill_beside_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(MEMORY, raising=False)
    path = str(tmp_path / "w.duckdb")
    with WarehouseResource(path=path).connect() as con:
        assert _settings(con) == (_mib(DEFAULT_MEMORY_LIMIT), path + ".tmp")


def test_the_cap_is_configurable_and_given_back_after_the_extraction_changed_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from migration_assets.extract.writer import extraction_settings, reset_extraction_settings

    monkeypatch.setenv(MEMORY, "300MB")
    seen: list[str] = []

    @dg.asset
    def extracts_then_reads(warehouse: WarehouseResource) -> None:
        with warehouse.connect() as con:
            extraction_settings(con)
            reset_extraction_settings(con)  # not DuckDB's RESET: its default (80% of RAM), not the cap
            # At once: a step running meanwhile (step_threads.py) opens no new connection to get it back.
            seen.append(_settings(con)[0])
        with warehouse.connect() as con:  # shares the run's database instance
            seen.append(_settings(con)[0])

    resource = WarehouseResource(path=str(tmp_path / "w.duckdb"))
    assert dg.materialize([extracts_then_reads], resources={"warehouse": resource}).success
    assert seen == [_mib("300MB"), _mib("300MB")]


def test_a_cap_duckdb_does_not_understand_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(MEMORY, "lots")
    with pytest.raises(WarehouseError, match=f"{MEMORY}='lots'.*1GB"):
        with WarehouseResource(path=str(tmp_path / "w.duckdb")).connect():
            pass


# ~75 MB of rows: more than twice the 32 MB cap of the tests below.
_ROWS = "SELECT i, 'SECRETMARKER' || i::VARCHAR || repeat('x', 40) AS s FROM range(1200000) r(i)"


def test_work_beyond_the_cap_spills_and_completes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(MEMORY, "32MB")
    path = tmp_path / "w.duckdb"
    with WarehouseResource(path=str(path)).connect() as con:
        con.execute(f"CREATE TEMP TABLE big AS {_ROWS}")
        con.execute("CREATE TABLE sorted AS SELECT * FROM big ORDER BY s")
        assert list(Path(str(path) + ".tmp").iterdir()), "nothing spilled: the cap was not in force"
        top = con.execute("SELECT i FROM sorted LIMIT 1").fetchall()  # rowid order: the sort's
        assert top == [(0,)]


def test_an_encrypted_warehouse_spills_encrypted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(MEMORY, "32MB")
    spill = tmp_path / "enc.duckdb.tmp"
    con = duckdb.connect(":memory:")
    bound_memory(con, str(spill), encrypted=True)
    # The product loads httpfs (OpenSSL) to write encrypted files; this machine may not have it, and the
    # built-in crypto is enough to see what the spilled files hold.
    con.execute("SET force_mbedtls_unsafe = true")
    con.execute(f"ATTACH '{tmp_path / 'enc.duckdb'}' AS warehouse (ENCRYPTION_KEY 'k')")
    con.execute("USE warehouse")
    con.execute(f"CREATE TEMP TABLE big AS {_ROWS}")
    files = list(spill.iterdir())
    assert files, "nothing spilled: the cap was not in force"
    assert not [f.name for f in files if b"SECRETMARKER" in f.read_bytes()]
    assert con.execute("SELECT count(*) FROM big").fetchall() == [(1200000,)]
    con.close()
