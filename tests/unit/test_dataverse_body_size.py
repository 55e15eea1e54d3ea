"""The Dataverse emulator sizes an annotation's documentbody without decoding it (file_store.decoded_size):
same length as base64.b64decode(text, validate=True), refused exactly where that refuses."""

from __future__ import annotations

import base64
import itertools
import random

import pytest

from emulators.dataverse.file_store import decoded_size


def _decoded(text: str) -> int | str:
    try:
        return len(base64.b64decode(text, validate=True))
    except ValueError:  # binascii.Error and UnicodeEncodeError are ValueErrors
        return "refused"


def _sized(text: str) -> int | str:
    try:
        return decoded_size(text)
    except ValueError:
        return "refused"


@pytest.mark.parametrize(
    ("text", "size"),
    [("", 0), ("QQ==", 1), ("QUI=", 2), ("QUJD", 3), ("QUJD=", 3), ("QUJD===", 3), ("QUJDRA==", 4)],
)
def test_valid_bodies_have_their_decoded_length(text: str, size: int) -> None:
    assert decoded_size(text) == size == _decoded(text)


@pytest.mark.parametrize(
    "text", ["=", "Q", "QQ", "QQ=", "QQ===", "QUI==", "Q=Q", "QUJD=Q", "QU JD", "QUJ\n", "é"]
)
def test_invalid_bodies_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        decoded_size(text)
    assert _decoded(text) == "refused"


def test_every_short_text_is_sized_or_refused_as_b64decode_does() -> None:
    for length in range(7):
        for chars in itertools.product("AB+/= \n", repeat=length):
            text = "".join(chars)
            assert _sized(text) == _decoded(text), text
    rnd = random.Random(15)
    for _ in range(2_000):
        text = base64.b64encode(rnd.randbytes(rnd.randint(0, 40))).decode()
        for variant in (
            text,
            text.rstrip("="),
            text + "=",
            text + "==",
            "=" + text,
            text[:5] + "=" + text[5:],
        ):
            assert _sized(variant) == _decoded(variant), variant


def test_bodies_longer_than_a_slice_are_checked_in_every_slice() -> None:
    """A body is read a slice at a time (SLICE_CHARS): a bad character in any slice, at a slice's edge
    included, is refused, and a valid body has its decoded length."""
    from emulators.dataverse.file_store import SLICE_CHARS

    data = random.Random(7).randbytes(SLICE_CHARS * 3 // 4 * 3 + 5)
    text = base64.b64encode(data).decode()
    assert len(text) > 3 * SLICE_CHARS
    assert decoded_size(text) == len(data)
    for at in (0, SLICE_CHARS - 1, SLICE_CHARS, 2 * SLICE_CHARS + 17, len(text) - 5):
        for bad in ("*", "\n", "é"):
            variant = text[:at] + bad + text[at + 1 :]
            assert _sized(variant) == _decoded(variant) == "refused", (at, bad)
