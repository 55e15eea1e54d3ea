"""A file body measured as it downloads: past the target's upload limit it is never held whole, and it is
refused with the same reason and code as a file Close declares too big (issue 11 #15)."""

from __future__ import annotations

from collections.abc import Iterator

from migration_assets.load.batches import base64_size
from migration_assets.load.file_body import (
    DATAVERSE_MAX_UPLOAD,
    OVERSIZE_CODE,
    Oversize,
    max_raw_bytes,
    oversize_reason,
    read_capped,
    too_big,
)


def test_max_raw_bytes_is_the_largest_file_whose_base64_fits() -> None:
    for limit in (0, 3, 4, 5, 400, 1001, 5_242_880):
        raw = max_raw_bytes(limit)
        assert base64_size(raw) <= limit < base64_size(raw + 1)


def test_a_body_within_the_limit_is_returned_whole() -> None:
    assert read_capped([b"abc", b"def"], 8) == b"abcdef"  # 6 bytes: 8 as base64
    assert read_capped([b"abc", b"def"], None) == b"abcdef"
    assert read_capped([], 8) == b""


def test_a_body_past_the_limit_is_measured_not_kept() -> None:
    assert read_capped([b"abc", b"defg"], 8) == Oversize(7, complete=True)


def test_a_huge_body_is_read_only_up_to_dataverses_ceiling_and_its_stream_is_closed() -> None:
    closed: list[bool] = []
    chunk = b"x" * 1_000_000

    def endless() -> Iterator[bytes]:
        try:
            while True:
                yield chunk
        finally:
            closed.append(True)

    got = read_capped(endless(), 1_000)
    assert isinstance(got, Oversize) and not got.complete
    assert max_raw_bytes(DATAVERSE_MAX_UPLOAD) < got.size <= max_raw_bytes(DATAVERSE_MAX_UPLOAD) + len(chunk)
    assert closed == [True]


def test_the_measured_reason_words_the_declared_one_and_gives_both_sizes() -> None:
    declared = oversize_reason(9_000, 5_000)
    assert declared == (
        "file of 9000 bytes is above the target's maxuploadfilesize (5000 bytes, base64): not loaded, "
        "listed for the admin"
    )
    measured = oversize_reason(10, 5_000, Oversize(9_000, complete=True))
    assert measured.startswith("file of 9000 bytes (Close declared 10 bytes) is above the target's")
    assert measured.endswith(declared.split(" is above ", 1)[1])
    assert "more than 9000 bytes (Close declared no size)" in oversize_reason(
        None, 5_000, Oversize(9_000, complete=False)
    )
    assert OVERSIZE_CODE == "0x80044a02"


def test_too_big_needs_a_limit_and_a_size() -> None:
    assert too_big(3_000, 1_000) and not too_big(300, 1_000)
    assert not too_big(None, 1_000) and not too_big(3_000, None)
