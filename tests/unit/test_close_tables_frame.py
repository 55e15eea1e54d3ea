"""Table frames: the fast paths (raw from orjson bytes, strict text columns) give exactly what the
per-object functions give, whatever the values."""

from __future__ import annotations

import json

from migration_assets.extract.tables import TABLES, _str, canonical_json

OBJECTS = [
    {"id": "acti_1", "_type": "Note", "note": 'Grüße, 東京 \u2028 "quoted" \\ \n', "b": [1, 2.5, None, True]},
    {"id": "acti_2", "_type": "Note", "huge": 2**70, "nested": {"z": 1, "a": {"y": [], "b": {}}}},
    {"id": "acti_3", "_type": "Note", "__position": 4, "__object_type": "lead", "x": -0.0, "e": 1e300},
    {"_type": "Note", "id": None, "lead_id": 12, "user_id": True, "contact_id": {"a": 1}},
]


def test_raw_column_is_canonical_json_of_each_object() -> None:
    frame = TABLES["notes"].frame(OBJECTS)
    assert frame["raw"].to_list() == [canonical_json(o) for o in OBJECTS]
    assert '"huge":1180591620717411303424' in frame["raw"][1]  # beyond 64 bits: the stdlib path
    assert "__position" not in frame["raw"][2]
    assert json.loads(frame["raw"][0]) == OBJECTS[0]


def test_text_columns_with_non_text_values_keep_their_python_form() -> None:
    frame = TABLES["notes"].frame(OBJECTS)
    assert frame["lead_id"].to_list() == [None, None, None, "12"]
    assert frame["user_id"].to_list() == [None, None, None, _str(True)]
    assert frame["contact_id"].to_list() == [None, None, None, _str({"a": 1})]
    assert frame["id"].to_list() == ["acti_1", "acti_2", "acti_3", None]


def test_an_unreadable_number_is_empty_in_its_column_and_never_aborts_the_frame() -> None:
    from migration_assets.extract.tables import TABLES, _int

    assert [_int(v) for v in ("abc", 1e22, 2**63, 12.5, 12.0, "17", -5, True, None)] == [
        None,
        None,
        None,
        None,
        12,
        17,
        -5,
        None,
        None,
    ]
    frame = TABLES["opportunities"].frame([{"id": "oppo_1", "value": 10**22}, {"id": "oppo_2", "value": 300}])
    assert frame["value"].to_list() == [None, 300]
    assert '"value":10000000000000000000000' in frame["raw"][0]  # the source value is kept for the check
