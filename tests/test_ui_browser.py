"""The Dagster UI in a real browser: materialize, see the gates, follow the lineage.

The webserver and the daemon (`make ui`'s two processes, started one after the other so the sensors
are paused before the daemon ticks) serve a small prepared state: five days of the weather use case
loaded and featurized in-process. Headless Chromium then does what a user does: finds the flights
stages in the asset graph, loads a sixth weather day and its features from the partition dialog,
trains the candidate and the champion, reads the model's gate checks with their values, raises the
spec's floor so the next training fails its gate and sees that failure, and follows the flights
champion's lineage back to its raw tables. Each step leaves a screenshot in test-artifacts/ui/.
"""

from __future__ import annotations

import os
import re
import shutil
from datetime import date, timedelta

import pytest
import yaml

from harness.replay import replay
from definitions import current_definitions
from harness.runs import materialize_window
from assay.settings import REPO_ROOT
from browser import ARTIFACTS, DagsterUI, Steps, chromium_or_skip

PREPARED_DAYS = [(date(2013, 1, 1) + timedelta(days=i)).isoformat() for i in range(5)]
NEW_DAY = "2013-01-06"  # landed with the others, loaded from the UI
STAGES = ("ingest", "features", "training", "models", "release", "monitoring")
RUN_TIMEOUT_MS = 300_000  # one run on a busy 2-core box: a process start, dbt or a training


@pytest.fixture(scope="module")
def chromium():
    return chromium_or_skip()


@pytest.fixture(scope="module")
def usecases(tmp_path_factory):
    """Both specs in a folder of their own: the test edits weather's gates mid-way."""
    folder = tmp_path_factory.mktemp("usecases")
    for name in ("flights", "weather"):
        shutil.copy(REPO_ROOT / "usecases" / f"{name}.yaml", folder)
    return folder


@pytest.fixture(scope="module")
def ui(chromium, assay_home, instance, landing, usecases, weather_spec, tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ASSAY_USECASES_DIR", str(usecases))
        defs = current_definitions()
        replay(weather_spec, landing, date(2013, 1, 1), len(PREPARED_DAYS) + 1)
        runs = materialize_window(defs, instance, weather_spec, PREPARED_DAYS, through="features")
        assert all(r.success for r in runs), [(r.what, r.partition) for r in runs if not r.success]
    env = {**os.environ, "ASSAY_HOME": str(assay_home.root), "ASSAY_USECASES_DIR": str(usecases),
           "DAGSTER_HOME": str(assay_home.dagster_home), "PYTHONUNBUFFERED": "1"}
    server = DagsterUI(env=env, logs=tmp_path_factory.mktemp("ui-logs"))
    try:
        server.start_webserver()
        server.stop_sensors()
        server.start_daemon()
        yield server
    finally:
        server.stop()


def _filter_graph(page, ui: DagsterUI, selection: str) -> None:
    """Open the global asset graph and type an asset selection into its filter."""
    page.goto(f"{ui.url}/asset-groups")
    page.locator(".CodeMirror").filter(has_text="Search and filter assets").click()
    page.keyboard.type(selection)
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"/asset-groups~"))


def _open_launched_run(page) -> str:
    """Follow the 'Launched run' toast to the run's page; returns the run id."""
    view = page.get_by_role("link", name="View", exact=True)
    href = view.get_attribute("href")
    assert href and href.startswith("/runs/"), href
    view.click()
    page.wait_for_url(re.compile(re.escape(href)))
    return href.removeprefix("/runs/")


def _run_outcome(page) -> str:
    """Wait on the run page until the run ends; returns 'Success' or 'Failure'."""
    outcome = page.get_by_text("Success", exact=True).or_(page.get_by_text("Failure", exact=True)).first
    outcome.wait_for(timeout=RUN_TIMEOUT_MS)
    return outcome.inner_text().strip()


def _open_check(page, ui: DagsterUI, asset: str, check: str) -> None:
    page.goto(f"{ui.url}/assets/{asset}")
    page.get_by_role("tab", name="Checks").click()
    page.get_by_text(check, exact=True).filter(visible=True).first.click()
    page.wait_for_url(re.compile(f"checkDetail={check}"))


def _raise_floor(usecases, max_rmse: float) -> None:
    path = usecases / "weather.yaml"
    spec = yaml.safe_load(path.read_text())
    spec["gates"]["max_rmse"] = max_rmse
    path.write_text(yaml.safe_dump(spec))


def test_a_user_materializes_reads_the_gates_and_follows_the_lineage(ui, chromium, usecases):
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            page.set_default_timeout(60_000)
            expect.set_options(timeout=60_000)
            # A first visit to a local Dagster offers, a second after load, to join its community: that
            # dialog would swallow typed keys. Mark it seen as its Skip button does, and skip it should
            # it show anyway.
            page.add_init_script('window.localStorage.setItem("communityNux", JSON.stringify("1"))')
            page.add_locator_handler(page.get_by_text("Join the Dagster community"),
                                     lambda _: page.get_by_role("button", name="Skip").click())
            steps = Steps(page, ARTIFACTS, ui)
            graph = page.locator("[data-svg-viewport]").first

            with steps.step("flights assets grouped by stage"):
                _filter_graph(page, ui, 'key:"flights/*"')
                for stage in STAGES:
                    expect(page.get_by_text(f"flights_{stage}", exact=True).first).to_be_visible()
                expect(page.get_by_text("weather_ingest", exact=True)).to_have_count(0)
                graph.get_by_text("flights_models", exact=True).click()  # expand the group
                for asset in ("model_lightgbm", "model_torch", "champion"):
                    expect(graph.get_by_text(asset, exact=True)).to_be_visible()

            with steps.step("materialize a raw day and its features"):
                _filter_graph(page, ui, 'key:"weather/raw_weather"+2')
                expect(graph.get_by_text("weather_ingest", exact=True)).to_be_visible()
                page.get_by_role("button", name="Materialize all").click()
                expect(page.get_by_text("Launch runs to materialize 3 assets")).to_be_visible()
                partitions = page.get_by_placeholder("ex: 2013-01-01")
                partitions.fill(NEW_DAY)
                partitions.press("Enter")
                page.get_by_role("button", name="Launch 1 run").click()
                raw_run = _open_launched_run(page)

            with steps.step("the raw day's run succeeds"):
                assert _run_outcome(page) == "Success", f"run {raw_run} did not succeed"
                expect(page.get_by_text(f"partition: {NEW_DAY}")).to_be_visible()

            with steps.step("train the candidate and the champion"):
                _filter_graph(page, ui, 'key:"weather/training_set"+2')
                expect(graph.get_by_text("weather_models", exact=True)).to_be_visible()
                expect(page.get_by_text("weather_ingest", exact=True)).to_have_count(0)
                page.get_by_role("button", name="Materialize all").click()
                training_run = _open_launched_run(page)
                assert _run_outcome(page) == "Success", f"run {training_run} did not succeed"

            with steps.step("the model's page: owner, kinds, description"):
                page.goto(f"{ui.url}/assets/weather/model_lightgbm")
                expect(page.get_by_text("climate-ml", exact=True).first).to_be_visible()  # the spec's team
                expect(page.get_by_text("lightgbm", exact=True).first).to_be_visible()
                expect(page.get_by_text("stage: model")).to_be_visible()
                expect(page.get_by_text("registered in MLflow as")).to_be_visible()
                # Metadata renders as what it is: the per-slice metrics as a table, the plots as Markdown.
                expect(page.get_by_role("cell", name="EWR", exact=True).first).to_be_visible()
                expect(page.get_by_text("[Show Markdown]").first).to_be_visible()

            with steps.step("the model's gates with their values"):
                _open_check(page, ui, "weather/model_lightgbm", "performance_floor")
                for check in ("performance_floor", "no_regression", "slice_parity", "leakage", "integrity"):
                    expect(page.get_by_text(check, exact=True).first).to_be_visible()
                expect(page.get_by_text("Failed", exact=True)).to_have_count(0)
                expect(page.get_by_text("protects against a model no better than chance")).to_be_visible()
                expect(page.get_by_text(re.compile(r"rmse \d+\.\d+ \(<= 4\.0\)")).first).to_be_visible()
                expect(page.get_by_text("Passed", exact=True).first).to_be_visible()

            with steps.step("raise the floor in the spec and reload definitions"):
                _raise_floor(usecases, max_rmse=0.01)
                page.goto(f"{ui.url}/asset-groups")
                page.get_by_role("button", name="Reload definitions").click()
                expect(page.get_by_text("Definitions reloaded")).to_be_visible(timeout=180_000)

            with steps.step("a retraining fails its gate"):
                page.goto(f"{ui.url}/assets/weather/model_lightgbm")
                page.locator("button", has_text=re.compile(r"^Materialize$")).click()
                bad_run = _open_launched_run(page)
                assert _run_outcome(page) == "Failure", f"run {bad_run} should have failed performance_floor"
                expect(page.get_by_text(re.compile("blocking asset check failed")).first).to_be_visible()

            with steps.step("the failed gate shows as failed"):
                _open_check(page, ui, "weather/model_lightgbm", "performance_floor")
                expect(page.get_by_text("Failed", exact=True).first).to_be_visible()
                expect(page.get_by_text(re.compile(r"rmse \d+\.\d+ above the floor 0\.01")).first).to_be_visible()

            with steps.step("the flights champion's lineage back to the raw data"):
                page.goto(f"{ui.url}/assets/flights/champion")
                expect(page.get_by_text("flight-ops-ml", exact=True).first).to_be_visible()
                expect(page.get_by_text("passed every gate").first).to_be_visible()
                page.get_by_role("tab", name="Lineage").click()
                page.get_by_role("button", name="Upstream").click()
                page.get_by_role("button", name="All", exact=True).click()
                expect(graph.get_by_text("flight_features", exact=True)).to_be_visible()
                # The upstream graph is wider than the window: drag it until the raw tables show.
                raw = graph.get_by_text("raw_flights", exact=True)
                box = graph.bounding_box()
                for _ in range(4):
                    if raw.count() and raw.is_visible():
                        break
                    page.mouse.move(box["x"] + 200, box["y"] + 30)  # empty canvas above the groups
                    page.mouse.down()
                    page.mouse.move(box["x"] + 900, box["y"] + 30, steps=15)
                    page.mouse.up()
                    page.wait_for_timeout(500)
                expect(raw).to_be_visible()
                expect(graph.get_by_text(re.compile(r"^Loading"))).to_have_count(0)
                expect(graph.get_by_text("flights_ingest", exact=True)).to_be_visible()
        finally:
            browser.close()
    assert len(steps.shots) == steps.count
