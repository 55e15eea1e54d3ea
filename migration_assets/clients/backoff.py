"""Exponential backoff with jitter: the one delay formula both API clients use for 5xx and connection errors.

Each client states its policy with explicit parameters (base, cap, how much of each step is fixed); how
long to wait after a 429 is the service's own answer (Retry-After, RateLimit headers) and stays in each
client (`close/paging.py`, `dataverse/retry.py`).
"""

from __future__ import annotations

import random

# Half of each step fixed, half random: the delay never collapses to ~0 and hammers a struggling server,
# while parallel workers still de-synchronise (Close).
EQUAL_JITTER = 0.5
# The whole step random: spreads the retries of many threads that failed together (a dropped connection
# hits every in-flight request at once), which a fixed schedule would re-synchronise (Dataverse).
FULL_JITTER = 0.0


def backoff_delay(
    retry: int, *, base: float, cap: float, fixed_share: float, rng: random.Random | None = None
) -> float:
    """Seconds to wait before retry number `retry` (0 for the first retry).

    The step is min(cap, base * 2**retry); the delay is `fixed_share` of the step plus a uniformly random
    part of the rest, so it always lies in [fixed_share * step, step].
    """
    if retry < 0:
        raise ValueError(f"retry must be >= 0, got {retry}")
    step = min(cap, base * (2.0 ** min(retry, 32)))
    r = (rng or random).random()
    return step * fixed_share + r * step * (1.0 - fixed_share)
