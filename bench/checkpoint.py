"""Issue 29: what checkpoints cost and what they save, on `ten_seed_baseline` trials (32x32
digits, 3 conv blocks, 20 epochs), each a real `run_trial` into its own MLflow store.

1. Overhead at the default setting (a checkpoint at an epoch end at most once a minute:
   ABLAB_CHECKPOINT_EVERY_S=60), against checkpoints off ("inf": written only when
   preempted), and with one at every epoch end ("0"): the same seeds, the modes interleaved.
   Goal: <= 3% of the trial's time at the default.
2. A trial preempted at 70% (a real SIGTERM to this process as a worker, in epoch 14 of 20):
   resumed from its checkpoint, against restarting it from zero.

    .venv/bin/python -m bench.checkpoint
"""

from __future__ import annotations

import os
import signal
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

MODES = {"off (inf)": "inf", "default (60 s)": None, "every epoch (0)": "0"}
SEEDS = (0, 1, 2)


def one(exp, seed: int, every: str | None, callbacks=(), resume: str | None = None):
    from mlflow import MlflowClient

    from core.runner import run_trial
    from core.trial import Trial
    from tests.conftest import migrated_store

    if every is None:
        os.environ.pop("ABLAB_CHECKPOINT_EVERY_S", None)
    else:
        os.environ["ABLAB_CHECKPOINT_EVERY_S"] = every
    c = one.client if resume else MlflowClient(migrated_store(Path(tempfile.mkdtemp())))
    one.client = c
    t0 = time.perf_counter()
    res = run_trial(Trial.new(exp, seed, "bench").replace(resume_run_id=resume), c,
                    callbacks=list(callbacks))
    return time.perf_counter() - t0, res


def main() -> None:
    from core import signals
    from core.ablation.spec import expand_variants, load_ablation
    from tests.test_checkpoint import sigterm_at

    exp = expand_variants(load_ablation("ten_seed_baseline"))[0][0].exp
    one(exp, 99, "inf")  # warm-up: imports, first traces
    rows: dict[str, list[tuple[float, float, float, float]]] = {m: [] for m in MODES}
    for seed in SEEDS:
        for mode, every in MODES.items():
            wall, res = one(exp, seed, every)
            m = res.metrics
            rows[mode].append((wall, m["train_time_s"], m["checkpoints"], m["checkpoint_s"]))
    off = statistics.median(r[0] for r in rows["off (inf)"])
    print(f"ten_seed_baseline, {exp.train.epochs} epochs, seeds {SEEDS} "
          "(median trial wall time; training time; checkpoints written; time writing them)")
    for mode, rs in rows.items():
        wall, train, n, writing = (statistics.median(r[i] for r in rs) for i in range(4))
        print(f"  {mode:16s} trial {wall:6.1f} s ({wall / off - 1:+.2%} vs off), training "
              f"{train:5.1f} s, {n:.0f} checkpoints, {writing:.2f} s writing them")
    every = rows["every epoch (0)"]
    per = sum(r[3] for r in every) / max(1.0, sum(r[2] for r in every))
    print(f"  one checkpoint: {per * 1000:.0f} ms to write ({per / (off / exp.train.epochs):.1%} "
          "of an epoch)")

    # preempted at 70%: resume against restart from zero
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)}
    signals.preemptible()
    at = int(exp.train.epochs * 0.7)
    t0 = time.perf_counter()
    try:
        one(exp, 0, None, callbacks=[sigterm_at(at, 5)])
    except signals.Preempted as stop:
        run_id = stop.run_ids[0]
    first = time.perf_counter() - t0
    for s, h in saved.items():
        signal.signal(s, h)
    rest, res = one(exp, 0, None, resume=run_id)
    resumed = _digest(res)
    full, again = one(exp, 0, None)
    m = res.metrics
    print(f"preempted in epoch {at} of {exp.train.epochs}: the first attempt ran {first:.1f} s")
    print(f"  resumed: {rest:.1f} s more, {first + rest:.1f} s in all, {m['epochs_trained']:.2f} "
          f"epochs trained ({m['epochs_trained_twice']:.2f} twice)")
    print(f"  restarted from zero: {full:.1f} s more, {first + full:.1f} s in all, "
          f"{at + exp.train.epochs}+ epochs trained")
    print(f"  saved: {full - rest:.1f} s ({(full - rest) / (first + full):.0%} of the restart's "
          f"total); resumed weights == uninterrupted weights: {resumed == _digest(again)}")


def _digest(res) -> str:
    return one.client.get_run(res.run_id).data.tags.get("ablab.weights_sha256", "")


if __name__ == "__main__":
    main()
