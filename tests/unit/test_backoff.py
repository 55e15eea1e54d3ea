"""The one backoff formula, with each client's policy: Close (equal jitter) and Dataverse (full jitter)."""

from __future__ import annotations

import random

from migration_assets.clients.backoff import EQUAL_JITTER, FULL_JITTER, backoff_delay


def test_equal_jitter_keeps_half_of_each_step() -> None:
    rng, twin = random.Random(7), random.Random(7)
    for retry in range(12):
        step = min(30.0, 0.5 * 2**retry)
        r = twin.random()
        got = backoff_delay(retry, base=0.5, cap=30.0, fixed_share=EQUAL_JITTER, rng=rng)
        assert got == step / 2 + r * step / 2


def test_full_jitter_is_uniform_up_to_the_step() -> None:
    rng, twin = random.Random(7), random.Random(7)
    for retry in range(12):
        ceiling = min(30.0, 0.5 * 2.0**retry)
        expected = twin.uniform(0.0, ceiling)
        assert backoff_delay(retry, base=0.5, cap=30.0, fixed_share=FULL_JITTER, rng=rng) == expected
