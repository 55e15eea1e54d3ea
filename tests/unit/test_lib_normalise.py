from __future__ import annotations

import pytest
import transform_oracle as o

from migration_assets.mapping import normalise as n


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("  ACME\u00a0 Corp\t", "acme corp"),
        ("Straße", "strasse"),
        ("ＡＢＣ", "abc"),
        ("", None),
        (None, None),
        ("   ", None),
    ],
)
def test_normalise_account_name(raw: str | None, expected: str | None) -> None:
    assert n.normalise_account_name(raw) == expected


NAMES = [
    ("Bruce Wayne", ("Bruce", "Wayne")),
    ("Wayne, Bruce", ("Bruce", "Wayne")),
    ("Cher", (None, "Cher")),
    ("Jan van der Berg", ("Jan", "van der Berg")),
    ("  Mary   Ann  Smith ", ("Mary", "Ann Smith")),
    ("山田 太郎", ("太郎", "山田")),
    ("山田太郎", (None, "山田太郎")),
    ("Müller, Sofía", ("Sofía", "Müller")),
    ("Smith,", (None, "Smith")),
    ("a, b, c", ("a,", "b, c")),
    ("", (None, None)),
    (None, (None, None)),
]


@pytest.mark.parametrize(("raw", "expected"), NAMES)
def test_split_person_name(raw: str | None, expected: tuple[str | None, str | None]) -> None:
    assert o.split_person_name(raw) == expected


@pytest.mark.parametrize(
    ("raw", "email", "reason"),
    [
        (" Bob@Example.COM ", "Bob@example.com", None),
        ("bob@münchen.de", "bob@münchen.de", None),
        ("bob", None, "must contain exactly one '@'"),
        ("a@b@c.com", None, "must contain exactly one '@'"),
        ("bob smith@x.com", None, "contains whitespace"),
        ("@x.com", None, "empty local part"),
        ("bob..x@x.com", None, "misplaced dot in local part"),
        ("bob@localhost", None, "invalid domain"),
        ("bob@-x.com", None, "invalid domain"),
        ("b(ob@x.com", None, "invalid character in local part"),
        ("", None, "empty"),
    ],
)
def test_normalise_email(raw: str, email: str | None, reason: str | None) -> None:
    check = o.normalise_email(raw)
    assert (check.email, check.reason, check.valid) == (email, reason, reason is None)


@pytest.mark.parametrize(
    ("raw", "cc", "expected"),
    [
        ("+1 650-333-4444", None, "+16503334444"),
        ("0049 30 1234567", None, "+49301234567"),
        ("(650) 333-4444", "1", "+16503334444"),
        ("(650) 333-4444", None, "(650) 333-4444"),
        ("030 1234567", "49", "+49301234567"),
        ("ext. 12", "1", "ext. 12"),
        ("  ", None, None),
    ],
)
def test_normalise_phone(raw: str, cc: str | None, expected: str | None) -> None:
    assert o.normalise_phone(raw, cc) == expected


def test_html_to_text() -> None:
    html = "<body><p>Hello&nbsp;<b>there</b></p><p>a &amp; b&#39;s</p><br><br><br><script>x()</script></body>"
    assert o.html_to_text(html) == "Hello there\na & b's"
    assert o.html_to_text("<p></p>") is None
    assert o.html_to_text(None) is None


def test_url_shape() -> None:
    assert o.url_problem("example.com/path") is None
    assert o.url_problem("https://www.example.co.uk:8080/x?y=1") is None
    assert o.url_problem("not a url") is not None
    assert o.url_problem("localhost") is not None
    assert o.with_scheme("example.com") == "https://example.com"
    assert o.with_scheme("http://example.com") == "http://example.com"


def test_fold_label_collapses_whitespace_and_case() -> None:
    from migration_assets.mapping.normalise import fold_label

    assert fold_label("  Real\u00a0 Estate ") == fold_label("real estate") == "real estate"
    assert fold_label(None) == ""
