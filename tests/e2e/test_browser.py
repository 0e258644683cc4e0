"""The user's view in a real browser (Debian's Chromium driven by Playwright): `ablab ui` on a
study this test ran, and the self-contained HTML report opened from disk. The MLflow UI
screenshot the README shows is taken here."""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, migrated_store, run_cli

pytestmark = pytest.mark.e2e

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SCREENSHOT = ROOT / "docs" / "images" / "mlflow_ui.png"


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    if CHROMIUM is None:
        pytest.fail("Chromium is not installed (make system-deps installs it)")
    tmp = tmp_path_factory.mktemp("browser")
    uri = migrated_store(tmp)
    env = {"ABLAB_MLRUNS": str(tmp), "ABLAB_REPORTS": str(tmp / "reports")}
    proc = run_cli("run", "augmentation_strength", "--smoke", "--seeds", "2", "--tracking-uri",
                   uri, "--storage", str(tmp / "q.journal"), env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return {"uri": uri, "env": env, "report": tmp / "reports" / "augmentation_strength"}


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ablab_ui_opens_the_study_on_its_variants(study, browser):
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "core.cli", "ui", "--port", str(port),
                             "--tracking-uri", study["uri"]], cwd=ROOT,
                            env={**os.environ, **study["env"]}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        out = ""
        deadline = time.monotonic() + 120
        while "augmentation_strength:" not in out:
            assert proc.poll() is None and time.monotonic() < deadline, out
            out += proc.stdout.readline()
        url = re.search(r"augmentation_strength: (\S+)", out).group(1)
        assert url.startswith(f"http://127.0.0.1:{port}/")
        page = browser.new_page(viewport={"width": 1700, "height": 620})
        page.goto(url)
        page.get_by_text("mean_test_accuracy").first.wait_for(timeout=60_000)
        body = page.inner_text("body")
        assert "augmentation_strength" in body  # the study's experiment
        for variant in ("augment=none", "augment=moderate", "augment=extreme"):
            assert variant in body  # its variant (parent) runs
        assert "seed=1" not in body  # the trials are nested under their variant...
        parent = page.locator("[role=row]", has_text="augment=none").first
        parent.locator("button[data-component-id*='runnamecellrenderer']").click()
        page.get_by_text("augment=none seed=1").wait_for(timeout=10_000)  # ...one click away
        assert "augment=moderate seed=1" not in page.inner_text("body")
        headers = page.locator("[role=columnheader]").all_inner_texts()
        assert "mean_test_accuracy" in headers and "n_seeds" in headers
        for chrome in ("mlflow.assistant.chat_panel.close", "mlflow_header.toggle_sidebar_button",
                       "mlflow.experiment_page.shared_view.dismiss"):  # room for the table
            button = page.locator(f"button[data-component-id='{chrome}']")
            if button.count():
                button.first.click()
        page.get_by_text("augment=none seed=1").wait_for(timeout=10_000)
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOT))
        page.close()
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(timeout=30)


def test_the_html_report_is_complete_and_self_contained(study, browser):
    index = study["report"] / "index.html"
    assert index.exists()
    page = browser.new_page(viewport={"width": 1300, "height": 900})
    outside = []
    page.on("request", lambda r: outside.append(r.url) if not r.url.startswith(
        ("file://", "data:")) else None)
    page.goto(index.as_uri())
    page.wait_for_load_state("load")
    assert outside == [], outside  # nothing fetched: plots are embedded, no scripts
    tables = {t: page.locator(f"table.{t} tbody tr").count()
              for t in ("comparisons", "variants", "runs", "metrics")}
    # every metric: 3 variants x 4 costs (parameters, FLOPs, latency, training time)
    assert tables == {"comparisons": 2, "variants": 3, "runs": 3, "metrics": 12}, tables
    text = page.inner_text("body")
    assert "augment=moderate" in text and "Holm" in text
    assert "does augmentation help" in text  # the ablation file's question
    for verdict in page.locator("table.comparisons tbody tr td:nth-child(2)").all_inner_texts():
        assert verdict.split()[0] in ("better", "worse", "equivalent", "inconclusive", "not")
    images = page.evaluate("Array.from(document.images).map(i => [i.alt, i.naturalWidth, "
                           "i.complete])")
    assert {alt for alt, _, _ in images} == {
        "per_seed.png", "score_distribution.png", "learning_curves.png",
        "confusion_matrices.png", "tradeoffs.png",
        # and the data card: counts, examples, each policy's views
        "class_counts.png", "examples.png", "augment_moderate.png", "augment_extreme.png"}
    assert page.locator("table.data tbody tr").count() == 10  # digits: one row per class
    assert "duplicate(s) across splits" in text
    assert all(width > 300 and done for _, width, done in images), images  # none broken
    links = page.eval_on_selector_all("table.runs a", "as => as.map(a => a.href)")
    assert len(links) == 3 + 6 and all("/#/experiments/" in h and "/runs/" in h for h in links)
    page.close()


def test_report_json_and_list_json_for_scripts(study):
    proc = run_cli("report", "augmentation_strength", "--tracking-uri", study["uri"], "--json",
                   "--out", str(study["report"].parent / "again"), env=study["env"])
    assert proc.returncode == 0, proc.stderr
    rep = json.loads(proc.stdout)
    assert [v["variant"] for v in rep["variants"]] == ["augment=none", "augment=moderate",
                                                       "augment=extreme"]
    assert {c["verdict"].split()[0] for c in rep["comparisons"]} <= {
        "better", "worse", "equivalent", "inconclusive", "not"}
    assert rep["delta"] == 0.01 and rep["report"].endswith("index.html")
    proc = run_cli("list", "--tracking-uri", study["uri"], "--storage",
                   str(Path(study["env"]["ABLAB_MLRUNS"]) / "q.journal"), "--json",
                   env=study["env"])
    assert proc.returncode == 0, proc.stderr
    (row,) = json.loads(proc.stdout)
    assert row["study"] == "augmentation_strength" and row["kind"] == "ablation"
    assert (row["trials_done"], row["trials_total"], row["failed"]) == (6, 6, 0)
    assert row["best"] in ("augment=none", "augment=moderate", "augment=extreme")
    assert row["decided"].endswith("/2")
