"""Tests of the synthetic Close org: shapes, references, truth (recounted independently), edge cases."""

from __future__ import annotations

import json
import re
import unicodedata
import zlib
from collections import Counter
from datetime import datetime

import pytest

from emulators.orgdata import SIZES, CloseOrg, FileBlob, OrgDataError, generate, org_summary
from emulators.orgdata.__main__ import main as cli_main

CLASSIC_TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00$")
SECONDS_TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00$")
NAIVE_TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}$")
DATE = re.compile(r"^\d{4}-\d\d-\d\d$")
CF_TYPES = {"text", "textarea", "number", "date", "datetime", "choices", "user", "contact", "hidden"}


def id_re(prefix: str, length: int) -> re.Pattern[str]:
    return re.compile(rf"^{prefix}_[0-9A-Za-z]{{{length}}}$")


@pytest.fixture(scope="module")
def org() -> CloseOrg:
    return generate("tiny", 1)


def norm(name: str | None) -> str:
    # Written independently of the generator's helper: casefold, trim, collapse any whitespace run.
    return re.sub(r"\s+", " ", (name or "").casefold()).strip()


def parse(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp)


# ---------------------------------------------------------------- API surface and determinism


def test_sizes_and_bad_arguments() -> None:
    assert SIZES == ("tiny", "demo", "typical", "large")
    with pytest.raises(OrgDataError, match="unknown org size 'huge'"):
        generate("huge", 1)
    with pytest.raises(OrgDataError, match="seed must be an integer"):
        generate("tiny", "1")  # type: ignore[arg-type]


def test_deterministic_and_seed_sensitive(org: CloseOrg) -> None:
    again = generate("tiny", 1)
    assert again == org
    assert json.dumps(again.leads, sort_keys=True) == json.dumps(org.leads, sort_keys=True)
    other = generate("tiny", 2)
    assert other.api_key != org.api_key
    assert {x["id"] for x in other.leads}.isdisjoint({x["id"] for x in org.leads})


def test_everything_is_json_serialisable(org: CloseOrg) -> None:
    for name in (
        "organization",
        "users",
        "leads",
        "contacts",
        "opportunities",
        "activities",
        "tasks",
        "events",
    ):
        json.dumps(getattr(org, name))


def test_sizes_scale() -> None:
    demo = generate("demo", 3)
    assert demo.truth["counts"]["leads"] == 500
    assert len(demo.activities) >= 2_900


# ---------------------------------------------------------------- ids and timestamps


def test_ids_have_real_prefixes_lengths_and_are_unique(org: CloseOrg) -> None:
    checks: list[tuple[str, re.Pattern[str]]] = [(org.organization["id"], id_re("orga", 43))]
    checks += [(u["id"], id_re("user", 43)) for u in org.users + org.inactive_users]
    checks += [(s["id"], id_re("stat", 43)) for s in org.lead_statuses + org.opportunity_statuses]
    checks += [(p["id"], id_re("pipe", 22)) for p in org.pipelines]
    checks += [(f["id"], id_re("cf", 43)) for fs in org.custom_fields.values() for f in fs]
    checks += [(t["id"], id_re("actitype", 22)) for t in org.custom_activity_types]
    checks += [(x["id"], id_re("lead", 43)) for x in org.leads]
    checks += [(x["id"], id_re("cont", 43)) for x in org.contacts]
    checks += [(x["id"], id_re("oppo", 43)) for x in org.opportunities]
    checks += [(x["id"], id_re("acti", 43)) for x in org.activities]
    checks += [(t["id"], id_re("task" if t["_type"] == "lead" else "noti", 43)) for t in org.tasks]
    checks += [(s["id"], id_re("seq", 22)) for s in org.sequences]
    checks += [(st["id"], id_re("seqstep", 22)) for s in org.sequences for st in s["steps"]]
    checks += [(s["id"], id_re("sub", 22)) for s in org.sequence_subscriptions]
    checks += [(s["id"], id_re("save", 43)) for s in org.smart_views]
    checks += [(e["id"], id_re("ev", 22)) for e in org.events]
    for value, pattern in checks:
        assert pattern.match(value), value
    ids = [v for v, _ in checks]
    assert len(ids) == len(set(ids))
    assert re.match(r"^api_[0-9A-Za-z]+$", org.api_key)


def test_timestamp_formats(org: CloseOrg) -> None:
    classic = org.users + org.inactive_users + org.leads + org.contacts + org.opportunities + org.tasks
    classic += org.smart_views + [f for fs in org.custom_fields.values() for f in fs] + [org.organization]
    for obj in classic:
        assert CLASSIC_TS.match(obj["date_created"]), obj["date_created"]
        assert CLASSIC_TS.match(obj["date_updated"]), obj["date_updated"]
    for a in org.activities:
        assert CLASSIC_TS.match(a["date_updated"])
        fmt = SECONDS_TS if a["_type"] == "Meeting" else CLASSIC_TS  # real meetings have no fraction
        assert fmt.match(a["activity_at"]) and fmt.match(a["date_created"]), a
    naive = (
        org.pipelines + org.custom_activity_types + org.sequences + org.sequence_subscriptions + org.events
    )
    naive += [st for s in org.sequences for st in s["steps"]]
    for obj in naive:
        assert NAIVE_TS.match(obj["date_created"]) and NAIVE_TS.match(obj["date_updated"]), obj["id"]
    for o in org.opportunities:
        for key in ("date_won", "date_lost"):
            assert o[key] is None or DATE.match(o[key])
    for t in org.tasks:
        assert DATE.match(t["date"]) and DATE.match(t["due_date"])


# ---------------------------------------------------------------- references and consistency


def test_records_reference_existing_objects(org: CloseOrg) -> None:
    leads = {x["id"]: x for x in org.leads}
    contact_lead = {c["id"]: c["lead_id"] for c in org.contacts}
    user_ids = {u["id"] for u in org.users + org.inactive_users}
    for lead in org.leads:
        assert not {"contacts", "opportunities", "tasks", "contact_ids"} & lead.keys()
        assert lead["created_by"] in user_ids
    for c in org.contacts:
        assert c["lead_id"] in leads
    for a in org.activities:
        lead = leads[a["lead_id"]]
        assert parse(a["date_created"]) >= parse(lead["date_created"]), a["id"]
        if a["contact_id"] is not None:
            assert contact_lead[a["contact_id"]] == a["lead_id"]
        if a["user_id"] is None:
            assert a["_type"] == "Call" and a["disposition"] == "vm-left" and a["direction"] == "inbound"
        else:
            assert a["user_id"] in user_ids
    for t in org.tasks:
        assert t["lead_id"] in leads and t["assigned_to"] in user_ids


def test_opportunity_money_and_status_consistency(org: CloseOrg) -> None:
    statuses = {s["id"]: s for s in org.opportunity_statuses}
    pipelines = {p["id"]: p for p in org.pipelines}
    contact_lead = {c["id"]: c["lead_id"] for c in org.contacts}
    for o in org.opportunities:
        status = statuses[o["status_id"]]
        assert status["pipeline_id"] == o["pipeline_id"]
        assert pipelines[o["pipeline_id"]]["name"] == o["pipeline_name"]
        assert (status["label"], status["type"]) == (o["status_label"], o["status_type"])
        assert isinstance(o["value"], int)
        annual = o["value"] * 12 if o["value_period"] == "monthly" else o["value"]
        assert o["annualized_value"] == annual
        assert o["expected_value"] == o["value"] * o["confidence"] // 100
        assert o["annualized_expected_value"] == annual * o["confidence"] // 100
        assert o["value_period"] in ("one_time", "monthly", "annual")
        assert o["value_currency"] in ("USD", "EUR", "GBP")
        if o["status_type"] == "won":
            assert o["date_won"] and o["date_lost"] is None and o["confidence"] == 100
        elif o["status_type"] == "lost":
            assert o["date_lost"] and o["date_won"] is None and o["confidence"] == 0
        else:
            assert o["date_lost"] is None
        if o["contact_id"]:
            assert contact_lead[o["contact_id"]] == o["lead_id"]
    one = next(o for o in org.opportunities if o["value"] % 100 == 0 and o["value_period"] == "monthly")
    assert one["value_formatted"].endswith(" monthly")


def test_pipelines_and_statuses(org: CloseOrg) -> None:
    assert len(org.pipelines) >= 2
    assert {"Sales", "Renewals"} <= {p["name"] for p in org.pipelines}
    embedded = {(s["id"], p["id"]) for p in org.pipelines for s in p["statuses"]}
    assert embedded == {(s["id"], s["pipeline_id"]) for s in org.opportunity_statuses}
    for p in org.pipelines:
        assert {s["type"] for s in p["statuses"]} == {"active", "won", "lost"}
    labels = [s["label"] for s in org.lead_statuses]
    assert labels[:5] == ["Potential", "Contacted", "Qualified", "Customer", "Bad Fit"]
    assert org.organization["lead_statuses"] == [
        {"id": s["id"], "label": s["label"]} for s in org.lead_statuses
    ]


def test_status_change_history_ends_at_current_status(org: CloseOrg) -> None:
    leads = {x["id"]: x for x in org.leads}
    last: dict[str, dict] = {}
    for a in org.activities:
        if a["_type"] == "LeadStatusChange":
            if a["lead_id"] not in last or a["activity_at"] >= last[a["lead_id"]]["activity_at"]:
                last[a["lead_id"]] = a
    assert last
    for lead_id, change in last.items():
        assert change["new_status_id"] == leads[lead_id]["status_id"]
        assert change["old_status_id"] != change["new_status_id"]
    opps = {o["id"]: o for o in org.opportunities}
    osc = [a for a in org.activities if a["_type"] == "OpportunityStatusChange"]
    assert osc
    for a in osc:
        assert a["opportunity_id"] in opps and a["lead_id"] == opps[a["opportunity_id"]]["lead_id"]


# ---------------------------------------------------------------- truth recounted independently


def test_truth_counts_match_an_independent_recount(org: CloseOrg) -> None:
    by_type = Counter(a["_type"] for a in org.activities)
    expected = {
        "users": len(org.users) + len(org.inactive_users),
        "roles": len(org.roles),
        "lead_statuses": len(org.lead_statuses),
        "pipelines": len(org.pipelines),
        "opportunity_statuses": len(org.opportunity_statuses),
        "custom_fields": sum(len(v) for v in org.custom_fields.values()),
        "custom_activity_types": len(org.custom_activity_types),
        "leads": len(org.leads),
        "contacts": len(org.contacts),
        "opportunities": len(org.opportunities),
        "calls": by_type["Call"],
        "emails": by_type["Email"],
        "email_threads": by_type["EmailThread"],
        "sms": by_type["SMS"],
        "meetings": by_type["Meeting"],
        "notes": by_type["Note"],
        "status_changes": by_type["LeadStatusChange"] + by_type["OpportunityStatusChange"],
        "tasks": len(org.tasks),
        "custom_activities": by_type["CustomActivity"],
        "attachments": sum(len(a["attachments"]) for a in org.activities if a["_type"] in ("Email", "Note")),
        "call_recordings": sum(1 for a in org.activities if a["_type"] == "Call" and a["has_recording"]),
        "sequences": len(org.sequences),
        "smart_views": len(org.smart_views),
    }
    assert org.truth["counts"] == expected
    assert set(by_type) == {
        "Call",
        "Email",
        "EmailThread",
        "SMS",
        "Meeting",
        "Note",
        "LeadStatusChange",
        "OpportunityStatusChange",
        "CustomActivity",
    }
    assert all(v > 0 for v in expected.values())
    assert sum(len(a["attachments"]) for a in org.activities if a["_type"] == "Note") > 0


def test_activity_mix_roughly_as_specified(org: CloseOrg) -> None:
    by_type = Counter(a["_type"] for a in org.activities)
    total = len(org.activities)
    assert (by_type["Email"] + by_type["EmailThread"]) / total == pytest.approx(0.35, abs=0.03)
    assert by_type["Call"] / total == pytest.approx(0.25, abs=0.03)
    assert by_type["Note"] / total == pytest.approx(0.15, abs=0.03)


def test_lead_name_edge_cases(org: CloseOrg) -> None:
    edge = org.truth["edge_cases"]
    leads = {x["id"]: x for x in org.leads}
    unnamed = [leads[i]["name"] for i in edge["unnamed_lead_ids"]]
    assert "" in unnamed and None in unnamed
    assert set(edge["unnamed_lead_ids"]) == {x["id"] for x in org.leads if not norm(x["name"])}
    groups = edge["duplicate_name_groups"]
    recount: dict[str, list[str]] = {}
    for x in org.leads:
        if norm(x["name"]):
            recount.setdefault(norm(x["name"]), []).append(x["id"])
    assert sorted(map(sorted, groups)) == sorted(sorted(v) for v in recount.values() if len(v) > 1)
    assert org.truth["distinct_normalised_lead_names"] == len(recount)
    acme = next(g for g in groups if norm(leads[g[0]]["name"]) == "acme corp")
    raw = {leads[i]["name"] for i in acme}
    assert {"Acme Corp", "ACME corp ", "acme  corp"} <= raw and len(raw) == len(acme)
    scripts = " ".join(
        unicodedata.name(ch, "") for i in edge["non_latin_lead_ids"] for ch in leads[i]["name"]
    )
    for script in ("CYRILLIC", "CJK", "ARABIC", "GREEK", "LATIN SMALL LETTER E WITH ACUTE"):
        assert script in scripts


def test_overlong_values_are_real(org: CloseOrg) -> None:
    tables = {
        "lead": org.leads,
        "contact": org.contacts,
        "opportunity": org.opportunities,
        "call": [a for a in org.activities if a["_type"] == "Call"],
    }
    found = {(v["object"], v["field"]): v for v in org.truth["edge_cases"]["overlong_values"]}
    for v in found.values():
        row = next(r for r in tables[v["object"]] if r["id"] == v["id"])
        assert len(row[v["field"]]) == v["length"]
    assert found[("lead", "name")]["length"] > 160
    assert found[("lead", "description")]["length"] > 2000
    assert found[("contact", "title")]["length"] > 128
    assert found[("opportunity", "note")]["length"] > 2000


def test_contact_email_and_phone_edge_cases(org: CloseOrg) -> None:
    edge = org.truth["edge_cases"]
    contacts = {c["id"]: c for c in org.contacts}
    bad = {e["email"] for i in edge["invalid_email_contact_ids"] for e in contacts[i]["emails"]}
    assert {"bob@", "no-at-sign.example.com", "a@b"} <= bad
    assert edge["multi_email_phone_contact_ids"]
    for i in edge["multi_email_phone_contact_ids"]:
        c = contacts[i]
        assert len(c["emails"]) > 1
        assert {"office", "mobile", "home", "direct", "fax"} <= {p["type"] for p in c["phones"]}
        assert all(p["phone"].startswith("+") for p in c["phones"])


def test_users_and_dynamics_counterparts(org: CloseOrg) -> None:
    edge = org.truth["edge_cases"]
    assert 6 <= len(org.users) + len(org.inactive_users) <= 10
    assert [u["id"] for u in org.inactive_users] == [edge["inactive_close_user_id"]]
    owners = {x["created_by"] for x in org.leads} | {a["user_id"] for a in org.activities}
    assert edge["inactive_close_user_id"] in owners
    by_close = {d["close_user_id"]: d for d in org.dynamics_users}
    assert edge["unmatched_user_id"] not in by_close
    assert by_close[edge["disabled_user_id"]]["isdisabled"] is True
    assert by_close[edge["inactive_close_user_id"]]["isdisabled"] is False
    assert sum(1 for d in org.dynamics_users if d["close_user_id"] is None) == 1
    case_differs = 0
    for u in org.users + org.inactive_users:
        if u["id"] == edge["unmatched_user_id"]:
            continue
        dyn = by_close[u["id"]]["internalemailaddress"]
        assert dyn.casefold() == u["email"].casefold()
        case_differs += dyn != u["email"]
    assert case_differs >= 2
    active_flags = [d["isdisabled"] for d in org.dynamics_users if d["close_user_id"]]
    assert active_flags.count(True) == 1


# ---------------------------------------------------------------- custom fields and custom activities


def test_custom_fields_cover_every_type_on_every_object(org: CloseOrg) -> None:
    for kind in ("lead", "contact", "opportunity", "activity"):
        fields = org.custom_fields[kind]
        assert {f["type"] for f in fields} >= CF_TYPES, kind
        assert any(f["type"] == "choices" and f["accepts_multiple_values"] for f in fields), kind
        assert all(f["choices"] for f in fields if f["type"] == "choices")
    rows = {"lead": org.leads, "contact": org.contacts, "opportunity": org.opportunities}
    for kind, records in rows.items():
        defined = {f["id"]: f for f in org.custom_fields[kind]}
        used_types = set()
        for r in records:
            for key in (k for k in r if k.startswith("custom.")):
                used_types.add(defined[key.removeprefix("custom.")]["type"])
        assert used_types == CF_TYPES, kind
    names = {f["id"]: f["name"] for f in org.custom_fields["lead"]}
    for lead in org.leads:
        flat = {names[k.removeprefix("custom.")]: v for k, v in lead.items() if k.startswith("custom.")}
        assert lead["custom"] == flat


def test_broken_custom_activity_type(org: CloseOrg) -> None:
    edge = org.truth["edge_cases"]
    broken, undefined = edge["broken_custom_activity_type_id"], edge["undefined_field_id"]
    assert id_re("cf", 43).match(undefined)
    all_field_ids = {f["id"] for fs in org.custom_fields.values() for f in fs}
    assert undefined not in all_field_ids
    types = {t["id"]: t for t in org.custom_activity_types}
    assert len([t for t in types.values() if not t["is_archived"]]) >= 2
    for t in types.values():
        assert {f["id"] for f in t["fields"]} == {
            f["id"] for f in org.custom_fields["activity"] if f["custom_activity_type_id"] == t["id"]
        }
    instances = [a for a in org.activities if a["_type"] == "CustomActivity"]
    seen = set()
    for a in instances:
        type_fields = {f["id"] for f in types[a["custom_activity_type_id"]]["fields"]}
        used = {k.removeprefix("custom.") for k in a if k.startswith("custom.")}
        if a["custom_activity_type_id"] == broken:
            assert used - type_fields == {undefined}
        else:
            assert used <= type_fields
        seen.add(a["custom_activity_type_id"])
    assert broken in seen and len(seen) >= 2


# ---------------------------------------------------------------- e-mail threads, calls, files


def test_email_threads_group_their_emails(org: CloseOrg) -> None:
    threads = {a["id"]: a for a in org.activities if a["_type"] == "EmailThread"}
    emails = [a for a in org.activities if a["_type"] == "Email"]
    per_thread = Counter(e["thread_id"] for e in emails)
    assert set(per_thread) == set(threads)
    for tid, thread in threads.items():
        assert thread["n_emails"] == per_thread[tid] == len(thread["emails"])
        assert thread["participants"] or all(e["status"] == "draft" for e in thread["emails"])
    assert max(per_thread.values()) > 1


def test_every_file_url_has_a_blob(org: CloseOrg) -> None:
    urls: list[tuple[str, int | None]] = []
    for a in org.activities:
        if a["_type"] in ("Email", "Note"):
            for att in a["attachments"]:
                assert att["url"].startswith("https://app.close.com/go/file/")
                urls.append((att["url"], att["size"]))
        elif a["_type"] == "Call":
            if a["has_recording"]:
                assert a["recording_url"] == f"https://api.close.com/call/{a['id']}/recording/"
                assert a["recording_duration"] > 0
                urls.append((a["recording_url"], None))
            else:
                assert a["recording_url"] is None
            if a["voicemail_url"]:
                urls.append((a["voicemail_url"], None))
    assert any(a.get("disposition") == "vm-left" and a.get("voicemail_url") for a in org.activities)
    for url, size in urls:
        key = re.sub(r"^https://[^/]+/", "", url)
        blob = org.files[key]
        assert size is None or blob.size == size
    assert len(org.files) == len(urls)


def test_oversize_attachment_streams(org: CloseOrg) -> None:
    over = org.truth["edge_cases"]["oversize_attachment"]
    assert over["size"] > 5 * 1024 * 1024
    act = next(a for a in org.activities if a["id"] == over["activity_id"])
    assert any(att["url"] == over["url"] and att["size"] == over["size"] for att in act["attachments"])
    blob = org.files[over["url"].removeprefix("https://app.close.com/")]
    sizes = [len(part) for part in blob.iter_chunks(1 << 20)]
    assert sum(sizes) == over["size"] and max(sizes) <= 1 << 20 and len(sizes) > 5
    small = [a for a in org.activities if a["_type"] in ("Email", "Note") for a in a["attachments"]]
    assert sum(1 for att in small if att["size"] > 5 * 1024 * 1024) == 1


def test_fileblob_content_is_deterministic_and_chunk_independent() -> None:
    blob = FileBlob(filename="a.pdf", content_type="application/pdf", size=1000, seed="k1")
    data = blob.read()
    assert len(data) == 1000 and data == blob.read()
    assert b"".join(blob.iter_chunks(7)) == data
    assert b"".join(blob.iter_chunks(64)) == data
    assert FileBlob("a.pdf", "application/pdf", 1000, "k2").read() != data
    assert FileBlob("e", "text/plain", 0, "k").read() == b""
    with pytest.raises(OrgDataError, match="chunk size"):
        next(blob.iter_chunks(0))


def test_fileblob_content_does_not_repeat_like_a_test_pattern() -> None:
    """Real attachments are mostly compressed formats: the generated bytes vary from block to block and
    deflate finds nothing to shorten (a repeat within its 32 KB window would)."""
    data = FileBlob("r.mp3", "audio/mpeg", 6 * 65536 + 5, "rec").read()
    blocks = {data[i : i + 65536] for i in range(0, 6 * 65536, 65536)}
    assert len(blocks) == 6
    assert len(zlib.compress(data, 9)) > len(data)
    assert data[:65536] != FileBlob("r.mp3", "audio/mpeg", 65536, "rec2").read()


# ---------------------------------------------------------------- tasks, sequences, smart views, events


def test_tasks(org: CloseOrg) -> None:
    edge = org.truth["edge_cases"]
    assert set(edge["open_task_ids"]) == {t["id"] for t in org.tasks if not t["is_complete"]}
    assert set(edge["done_task_ids"]) == {t["id"] for t in org.tasks if t["is_complete"]}
    assert edge["open_task_ids"] and edge["done_task_ids"]
    kinds = Counter(t["_type"] for t in org.tasks)
    assert kinds["lead"] > 0 and len(kinds) > 1
    for t in org.tasks:
        assert t["view"] == "archive" if t["is_complete"] else t["view"] in ("inbox", "future")
        if t["_type"] != "lead":
            assert t["object_id"] and t["object_type"] in ("call", "emailthread", "opportunity")


def test_sequences_subscriptions_smart_views(org: CloseOrg) -> None:
    step_types = {st["step_type"] for s in org.sequences for st in s["steps"]}
    assert step_types == {"email", "call", "sms"}
    assert any(st["delay"] > 0 for s in org.sequences for st in s["steps"])
    seq_ids = {s["id"] for s in org.sequences}
    contacts = {c["id"]: c for c in org.contacts}
    assert org.sequence_subscriptions
    for sub in org.sequence_subscriptions:
        assert sub["sequence_id"] in seq_ids
        assert contacts[sub["contact_id"]]["lead_id"] == sub["lead_id"]
        assert re.match(r"^[^@\s]+@[^@\s]+\.[^@\s]+$", sub["contact_email"]), sub["contact_email"]
    assert any(v["query"] and v["s_query"] is None for v in org.smart_views)
    assert any(v["s_query"] and v["query"] is None for v in org.smart_views)


def test_events_describe_real_updates_and_deletes(org: CloseOrg) -> None:
    actions = Counter(e["action"] for e in org.events)
    assert actions["updated"] >= 3 and actions["deleted"] >= 2
    current = {x["id"]: x for x in org.leads + org.contacts + org.opportunities + org.activities + org.tasks}
    for e in org.events:
        if e["action"] == "updated":
            obj = current[e["object_id"]]
            assert e["data"] == obj
            assert set(e["previous_data"]) <= set(e["changed_fields"]) | {"date_updated"}
            assert all(obj[k] != v for k, v in e["previous_data"].items())
        else:
            assert e["object_id"] not in current and e["previous_data"]["id"] == e["object_id"]
    stamps = [e["date_created"] for e in org.events]
    assert stamps == sorted(stamps, reverse=True)


def test_summary_and_cli(org: CloseOrg, capsys: pytest.CaptureFixture[str]) -> None:
    text = org_summary(org)
    assert "| leads" in text and f"{org.truth['counts']['calls']:,}" in text
    assert cli_main(["--size", "tiny", "--seed", "1"]) == 0
    assert capsys.readouterr().out.strip() == text
