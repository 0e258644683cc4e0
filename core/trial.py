"""One trial = one (config, seed) training = exactly one MLflow run.

Everything with a side effect for a trial happens here: the MLflow run, its params, per-epoch
metrics, final metrics, tags and artifacts. Building data, models and metrics stays pure.
"""

from __future__ import annotations

import json
import tempfile
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from core import tracking
from core.config import Experiment, trial_hash

DataCache = dict[str, Any]


@dataclass
class TrialSpec:
    exp: Experiment
    seed: int
    experiment_name: str
    run_name: str | None = None
    parent_run_id: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    log_backbone: bool = False  # pretraining runs keep their backbone as an MLflow model
    callbacks: list = field(default_factory=list)  # extra Keras callbacks (e.g. Optuna pruning)

    @property
    def hash(self) -> str:
        return trial_hash(self.exp, self.seed)


@dataclass
class TrialResult:
    run_id: str
    status: str  # FINISHED | FAILED | KILLED
    outcome: str  # ok | collapsed | diverged | failed
    metrics: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    history: dict[str, list[float]] = field(default_factory=dict)


def get_data(exp: Experiment, seed: int, cache: DataCache | None):
    from core.data import cache_key, load_dataset

    key = cache_key(exp.data, seed)
    if cache is not None and key in cache:
        return cache[key]
    ds = load_dataset(exp.data, seed)
    if cache is not None:
        cache[key] = ds
    return ds


def _write_artifacts(out: Path, spec: TrialSpec, fit, y_true, y_pred, names) -> None:
    from core import evaluate, plots

    (out / "config.yaml").write_text(
        f"# ablab trial {spec.hash}: seed {spec.seed}\n{spec.exp.to_yaml()}seed: {spec.seed}\n")
    title = f"{spec.run_name or spec.exp.name}"
    plots.learning_curves(fit.history, out / "learning_curves.png", title)
    if y_pred is not None:
        cm = evaluate.confusion(y_true, y_pred, len(names))
        plots.confusion_matrix(cm, names, out / "confusion_matrix.png", title)
        header = ",".join(["true\\pred", *names])
        rows = [",".join([names[i], *map(str, r)]) for i, r in enumerate(cm)]
        (out / "confusion_matrix.csv").write_text("\n".join([header, *rows]) + "\n")
        rep = evaluate.report(y_true, y_pred, names)
        (out / "classification_report.json").write_text(json.dumps(rep, indent=2))


def execute(spec: TrialSpec, c, run_id: str, cache: DataCache | None) -> TrialResult:
    """Train and evaluate inside an open run; raises on errors (the caller records them)."""
    import keras

    from core import evaluate, outcome, seeding
    from core.train import fit, predict

    exp = spec.exp
    uri = None
    if exp.model.pretrained and exp.model.weights != "imagenet":
        from core import pretrain

        # First: pretraining a missing source runs a whole trial of its own in this process.
        uri = pretrain.model_uri(exp.model.weights, c, cache)
        tracking.set_tags(c, run_id, {"ablab.pretrained_from": uri})
    seeding.seed_everything(spec.seed, exp.train.deterministic)
    device = seeding.device_name()
    policy = ("mixed_float16" if device != "cpu" else "mixed_bfloat16") \
        if exp.train.mixed_precision else "float32"
    tracking.set_tags(c, run_id, {"ablab.device": device, "ablab.dtype_policy": policy})
    keras.mixed_precision.set_global_policy(policy)
    try:
        data = get_data(exp, spec.seed, cache)
        backbone = pretrain.load_backbone(uri, c) if uri else None
        sink = lambda epoch, row: tracking.log_metrics(c, run_id, row, step=epoch)  # noqa: E731
        result = fit(exp, data, spec.seed, sink, backbone=backbone, extra=spec.callbacks)
    finally:
        keras.mixed_precision.set_global_policy("float32")

    losses = result.history.get("loss", []) + result.history.get("val_loss", [])
    final: dict[str, float] = {"epochs_run": result.epochs_run,
                               "train_time_s": result.train_time_s,
                               "n_params": result.model.count_params()}
    val = result.history.get("val_loss", [])
    finite = [(v, i) for i, v in enumerate(val) if np.isfinite(v)]
    if finite:
        final["best_epoch"] = min(finite)[1]
    y_true = data.y_test
    y_pred = None
    if all(np.isfinite(v) for v in losses):
        proba, proba_tta = predict(result.model, data.x_test, tta=exp.eval.tta)
        if np.isfinite(proba).all():
            y_pred = proba.argmax(axis=1)
            final.update(evaluate.classification_metrics(y_true, proba))
            if proba_tta is not None:
                final["test_accuracy_tta"] = float((proba_tta.argmax(1) == y_true).mean())
    kind = outcome.classify(losses, y_true, y_pred)
    if y_pred is None and kind == "ok":
        kind = "diverged"
    tracking.log_metrics(c, run_id, final, step=max(result.epochs_run - 1, 0))
    with tempfile.TemporaryDirectory() as tmp:
        _write_artifacts(Path(tmp), spec, result, y_true, y_pred, data.class_names)
        if exp.eval.log_model:
            result.model.save(Path(tmp) / "model.keras")
        c.log_artifacts(run_id, tmp)
    if spec.log_backbone and kind != "diverged":
        from core import pretrain

        pretrain.log_backbone(c, run_id, result.model.get_layer("backbone"))
    return TrialResult(run_id, "FINISHED", kind, final, history=result.history)


def start_run(spec: TrialSpec, c, experiment_id: str) -> str:
    tags = {
        "ablab.seed": spec.seed,
        "ablab.trial_hash": spec.hash,
        "ablab.experiment": spec.exp.name,
        "ablab.deterministic": spec.exp.train.deterministic,
        "ablab.role": "trial",
        **spec.tags,
    }
    if spec.parent_run_id:
        tags["mlflow.parentRunId"] = spec.parent_run_id
    run = c.create_run(experiment_id, run_name=spec.run_name or f"{spec.exp.name} seed={spec.seed}",
                       tags={k: tracking.fmt(v) for k, v in tags.items()})
    run_id = run.info.run_id
    tracking.log_params(c, run_id, {**spec.exp.flat(), "seed": spec.seed})
    return run_id


def run_trial(spec: TrialSpec, tracking_uri: str | None = None, c=None,
              cache: DataCache | None = None) -> TrialResult:
    """Open a run, train, record. Exceptions end the run FAILED (traceback attached);
    Ctrl-C ends it KILLED and propagates, so nothing stays RUNNING."""
    from core.seeding import quiet_tensorflow

    quiet_tensorflow()
    c = c or tracking.client(tracking_uri)
    experiment_id = tracking.get_or_create_experiment(c, spec.experiment_name)
    run_id = start_run(spec, c, experiment_id)
    try:
        res = execute(spec, c, run_id, cache)
    except (KeyboardInterrupt, SystemExit):
        _close(c, run_id, "KILLED", "killed")
        raise
    except Exception as err:  # noqa: BLE001 - any trial error is recorded, the study goes on
        tb = traceback.format_exc()
        c.log_text(run_id, tb, "traceback.txt")
        tracking.set_tags(c, run_id, {"ablab.error": f"{type(err).__name__}: {err}"[:5000]})
        _close(c, run_id, "FAILED", "failed")
        return TrialResult(run_id, "FAILED", "failed", error=f"{type(err).__name__}: {err}")
    finally:
        _clear_session()
    tracking.set_tags(c, run_id, {"ablab.outcome": res.outcome})
    c.set_terminated(run_id, "FINISHED")
    return res


def _close(c, run_id: str, status: str, outcome: str) -> None:
    try:
        tracking.set_tags(c, run_id, {"ablab.outcome": outcome})
    finally:
        c.set_terminated(run_id, status)


def _clear_session() -> None:
    """Reset Keras' global state between trials. Keras' own gc.collect() costs ~0.8 s per
    trial with TensorFlow's object graph; Python's generational GC reclaims the same memory."""
    import keras

    keras.backend.clear_session(free_memory=False)
