"""Per finished trial, ablab's own MLflow and queue work as a study grows (issue 24,
must-hold 3): claim, the handler's bookkeeping (is it already done? close lost attempts),
recording a trial's run as the runner does (create, tags, params, two epochs of metrics,
final metrics, a small artifact, end), finishing the queue trial and updating the variant's
parent (amortized: at 2,500 seeds a variant's parent is recomputed every 25th trial, so the
figure is the mean over 100 trials, 25 seeds per variant). Training itself is left out (a
stand-in returns at once). Measured with 100, 1,000 and 10,000 trials already in the study
(4 variants; their runs and parent ledgers written beforehand), the queue on a local
PostgreSQL, MLflow on sqlite (what `make ablation` uses) or on the same PostgreSQL
(`--mlflow postgresql`, what `ablab server` runs).

    .venv/bin/python -m bench.trial_mlflow                       # sqlite MLflow, ~10 min
    .venv/bin/python -m bench.trial_mlflow --mlflow postgresql
    .venv/bin/python -m bench.trial_mlflow --sizes 100,1000      # quicker
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunStatus, RunTag

from core import lifecycle, tracking
from core.ablation.handler import AblationHandler, Trainer
from core.ablation.parents import record_seeds
from core.config import load_experiment
from core.lifecycle import Outcome, Role
from core.runner import TrialResult, start_run
from core.server import ensure_databases, with_db
from core.study import record
from core.study.queue import Queue, StudyMeta
from core.trial import Trial
from tests.pg import postgres

LRS = (0.0003, 0.001, 0.003, 0.01)
STUDY = "scale"
EPOCH_KEYS = ("loss", "accuracy", "val_loss", "val_accuracy", "lr")
FINAL_KEYS = ("test_accuracy", "test_loss", "test_macro_f1", "test_balanced_accuracy",
              "test_kappa", "epochs_run", "train_time_s", "n_params", "n_classes", "n_test",
              "best_epoch", *(f"test_recall_{i}" for i in range(10)))


def stand_in(trial: Trial, c: MlflowClient, cache=None, **kw) -> TrialResult:
    """The runner's MLflow calls for one trained trial, without training."""
    exp_id = tracking.get_or_create_experiment(c, trial.study)
    run_id = start_run(trial, c, exp_id)
    tracking.set_tags(c, run_id, {lifecycle.DEVICE: "cpu", lifecycle.DTYPE_POLICY: "float32"})
    tracking.log_params(c, run_id, {"data_pipeline": "memory"})
    for epoch in range(2):
        tracking.log_metrics(c, run_id, {k: 0.5 for k in EPOCH_KEYS}, step=epoch)
    final = {k: 0.9 for k in FINAL_KEYS} | {"n_classes": 10.0, "n_test": 360.0}
    tracking.log_metrics(c, run_id, final, step=1)
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "confusion_matrix.csv").write_text("a,b\n1,2\n")
        c.log_artifacts(run_id, tmp)
    lifecycle.end_run(c, run_id, Outcome.OK)
    return TrialResult(run_id, Outcome.OK, final)


def trials(n: int, parents: dict[str, str]) -> list[Trial]:
    exps = {f"train.lr={lr}": load_experiment("digits_cnn", [f"train.lr={lr}"]) for lr in LRS}
    return [Trial.new(exp, seed, STUDY, variant=v, parent_run_id=parents[v])
            for seed in range(n // len(LRS)) for v, exp in exps.items()]


def prefill(c: MlflowClient, exp_id: str, done: list[Trial]) -> None:
    """Finished trial runs as the runner leaves them (fewer calls: one batch each), and
    each parent's ledger."""
    ts = int(time.time() * 1000)
    for t in done:
        run = c.create_run(exp_id, run_name=t.run_name, tags={
            lifecycle.ROLE: Role.TRIAL.value, lifecycle.SEED: str(t.seed),
            lifecycle.TRIAL_HASH: t.hash, lifecycle.VARIANT: t.variant,
            lifecycle.PARENT: t.parent_run_id or "", lifecycle.STUDY: STUDY})
        c.log_batch(run.info.run_id,
                    metrics=[Metric(k, 0.9, ts, 1) for k in FINAL_KEYS],
                    params=[Param(k, str(v)) for k, v in t.exp.flat().items()],
                    tags=[RunTag(lifecycle.OUTCOME, Outcome.OK.value)])
        c.set_terminated(run.info.run_id, RunStatus.to_string(RunStatus.FINISHED))
    by_parent: dict[str, list[Trial]] = {}
    for t in done:
        by_parent.setdefault(t.parent_run_id or "", []).append(t)
    for pid, ts_ in by_parent.items():
        for i in range(0, len(ts_), 400):  # values that vary, as seeds' do (IQM bootstrap)
            record_seeds(c, pid, "test_accuracy",
                         [(t.seed, Outcome.OK, {"test_accuracy": 0.9 + 0.001 * (t.seed % 17),
                                                "n_classes": 10.0, "n_test": 360.0})
                          for t in ts_[i:i + 400]])


def measure(tracking_uri: str, storage: str, n: int, timed_trials: int = 100,
            profile: str = "") -> dict[str, float]:
    c = tracking.client(tracking_uri)
    exp_id = tracking.get_or_create_experiment(c, STUDY)
    parents = {f"train.lr={lr}": record.role_run(
        c, exp_id, Role.VARIANT, {lifecycle.VARIANT: f"train.lr={lr}"}, f"train.lr={lr}",
        tags={lifecycle.STUDY: STUDY}) for lr in LRS}
    work = trials(n + timed_trials, parents)
    t0 = time.perf_counter()
    prefill(c, exp_id, work[:n])
    prefill_s = time.perf_counter() - t0
    q = Queue(storage, f"ablation:{STUDY}")
    q.enqueue_many([(dict(t.to_attrs()), None) for t in work[n:]])
    meta = StudyMeta(kind="ablation", study=STUDY, metric="test_accuracy",
                     direction="maximize", missing_as="chance")
    handler = AblationHandler(q, c, meta, Trainer(stand_in, lambda *a, **k: [],
                                                  lambda t: 1))
    times, claims = [], []
    prof = None
    if profile:
        import cProfile

        prof = cProfile.Profile()
        prof.enable()
    for _ in range(timed_trials):  # 25 seeds of each variant: one full cycle of `due`
        t = time.perf_counter()
        job = q.claim("bench:1")
        claims.append(time.perf_counter() - t)
        assert job is not None
        with q.heartbeat(job.trial_id):
            assert handler.run(job) == Outcome.OK
        times.append(time.perf_counter() - t)
    if prof is not None:
        prof.disable()
        prof.dump_stats(f"{profile}.{n}")
    return {"trial_s": statistics.mean(times), "median_s": statistics.median(times),
            "claim_s": statistics.median(claims), "prefill_s": prefill_s}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mlflow", choices=("sqlite", "postgresql"), default="sqlite")
    ap.add_argument("--sizes", default="100,1000,10000")
    ap.add_argument("--profile", default="", help="cProfile the timed trials to PATH.<size>")
    args = ap.parse_args()
    sizes = [int(x) for x in args.sizes.split(",")]
    rows = []
    with tempfile.TemporaryDirectory() as tmp, postgres("postgres") as pg:
        for n in sizes:
            ensure_databases(pg, (f"optuna{n}", f"mlflow{n}"))
            uri = (f"sqlite:///{Path(tmp) / f'mlflow{n}.db'}" if args.mlflow == "sqlite"
                   else with_db(pg, f"mlflow{n}"))
            r = measure(uri, with_db(pg, f"optuna{n}"), n, profile=args.profile)
            rows.append((n, r))
            print(f"{n:6d} trials before: {r['trial_s'] * 1000:6.0f} ms per trial (median "
                  f"{r['median_s'] * 1000:.0f} ms; claim {r['claim_s'] * 1000:.1f} ms; prefill "
                  f"took {r['prefill_s']:.0f} s)", flush=True)
    print(f"\n| trials in the study | per finished trial, mean of 100 (MLflow on {args.mlflow},"
          " queue on PostgreSQL) | median | of which the claim |\n|---|---|---|---|")
    for n, r in rows:
        print(f"| {n:,} | {r['trial_s'] * 1000:.0f} ms | {r['median_s'] * 1000:.0f} ms | "
              f"{r['claim_s'] * 1000:.1f} ms |")


if __name__ == "__main__":
    main()
