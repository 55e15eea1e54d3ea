"""Data classes shared by the generator, the emulators and the tests: the org, its files, the size profiles."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator
from dataclasses import dataclass, field

SIZES = ("tiny", "demo", "typical", "large")


class OrgDataError(ValueError):
    """Raised for a request the generator cannot honour (unknown size or shape, bad seed, bad chunk size)."""


@dataclass(frozen=True)
class SizeProfile:
    """Target volumes of one org size; the activity mix is applied to `activities`."""

    leads: int
    contacts: int
    opportunities: int
    activities: int
    tasks: int
    subscriptions: int


PROFILES: dict[str, SizeProfile] = {
    "tiny": SizeProfile(leads=50, contacts=80, opportunities=20, activities=400, tasks=30, subscriptions=8),
    "demo": SizeProfile(
        leads=500, contacts=800, opportunities=120, activities=3_000, tasks=200, subscriptions=40
    ),
    "typical": SizeProfile(
        leads=20_000, contacts=20_000, opportunities=3_000, activities=60_000, tasks=4_000, subscriptions=600
    ),
    "large": SizeProfile(
        leads=20_000,
        contacts=40_000,
        opportunities=3_000,
        activities=300_000,
        tasks=8_000,
        subscriptions=1_500,
    ),
}

# The content of byte i depends only on (seed, i // _BLOCK): block n is one block drawn from the file's
# seeded generator (CPython's string seeding hashes the seed with SHA-512, so it is the same on every
# machine), rotated by an offset that differs from block to block. A generator per block cost ~3.8 s of the
# Close emulator's CPU per GB served, which on a 2-core bench is taken from the load it feeds; a rotation
# is a copy (~0.1 s per GB). The bytes stay incompressible and differ between files and between blocks.
_BLOCK = 1 << 16
_STRIDE = (
    12_347  # odd: offsets run through all of a block; < half a block: repeats stay > 32 KB apart (deflate)
)


@dataclass(frozen=True, slots=True)
class FileBlob:
    """A file Close serves behind an authenticated URL (email/note attachment, call recording)."""

    filename: str
    content_type: str
    size: int  # bytes
    seed: str  # content is derived from this deterministically

    def _blocks(self, first_block: int) -> Iterator[bytes]:
        twice = random.Random(self.seed).randbytes(_BLOCK) * 2
        n = first_block
        while True:
            offset = n * _STRIDE % _BLOCK
            yield twice[offset : offset + _BLOCK]
            n += 1

    def iter_chunks(self, chunk: int = 65536) -> Iterator[bytes]:
        """Yield the content in pieces of at most `chunk` bytes; never holds the whole file in memory."""
        if chunk <= 0:
            raise OrgDataError(f"chunk size must be a positive number of bytes, got {chunk}")
        remaining = self.size
        blocks = self._blocks(0)
        buf = bytearray()
        while remaining > 0:
            want = min(chunk, remaining)
            while len(buf) < want:
                buf += next(blocks)
            yield bytes(buf[:want])
            del buf[:want]
            remaining -= want

    def read(self) -> bytes:
        """The whole content: exactly `size` bytes, identical on every call and every machine."""
        return b"".join(self.iter_chunks(1 << 20))

    def sha256(self) -> str:
        """Hex digest of the content, streamed (lets tests and the emulator check downloads cheaply)."""
        h = hashlib.sha256()
        for part in self.iter_chunks():
            h.update(part)
        return h.hexdigest()


@dataclass
class CloseOrg:
    """A complete synthetic Close organisation; every object is in the JSON shape the real API returns."""

    size: str
    seed: int
    api_key: str
    organization: dict
    users: list[dict]
    inactive_users: list[dict]
    lead_statuses: list[dict]
    pipelines: list[dict]
    opportunity_statuses: list[dict]
    custom_fields: dict[str, list[dict]]
    custom_activity_types: list[dict]
    leads: list[dict]
    contacts: list[dict]
    opportunities: list[dict]
    activities: list[dict]
    tasks: list[dict]
    sequences: list[dict]
    sequence_subscriptions: list[dict]
    smart_views: list[dict]
    events: list[dict]
    files: dict[str, FileBlob] = field(default_factory=dict)
    dynamics_users: list[dict] = field(default_factory=list)
    roles: list[dict] = field(default_factory=list)  # GET /role/: built-in and custom roles
    truth: dict = field(default_factory=dict)
    shape: str = "brightwave"  # the name of the OrgShape the org was generated from
