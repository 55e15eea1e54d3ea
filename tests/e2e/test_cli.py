"""The command line as a user meets it: the demo's count table, and clear one-line errors."""

from __future__ import annotations

import re
from pathlib import Path

import dagster as dg
import pytest

from emulators.close.server import CloseEmulatorServer
from emulators.orgdata import generate
from migration_assets.cli import main


def _instance_runs(home: Path) -> list[dg.DagsterRun]:
    """The runs recorded on the instance the CLI used (what the UI lists)."""
    with dg.DagsterInstance.from_config(str(home / "dagster_home")) as inst:
        return list(inst.get_runs())


def test_demo_tiny_migrates_and_prints_the_reconciliation(
    isolated_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["demo", "--size", "tiny"]) == 0, "only the deliberately broken custom activity type halts"
    out = capsys.readouterr().out
    assert "halted (expected in the demo) staged__custom_activity_c2d_onboardingchecklist" in out
    # One truth about each run: the verdict word is the run's status on the instance (the UI's), and the
    # demo ends on the second, partial run that the documented fix makes green.
    verdicts = re.findall(r"^run ([0-9a-f-]{36}): (\w+)", out, flags=re.MULTILINE)
    statuses = {r.run_id: r.status.value for r in _instance_runs(isolated_home)}
    assert [v for _, v in verdicts] == ["success", "failure", "success"], verdicts
    assert [statuses[run_id] for run_id, _ in verdicts] == ["SUCCESS", "FAILURE", "SUCCESS"], statuses
    assert "5/5 the documented fix" in out and "'orphaned_values': 'column'" in out
    materialized = next(line for line in out.splitlines() if line.strip().startswith("materializing: "))
    assert (
        "staged/custom_activity_c2d_onboardingchecklist" in materialized and "loaded/lead" not in materialized
    )
    # Progress of the long steps, as plain lines when stdout is not a terminal.
    assert re.search(r"^  close/leads: 50 records in \d+:\d\d", out, flags=re.MULTILINE), out[:3000]
    assert re.search(r"^  staged/lead: 48 of 50 rows staged$", out, flags=re.MULTILINE), out[:6000]
    assert re.search(r"^  loaded/contact: 73 of 73 records in \d+:\d\d", out, flags=re.MULTILINE), out[:6000]
    # The halt says which check and why (the undefined field), not Dagster's generic error or a trace.
    assert "columns not in the target nor the schema plan: custom.cf_" in out
    assert "set its orphaned_values in mappings/custom_activities.yaml to drop or column" in out  # the fix
    # The threshold says which setting of which file tolerates more rejected rows.
    assert (
        "raise rejection_thresholds.custom_activity_c2d_onboardingchecklist (or .default) in "
        "mappings/settings.yaml" in out
    )
    assert "Traceback" not in out and "Stack Trace" not in out
    header = next(line for line in out.splitlines() if line.startswith("table "))
    names = header.split()
    assert names[:4] == ["table", "close_objects", "staged", "rejected_at_staging"] and names[-1] == "status"
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.split()}
    for table in ("account", "contact", "lead", "opportunity", "phonecall", "email", "task", "appointment"):
        cells = dict(zip(names[:-1], rows[table], strict=False))
        status = " ".join(rows[table][len(names) - 1 :])
        staged, loaded, read_back = int(cells["staged"]), int(cells["loaded"]), int(cells["read_back"])
        assert staged > 0 and staged == loaded == read_back, cells
        # The tiny org holds deliberately bad records: a table with rejections is partial, never ok.
        rejected = int(cells["rejected"])
        assert status == (
            "ok" if rejected == 0 else f"partial ({rejected} rejected, see rejected_{table}.csv)"
        )
    # The custom activity type whose check failed is reported as halted with that check's reason.
    halted = next(line for line in out.splitlines() if line.startswith("c2d_onboardingchecklist "))
    assert "halted (staged/custom_activity_c2d_onboardingchecklist: check " in halted, halted
    # After the fix every activity of that type in Close is loaded and read back (the last table printed).
    org = generate("tiny", 1)
    broken = org.truth["edge_cases"]["broken_custom_activity_type_id"]
    in_close = sum(1 for a in org.activities if a.get("custom_activity_type_id") == broken)
    fixed = dict(zip(names[:-1], rows["c2d_onboardingchecklist"], strict=False))
    assert in_close > 0 and int(fixed["loaded"]) == int(fixed["read_back"]) == in_close, fixed
    assert (isolated_home / "dagster_home" / "dagster.yaml").exists(), (
        "the run is recorded on the shared instance"
    )
    assert "Reports: " in out
    # A file left out for its size is said on the terminal, not only listed in the run's folder.
    assert re.search(r"^\d+ files? (was|were) not loaded: above the target's upload limit", out, re.MULTILINE)
    assert max(len(line) for line in out.splitlines()) < 300, "a halted row must not widen the table"
    # What each service was asked, retries included (counted in every step that called it): the extraction
    # asks Close, the migration Dataverse.
    extract_calls, migrate_calls, _fix_calls = [
        x for x in out.splitlines() if x.strip().startswith("API calls: ")
    ]
    assert "Close " in extract_calls and " retried (" in extract_calls, extract_calls
    assert "Dataverse " in migrate_calls and " retried (" in migrate_calls, migrate_calls
    # Every file the run left under the home (warehouse and WAL, Dagster's run databases, reports) is
    # owner-only, and none holds a secret: the Close key or the Dataverse client secret.
    from emulators.dataverse.config import DEFAULT_CLIENT_SECRET

    canaries = [generate("tiny", 1).api_key.encode(), DEFAULT_CLIENT_SECRET.encode()]
    paths = [p for p in isolated_home.rglob("*")]
    assert any(p.name.endswith(".db") for p in paths) and any(p.suffix == ".csv" for p in paths)
    for path in paths:
        mode = path.stat().st_mode & 0o777
        assert mode & 0o077 == 0, f"{path} is {oct(mode)}"
        if path.is_file():
            data = path.read_bytes()
            assert not any(c in data for c in canaries), f"{path} holds a secret"


def test_extract_without_api_key_says_what_to_do(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("CLOSE_API_KEY", raising=False)
    assert main(["extract"]) == 2
    err = capsys.readouterr().err
    assert "CLOSE_API_KEY is not set" in err and "Traceback" not in err


def test_extract_with_wrong_api_key_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with CloseEmulatorServer(generate("tiny", 1)) as server:
        monkeypatch.setenv("CLOSE_API_KEY", "api_wrong")
        monkeypatch.setenv("CLOSE_BASE_URL", server.base_url)
        assert main(["extract"]) == 2
    err = capsys.readouterr().err
    assert "401" in err and "CLOSE_API_KEY" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("trouble", ["corrupt", "locked"])
def test_a_run_that_cannot_start_says_why_and_exits_2(
    trouble: str, isolated_home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A warehouse that is corrupt, or locked by another run, fails the run before its first step: the CLI
    repeats the run's own status (FAILED, exit 2) with the cause, never "success"."""
    import subprocess
    import sys

    warehouse = isolated_home / "warehouse.duckdb"
    isolated_home.mkdir(parents=True)
    holder = None
    if trouble == "corrupt":
        warehouse.write_text("not a database")
    else:  # another process holds the warehouse open until we close its stdin
        holder = subprocess.Popen(
            [
                sys.executable,
                "-c",
                f"import duckdb, sys; c = duckdb.connect({str(warehouse)!r}); "
                "print('ready', flush=True); sys.stdin.read()",
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
    try:
        with CloseEmulatorServer(generate("tiny", 1)) as server:
            monkeypatch.setenv("CLOSE_API_KEY", server.org.api_key)
            monkeypatch.setenv("CLOSE_BASE_URL", server.base_url)
            assert main(["extract"]) == 2
    finally:
        if holder is not None:
            holder.communicate("")
    captured = capsys.readouterr()
    assert "success" not in captured.out
    assert "FAILED before the first step:" in captured.err and "it could not start" in captured.err
    assert ("not a valid DuckDB database file" if trouble == "corrupt" else "lock") in captured.err
    assert "Traceback" not in captured.err


def test_a_contact_delivered_under_two_leads_stops_the_extraction_with_its_id(
    isolated_home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The source gives one contact id twice, under two leads, equally new: the extraction keeps neither
    silently; the blocking check ids_unique fails the run and names the id and both leads."""
    org = generate("tiny", 1)
    contact = org.contacts[0]
    other_lead = next(lead["id"] for lead in org.leads if lead["id"] != contact["lead_id"])
    org.contacts.append({**contact, "lead_id": other_lead})
    with CloseEmulatorServer(org) as server:
        monkeypatch.setenv("CLOSE_API_KEY", org.api_key)
        monkeypatch.setenv("CLOSE_BASE_URL", server.base_url)
        assert main(["extract"]) == 2
    captured = capsys.readouterr()
    assert "close/contacts: records_readable" in captured.err, captured.err
    assert "1 id delivered more than once with different content" in captured.err
    from migration_assets.extract.duplicates import CONFLICTS
    from migration_assets.resources.warehouse import WarehouseResource

    rows = WarehouseResource().read(f"SELECT id, lead_ids FROM {CONFLICTS} WHERE table_name = 'contacts'")
    assert rows.rows() == [(contact["id"], ", ".join(sorted([contact["lead_id"], other_lead])))]


def test_unreadable_or_negative_money_is_listed_and_never_aborts_the_extraction(
    isolated_home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """ "abc", a negative value and 1e22 (past Int64) in opportunities: the extraction writes every record,
    and the blocking check numbers_readable lists the three with their values instead of loading them empty."""
    org = generate("tiny", 1)
    bad = {
        org.opportunities[0]["id"]: "abc",
        org.opportunities[1]["id"]: -500,
        org.opportunities[2]["id"]: 1e22,
    }
    for opp in org.opportunities:
        if opp["id"] in bad:
            opp["value"] = bad[opp["id"]]
    org.opportunities[3]["date_created"] = "not-a-date"  # not loaded as "required value is missing" later
    with CloseEmulatorServer(org) as server:
        monkeypatch.setenv("CLOSE_API_KEY", org.api_key)
        monkeypatch.setenv("CLOSE_BASE_URL", server.base_url)
        assert main(["extract"]) == 2
    err = capsys.readouterr().err
    assert "close/opportunities: records_readable" in err and "4 of" in err, err
    assert "1 date_created not a date and time" in err
    assert "2 value not a whole number in the Int64 range" in err and "1 value negative amount" in err
    assert "Traceback" not in err
    from migration_assets.resources.warehouse import WarehouseResource

    wh = WarehouseResource()
    assert wh.read("SELECT count(*) AS n FROM close.opportunities")["n"][0] == len(org.opportunities)
    assert wh.read("SELECT count(*) AS n FROM close.leads")["n"][0] == len(org.leads)  # the rest extracted
