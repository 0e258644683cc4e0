"""A packed study end to end: a worker SIGKILLed mid-pack leaves every trial of its pack
requeued, each finishes exactly once after the restart, and a packed trial run has the same
form (metrics, params, tags, artifacts) as an unpacked one."""

import os
import subprocess
import sys
import time

import pytest
from mlflow import MlflowClient

from tests.conftest import ROOT, run_cli
from tests.e2e.helpers import kill_a_worker, store, trial_runs

pytestmark = pytest.mark.e2e

STUDY = "ten_seed_baseline"


def _args(s, *extra):
    return ["run", STUDY, "--smoke", "--set", "train.epochs=4", "--workers", "1",
            "--tracking-uri", s["uri"], "--storage", s["storage"], "--no-report", *extra]


def _form(c, run) -> dict:
    arts = sorted(a.path for a in c.list_artifacts(run.info.run_id))
    return {"metrics": set(run.data.metrics) - {"pack_train_time_s"},
            "params": set(run.data.params), "tags": set(run.data.tags) - {"ablab.pack"},
            "artifacts": arts}


def test_a_killed_packed_worker_leaves_its_pack_requeued(tmp_path):
    s = store(tmp_path)
    proc = subprocess.Popen([sys.executable, "-m", "core.cli", *_args(
        s, "--seeds", "4", "--set", "train.pack=4")], cwd=ROOT, env={**os.environ, **s["env"]},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:  # the whole pack is running in one worker
        if sum(r.info.status == "RUNNING" for r in trial_runs(s["uri"], STUDY)) == 4:
            break
        assert proc.poll() is None, proc.stdout.read()
        time.sleep(0.2)
    else:
        raise AssertionError("the pack never started")
    kill_a_worker(proc, s["storage"])
    runs = trial_runs(s["uri"], STUDY)
    finished = [r for r in runs if r.info.status == "FINISHED"]
    assert sorted(int(r.data.tags["ablab.seed"]) for r in finished) == [0, 1, 2, 3]
    assert len({r.data.tags["ablab.trial_hash"] for r in finished}) == 4
    assert all(r.data.tags["ablab.pack"] == "4" for r in finished)
    killed = [r for r in runs if r.info.status != "FINISHED"]
    assert len(killed) == 4 and {r.info.status for r in killed} == {"KILLED"}
    assert all(r.data.tags.get("ablab.outcome") == "killed" for r in killed)
    # the same study unpacked, one seed: its trial run has the same form
    proc = run_cli(*_args(s, "--seeds", "1"), env=s["env"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    c = MlflowClient(s["uri"])
    plain = [r for r in trial_runs(s["uri"], STUDY) if r.info.status == "FINISHED"
             and "ablab.pack" not in r.data.tags]
    assert len(plain) == 1
    assert _form(c, finished[0]) == _form(c, plain[0])
