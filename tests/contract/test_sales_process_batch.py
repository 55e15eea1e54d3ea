"""The sales process loader sends all its writes in one `$batch` against the Dataverse emulator: instances
that move several stages get there, while the instances whose write the emulator refuses (a move two stages
away, after a user moved the instance since it was read; a second active instance) are not placed, are
ledgered as exactly what landed, and appear in the rejected rows with the first refusal as the reason. A
rollback of the runs puts every instance back."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import duckdb
import pytest

from emulators.dataverse.config import DataverseEmulatorConfig
from emulators.dataverse.server import EmulatorServer
from migration_assets.clients.dataverse.client import DataverseClient
from migration_assets.defs.loaded._common import write_rejected_table
from migration_assets.load import sales_process
from migration_assets.load.ledger import Ledger
from migration_assets.load.rollback import execute_rollback
from migration_assets.load.sales_process import (
    PlacementReport,
    SalesProcess,
    SalesProcessLoader,
    Wanted,
    in_process_order,
    instance_id,
    last_placed,
    read_instances,
    resolve_process,
    save_placed,
)
from migration_assets.load.sales_process_plan import Instance
from migration_assets.mapping.files import SHIPPED_SALES_PROCESS
from migration_assets.resources.dataverse import DataverseResource

EMPTY_PROCESS = "00000000-0000-0000-0000-000000000000"
STATUSES = {
    1: ("Qualify", "active", "S / Intro"),
    2: ("Propose", "active", "S / Quote"),
    3: ("Close", "won", "S / Won"),
}
NAMES = ("won", "quote", "stale", "behind", "bare", "second")
State = tuple[str | None, str, int | None]  # (stage, path as stage names, statuscode)


@dataclass
class Run:
    process: SalesProcess
    con: duckdb.DuckDBPyConnection
    opps: dict[str, str]  # name -> opportunity id
    report: PlacementReport
    placed: dict[str, str] | None  # what the first load recorded as placed (a delta retries the others)
    batches: list[int]  # parts of each $batch the load sent
    before: dict[str, State]
    after: dict[str, State]
    retried: dict[str, State]  # after a second load that finds the instances as they are
    retry_batches: list[int]
    retry_report: PlacementReport
    rolled_back: dict[str, State]
    bare_left: bool  # the instance the first load created for "bare" still there after the rollback


def _state(client: DataverseClient, process: SalesProcess, opps: dict[str, str]) -> dict[str, State]:
    names = {s.id: s.name for s in process.stages}
    out: dict[str, State] = {}
    for name, oid in opps.items():
        inst = read_instances(client, process, [oid]).get(oid)
        if inst is None:
            out[name] = (None, "", None)
        else:
            out[name] = (
                names.get(inst.stage_id or ""),
                "/".join(names[p] for p in inst.path),
                inst.statuscode,
            )
    return out


def _move(client: DataverseClient, process: SalesProcess, inst: Instance, to: int) -> None:
    """Move an instance a stage at a time, as a user would in the UI."""
    at = [s.id for s in process.stages].index(inst.stage_id)
    for n in range(at + 1, to + 1):
        client.update(
            process.table,
            inst.id,
            {
                "activestageid@odata.bind": f"/processstages({process.stages[n].id})",
                "traversedpath": ",".join(s.id for s in process.stages[: n + 1]),
            },
        )


def _spy(client: DataverseClient, sent: list[list[int]]) -> None:
    """Record the part count of every `$batch` the client sends (in the list last appended to `sent`)."""
    real = client.execute_batch

    def counted(items: list[Any], continue_on_error: bool = True) -> Any:
        sent[-1].append(len(items))
        return real(items, continue_on_error)

    client.execute_batch = counted  # type: ignore[method-assign]


def _client(srv: EmulatorServer) -> DataverseClient:
    u = srv.config.app_users[0]
    return DataverseResource(
        environment_url=srv.base_url,
        tenant_id=srv.config.tenant_id,
        client_ids=u.client_id,
        client_secrets=u.client_secret,
        authority_host=srv.base_url,
        ca_bundle=srv.ca_bundle,
    ).get_client()


@pytest.fixture(scope="module")
def run() -> Iterator[Run]:
    with EmulatorServer(DataverseEmulatorConfig()) as srv:
        client = _client(srv)
        process = resolve_process(client, SHIPPED_SALES_PROCESS)
        opps = {n: client.create("opportunity", {"name": n}) for n in NAMES if n != "bare"}
        opps["bare"] = client.create("opportunity", {"name": "bare", "processid": EMPTY_PROCESS})
        instances = read_instances(client, process)
        process = in_process_order(client, process, instances)
        q, d = process.stages[0].id, process.stages[1].id
        # "behind": a user moved it to Close since it was read at Qualify.
        _move(client, process, instances[opps["behind"]], 3)
        before = _state(client, process, opps)
        # What the load is told: "stale" read at Develop (it is at Qualify), "behind" at Qualify (it is at
        # Close), "second" without an instance (it has one: a create is a second active instance).
        told = dict(instances)
        told[opps["stale"]] = Instance(told[opps["stale"]].id, opps["stale"], d, (q, d), 0, 1)
        told.pop(opps["second"])
        wanted = [
            Wanted(opps["won"], "oppo_won", 3),
            Wanted(opps["quote"], "oppo_quote", 2),
            Wanted(opps["stale"], "oppo_stale", 3),
            Wanted(opps["behind"], "oppo_behind", 2),
            Wanted(opps["bare"], "oppo_bare", 3),
            Wanted(opps["second"], "oppo_second", 3),
        ]
        sent: list[list[int]] = [[]]
        _spy(client, sent)
        con = duckdb.connect()
        report = SalesProcessLoader(client, Ledger(con, "run-1"), process, STATUSES, lambda _: None).load(
            wanted, told
        )
        after = _state(client, process, opps)
        save_placed(con, wanted, STATUSES, report, None)
        write_rejected_table(con, "run-1", process.table)
        placed = last_placed(con)
        # A second load told the same about "bare" (no instance): its create meets the instance the first
        # load made (412, duplicate id), which counts as landed; the others are read as they are now.
        sent.append([])
        again = read_instances(client, process)
        again.pop(opps["bare"])
        retry = [w for w in wanted if w.opportunity_id != opps["second"]]
        retry_report = SalesProcessLoader(
            client, Ledger(con, "run-2"), process, STATUSES, lambda _: None
        ).load(retry, again)
        retried = _state(client, process, opps)
        sent.append([])  # the rollback's own
        execute_rollback(con, client, ["run-1", "run-2"], "rollback-1", lambda _: None)
        rolled_back = _state(client, process, opps)
        bare_left = client.get(process.table, instance_id(process, opps["bare"])) is not None
        yield Run(
            process,
            con,
            opps,
            report,
            placed,
            sent[0],
            before,
            after,
            retried,
            sent[1],
            retry_report,
            rolled_back,
            bare_left,
        )
        client.close()


FULL = "Qualify/Develop/Propose/Close"


def test_every_write_goes_in_one_batch_and_whole_moves_land(run: Run) -> None:
    # won: 3 moves + finish; quote: 2 moves; stale: 2 moves + finish; behind: 2 moves; bare and second:
    # create + finish each.
    assert run.batches == [4 + 2 + 3 + 2 + 2 + 2]
    assert run.after["won"] == ("Close", FULL, 2)
    assert run.after["quote"] == ("Propose", "Qualify/Develop/Propose", 1)
    assert run.after["bare"] == ("Close", FULL, 2)
    r = run.report
    assert (r.placed, r.created, r.writes) == (4, 1, 15)  # won, quote, bare and behind (see below)


def test_a_refused_first_move_leaves_the_instance_untouched_and_rejected_with_its_reason(run: Run) -> None:
    assert run.after["stale"] == run.before["stale"] == ("Qualify", "Qualify", 1)
    assert run.after["second"] == run.before["second"] == ("Qualify", "Qualify", 1)
    assert run.report.refused == {run.opps[n] for n in ("stale", "second")}
    rows = dict(
        run.con.execute(
            f"SELECT close_id, message FROM loaded.{run.process.table}_rejected ORDER BY close_id"
        ).fetchall()
    )
    assert sorted(rows) == ["oppo_second", "oppo_stale"]
    assert rows["oppo_stale"].startswith(
        "move to stage 'Propose' refused: A business process flow instance moves"
    )
    assert rows["oppo_stale"].endswith("(so not applied after it: move to stage 'Close', finish)")
    assert rows["oppo_second"].startswith("create at stage 'Close' refused: The opportunity with Id")
    assert rows["oppo_second"].endswith("(so not applied after it: finish)")


def test_the_ledger_records_exactly_what_landed(run: Run) -> None:
    rows = run.con.execute(
        "SELECT close_id, action, status FROM ledger.writes WHERE run_id = 'run-1'"
    ).fetchall()
    status = {c: (a, s) for c, a, s in rows}
    assert status == {
        "oppo_won": ("updated", "done"),
        "oppo_quote": ("updated", "done"),
        "oppo_stale": ("updated", "rejected"),  # nothing landed: nothing to undo
        "oppo_behind": ("updated", "done"),  # a later move landed: a rollback must undo it
        "oppo_bare": ("created", "done"),
        "oppo_second": ("created", "rejected"),
    }
    # "behind" was refused its first move (two stages back from Close) but the next one, one stage back,
    # landed: read again, it is where its Close status places it (stage and path), so it is placed and no
    # refusal is kept: what counts is the instance's state, not which of the writes did it. This is also
    # what a `$batch` sent again after a lost answer meets (its first delivery made the moves).
    assert run.after["behind"] == ("Propose", "Qualify/Develop/Propose", 1)
    assert not run.con.execute(
        "SELECT message FROM ledger.rejected WHERE run_id = 'run-1' AND close_id = 'oppo_behind'"
    ).fetchall()


def test_refused_instances_are_left_for_the_next_load_which_places_them(run: Run) -> None:
    placed = run.placed
    assert placed is not None
    assert sorted(placed) == sorted(run.opps[n] for n in ("won", "quote", "bare", "behind"))
    assert run.retry_batches == [4 + 2]  # stale: 3 moves + finish; bare: create + finish
    assert run.retried["stale"] == ("Close", FULL, 2)
    assert run.retried["bare"] == ("Close", FULL, 2)
    # bare: told it has no instance, its create met the one the first load made and counted as landed,
    # then its finish (already finished) landed too.
    assert run.retry_report.refused == set()
    assert (run.retry_report.placed, run.retry_report.unchanged) == (2, 3)


def test_rollback_puts_every_instance_back(run: Run) -> None:
    # "behind" goes back to where the first load believed it was (its before-image: Qualify); the others
    # to where they were.
    assert run.rolled_back == {**run.before, "behind": ("Qualify", "Qualify", 1)}
    assert not run.bare_left


def test_many_writes_go_in_several_batches_under_the_part_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sales_process, "MAX_BATCH_REQUESTS", 9)  # stands for the 1000 parts of a $batch
    with EmulatorServer(DataverseEmulatorConfig()) as srv, _client(srv) as client:
        process = resolve_process(client, SHIPPED_SALES_PROCESS)
        opps = {f"o{n}": client.create("opportunity", {"name": f"o{n}"}) for n in range(5)}
        instances = read_instances(client, process)
        process = in_process_order(client, process, instances)
        sent: list[list[int]] = [[]]
        _spy(client, sent)
        wanted = [Wanted(oid, name, 3) for name, oid in opps.items()]  # 3 moves + finish each
        report = SalesProcessLoader(
            client, Ledger(duckdb.connect(), "run-1"), process, STATUSES, lambda _: None
        ).load(wanted, instances)
        assert sent == [[8, 8, 4]]  # two instances per $batch: one is never split across two
        assert (report.placed, report.refused) == (5, set())
        assert set(_state(client, process, opps).values()) == {("Close", FULL, 2)}
