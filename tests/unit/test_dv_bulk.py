"""Chunking, bisection and failure classification for Dataverse bulk writes."""

from __future__ import annotations

import pytest

from migration_assets.clients.dataverse.bulk_plan import (
    Failure,
    classify_failure,
    contiguous_runs,
    halve,
    weighted_ranges,
)


def test_unweighted_rows_go_in_chunks_that_cover_every_row_once() -> None:
    assert weighted_ranges([], 10, 100) == []
    assert weighted_ranges([0] * 5, 2, 100) == [(0, 2), (2, 4), (4, 5)]
    covered = [i for a, b in weighted_ranges([0] * 1003, 250, 100) for i in range(a, b)]
    assert covered == list(range(1003))


def test_weighted_ranges_cut_by_rows_and_by_weight() -> None:
    assert weighted_ranges([40, 40, 40, 40, 40], 10, 100) == [(0, 2), (2, 4), (4, 5)]
    assert weighted_ranges([40, 60, 1, 0], 10, 100) == [(0, 2), (2, 4)]  # exactly the bound fits
    assert weighted_ranges([150, 10, 150], 10, 100) == [(0, 1), (1, 2), (2, 3)]  # too heavy: alone
    assert weighted_ranges([30] * 7, 3, 1_000) == [(0, 3), (3, 6), (6, 7)]
    weights = [i * 7 % 50 for i in range(503)]
    segments = weighted_ranges(weights, 25, 120)
    assert [i for a, b in segments for i in range(a, b)] == list(range(503))
    assert all(b - a <= 25 and (sum(weights[a:b]) <= 120 or b - a == 1) for a, b in segments)
    with pytest.raises(ValueError):
        weighted_ranges([1], 0, 10)


def test_halve() -> None:
    assert halve((0, 10)) == [(0, 5), (5, 10)]
    assert halve((3, 6)) == [(3, 4), (4, 6)]
    assert halve((7, 8)) == [(7, 8)]


def _bisect(n: int, bad: set[int]) -> tuple[list[int], list[int], int]:
    """Drive halve() the way the client does; return (landed, rejected, requests)."""
    landed: list[int] = []
    rejected: list[int] = []
    requests = 0

    def send(seg: tuple[int, int]) -> None:
        nonlocal requests
        requests += 1
        if not bad.intersection(range(*seg)):
            landed.extend(range(*seg))
        elif seg[1] - seg[0] == 1:
            rejected.append(seg[0])
        else:
            for half in halve(seg):
                send(half)

    send((0, n))
    return landed, rejected, requests


def test_bisection_isolates_bad_rows_and_lands_the_rest() -> None:
    landed, rejected, requests = _bisect(100, {37})
    assert rejected == [37]
    assert sorted(landed) == [i for i in range(100) if i != 37]
    assert requests <= 1 + 2 * 7  # about 2·log2(n) extra requests per bad row
    landed, rejected, _ = _bisect(250, {0, 1, 128, 249})
    assert sorted(rejected) == [0, 1, 128, 249]
    assert len(landed) == 246


def test_contiguous_runs() -> None:
    assert contiguous_runs([]) == []
    assert contiguous_runs([9, 2, 3, 4, 7, 10]) == [(2, 5), (7, 8), (9, 11)]


@pytest.mark.parametrize(
    ("status", "code", "message", "expected"),
    [
        (412, "0x80040237", "Cannot insert duplicate key.", Failure.DUPLICATE_ID),
        (400, "0x80044331", "A validation error occurred.  The length of the 'subject' ...", Failure.ROW),
        (404, "0x80040217", "Entity 'account' With Id = x Does Not Exist", Failure.ROW),
        (412, "0x80060892", "A record that has the attribute values ... already exists.", Failure.ROW),
        (403, "0x80040220", "Principal user ... is missing prvCreateAccount privilege", Failure.REQUEST),
        (
            400,
            "0x0",
            "Invalid property 'c2d_new' was found in entity 'Microsoft.Dynamics.CRM.account'.",
            Failure.REQUEST,
        ),
        (400, "0x80048d19", "An undeclared property 'parentcustomerid' which only has ...", Failure.REQUEST),
        (413, "0x8004418a", "Request message length is too large.", Failure.ROW),
    ],
)
def test_classify_failure(status: int, code: str, message: str, expected: Failure) -> None:
    assert classify_failure(status, code, message) is expected
