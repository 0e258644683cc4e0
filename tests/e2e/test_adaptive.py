"""Adaptive seeds end to end: a clearly worse variant (extreme augmentation) stops at the
first look while a close one gets the next block; a study SIGKILLed between looks and run
again ends with the same decisions and seed counts, no trial run twice."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient

from tests.conftest import ROOT, migrated_store, run_cli
from tests.e2e.helpers import parents, trial_runs

pytestmark = pytest.mark.e2e

NAME = "adaptive_e2e"
# 8x8 digits, 2 epochs: extreme augmentation scores ~0.2 against ~0.7. Pocock spending
# gives the first look (4 seeds) a boundary a 4-seed paired t-test can cross.
ABLATION = """\
# Question: is extreme augmentation worse, and moderate different, with adaptive seeds?
base: digits_cnn
set: {data.train_fraction: 0.5, data.image_size: 8, train.epochs: 2}
vary:
  augment: [none, moderate, extreme]
seeds: {min: 4, max: 8, step: 4, spending: pocock}
metric: test_accuracy
baseline: augment=none
"""


def _store(folder):
    return {"uri": migrated_store(folder), "storage": str(folder / "q.journal"),
            "env": {"ABLAB_MLRUNS": str(folder), "ABLAB_REPORTS": str(folder / "reports")}}


def _args(path, s):
    return ["run", str(path), "--workers", "2", "--tracking-uri", s["uri"], "--storage",
            s["storage"]]


def _outcome(uri):
    """Per variant: (decision, n_seeds) from its parent run, and its FINISHED trial seeds."""
    tags = {p.data.tags["ablab.variant"]: (p.data.tags.get("ablab.decision"),
                                           p.data.tags.get("ablab.n_seeds"))
            for p in parents(uri, NAME)}
    runs = trial_runs(uri, NAME)
    finished = [r for r in runs if r.info.status == "FINISHED"]
    hashes = [r.data.tags["ablab.trial_hash"] for r in finished]
    assert len(hashes) == len(set(hashes)), "a trial finished twice"
    assert not [r for r in runs if r.info.status == "RUNNING"]
    seeds = {}
    for r in finished:
        seeds.setdefault(r.data.tags["ablab.variant"], set()).add(int(r.data.tags["ablab.seed"]))
    return tags, {v: sorted(s) for v, s in seeds.items()}


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    folder = tmp_path_factory.mktemp("adaptive")
    path = folder / f"{NAME}.yaml"
    path.write_text(ABLATION)
    s = _store(folder / "whole")
    proc = run_cli(*_args(path, s), env=s["env"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return path, s, proc.stdout


def test_a_clearly_worse_variant_stops_at_min_and_a_close_one_gets_more(study):
    path, s, out = study
    tags, seeds = _outcome(s["uri"])
    assert tags["augment=extreme"] == ("worse", "4")
    assert seeds["augment=extreme"] == [0, 1, 2, 3]
    assert seeds["augment=moderate"] == list(range(8))  # open after the first look
    assert seeds["augment=none"] == list(range(8))  # the baseline pairs with the most
    assert tags["augment=moderate"][1] == "8"
    assert tags["augment=none"] == ("baseline", "8")
    # the summary says where each variant stopped and why
    assert "where each variant stopped" in out
    line = next(x for x in out.splitlines() if "augment=extreme" in x and "boundary" in x)
    assert "worse" in line and " 4 " in line
    assert "0 missing of 20" in out
    # the report: the looks with their boundaries, the decision as verdict, nothing missing
    reports = Path(s["env"]["ABLAB_REPORTS"]) / NAME
    text = (reports / "summary.md").read_text()
    assert "## Adaptive seeds" in text and "n=4: p < " in text
    assert "| augment=extreme | worse | 4 |" in text
    assert "## Missing" not in text
    looks = (reports / "looks.csv").read_text().splitlines()
    assert len(looks) == 1 + 1 + 2  # header, extreme's one look, moderate's two


def test_sigkill_between_looks_then_rerun_continues_the_same_plan(study, tmp_path):
    path, whole, _ = study
    s = _store(tmp_path)
    proc = subprocess.Popen([sys.executable, "-m", "core.cli", *_args(path, s)], cwd=ROOT,
                            env={**os.environ, **s["env"]}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:  # the second block has started: between looks
            if any(int(r.data.tags.get("ablab.seed", 0)) >= 4 for r in trial_runs(s["uri"], NAME)):
                break
            assert proc.poll() is None, "the study ended before it could be killed"
            time.sleep(0.3)
        else:
            raise AssertionError("the second look's block never started")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # coordinator and workers: nothing cleans up
        proc.wait(timeout=30)
    c = MlflowClient(s["uri"])
    exp = c.get_experiment_by_name(NAME)
    before = c.search_runs([exp.experiment_id], "attributes.status = 'FINISHED' and "
                           "tags.`ablab.role` = 'trial'")
    assert 12 <= len(before) < 20
    rerun = run_cli(*_args(path, s), env=s["env"])
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert f"{len(before)} trials already done" in rerun.stdout
    assert _outcome(s["uri"]) == _outcome(whole["uri"])
