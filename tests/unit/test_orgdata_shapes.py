"""Org shapes of the synthetic Close org: selection by name, determinism, how far they differ, their edge cases.

The shape-independent checks of test_orgdata.py (references, timestamps, truth recount, files, events...) are
imported below and run again on every non-default shape through this module's `org` fixture.
"""

from __future__ import annotations

import itertools
import json
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

# Re-run the shape-independent checks on the other shapes (collected here, so they use the fixture below).
from test_orgdata import (  # noqa: F401
    test_activity_mix_roughly_as_specified,
    test_contact_email_and_phone_edge_cases,
    test_email_threads_group_their_emails,
    test_events_describe_real_updates_and_deletes,
    test_every_file_url_has_a_blob,
    test_everything_is_json_serialisable,
    test_ids_have_real_prefixes_lengths_and_are_unique,
    test_lead_name_edge_cases,
    test_opportunity_money_and_status_consistency,
    test_overlong_values_are_real,
    test_records_reference_existing_objects,
    test_sequences_subscriptions_smart_views,
    test_status_change_history_ends_at_current_status,
    test_tasks,
    test_timestamp_formats,
    test_truth_counts_match_an_independent_recount,
)

from emulators.close import CloseEmulatorConfig
from emulators.close.server import CloseEmulatorServer
from emulators.orgdata import DEFAULT_SHAPE, ORG_SHAPES, SHAPES, CloseOrg, OrgDataError, generate, org_summary
from emulators.orgdata.__main__ import main as cli_main
from emulators.orgdata.shape import ActivityFieldSpec, ActivityTypeSpec, OrgShape
from migration_assets.cli import build_parser

OTHER_SHAPES = [s for s in ORG_SHAPES if s != DEFAULT_SHAPE]
MULTILINGUAL_LABELS = {
    "Converted",
    "Do Not Contact",
    "Gewonnen",
    "Perdu",
    "Kunde",
    "Nicht interessiert",
    "Cliente",
    "No contactar",
}


@pytest.fixture(scope="module", params=OTHER_SHAPES)
def org(request: pytest.FixtureRequest) -> CloseOrg:
    return generate("tiny", 1, org=request.param)


@pytest.fixture(scope="module")
def orgs() -> dict[str, CloseOrg]:
    return {name: generate("tiny", 1, org=name) for name in ORG_SHAPES}


def dimensions(org: CloseOrg) -> dict[str, Any]:
    """Every org-level dimension, read from the generated objects (not from the shape that produced them)."""
    by_close = {d["close_user_id"]: d for d in org.dynamics_users if d["close_user_id"]}
    people = org.users + org.inactive_users
    names = {u["id"]: f"{u['first_name']} {u['last_name']}" for u in people}
    type_names = {t["id"]: t["name"] for t in org.custom_activity_types}
    activity_fields = org.custom_fields["activity"]
    return {
        "org name": org.organization["name"],
        "domain": {u["email"].split("@")[1] for u in people},
        "user count": len(people),
        "user names": set(names.values()),
        "user emails": {u["email"] for u in people},
        "users without Dynamics": {names[u["id"]] for u in people if u["id"] not in by_close},
        "users disabled in Dynamics": {names[i] for i, d in by_close.items() if d["isdisabled"]},
        "users inactive in Close": {names[u["id"]] for u in org.inactive_users},
        "lead status count": len(org.lead_statuses),
        "lead status labels": [s["label"] for s in org.lead_statuses],
        "pipeline count": len(org.pipelines),
        "pipelines": [(p["name"], [(s["label"], s["type"]) for s in p["statuses"]]) for p in org.pipelines],
        **{
            f"{kind} custom fields": [(f["name"], f["type"], f["choices"]) for f in org.custom_fields[kind]]
            for kind in ("lead", "contact", "opportunity")
        },
        "custom field count": sum(len(v) for v in org.custom_fields.values()),
        "custom activity type count": len(org.custom_activity_types),
        "custom activity types": [
            (
                t["name"],
                t["description"],
                t["is_archived"],
                [
                    (f["name"], f["type"], f["choices"], f["required"])
                    for f in activity_fields
                    if f["custom_activity_type_id"] == t["id"]
                ],
            )
            for t in org.custom_activity_types
        ],
        "archived types": {t["name"] for t in org.custom_activity_types if t["is_archived"]},
        "orphaned-values type": type_names[org.truth["edge_cases"]["broken_custom_activity_type_id"]],
    }


# ---------------------------------------------------------------- selection


def test_shapes_are_selected_by_name() -> None:
    assert ORG_SHAPES == ("brightwave", "nordlicht", "pacifica")
    assert DEFAULT_SHAPE == "brightwave"
    default = generate("tiny", 1)
    assert default.shape == "brightwave"
    assert default == generate("tiny", 1, org="brightwave")
    assert default.organization["name"] == "Brightwave Analytics"
    for name in OTHER_SHAPES:
        assert generate("tiny", 1, org=name).shape == name


@pytest.mark.parametrize("bad", ["Brightwave", "acme", "", None, 3])
def test_unknown_shape_is_a_clear_error(bad: object) -> None:
    with pytest.raises(
        OrgDataError, match=r"unknown org shape .*; choose one of brightwave, nordlicht, pacifica"
    ):
        generate("tiny", 1, org=bad)  # type: ignore[arg-type]


def test_an_inconsistent_shape_is_refused() -> None:
    base = SHAPES["nordlicht"]
    kept = tuple(t for t in base.activity_types if not t.orphaned_values)
    with pytest.raises(OrgDataError, match="exactly one custom activity type must have orphaned values"):
        OrgShape(**{**base.__dict__, "activity_types": kept})
    bad_type = ActivityTypeSpec("X", "", True, (ActivityFieldSpec("Pick", "choices"),))
    with pytest.raises(OrgDataError, match="choices are required exactly for type 'choices'"):
        OrgShape(**{**base.__dict__, "activity_types": (*base.activity_types, bad_type)})
    with pytest.raises(OrgDataError, match="needs a user disabled in Dynamics"):
        OrgShape(**{**base.__dict__, "users": tuple(u for u in base.users if not u.dynamics_disabled)})


def test_each_shape_is_deterministic(org: CloseOrg) -> None:
    again = generate("tiny", 1, org=org.shape)
    assert again == org
    assert json.dumps(again.activities, sort_keys=True) == json.dumps(org.activities, sort_keys=True)
    other_seed = generate("tiny", 2, org=org.shape)
    assert {x["id"] for x in other_seed.leads}.isdisjoint({x["id"] for x in org.leads})


def test_shapes_have_their_own_ids(orgs: dict[str, CloseOrg]) -> None:
    for a, b in itertools.combinations(orgs.values(), 2):
        assert a.api_key != b.api_key
        assert {x["id"] for x in a.leads}.isdisjoint({x["id"] for x in b.leads})


# ---------------------------------------------------------------- how far the shapes differ


def test_shapes_differ_in_every_org_level_dimension(orgs: dict[str, CloseOrg]) -> None:
    dims = {name: dimensions(o) for name, o in orgs.items()}
    for a, b in itertools.combinations(ORG_SHAPES, 2):
        same = [k for k in dims[a] if dims[a][k] == dims[b][k]]
        assert not same, f"{a} and {b} share {same}"
        # Not only different: no user, status, pipeline or type is carried over from one to the other.
        for key in ("user names", "user emails", "archived types"):
            assert not dims[a][key] & dims[b][key], (a, b, key)
        for key in ("lead status labels", "custom activity types"):
            assert not {str(x) for x in dims[a][key]} & {str(x) for x in dims[b][key]}, (a, b, key)


def test_new_shapes_carry_awkward_labels_and_choices(org: CloseOrg) -> None:
    labels = [s["label"] for s in org.lead_statuses] + [s["label"] for s in org.opportunity_statuses]
    labels += [p["name"] for p in org.pipelines]
    choices = [c for fs in org.custom_fields.values() for f in fs for c in f["choices"] or ()]
    for texts in (labels, choices):
        assert any("," in t for t in texts)
        assert any("–" in t for t in texts)  # en dash
        assert any(not t.isascii() for t in texts)
    assert any(f["required"] for f in org.custom_fields["activity"])
    assert any(f["required"] and f["type"] == "choices" for f in org.custom_fields["activity"])


def test_multilingual_status_labels_are_spread_over_the_shapes(orgs: dict[str, CloseOrg]) -> None:
    found = set()
    for o in orgs.values():
        found |= {s["label"] for s in o.lead_statuses} | {s["label"] for s in o.opportunity_statuses}
    assert found >= MULTILINGUAL_LABELS
    lead_labels = {s["label"] for o in orgs.values() for s in o.lead_statuses}
    assert {"Converted", "Do Not Contact", "Kunde", "Nicht interessiert", "No contactar"} <= lead_labels


def test_organization_currency_is_the_most_used_deal_currency(orgs: dict[str, CloseOrg]) -> None:
    currencies = {o.organization["currency"] for o in orgs.values()}
    assert currencies == {"USD", "EUR", "GBP"}
    for o in orgs.values():
        used = Counter(x["value_currency"] for x in o.opportunities)
        assert used.most_common(1)[0][0] == o.organization["currency"]
        assert set(used) == {"USD", "EUR", "GBP"}


# ---------------------------------------------------------------- truth edge cases, for every shape


@pytest.mark.parametrize("name", ORG_SHAPES)
def test_truth_edge_cases_hold_in_every_shape(orgs: dict[str, CloseOrg], name: str) -> None:
    org = orgs[name]
    edge = org.truth["edge_cases"]
    types = {t["id"]: t for t in org.custom_activity_types}
    broken, undefined = edge["broken_custom_activity_type_id"], edge["undefined_field_id"]
    assert undefined not in {f["id"] for fs in org.custom_fields.values() for f in fs}
    assert undefined not in {f["id"] for f in types[broken]["fields"]}
    instances = [a for a in org.activities if a["_type"] == "CustomActivity"]
    carrying = [a["id"] for a in instances if "custom." + undefined in a]
    assert carrying and carrying == edge["orphaned_value_activity_ids"]
    assert all(a["custom_activity_type_id"] == broken for a in instances if a["id"] in carrying)
    assert all(a["id"] in carrying for a in instances if a["custom_activity_type_id"] == broken)
    assert edge["archived_custom_activity_type_ids"] == [t["id"] for t in types.values() if t["is_archived"]]
    assert edge["archived_custom_activity_type_ids"]
    for a in instances:  # every other value belongs to a field of the instance's type
        own = {f["id"] for f in types[a["custom_activity_type_id"]]["fields"]}
        assert {k.removeprefix("custom.") for k in a if k.startswith("custom.")} - own <= {undefined}
    for t in types.values():  # required fields are always set on published instances
        required = {f["id"] for f in t["fields"] if f["required"] and f["type"] != "contact"}
        for a in instances:
            if a["custom_activity_type_id"] == t["id"]:
                assert all("custom." + fid in a for fid in required)

    by_close = {d["close_user_id"]: d for d in org.dynamics_users if d["close_user_id"]}
    everyone = {u["id"] for u in org.users + org.inactive_users}
    assert edge["unmatched_user_ids"] == [u for u in everyone_in_order(org) if u not in by_close]
    assert edge["disabled_user_ids"] == [
        u for u in everyone_in_order(org) if by_close.get(u, {}).get("isdisabled")
    ]
    assert set(edge["inactive_close_user_ids"]) == {u["id"] for u in org.inactive_users}
    for key in ("unmatched_user", "disabled_user", "inactive_close_user"):
        assert edge[key + "_ids"] and set(edge[key + "_ids"]) <= everyone
        assert edge[key + "_id"] == edge[key + "_ids"][0]
    owners = {x["created_by"] for x in org.leads} | {a["user_id"] for a in org.activities}
    assert (
        set(edge["unmatched_user_ids"] + edge["disabled_user_ids"] + edge["inactive_close_user_ids"])
        <= owners
    )


def everyone_in_order(org: CloseOrg) -> list[str]:
    """User ids in creation order (Close lists active and inactive users apart)."""
    return [u["id"] for u in sorted(org.users + org.inactive_users, key=lambda u: u["date_created"])]


def test_counts_follow_the_shape(orgs: dict[str, CloseOrg]) -> None:
    for name, o in orgs.items():
        shape = SHAPES[name]
        counts = o.truth["counts"]
        assert counts["lead_statuses"] == len(shape.lead_statuses)
        assert counts["pipelines"] == len(shape.pipelines)
        assert counts["users"] == len(shape.users)
        assert counts["custom_activity_types"] == len(shape.activity_types)
        with_instances = {t.name for t in shape.activity_types if t.share > 0}
        used = {a["custom_activity_type_id"] for a in o.activities if a["_type"] == "CustomActivity"}
        assert {t["name"] for t in o.custom_activity_types if t["id"] in used} == with_instances


# ---------------------------------------------------------------- command lines and the Close emulator


def test_cli_prints_the_shape_summary(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["--size", "tiny", "--seed", "1", "--org", "pacifica"]) == 0
    out = capsys.readouterr().out.strip()
    assert out == org_summary(generate("tiny", 1, org="pacifica"))
    assert "pacifica" in out
    with pytest.raises(SystemExit):
        cli_main(["--org", "acme"])


def test_close2d365_commands_take_an_org_option() -> None:
    parser = build_parser()
    for command in ("demo", "emulators"):
        assert parser.parse_args([command]).org == DEFAULT_SHAPE
        assert parser.parse_args([command, "--org", "nordlicht"]).org == "nordlicht"
        with pytest.raises(SystemExit):
            parser.parse_args([command, "--org", "acme"])


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[CloseOrg, httpx.Client]]:
    org = generate("tiny", 1, org="pacifica")
    cfg = CloseEmulatorConfig()
    cfg.rate_limit.enabled = False
    with (
        CloseEmulatorServer(org, cfg) as srv,
        httpx.Client(base_url=srv.base_url, auth=(org.api_key, ""), timeout=10) as client,
    ):
        yield org, client


def test_close_emulator_serves_a_non_default_shape(served: tuple[CloseOrg, httpx.Client]) -> None:
    org, api = served
    statuses = api.get("status/lead/").raise_for_status().json()["data"]
    assert [s["label"] for s in statuses] == ["Qualifié – en cours", "Converted", "No contactar"]
    pipelines = api.get("pipeline/").raise_for_status().json()["data"]
    assert [p["name"] for p in pipelines] == [p["name"] for p in org.pipelines]
    assert len(pipelines) == 4
    types = api.get("custom_activity/").raise_for_status().json()["data"]
    assert {t["name"]: t["is_archived"] for t in types} == {
        t["name"]: t["is_archived"] for t in org.custom_activity_types
    }
    org_id = api.get("me/").raise_for_status().json()["organizations"][0]
    organization = api.get(f"organization/{org_id}/").raise_for_status().json()
    assert organization["name"] == "Pacífica Soluciones, S.L. – Groupe Côte d'Azur"
    assert organization["currency"] == "GBP"
