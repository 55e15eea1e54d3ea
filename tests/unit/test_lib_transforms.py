"""The scalar oracle of the transforms, and agreement of the vectorised Polars builders with it."""

from __future__ import annotations

from decimal import Decimal

import polars as pl
import pytest
import transform_oracle as o

from migration_assets.mapping.transform_exprs import BUILDERS, Source, TransformContext
from migration_assets.mapping.transforms import TRANSFORMS, ChoiceSet


def run(
    name: str, values: list, args: dict | None = None, dtype: pl.DataType | None = None, ctx=None
) -> tuple[list, list]:
    frame = pl.DataFrame({"v": values}, schema={"v": dtype} if dtype else None)
    mapped = BUILDERS[name]([Source(pl.col("v"), frame.schema["v"])], args or {}, ctx or TransformContext())
    err = mapped.error if mapped.error is not None else pl.lit(None, dtype=pl.String)
    out = frame.select(mapped.value.alias("value"), err.alias("error"))
    return out["value"].to_list(), out["error"].to_list()


def test_registry_and_builders_cover_the_same_names() -> None:
    assert set(TRANSFORMS) == set(BUILDERS)


def test_cents_to_money() -> None:
    assert o.cents_to_money(50000, "USD") == o.Money(Decimal("500.00"), "USD")
    assert o.cents_to_money(5, "jpy").amount == Decimal("5")
    assert o.cents_to_money(1234, "KWD").amount == Decimal("1.234")
    assert o.cents_to_money(None, "USD") is None
    with pytest.raises(o.TransformError, match="currency"):
        o.cents_to_money(1, "dollars")
    with pytest.raises(o.TransformError, match="range"):
        o.cents_to_money(10**15, "USD")


def test_cents_to_money_vectorised() -> None:
    frame = pl.DataFrame({"v": [50000, 5, None, 10**15, 7], "c": ["USD", "JPY", "USD", "USD", "bad!"]})
    mapped = BUILDERS["cents_to_money"](
        [Source(pl.col("v"), pl.Int64()), Source(pl.col("c"), pl.String())], {}, TransformContext()
    )
    out = frame.select(mapped.value.alias("v"), mapped.error.alias("e"))
    assert out["v"].to_list()[:3] == [Decimal("500"), Decimal("5"), None]
    assert (
        out["e"].to_list()[3].startswith("amount outside")
        and out["e"].to_list()[4] == "unknown currency code"
    )


TIMESTAMPS = [
    "2021-07-13T11:39:05.012000+00:00",
    "2022-11-12T18:00:00+00:00",
    "2021-07-13T11:36:04.983404",
    "2021-07-13T11:39:05.012+05:00",
    "2021-07-16",
    "0001-01-01T00:00:00",
]


def test_datetimes_scalar_and_vectorised_agree() -> None:
    expected = [o.to_utc_iso(v) for v in TIMESTAMPS]
    assert expected[0] == "2021-07-13T11:39:05Z" and expected[3] == "2021-07-13T06:39:05Z"
    assert expected[4] == "2021-07-16T00:00:00Z"
    values, errors = run("datetime_utc", [*TIMESTAMPS, "garbage", None])
    # Year 1 parses the same both ways but is outside Dataverse's range: rejected at staging, not at load.
    assert values == [*expected[:5], None, None, None]
    assert errors[:5] == [None] * 5 and errors[5].startswith("date before 1753-01-01")
    assert errors[6:] == ["unparseable timestamp", None]
    with pytest.raises(o.TransformError):
        o.to_utc_iso("garbage")


def test_dates() -> None:
    assert o.to_date_iso("2021-07-16") == "2021-07-16"
    assert o.to_date_iso("2021-07-15T23:00:00-02:00") == "2021-07-16"
    values, errors = run("date_only", ["2021-07-16", "2021-07-15T23:00:00-02:00", "16/07/2021"])
    assert values == ["2021-07-16", "2021-07-16", None] and errors[2] == "unparseable date"


def test_dates_before_1753_are_rejected_with_the_range_not_loaded() -> None:
    from datetime import UTC, date, datetime

    values, errors = run("datetime_utc", ["0001-01-01T00:00:00+00:00", "1753-01-01T00:00:00Z", "not-a-date"])
    assert values == [None, "1753-01-01T00:00:00Z", None]
    assert errors[0].startswith("date before 1753-01-01") and errors[1] is None
    assert errors[2] == "unparseable timestamp"  # not "required value is missing"
    values, errors = run("date_only", ["0001-01-01", "1999-12-31"])
    assert values == [None, "1999-12-31"] and errors[0].startswith("date before 1753-01-01")
    typed = [datetime(1, 1, 1, tzinfo=UTC), datetime(2020, 5, 1, tzinfo=UTC)]
    values, errors = run("datetime_utc", typed, dtype=pl.Datetime("us", "UTC"))
    assert values == [None, "2020-05-01T00:00:00Z"] and errors[0].startswith("date before")
    values, errors = run("date_only", [date(1, 1, 1), date(2020, 5, 1)], dtype=pl.Date)
    assert values == [None, "2020-05-01"] and errors[0].startswith("date before")


def test_choice_scalar_and_vectorised() -> None:
    cs = ChoiceSet("pipeline", {"Sales": 727000000, "Renewals": 727000001})
    assert o.map_choice(" sales ", cs) == o.ChoiceResult(727000000)
    unknown = o.map_choice("Marketing", cs)
    assert unknown.value is None and "unknown choice 'Marketing' for pipeline" in unknown.reason
    assert o.map_choice(None, cs).known
    ctx = TransformContext(choice_sets={"p": cs})
    values, errors = run("choice", ["SALES", "Marketing", None], {"set": "p"}, ctx=ctx)
    assert (
        values == [727000000, None, None]
        and "unknown choice 'Marketing' for pipeline" in errors[1]
        and errors[2] is None
    )
    values, errors = run("choice", ["Marketing"], {"set": "p", "default": 1}, ctx=ctx)
    assert values == [1] and errors == [None]


def test_multi_choice_accepts_lists_and_single_strings() -> None:
    ctx = TransformContext(choice_sets={"t": ChoiceSet("tags", {"A": 1, "B": 2})})
    values, errors = run("multi_choice", [["A", "B"], ["A", "X"], [], None], {"set": "t"}, ctx=ctx)
    assert (
        values == ["1,2", None, None, None] and errors[1].startswith("unknown choice") and errors[0] is None
    )
    values, _ = run("multi_choice", ["B", None], {"set": "t"}, ctx=ctx)
    assert values == ["2", None]


def test_truncate_returns_what_was_cut() -> None:
    assert o.truncate("abcdef", 4) == o.Truncated("abcd", "ef")
    assert not o.truncate("abc", 4).was_truncated
    with pytest.raises(ValueError):
        o.truncate("x", 0)


def test_boolean() -> None:
    assert o.parse_bool("Yes") is True and o.parse_bool("0") is False and o.parse_bool(None) is None
    assert o.parse_bool("outbound", ["outbound"], ["inbound"]) is True
    with pytest.raises(o.TransformError):
        o.parse_bool("maybe")
    values, errors = run(
        "boolean", ["outbound", "INBOUND", "sideways"], {"true": ["outbound"], "false": ["inbound"]}
    )
    assert values == [True, False, None] and errors[2].startswith("not a yes/no value")


def test_number_range() -> None:
    assert o.check_range("42", 0, 100, integer=True) == 42
    for bad in ("101", "4.5", "abc"):
        with pytest.raises(o.TransformError):
            o.check_range(bad, 0, 100, integer=True)
    values, errors = run("number", ["42", "101", "4.5", "abc", None], {"min": 0, "max": 100, "integer": True})
    assert values == [42, None, None, None, None]
    assert errors == [None, "above the maximum 100", "not a whole number", "not a number", None]


def test_seconds_to_minutes_rounds_up() -> None:
    assert [o.seconds_to_minutes(s) for s in (0, 1, 60, 61)] == [0, 1, 1, 2]
    values, errors = run("seconds_to_minutes", [0, 1, 60, 61, -5])
    assert values == [0, 1, 1, 2, None] and errors[4] == "negative duration"


def test_email_vectorised_matches_scalar() -> None:
    raws = [
        " Bob@Example.COM ",
        "bob",
        "a@b@c.com",
        "bob smith@x.com",
        "@x.com",
        "bob..x@x.com",
        "bob@localhost",
        "b(ob@x.com",
        ".bob@x.com",
        "x" * 65 + "@x.com",
        "bob@münchen.de",
        None,
    ]
    values, errors = run("email", raws)
    for raw, value, error in zip(raws, values, errors, strict=True):
        if raw is None:
            assert (value, error) == (None, None)
            continue
        check = o.normalise_email(raw)
        assert (value, error) == (check.email, check.reason), raw


@pytest.mark.parametrize("cc", [None, "1", "49"])
def test_phone_vectorised_matches_scalar(cc: str | None) -> None:
    raws = ["+1 650-333-4444", "0049 30 1234567", "(650) 333-4444", "030 1234567", "ext. 12", "+12", None]
    values, errors = run("phone", raws, {"default_country_code": cc} if cc else {})
    assert values == [o.normalise_phone(r, cc) for r in raws] and errors == [None] * len(raws)


def test_names_vectorised_match_scalar() -> None:
    raws = [
        "Bruce Wayne",
        "Wayne, Bruce",
        "Cher",
        "Jan van der Berg",
        "  Mary   Ann  Smith ",
        "山田 太郎",
        "山田太郎",
        "Smith,",
        ", Bob",
        "a, b, c",
        "",
        None,
    ]
    firsts, _ = run("first_name", raws)
    lasts, _ = run("last_name", raws)
    assert list(zip(firsts, lasts, strict=True)) == [o.split_person_name(r) for r in raws]


def test_html_and_url_vectorised_match_scalar() -> None:
    raws = [
        "<body><p>Hi&nbsp;<b>you</b></p><p>a &amp; b &eacute;</p><br><br><br></body>",
        "<p></p>",
        None,
        "<STYLE>p{}</STYLE>plain",
    ]
    values, _ = run("html_to_text", raws)
    assert values == [o.html_to_text(r) for r in raws]
    urls = ["example.com", "http://x.io/a?b", "not a url", None]
    values, errors = run("url", urls)
    assert values == ["https://example.com", "http://x.io/a?b", None, None]
    assert [e is None for e in errors] == [o.url_problem(u) is None for u in urls]


def test_pick_and_join_list() -> None:
    emails = [
        [
            {"email": "a@x.com", "type": "office"},
            {"email": "m@x.com", "type": "mobile"},
            {"email": "c@x.com", "type": "home"},
            {"email": "d@x.com", "type": "other"},
        ],
        [],
        None,
    ]
    dtype = pl.List(pl.Struct({"email": pl.String, "type": pl.String}))
    assert run("pick", emails, {"field": "email", "index": 1}, dtype)[0] == ["m@x.com", None, None]
    assert run("pick", emails, {"field": "email", "types": ["mobile"]}, dtype)[0] == ["m@x.com", None, None]
    assert run("pick", emails, {"field": "email", "exclude_types": ["office"]}, dtype)[0] == [
        "m@x.com",
        None,
        None,
    ]
    assert run("join_list", emails, {"field": "email", "skip": 2}, dtype)[0] == [
        "c@x.com; d@x.com",
        None,
        None,
    ]


def test_owner_transform() -> None:
    ctx = TransformContext(owners={"user_a": "guid-a"})
    values, errors = run("owner", ["user_a", "user_b", None], ctx=ctx)
    assert values == ["guid-a", None, None] and errors[1].startswith(
        "Close user has no enabled Dataverse user"
    )
    ctx = TransformContext(owners={"user_a": "guid-a"}, fallback_owner="guid-f")
    assert run("owner", ["user_b"], ctx=ctx) == (["guid-f"], [None])
    assert run("owner", ["user_b"]) == ([None], [None])  # no owner map yet (dry run)
