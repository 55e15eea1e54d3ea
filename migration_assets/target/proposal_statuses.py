"""Proposed `lead_status.yaml` and `pipelines.yaml` for a Close org (pure; `target/propose.py` writes the files).

Lead statuses: each Close label gets a Dataverse lead statecode/statuscode from keyword rules in several
languages (matched without accents or case, on whole words); a label no rule matches is proposed as
Open / New with a `review:` item. Pipelines and their statuses keep Close's display order and won/lost
type, and each status gets the stage of the sales process (the business process flow named by
`sales_process`, the shipped one by default) its salesstage means, for review; their option values (the
choice columns' values, used by the mapping's choice sets and the schema plan) are never renumbered once
written: a re-run keeps them and numbers only new entries.

Merging with an existing file: an entry already in the file keeps what it says (a reviewed decision, or a
pending `review:`), entries new in Close are added, and entries gone from Close are dropped with a note.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence
from typing import Any

from migration_assets.mapping.files import SHIPPED_SALES_PROCESS, SHIPPED_STAGES
from migration_assets.mapping.yaml_loc import REVIEW_KEY

LEAD_CHOICES = (
    "Open 0 -> New 1, Contacted 2; Qualified 1 -> Qualified 3; Disqualified 2 -> Lost 4, "
    "Cannot Contact 5, No Longer Interested 6, Canceled 7"
)

# (words or phrases, statecode, statuscode, meaning), first match wins, so negations ("not interested",
# "nicht interessiert", "do not contact") come before the words they contain. Matched on the label folded
# by `fold` (accents removed, lower case, punctuation as spaces), as whole words: English, German, French,
# Spanish, Italian, Portuguese, Dutch.
LEAD_RULES: tuple[tuple[tuple[str, ...], int, int, str], ...] = (
    (
        (
            "do not contact",
            "dont contact",
            "don t contact",
            "cannot contact",
            "can t contact",
            "unreachable",
            "not reachable",
            "no answer",
            "bounced",
            "opt out",
            "opted out",
            "optout",
            "unsubscribed",
            "nicht kontaktieren",
            "nicht erreichbar",
            "kein kontakt",
            "unerreichbar",
            "ne pas contacter",
            "injoignable",
            "no contactar",
            "no contactable",
            "ilocalizable",
            "inalcanzable",
            "non contattare",
            "irraggiungibile",
            "nao contactar",
            "nao contatar",
            "inacessivel",
            "niet contacteren",
            "niet bereikbaar",
            "onbereikbaar",
        ),
        2,
        5,
        "Disqualified / Cannot Contact",
    ),
    (
        (
            "cancel",
            "canceled",
            "cancelled",
            "storniert",
            "gekundigt",
            "gekuendigt",
            "annule",
            "annulee",
            "cancelado",
            "cancelada",
            "annullato",
            "annullata",
            "cancellato",
            "geannuleerd",
            "opgezegd",
        ),
        2,
        7,
        "Disqualified / Canceled",
    ),
    (
        (
            "not interested",
            "no longer interested",
            "uninterested",
            "unqualified",
            "disqualified",
            "not qualified",
            "churn",
            "churned",
            "nicht interessiert",
            "kein interesse",
            "disqualifiziert",
            "nicht qualifiziert",
            "pas interesse",
            "pas interessee",
            "plus interesse",
            "non interesse",
            "disqualifie",
            "non qualifie",
            "no interesado",
            "no interesada",
            "sin interes",
            "descalificado",
            "no calificado",
            "non interessato",
            "non interessata",
            "squalificato",
            "non qualificato",
            "nao interessado",
            "nao interessada",
            "sem interesse",
            "desqualificado",
            "nao qualificado",
            "niet geinteresseerd",
            "geen interesse",
            "gediskwalificeerd",
            "niet gekwalificeerd",
        ),
        2,
        6,
        "Disqualified / No Longer Interested",
    ),
    (
        (
            "lost",
            "closed lost",
            "bad fit",
            "junk",
            "spam",
            "dead",
            "rejected",
            "declined",
            "verloren",
            "abgelehnt",
            "abgesagt",
            "perdu",
            "perdue",
            "refuse",
            "perdido",
            "perdida",
            "rechazado",
            "perso",
            "persa",
            "rifiutato",
            "recusado",
            "afgewezen",
        ),
        2,
        4,
        "Disqualified / Lost",
    ),
    (
        (
            "qualified",
            "customer",
            "client",
            "won",
            "closed won",
            "converted",
            "signed",
            "kunde",
            "gewonnen",
            "qualifiziert",
            "konvertiert",
            "qualifie",
            "qualifiee",
            "gagne",
            "converti",
            "convertie",
            "cliente",
            "ganado",
            "calificado",
            "cualificado",
            "convertido",
            "vinto",
            "qualificato",
            "convertito",
            "ganho",
            "qualificado",
            "klant",
            "gekwalificeerd",
            "geconverteerd",
        ),
        1,
        3,
        "Qualified",
    ),
    (
        (
            "contacted",
            "interested",
            "engaged",
            "working",
            "nurture",
            "nurturing",
            "follow up",
            "followup",
            "demo",
            "meeting",
            "in progress",
            "kontaktiert",
            "interessiert",
            "in bearbeitung",
            "contacte",
            "contactee",
            "interesse",
            "interessee",
            "en cours",
            "contactado",
            "contactada",
            "interesado",
            "interesada",
            "en curso",
            "en progreso",
            "contattato",
            "contattata",
            "interessato",
            "interessata",
            "in corso",
            "contatado",
            "interessado",
            "em andamento",
            "gecontacteerd",
            "geinteresseerd",
            "in behandeling",
        ),
        0,
        2,
        "Open / Contacted",
    ),
    (
        (
            "new",
            "potential",
            "lead",
            "prospect",
            "open",
            "cold",
            "untouched",
            "neu",
            "offen",
            "nouveau",
            "nouvelle",
            "nuevo",
            "nueva",
            "abierto",
            "potencial",
            "nuovo",
            "nuova",
            "aperto",
            "potenziale",
            "novo",
            "nova",
            "aberto",
            "nieuw",
            "potentieel",
        ),
        0,
        1,
        "Open / New",
    ),
)


def fold(label: str) -> str:
    """Accents removed, lower case, every non-alphanumeric run as one space ("Qualifié" -> "qualifie")."""
    text = unicodedata.normalize("NFKD", label)
    text = "".join(c for c in text if not unicodedata.combining(c)).casefold()
    return " ".join(re.findall(r"[a-z0-9]+", text))


def _has(text: str, phrase: str) -> bool:
    return re.search(rf"(?<![a-z0-9]){re.escape(phrase)}(?![a-z0-9])", text) is not None


def guess_lead_state(label: str) -> tuple[int, int, str | None]:
    """(statecode, statuscode, rule) for a Close lead status label; rule None when no rule matched (then
    Open / New, to be reviewed)."""
    text = fold(label)
    for phrases, state, status, meaning in LEAD_RULES:
        hit = next((p for p in phrases if _has(text, p)), None)
        if hit is not None:
            return state, status, f"{meaning} (matched {hit!r})"
    return 0, 1, None


def _label_key(label: str) -> str:
    return " ".join(str(label).split()).casefold()


def propose_lead_statuses(lead_statuses: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """{label: {statecode, statuscode[, review]}} in the given (display) order; labels differing only by
    case or spaces are one entry (the mapping matches labels that way)."""
    out: dict[str, dict[str, Any]] = {}
    seen: set[str] = set()
    for status in lead_statuses:
        label = str(status["label"])
        if _label_key(label) in seen:
            continue
        seen.add(_label_key(label))
        state, code, rule = guess_lead_state(label)
        entry: dict[str, Any] = {"statecode": state, "statuscode": code}
        if rule is None:
            entry[REVIEW_KEY] = (
                f"no rule knows the label {label!r}: proposed Open / New. Set the "
                f"statecode/statuscode pair it means ({LEAD_CHOICES})"
            )
        out[label] = entry
    return out


def merge_lead_status(
    existing: Mapping[str, Any] | None, proposed: Mapping[str, dict[str, Any]]
) -> tuple[dict[str, Any], list[str]]:
    """The lead_status.yaml body: existing entries kept as they are, new labels added, gone ones dropped."""
    existing = dict(existing or {})
    old = {_label_key(k): (k, v) for k, v in (existing.get("statuses") or {}).items()}
    statuses: dict[str, Any] = {}
    for label, entry in proposed.items():
        statuses[label] = old.pop(_label_key(label), (label, entry))[1]
    notes = [
        f"lead status {label!r} is no longer in Close: dropped from lead_status.yaml"
        for label, _ in old.values()
    ]
    body = {
        "original_label_column": existing.get("original_label_column", "{prefix}_closeoriginalstatus"),
        "statuses": statuses,
        "unmapped": existing.get("unmapped", "reject"),
    }
    return body, notes


def salesstage(position: int, n_active: int, kind: str) -> int:
    """Active statuses spread over Qualify/Develop/Propose (0-2) by their order; won/lost -> Close (3)."""
    if kind != "active":
        return 3
    return min(2, position * 3 // max(1, n_active))


def _index(entries: Sequence[Mapping[str, Any]], name_key: str) -> tuple[dict[str, Any], dict[str, Any]]:
    by_id = {str(e["close_id"]): e for e in entries if e.get("close_id")}
    by_name = {_label_key(str(e.get(name_key, ""))): e for e in entries}
    return by_id, by_name


def _match(obj_id: str, name: str, by_id: dict[str, Any], by_name: dict[str, Any]) -> Any | None:
    return by_id.get(obj_id) or by_name.get(_label_key(name))


def merge_pipelines(
    existing: Mapping[str, Any] | None, pipelines: Sequence[Mapping[str, Any]], option_value_prefix: int
) -> tuple[dict[str, Any], list[str]]:
    """The pipelines.yaml body for the org's pipelines (GET /pipeline/ objects in display order, statuses
    embedded in display order). An existing pipeline/status (same Close id, else same name/label) keeps
    its option value, salesstage and probability; new ones get the next free option values."""
    existing = dict(existing or {})
    old_pipes = list(existing.get("pipelines") or [])
    base = option_value_prefix * 10000
    used = {
        "pipe": {int(p["option"]) for p in old_pipes if "option" in p},
        "stat": {int(s["option"]) for p in old_pipes for s in p.get("statuses") or [] if "option" in s},
    }

    def next_option(kind: str) -> int:
        value = max(used[kind], default=base - 1) + 1
        used[kind].add(value)
        return value

    pipe_by_id, pipe_by_name = _index(old_pipes, "name")
    kept_pipes: set[int] = set()
    out_pipes: list[dict[str, Any]] = []
    notes: list[str] = []
    for pipe in pipelines:
        old = _match(str(pipe.get("id", "")), str(pipe["name"]), pipe_by_id, pipe_by_name)
        if old is not None:
            kept_pipes.add(id(old))
        old_statuses = list((old or {}).get("statuses") or [])
        st_by_id, st_by_label = _index(old_statuses, "label")
        kept: set[int] = set()
        statuses = list(pipe.get("statuses") or [])
        n_active = sum(1 for s in statuses if (s.get("type") or "active") == "active")
        entries, active_pos = [], 0
        for s in statuses:
            kind = str(s.get("type") or "active")
            prev = _match(str(s.get("id", "")), str(s["label"]), st_by_id, st_by_label)
            entry: dict[str, Any] = {"label": str(s["label"]), "type": kind}
            if prev is not None:
                kept.add(id(prev))
                entry["option"] = int(prev["option"])
                same_kind = prev.get("type") == kind
                entry["salesstage"] = (
                    prev["salesstage"] if same_kind else salesstage(active_pos, n_active, kind)
                )
                # A file from before `stage` existed gets the stage its (reviewed) salesstage means.
                entry["stage"] = (
                    prev.get("stage") or SHIPPED_STAGES[int(prev["salesstage"])]
                    if same_kind
                    else SHIPPED_STAGES[entry["salesstage"]]
                )
                if prev.get("probability") is not None:
                    entry["probability"] = prev["probability"]
            else:
                stage = salesstage(active_pos, n_active, kind)
                entry.update(option=next_option("stat"), salesstage=stage, stage=SHIPPED_STAGES[stage])
            entry["close_id"] = str(s.get("id", ""))
            entries.append(entry)
            active_pos += kind == "active"
        notes += [
            f"opportunity status {pipe['name']!r} / {s.get('label')!r} is no longer in Close: dropped "
            "from pipelines.yaml"
            for s in old_statuses
            if id(s) not in kept
        ]
        option = int(old["option"]) if old is not None else next_option("pipe")
        out_pipes.append(
            {
                "name": str(pipe["name"]),
                "option": option,
                "close_id": str(pipe.get("id", "")),
                "statuses": entries,
            }
        )
    notes += [
        f"pipeline {p.get('name')!r} is no longer in Close: dropped from pipelines.yaml"
        for p in old_pipes
        if id(p) not in kept_pipes
    ]
    body = {
        "pipeline_column": existing.get("pipeline_column", "{prefix}_closepipeline"),
        "status_column": existing.get("status_column", "{prefix}_closestatus"),
        "won": existing.get("won", {"statecode": 1, "statuscode": 3}),
        "lost": existing.get("lost", {"statecode": 2, "statuscode": 4}),
        "sales_process": existing.get("sales_process", SHIPPED_SALES_PROCESS),
        "pipelines": out_pipes,
    }
    return body, notes


LEAD_STATUS_HELP = f"""\
# Close lead status label -> Dataverse lead statecode/statuscode, in Close's display order. Valid pairs:
# {LEAD_CHOICES}.
# Labels are matched ignoring case and surrounding spaces; the Close label itself is kept in
# original_label_column. unmapped: reject (a lead with a label not listed is rejected) or a pair.
"""

PIPELINES_HELP = """\
# Close pipelines and opportunity statuses -> choice columns on opportunity, in Close's display order.
# option: the choice value of the pipeline / status (kept across re-runs: records already loaded use it).
# salesstage (0 Qualify, 1 Develop, 2 Propose, 3 Close) is spread over the active statuses in order; adjust
# it if your stages mean otherwise. Won/lost opportunities are closed by Win/LoseOpportunity (won/lost).
# sales_process: the business process flow (workflow uniquename) each opportunity is placed on; the shipped
# "Opportunity Sales Process" (opportunitysalesprocess) has the stages Qualify, Develop, Propose, Close.
# stage: the stage an open opportunity of that status is at (a stage name of sales_process; proposed from
# salesstage). Won/lost opportunities are always at the last stage, finished.
"""
