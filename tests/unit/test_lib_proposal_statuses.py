"""Lead status and pipeline proposals: multilingual rules, review flags, display order, merge."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from migration_assets.mapping.files import parse_lead_status, parse_pipelines
from migration_assets.mapping.yaml_loc import load_located
from migration_assets.target.proposal_statuses import (
    guess_lead_state,
    merge_lead_status,
    merge_pipelines,
    propose_lead_statuses,
)


@pytest.mark.parametrize(
    ("label", "pair"),
    [
        ("Potential", (0, 1)),
        ("Contacted", (0, 2)),
        ("Interested", (0, 2)),
        ("Qualified", (1, 3)),
        ("Customer", (1, 3)),
        ("Bad Fit", (2, 4)),
        ("Not Interested", (2, 6)),
        ("Canceled", (2, 7)),
        ("Unreachable", (2, 5)),
        ("Converted", (1, 3)),
        ("Do Not Contact", (2, 5)),
        ("do-not-contact", (2, 5)),
        # German, French, Spanish, Italian, Portuguese, Dutch; accents and case do not matter
        ("Kunde", (1, 3)),
        ("Gewonnen", (1, 3)),
        ("Nicht interessiert", (2, 6)),
        ("Interessiert", (0, 2)),
        ("Nicht kontaktieren", (2, 5)),
        ("Verloren", (2, 4)),
        ("Neu", (0, 1)),
        ("Perdu", (2, 4)),
        ("Qualifié", (1, 3)),
        ("QUALIFIE", (1, 3)),
        ("Pas intéressé", (2, 6)),
        ("Ne pas contacter", (2, 5)),
        ("Annulé", (2, 7)),
        ("Nouveau", (0, 1)),
        ("No contactar", (2, 5)),
        ("Cliente", (1, 3)),
        ("No interesado", (2, 6)),
        ("Contactado", (0, 2)),
        ("Perdido", (2, 4)),
        ("Cancelado", (2, 7)),
        ("Non interessato", (2, 6)),
        ("Vinto", (1, 3)),
        ("Non contattare", (2, 5)),
        ("Perso", (2, 4)),
        ("Não interessado", (2, 6)),
        ("Ganho", (1, 3)),
        ("Não contactar", (2, 5)),
        ("Klant", (1, 3)),
        ("Niet geïnteresseerd", (2, 6)),
        ("Gecontacteerd", (0, 2)),
        ("Nieuw", (0, 1)),
    ],
)
def test_lead_rules_in_several_languages(label: str, pair: tuple[int, int]) -> None:
    state, status, rule = guess_lead_state(label)
    assert (state, status) == pair and rule is not None


def test_words_not_fragments() -> None:
    # "won" inside "wonderful", "lost" inside "lostock": no rule matches, so Open / New with a review.
    assert guess_lead_state("Wonderful")[2] is None and guess_lead_state("Lostock Group")[2] is None


def test_review_only_where_the_proposal_guesses() -> None:
    proposed = propose_lead_statuses([{"label": "Kunde"}, {"label": "Gesperrt"}, {"label": " kunde "}])
    assert list(proposed) == ["Kunde", "Gesperrt"], "display order kept, case/space duplicates are one entry"
    assert "review" not in proposed["Kunde"]
    assert proposed["Gesperrt"]["statecode"] == 0 and proposed["Gesperrt"]["statuscode"] == 1
    assert (
        "Gesperrt" in proposed["Gesperrt"]["review"] and "Cannot Contact 5" in proposed["Gesperrt"]["review"]
    )


def _load_lead(tmp_path: Path, body: dict) -> object:
    (tmp_path / "lead_status.yaml").write_text(yaml.safe_dump(body, allow_unicode=True))
    return parse_lead_status(load_located(tmp_path / "lead_status.yaml", "l"), "l", "c2d")


def test_lead_merge_keeps_decisions_adds_new_and_drops_gone(tmp_path: Path) -> None:
    first, _ = merge_lead_status(
        None, propose_lead_statuses([{"label": "Neu"}, {"label": "Gesperrt"}, {"label": "Alt"}])
    )
    # The reviewer decides Gesperrt, and sets unmapped.
    first["statuses"]["Gesperrt"] = {"statecode": 2, "statuscode": 5}
    first["unmapped"] = {"statecode": 0, "statuscode": 1}
    again, notes = merge_lead_status(
        first, propose_lead_statuses([{"label": "Neu"}, {"label": "GESPERRT"}, {"label": "Sonstiges"}])
    )
    assert again["statuses"]["GESPERRT"] == {"statecode": 2, "statuscode": 5}
    assert "review" in again["statuses"]["Sonstiges"] and "Alt" not in again["statuses"]
    assert notes == ["lead status 'Alt' is no longer in Close: dropped from lead_status.yaml"]
    assert again["unmapped"] == {"statecode": 0, "statuscode": 1}
    lead = _load_lead(tmp_path, again)  # a file under review still parses
    assert lead.statuses["GESPERRT"] == (2, 5)  # type: ignore[attr-defined]


def _pipe(pid: str, name: str, statuses: list[tuple[str, str, str]]) -> dict:
    return {"id": pid, "name": name, "statuses": [{"id": i, "label": lb, "type": t} for i, lb, t in statuses]}


def test_pipelines_keep_display_order_won_lost_and_options(tmp_path: Path) -> None:
    # Display order differs from id order: z before a.
    pipes = [
        _pipe(
            "pipe_z",
            "Vertrieb",
            [
                ("stat_9", "Erstkontakt", "active"),
                ("stat_1", "Angebot", "active"),
                ("stat_5", "Gewonnen", "won"),
                ("stat_2", "Verloren", "lost"),
            ],
        ),
        _pipe("pipe_a", "Partner", [("stat_7", "Intro", "active"), ("stat_3", "Signed", "won")]),
    ]
    body, notes = merge_pipelines(None, pipes, 72700)
    assert notes == []
    assert [p["name"] for p in body["pipelines"]] == ["Vertrieb", "Partner"]
    first = body["pipelines"][0]["statuses"]
    assert [(s["label"], s["type"], s["salesstage"]) for s in first] == [
        ("Erstkontakt", "active", 0),
        ("Angebot", "active", 1),
        ("Gewonnen", "won", 3),
        ("Verloren", "lost", 3),
    ]
    assert [p["option"] for p in body["pipelines"]] == [727000000, 727000001]
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(body, allow_unicode=True))
    parsed = parse_pipelines(load_located(tmp_path / "p.yaml", "p"), "p", "c2d", 72700)
    assert [s.option for p in parsed.pipelines for s in p.statuses] == list(range(727000000, 727000006))

    # The org changes: a status renamed (same id), one added first, one deleted, a pipeline deleted.
    body["pipelines"][0]["statuses"][1]["salesstage"] = 2  # a reviewed decision
    changed = [
        _pipe(
            "pipe_z",
            "Vertrieb",
            [
                ("stat_8", "Neu", "active"),
                ("stat_9", "Erstkontakt", "active"),
                ("stat_1", "Angebot gesendet", "active"),
                ("stat_5", "Gewonnen", "won"),
            ],
        )
    ]
    again, notes = merge_pipelines(body, changed, 72700)
    statuses = again["pipelines"][0]["statuses"]
    assert [(s["label"], s["option"]) for s in statuses] == [
        ("Neu", 727000006),
        ("Erstkontakt", 727000000),
        ("Angebot gesendet", 727000001),
        ("Gewonnen", 727000002),
    ]
    assert statuses[2]["salesstage"] == 2, "a reviewed salesstage is kept"
    assert sorted(notes) == [
        "opportunity status 'Vertrieb' / 'Verloren' is no longer in Close: dropped from pipelines.yaml",
        "pipeline 'Partner' is no longer in Close: dropped from pipelines.yaml",
    ]
