"""The Dagster UI as an engineer and an auditor see it after `close2d365 demo`, in a real headless Chromium:
the global lineage, a staged asset's blocking check with its failing rows, the reconciliation in
reports/reconciliation's metadata, the demo's runs with the statuses the CLI printed, and the audit pack's
index.html with its chart. The demo and the UI run as a user runs them (the installed `close2d365` command,
its own home); screenshots are kept as test artifacts (CLOSE2D365_ARTIFACTS, else pytest's temp folder)."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from _browser import CHROMIUM_ARGS, ensure_chromium

from emulators.orgdata import generate

pytestmark = pytest.mark.e2e
playwright_api = pytest.importorskip("playwright.sync_api", reason="pip install -e '.[test]' installs it")

UI_START_SECONDS = 180  # an upper bound for `dagster dev` to answer, not a wait: the poll stops at the answer
RUN_LINE = re.compile(r"^run (?P<id>[0-9a-f-]{36}): (?P<verdict>.+)$")
GROUPS = ("close", "staged", "schema", "loaded", "reports")


@dataclass(frozen=True)
class DemoUi:
    home: Path
    cli_output: str
    base_url: str
    artifacts: Path

    def runs(self) -> list[tuple[str, str]]:
        """(run id, the CLI's verdict) of every run the demo printed."""
        found = (RUN_LINE.match(line.strip()) for line in self.cli_output.splitlines())
        return [(m["id"], m["verdict"]) for m in found if m]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _command() -> list[str]:
    script = Path(sys.executable).with_name("close2d365")
    return (
        [str(script)]
        if script.exists()
        else [sys.executable, "-c", "from migration_assets.cli import main; main()"]
    )


def _user_env(home: Path) -> dict[str, str]:
    """The environment of a user's shell: this test process's own settings (instance, mappings of the
    session fixture, emulator URLs of other tests) are not theirs."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("CLOSE2D365_", "DAGSTER_", "CLOSE_", "DATAVERSE_", "AZURE_"))
    }
    return {**env, "CLOSE2D365_HOME": str(home)}


def _wait_for_ui(base_url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + UI_START_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"close2d365 ui exited ({process.returncode}): {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"{base_url}/server_info", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)  # polling a server that is starting; the loop ends when it answers
    pytest.fail(f"the Dagster UI did not answer within {UI_START_SECONDS} s: {log.read_text()[-2000:]}")


def _assert_code_location_loaded(base_url: str) -> None:
    query = (
        "{ workspaceOrError { ... on Workspace { locationEntries { name locationOrLoadError "
        "{ __typename ... on PythonError { message } } } } } }"
    )
    answer = httpx.post(f"{base_url}/graphql", json={"query": query}, timeout=60).json()
    entries = answer["data"]["workspaceOrError"]["locationEntries"]
    failed = [e for e in entries if (e["locationOrLoadError"] or {}).get("__typename") == "PythonError"]
    assert entries and not failed, f"the UI could not load the definitions: {failed or answer}"


@pytest.fixture(scope="module")
def demo_ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoUi]:
    work = tmp_path_factory.mktemp("ui")
    home = work / "home"
    artifacts = Path(os.environ.get("CLOSE2D365_ARTIFACTS") or work / "artifacts") / "ui_screenshots"
    artifacts.mkdir(parents=True, exist_ok=True)
    env = _user_env(home)
    demo = subprocess.run(
        [*_command(), "demo", "--size", "tiny"],
        env=env,
        cwd=work,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
    # The UI on the migrated instance, with the mapping folder the demo reviewed (a user exports
    # CLOSE2D365_MAPPINGS the same way for their own reviewed mappings).
    port = _free_port()
    log = work / "ui.log"
    with log.open("wb") as out:
        ui = subprocess.Popen(
            [*_command(), "ui", "--port", str(port)],
            env={**env, "CLOSE2D365_MAPPINGS": str(home / "demo_mappings")},
            cwd=work,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: dagster dev's children stop with it
        )
    base_url = f"http://127.0.0.1:{port}"
    try:
        _wait_for_ui(base_url, ui, log)
        _assert_code_location_loaded(base_url)
        yield DemoUi(home, demo.stdout, base_url, artifacts)
    finally:
        os.killpg(ui.pid, signal.SIGTERM)
        try:
            ui.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(ui.pid, signal.SIGKILL)
            ui.wait(timeout=30)


@pytest.fixture(scope="module")
def browser(demo_ui: DemoUi) -> Iterator[playwright_api.Browser]:
    executable = ensure_chromium()
    with playwright_api.sync_playwright() as p:
        launched = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(
    browser: playwright_api.Browser, demo_ui: DemoUi, request: pytest.FixtureRequest
) -> Iterator[playwright_api.Page]:
    context = browser.new_context(viewport={"width": 1600, "height": 1000})
    opened = context.new_page()
    opened.set_default_timeout(60_000)
    # Dagster's community dialog shows up on a first visit; dismiss it whenever it covers the page.
    opened.add_locator_handler(
        opened.get_by_text("Join the Dagster community"),
        lambda: opened.get_by_role("button", name="Skip").click(),
    )
    try:
        yield opened
    finally:
        opened.screenshot(path=str(demo_ui.artifacts / f"{request.node.name}.png"), full_page=True)
        context.close()


def test_global_lineage_reads_left_to_right(page: playwright_api.Page, demo_ui: DemoUi) -> None:
    page.goto(f"{demo_ui.base_url}/asset-groups", wait_until="networkidle")
    # The graph draws one box per group (the left-hand tree lists them too, at a fixed x).
    graph_x: dict[str, float] = {}
    for group in GROUPS:
        label = page.get_by_text(group, exact=True)
        label.first.wait_for()
        boxes = [label.nth(i).bounding_box() for i in range(label.count())]
        xs = [b["x"] for b in boxes if b and b["height"] > 0]
        assert len(xs) >= 2, f"group {group} is not drawn in the lineage graph: {boxes}"
        graph_x[group] = max(xs)
    # close -> staged -> schema / loaded -> reports: the deploy steps and the loads after staging.
    assert graph_x["close"] < graph_x["staged"] < graph_x["schema"] < graph_x["reports"], graph_x
    assert graph_x["staged"] < graph_x["loaded"] < graph_x["reports"], graph_x


def test_blocking_check_shows_its_failing_rows(page: playwright_api.Page, demo_ui: DemoUi) -> None:
    """The demo's halted custom activity type: its check failed in the UI, and the rows it rejected are
    the Close activities of that type (from the Close org, not from our staging)."""
    org = generate("tiny", 1)
    type_id = next(t["id"] for t in org.custom_activity_types if "onboarding" in t["name"].lower())
    expected = sorted(a["id"] for a in org.activities if a.get("custom_activity_type_id") == type_id)
    assert expected, "the tiny org has activities of the deliberately broken type"
    asset = "custom_activity_c2d_onboardingchecklist"
    page.goto(f"{demo_ui.base_url}/assets/staged/{asset}?view=checks", wait_until="networkidle")
    # The asset has one check, so its detail is open: a blocking check. The demo's fix made its latest
    # evaluation pass; the failed one is in the check's execution history, with its reason and metadata.
    page.get_by_text("This is a blocking asset check.").first.wait_for()
    page.get_by_text("Execution history").first.click()
    failed = page.locator("tr").filter(has=page.get_by_text("Failed", exact=True))
    failed.first.wait_for()
    assert "columns not in the target nor the schema plan" in failed.first.inner_text()
    failed.first.locator("button").last.click()  # the evaluation's metadata
    dialogs = page.get_by_role("dialog")
    playwright_api.expect(dialogs).to_have_count(1)
    metadata = dialogs.first
    metadata.get_by_text("rejected_rows").first.wait_for()
    shown: dict[str, str] = {}
    buttons = metadata.get_by_text("Show Markdown")
    for i in range(buttons.count()):
        buttons.nth(i).click()
        # The Markdown opens as a second dialog over the metadata; both have a "Close" button, so wait for
        # the second one itself, and for it to be gone again before the next click.
        playwright_api.expect(dialogs).to_have_count(2)
        opened = dialogs.nth(1)
        opened.get_by_text("Close", exact=True).first.wait_for()
        label, _, body = opened.inner_text().partition("\n")
        shown[label.strip()] = body
        page.keyboard.press("Escape")
        playwright_api.expect(dialogs).to_have_count(1)
    assert "rejected" in shown, sorted(shown)
    assert sorted(set(re.findall(r"acti_\w+", shown["rejected"]))) == expected, shown["rejected"][:2000]


def test_reconciliation_table_is_in_the_asset_metadata(page: playwright_api.Page, demo_ui: DemoUi) -> None:
    printed = {
        line.split()[0]: line.split()
        for line in demo_ui.cli_output.splitlines()
        if re.match(
            r"^(account|contact|lead|opportunity|phonecall|email|task|appointment|annotation)\s+\d", line
        )
    }
    assert printed, demo_ui.cli_output[-2000:]
    page.goto(f"{demo_ui.base_url}/assets/reports/reconciliation", wait_until="networkidle")
    table = page.get_by_role("table").filter(has_text="close_objects")
    table.first.wait_for()
    text = table.first.inner_text()
    for name, cells in printed.items():
        assert re.search(rf"\b{name}\b\s+{cells[1]}\s+{cells[2]}\b", text), (name, cells, text[:2000])


def test_runs_page_shows_the_statuses_the_cli_printed(page: playwright_api.Page, demo_ui: DemoUi) -> None:
    runs = demo_ui.runs()
    assert len(runs) >= 2, demo_ui.cli_output[-2000:]
    page.goto(f"{demo_ui.base_url}/runs", wait_until="networkidle")
    for run_id, verdict in runs:
        row = page.locator("[data-index]").filter(has=page.locator(f"a[href='/runs/{run_id}']"))
        row.first.wait_for()
        status = "Success" if verdict.startswith("success") else "Failure"
        assert status in row.first.inner_text(), (run_id, verdict, row.first.inner_text())
    last_id, last_verdict = runs[-1]
    assert last_verdict == "success", f"the demo ends on a green run: {runs}"


def test_audit_pack_index_has_its_chart(page: playwright_api.Page, demo_ui: DemoUi) -> None:
    last_id, _ = demo_ui.runs()[-1]
    index = demo_ui.home / "reports" / last_id / "index.html"
    assert index.exists(), sorted(p.name for p in index.parent.glob("*"))
    page.goto(index.as_uri())
    chart = page.locator("svg")
    chart.first.wait_for()
    assert "account" in (chart.first.text_content() or ""), "the chart draws a bar group per table"
    for link in page.locator("a[href]").all():
        target = (index.parent / link.get_attribute("href")).resolve()
        assert target.exists(), f"index.html links to a missing file: {target}"
