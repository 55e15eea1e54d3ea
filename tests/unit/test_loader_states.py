"""Final states of closed opportunities: Win/LoseOpportunity actions grouped in large `$batch` requests (they
have no bulk form), failures rejected with the server's message, an action that already landed counted done."""

from __future__ import annotations

from typing import Any

from _loader_fakes import entity_meta

from migration_assets.clients.dataverse.batch import BatchPartResponse, BatchRequest
from migration_assets.clients.dataverse.metadata import EntityMeta
from migration_assets.load import diff as ld
from migration_assets.load.engine import ACTION_BATCH_PARTS, TableLoader

PK = "opportunityid"


def _meta() -> EntityMeta:
    return entity_meta("opportunity", "Opportunity", "opportunities", 3)


class FakeClient:
    """Answers every `$batch` part 204, except the ids listed in `refuse` (400 with a message)."""

    use_bulk_messages = True
    batch_request_size = 100
    write_headers = {"MSCRM.SuppressDuplicateDetection": "false"}

    def __init__(self, refuse: set[str] = frozenset(), closed: set[str] = frozenset()) -> None:  # type: ignore[assignment]
        self.batches: list[list[BatchRequest]] = []
        self.refuse, self.closed = refuse, closed

    def metadata(self, table: str) -> EntityMeta:
        return _meta()

    def entity_set(self, table: str) -> str:
        return "opportunities"

    def execute_batch(self, items: list[BatchRequest]) -> list[BatchPartResponse | None]:
        self.batches.append(items)
        out: list[BatchPartResponse | None] = []
        for item in items:
            target = str(item.body["OpportunityClose"]["opportunityid@odata.bind"])  # type: ignore[index]
            if any(r in target for r in self.refuse):
                body = '{"error":{"code":"0x80040203","message":"Opportunity is already closed."}}'
                out.append(BatchPartResponse(400, "Bad Request", {}, body))
            else:
                out.append(BatchPartResponse(204, "No Content", {}, ""))
        return out

    def get(self, table: str, rid: str, select: list[str]) -> dict[str, Any]:
        return {"statecode": 1, "statuscode": 3} if rid in self.closed else {"statecode": 0, "statuscode": 1}


def _ids(n: int) -> list[str]:
    return [f"00000000-0000-0000-0000-{i:012d}" for i in range(n)]


def test_win_and_lose_go_in_batches_of_the_action_size_not_the_small_batch_size() -> None:
    client = FakeClient()
    loader = TableLoader(client, None, "opportunity", [PK, "name"], 1000)  # type: ignore[arg-type]
    n = ACTION_BATCH_PARTS * 2 + 7
    ids = _ids(n)
    split = [
        ld.SplitRow({PK: i}, {"_close_id": f"oppo_{k}", "_close_date": "2024-05-01"})
        for k, i in enumerate(ids)
    ]
    states = {k: ((1, 3) if k % 3 else (2, 4)) for k in range(n)}  # Won (3) or Lost (4: Canceled)
    assert loader._apply_states(states, ids, split) == []
    assert [len(b) for b in client.batches] == [ACTION_BATCH_PARTS, ACTION_BATCH_PARTS, 7]
    assert ACTION_BATCH_PARTS > client.batch_request_size
    first = client.batches[0]
    assert {r.url for r in first} == {"WinOpportunity", "LoseOpportunity"}
    lost = next(r for r in first if r.url == "LoseOpportunity")
    assert lost.body["Status"] == 4 and lost.body["OpportunityClose"]["actualend"] == "2024-05-01"  # type: ignore[index]
    assert loader.stats.state_changes == n


def test_a_refused_action_is_rejected_with_the_message_unless_the_opportunity_is_already_closed() -> None:
    ids = _ids(3)
    client = FakeClient(refuse={ids[1], ids[2]}, closed={ids[2]})
    loader = TableLoader(client, None, "opportunity", [PK, "name"], 1000)  # type: ignore[arg-type]
    split = [ld.SplitRow({PK: i}, {"_close_id": f"oppo_{k}"}) for k, i in enumerate(ids)]
    errors = loader._apply_states({0: (1, 3), 1: (1, 3), 2: (1, 3)}, ids, split)
    assert [(e.record_id, e.operation, e.status, e.code) for e in errors] == [
        (ids[1], "win", 400, "0x80040203")
    ]
    assert errors[0].message == "Opportunity is already closed."
    assert loader.stats.state_changes == 2  # the third had landed already (a retried batch): done
