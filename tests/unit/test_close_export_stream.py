"""Export downloads parsed as they stream: background gunzip (multi-member, truncated, corrupt), and the
emulator's parallel gzip writer producing one standard gzip member."""

from __future__ import annotations

import gzip
import json
import zlib

import pytest

from emulators.close.exports import _lead_lines, gzip_parallel
from emulators.close.jsonutil import dumps, rewrite_hosts
from emulators.close.store import OrgStore
from emulators.orgdata import generate
from migration_assets.clients.close.export_file import CloseExportError, iter_export_stream

LEADS = [
    {"id": f"lead_{i}", "name": "Lé" * (i % 50), "activities": [{"id": f"a{i}"}] * (i % 4)}
    for i in range(3000)
]
TEXT = ("\n".join(json.dumps(lead, ensure_ascii=False) for lead in LEADS) + "\n").encode()


def chunks(data: bytes, size: int = 4096) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def test_gzip_and_plain_streams_parse_identically() -> None:
    assert list(iter_export_stream(iter(chunks(gzip.compress(TEXT))))) == LEADS
    assert list(iter_export_stream(iter(chunks(TEXT)))) == LEADS


def test_tiny_chunks_split_the_magic() -> None:
    data = gzip.compress(TEXT)
    assert list(iter_export_stream(iter([data[:1], b"", *chunks(data[1:], 7)]))) == LEADS
    assert list(iter_export_stream(iter([b"", TEXT[:1], *chunks(TEXT[1:], 3)]))) == LEADS


def test_concatenated_gzip_members_are_one_stream() -> None:
    half = len(TEXT) // 2
    cut = TEXT.index(b"\n", half) + 1
    data = gzip.compress(TEXT[:cut]) + gzip.compress(TEXT[cut:])
    assert list(iter_export_stream(iter(chunks(data, 1000)))) == LEADS


def test_truncated_gzip_is_a_clear_error() -> None:
    data = gzip.compress(TEXT)
    with pytest.raises(CloseExportError, match="truncated"):
        list(iter_export_stream(iter(chunks(data[: len(data) // 2])), name="export X"))


def test_corrupt_gzip_is_a_clear_error() -> None:
    data = bytearray(gzip.compress(TEXT))
    data[40:60] = b"\xff" * 20
    with pytest.raises(CloseExportError, match="export X"):
        list(iter_export_stream(iter(chunks(bytes(data))), name="export X"))


@pytest.mark.parametrize("block", [1, 777, 1 << 20])
def test_parallel_gzip_is_a_single_standard_member(block: int) -> None:
    parts = chunks(TEXT, 5000)
    data = b"".join(gzip_parallel(iter(parts), level=3, threads=2, block=block))
    assert gzip.decompress(data) == TEXT
    # One member: a decoder that stops at the first member's end (as HTTP clients do) sees everything.
    dec = zlib.decompressobj(31)
    assert dec.decompress(data) == TEXT and dec.eof and dec.unused_data == b""


def test_parallel_gzip_of_nothing() -> None:
    assert gzip.decompress(b"".join(gzip_parallel(iter([])))) == b""


def test_export_lines_match_lead_documents_with_hosts_rewritten() -> None:
    """The export lines give exactly GET /lead/ documents plus activities, file
    URLs pointing at the host the export is downloaded from."""
    org = generate("tiny")
    store = OrgStore(org)
    root = b"http://127.0.0.1:8765"
    got = b"".join(_lead_lines(store, True, root, lines_per_block=7))
    expected = b"".join(
        rewrite_hosts(
            dumps({**store.full_lead(lead), "activities": store.activities_by_lead.get(lead["id"], [])}), root
        )
        + b"\n"
        for lead in org.leads
    )
    assert got == expected
    assert got.count(root + b"/go/") + got.count(root + b"/call/") > 0
    assert b"https://app.close.com/go/" not in got and b"https://api.close.com/call/" not in got
    plain = b"".join(_lead_lines(store, False, root))
    assert plain == b"".join(rewrite_hosts(dumps(store.full_lead(lead)), root) + b"\n" for lead in org.leads)
