"""A preempted trial resumes from its checkpoint and ends as if it had never stopped: the same
final weights (bit for bit) and test metrics, in one MLflow run with one continuous history.
Here in one process, the preemption a real SIGTERM delivered at a chosen batch; across worker
processes in tests/e2e/test_cluster.py and tests/e2e/test_resume.py."""

from __future__ import annotations

import os
import signal

import numpy as np
import pytest
from mlflow import MlflowClient

from core import checkpoint, signals
from core.lifecycle import Outcome
from core.runner import run_trial
from core.trial import Trial
from tests.conftest import migrated_store, tiny


@pytest.fixture
def preemptible():
    """This process as a worker: SIGTERM preempts (restored afterwards)."""
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)}
    signals.preemptible()
    yield
    for s, h in saved.items():
        signal.signal(s, h)
    signals._state.update(preemptible=False, requested=None)


def sigterm_at(epoch: int, batch: int | None):
    """A callback that sends this process SIGTERM at (epoch, batch), or during that epoch's
    validation (batch None): what SLURM or Kubernetes would send."""
    import keras

    class Kill(keras.callbacks.Callback):
        fired = False

        def on_train_batch_end(self, b, logs=None):  # b: the last step of a call (packs: 10)
            if self.epoch == epoch and batch is not None and b >= batch and not self.fired:
                self.fired = True
                os.kill(os.getpid(), signal.SIGTERM)

        def on_epoch_begin(self, e, logs=None):
            self.epoch = e

        def on_test_batch_end(self, b, logs=None):
            if batch is None and self.epoch == epoch and b == 0:
                os.kill(os.getpid(), signal.SIGTERM)

    return Kill()


def uninterrupted(tmp_path, trial: Trial) -> tuple[MlflowClient, object]:
    c = MlflowClient(migrated_store(tmp_path / "whole"))
    res = run_trial(trial, c)
    return c, c.get_run(res.run_id)


def preempted_then_resumed(tmp_path, trial: Trial, stops: list[tuple[int, int | None]]):
    """The trial stopped at each of `stops` in turn, resumed each time from its run."""
    c = MlflowClient(migrated_store(tmp_path / "stopped"))
    run_id = None
    for epoch, batch in stops:
        with pytest.raises(signals.Preempted) as stop:
            run_trial(trial.replace(resume_run_id=run_id), c,
                      callbacks=[sigterm_at(epoch, batch)])
        assert len(stop.value.run_ids) == 1
        run_id = stop.value.run_ids[0]
        run = c.get_run(run_id)
        assert run.data.tags["ablab.outcome"] == "preempted" and run.info.status == "KILLED"
    res = run_trial(trial.replace(resume_run_id=run_id), c)
    assert res.outcome.trained, res.error
    assert res.run_id == run_id  # the same run, reopened
    return c, c.get_run(run_id)


def same_result(a, b) -> None:
    assert a.data.tags["ablab.weights_sha256"] == b.data.tags["ablab.weights_sha256"]
    for m in ("test_accuracy", "test_loss", "epochs_run", "best_epoch"):
        if m in a.data.metrics:
            assert a.data.metrics[m] == b.data.metrics[m], m


def history(c: MlflowClient, run_id: str, key: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in c.get_metric_history(run_id, key))


def trial_of(**sections) -> Trial:
    return Trial.new(tiny(**sections), 0, "resume")


AUGMENTED = {"augment": {"strength": "moderate"}, "model": {"dropout": 0.3},
             "train": {"epochs": 4}}


@pytest.mark.parametrize("stop", [(1, 3), (2, None)], ids=["mid-epoch", "in-validation"])
def test_a_resumed_trial_ends_bit_for_bit_as_the_uninterrupted_one(tmp_path, preemptible,
                                                                   stop):
    """Augmentation and dropout draw random numbers every batch: their streams, the data
    order, the optimizer's moments and the epoch's running metrics all continue."""
    trial = trial_of(**AUGMENTED)
    c1, whole = uninterrupted(tmp_path, trial)
    c2, resumed = preempted_then_resumed(tmp_path, trial, [stop])
    same_result(whole, resumed)
    assert resumed.info.status == "FINISHED"
    assert resumed.data.tags["ablab.outcome"] == whole.data.tags["ablab.outcome"]
    assert resumed.data.tags["ablab.preemptions"] == "1"
    # one run, one history: every epoch logged once, with the uninterrupted values
    for key in ("loss", "val_loss", "val_accuracy"):
        assert history(c1, whole.info.run_id, key) == history(c2, resumed.info.run_id, key)
    assert resumed.data.metrics["epochs_trained_twice"] == 0
    assert resumed.data.metrics["epochs_trained"] == 4
    assert "checkpoint" not in [a.path for a in c2.list_artifacts(resumed.info.run_id)]


def fast_mode_check(folder: str) -> None:
    """In a fresh process (op determinism, once on, stays on in a process): `fast` mode,
    preempted mid-epoch and resumed, against uninterrupted."""
    from pathlib import Path

    signals.preemptible()
    trial = trial_of(**{**AUGMENTED, "train": {**AUGMENTED["train"], "deterministic": "fast"}})
    _, whole = uninterrupted(Path(folder), trial)
    _, resumed = preempted_then_resumed(Path(folder), trial, [(1, 3)])
    same_result(whole, resumed)
    print("fast: identical", whole.data.tags["ablab.weights_sha256"])


def test_fast_mode_resumes_bit_for_bit_on_this_machine(tmp_path):
    """`fast` lets XLA compile the steps; on a CPU its kernels are deterministic, so the
    resumed trial is exact there too (on a GPU, `fast` is not reproducible even without a
    stop: README)."""
    import subprocess
    import sys

    from tests.conftest import ROOT

    proc = subprocess.run([sys.executable, "-c", "from tests.test_checkpoint import "
                           f"fast_mode_check; fast_mode_check({str(tmp_path)!r})"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0 and "fast: identical" in proc.stdout, proc.stdout + proc.stderr


def test_early_stopping_and_plateau_resume_with_their_best_weights(tmp_path, preemptible):
    """Preempted after its best epoch: the resumed trial keeps the same best weights, the
    same patience count and learning-rate cuts, and stops at the same epoch."""
    trial = trial_of(data={"max_samples": 200}, model={"width": 32},
                     train={"epochs": 16, "lr": 0.02, "early_stopping_patience": 2,
                            "lr_schedule": "reduce_on_plateau"})
    c1, whole = uninterrupted(tmp_path, trial)
    best = int(whole.data.metrics["best_epoch"])
    ran = int(whole.data.metrics["epochs_run"])
    assert ran < 16, "early stopping should stop this trial before its last epoch"
    c2, resumed = preempted_then_resumed(tmp_path, trial, [(min(best + 1, ran - 1), 2)])
    same_result(whole, resumed)
    lrs = history(c1, whole.info.run_id, "lr")
    assert len({v for _, v in lrs}) > 1, "the plateau schedule should cut the rate"
    assert lrs == history(c2, resumed.info.run_id, "lr")


def test_three_preemptions_of_a_ten_epoch_trial_cost_no_epoch_twice(tmp_path, preemptible):
    trial = trial_of(train={"epochs": 10})
    _, whole = uninterrupted(tmp_path, trial)
    c, resumed = preempted_then_resumed(tmp_path, trial, [(2, 4), (5, 0), (8, 6)])
    same_result(whole, resumed)
    assert resumed.data.tags["ablab.preemptions"] == "3"
    assert resumed.data.metrics["epochs_trained"] <= 13
    assert resumed.data.metrics["epochs_trained_twice"] == 0


def test_an_unreadable_checkpoint_is_said_in_one_line_and_the_trial_starts_over(
        tmp_path, preemptible, capsys):
    trial = trial_of()
    c = MlflowClient(migrated_store(tmp_path))
    with pytest.raises(signals.Preempted) as stop:
        run_trial(trial, c, callbacks=[sigterm_at(1, 2)])
    old = stop.value.run_ids[0]
    folder = tmp_path / "ckpt"
    got = c.download_artifacts(old, checkpoint.ARTIFACT_PATH, str(folder))
    blob = (folder / "checkpoint" / checkpoint.ARRAYS_FILE).read_bytes()
    (folder / "checkpoint" / checkpoint.ARRAYS_FILE).write_bytes(blob[:-10] + b"x" * 10)
    c.log_artifacts(old, got, checkpoint.ARTIFACT_PATH)  # corrupt it in the store
    res = run_trial(trial.replace(resume_run_id=old), c)
    assert res.outcome == Outcome.OK and res.run_id != old
    said = [line for line in capsys.readouterr().out.splitlines() if old in line]
    assert len(said) == 1 and "corrupt" in said[0] and "starts over" in said[0], said
    # from another config: the same
    other = Trial.new(tiny(model={"width": 6}), 0, "resume")
    with pytest.raises(signals.Preempted) as stop:
        run_trial(other, c, callbacks=[sigterm_at(0, 3)])
    res = run_trial(trial.replace(resume_run_id=stop.value.run_ids[0]), c)
    assert res.outcome == Outcome.OK and "other code or config" in capsys.readouterr().out


def test_a_checkpoint_round_trips_through_its_files(tmp_path):
    state = checkpoint.State("k", 3, 5, 10, {"loss": [1.0, 0.5, float("nan")]}, [0.1],
                             12.5, 35, ["a", "b"], {"0.EarlyStopping": {"best": 0.4}},
                             {"model": [np.arange(6.0).reshape(2, 3), np.zeros(0)]})
    checkpoint.write(state, tmp_path)
    back = checkpoint.read(tmp_path, "k")
    assert back.position == 3.5 and back.callbacks == state.callbacks
    assert np.array_equal(back.arrays["model"][0], state.arrays["model"][0])
    assert np.isnan(back.history["loss"][2])
    with pytest.raises(checkpoint.Unreadable, match="other code or config"):
        checkpoint.read(tmp_path, "other")


def test_a_preempted_pack_resumes_together_bit_for_bit(tmp_path, preemptible):
    """Three seeds as towers of one model, with per-tower early stopping: preempted
    mid-epoch, the pack's checkpoint in its first run, all three runs reopened together."""
    from core.runner import run_pack

    exp = tiny(data={"max_samples": 1000},  # 21 steps an epoch: stopped after step 10 of 21
               train={"pack": 3, "epochs": 5, "early_stopping_patience": 2})
    trials = [Trial.new(exp, s, "resume", variant="v") for s in range(3)]
    c1 = MlflowClient(migrated_store(tmp_path / "whole"))
    whole = [c1.get_run(r.run_id) for r in run_pack(trials, c1)]
    c2 = MlflowClient(migrated_store(tmp_path / "stopped"))
    with pytest.raises(signals.Preempted) as stop:
        run_pack(trials, c2, callbacks=[sigterm_at(2, 4)])
    runs = list(stop.value.run_ids)
    resumed = run_pack([t.replace(resume_run_id=r, checkpoint_run_id=runs[0])
                        for t, r in zip(trials, runs, strict=True)], c2)
    assert [r.run_id for r in resumed] == runs  # the same three runs
    for a, r in zip(whole, resumed, strict=True):
        b = c2.get_run(r.run_id)
        assert history(c1, a.info.run_id, "loss") == history(c2, b.info.run_id, "loss")
        same_result(a, b)
        assert b.data.tags["ablab.preemptions"] == "1"
        assert history(c1, a.info.run_id, "val_loss") == history(c2, b.info.run_id,
                                                                  "val_loss")


def test_a_preempted_search_trial_resumes_its_run_and_reports_each_epoch_once(
        tracking_uri, preemptible, monkeypatch):
    """A search ticket preempted mid-epoch goes back to the queue with its sampled
    parameters and checkpoint; the next claim continues the same run, and Optuna (its pruner)
    hears each epoch's value exactly once."""
    import optuna
    from optuna.storages import InMemoryStorage

    from core import tracking
    from core.search.handler import SearchHandler
    from core.search.spec import load_search
    from core.search.strategy import SearchStudy
    from core.study import RunOptions
    from core.study.queue import Queue, StudyMeta

    reported: list[int] = []
    real_report = optuna.Trial.report
    monkeypatch.setattr(optuna.Trial, "report", lambda self, value, step: (
        reported.append(step), real_report(self, value, step))[1])
    c = MlflowClient(tracking_uri)
    storage = InMemoryStorage()
    study = SearchStudy(load_search("lr_batch"), RunOptions(
        tracking_uri=tracking_uri, smoke=True, sets=["train.epochs=4"]))
    q = Queue(storage, study.queue_name, study.s.direction)
    study.prepare(q, c, tracking.get_or_create_experiment(c, study.name))
    meta = StudyMeta(kind="search", study=study.name, metric=study.s.metric,
                     direction=study.s.direction, **study.meta())
    q.enqueue({"key": "ticket-0"})
    resumed_from: list[str | None] = []

    def train(t, **kw):
        resumed_from.append(t.resume_run_id)
        stop = [sigterm_at(1, 2)] if len(resumed_from) == 1 else []
        return run_trial(t, **{**kw, "callbacks": [*kw.get("callbacks", []), *stop]})

    with pytest.raises(signals.Preempted):
        SearchHandler(q, c, meta, train=train).run(q.claim("w1"))
    job = q.claim("w2")
    assert job is not None and job.attrs["preemptions"] == 1
    params = dict(job.params)
    assert SearchHandler(q, c, meta, train=train).run(job) == Outcome.OK
    t = optuna.load_study(study_name=study.queue_name, storage=storage).trials[0]
    assert t.state.name == "COMPLETE" and t.params == params  # the same sampled trial
    assert sorted(reported) == [0, 1, 2, 3]  # each epoch once: none twice, none lost
    assert sorted(t.intermediate_values) == [0, 1, 2, 3]
    run_id = t.user_attrs["mlflow_run_id"]
    assert resumed_from == [None, run_id]  # the second attempt continued the first's run
    run = c.get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.tags["ablab.preemptions"] == "1"


def test_keep_checkpoints_keeps_the_last_one_of_a_finished_trial(tmp_path, preemptible,
                                                                  monkeypatch):
    monkeypatch.setenv("ABLAB_KEEP_CHECKPOINTS", "1")  # what --keep-checkpoints sets
    c, run = preempted_then_resumed(tmp_path, trial_of(), [(0, 2)])
    assert run.info.status == "FINISHED"
    kept = [a.path for a in c.list_artifacts(run.info.run_id, checkpoint.ARTIFACT_PATH)]
    assert sorted(kept) == ["checkpoint/arrays.npz", "checkpoint/state.json"]
