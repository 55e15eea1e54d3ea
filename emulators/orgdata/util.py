"""Cheap deterministic building blocks: ids, timestamps, money formatting, phone numbers."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

# Newer Close resources use 22 random chars, classic ones 43 (close_api.md §1.6).
SHORT_ID_PREFIXES = frozenset(
    {"pipe", "seq", "seqstep", "sub", "ev", "req", "actitype", "role", "group", "media", "smstmpl"}
)

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
EPOCH_NAIVE = datetime(1970, 1, 1)
US_PER_S = 1_000_000
US_PER_DAY = 86_400 * US_PER_S

# A fixed "now" keeps the data independent of the wall clock (determinism across runs and days).
NOW_US = int((datetime(2026, 1, 15, 12, 0, tzinfo=UTC) - EPOCH).total_seconds()) * US_PER_S
ORG_CREATED_US = int((datetime(2021, 3, 1, 9, 30, tzinfo=UTC) - EPOCH).total_seconds()) * US_PER_S
FIRST_LEAD_US = int((datetime(2022, 1, 3, 8, 0, tzinfo=UTC) - EPOCH).total_seconds()) * US_PER_S


class Ids:
    """Generates unique, well-formed Close ids from the org's random stream."""

    def __init__(self, rng: random.Random) -> None:
        self._choices = rng.choices
        self._seen: set[str] = set()

    def new(self, prefix: str) -> str:
        k = 22 if prefix in SHORT_ID_PREFIXES else 43
        while True:
            value = prefix + "_" + "".join(self._choices(B62, k=k))
            # A collision among 62**22 values is practically impossible, but uniqueness is a contract.
            if value not in self._seen:
                self._seen.add(value)
                return value

    def raw(self, k: int) -> str:
        return "".join(self._choices(B62, k=k))


def ts(us: int) -> str:
    """Classic-resource timestamp: millisecond precision rendered as µs with an explicit +00:00 offset."""
    us -= us % 1000
    return (EPOCH + timedelta(microseconds=us)).isoformat(timespec="microseconds")


def ts_seconds(us: int) -> str:
    """Timestamp without fraction, as Close emits for meeting start/end and synced e-mails."""
    return (EPOCH + timedelta(microseconds=us)).isoformat(timespec="seconds")


def ts_naive(us: int) -> str:
    """Naive timestamp of newer resources (pipelines, sequences, custom activity types, events)."""
    return (EPOCH_NAIVE + timedelta(microseconds=us)).isoformat(timespec="microseconds")


def day(us: int) -> str:
    return (EPOCH + timedelta(microseconds=us)).date().isoformat()


def rfc2822(us: int) -> str:
    return (EPOCH + timedelta(microseconds=us)).strftime("%a, %d %b %Y %H:%M:%S +0000")


CURRENCY_SYMBOLS = {"USD": "$", "EUR": "€", "GBP": "£"}


def money_formatted(value: int, currency: str, period: str) -> str:
    """Mimics Close's `value_formatted`: "$500", "$50 monthly", "€1,234.50 annual"."""
    whole, cents = divmod(value, 100)
    amount = f"{whole:,}" if cents == 0 else f"{whole:,}.{cents:02d}"
    text = CURRENCY_SYMBOLS[currency] + amount
    if period == "monthly":
        text += " monthly"
    elif period == "annual":
        text += " annual"
    return text


def phone_number(rng: random.Random, country: str = "US") -> tuple[str, str]:
    """(E.164, formatted) pair in the style Close returns."""
    if country == "GB":
        tail = rng.randrange(1000, 10000)
        return f"+44207946{tail:04d}", f"+44 20 7946 {tail:04d}"
    if country == "DE":
        tail = rng.randrange(100000, 1000000)
        return f"+4930{tail}", f"+49 30 {tail}"
    area = rng.choice((415, 212, 646, 312, 512, 617, 206, 303, 650, 702))
    tail = rng.randrange(100, 10000)
    return f"+1{area}555{tail:04d}", f"+1 {area}-555-{tail:04d}"


def normalise_name(name: str | None) -> str:
    """The account-matching rule of DESIGN §4: casefold, trim, collapse inner whitespace (incl. NBSP)."""
    return " ".join((name or "").casefold().split())
