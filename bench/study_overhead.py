"""How much of a study's wall time is training? wall(ablab run) / sum(train_time_s).

Workers that start once and keep TensorFlow and the data loaded keep this near 1; a process per
trial (5 s of imports each) would not. Runs on a fresh store in a temporary folder.

    .venv/bin/python bench/study_overhead.py ten_seed_baseline --workers 1
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mlflow import MlflowClient


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("ablation", nargs="?", default="ten_seed_baseline")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("extra", nargs="*")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        uri = f"sqlite:///{Path(tmp) / 'mlflow.db'}"
        cmd = [sys.executable, "-m", "core.cli", "run", args.ablation, "--workers",
               str(args.workers), "--tracking-uri", uri, "--storage", str(Path(tmp) / "q.journal"),
               "--no-report", *args.extra]
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, env={**os.environ, "ABLAB_MLRUNS": tmp},
                       stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - t0
        c = MlflowClient(uri)
        exp = c.get_experiment_by_name(args.ablation)
        runs = c.search_runs([exp.experiment_id], "tags.`ablab.role` = 'trial'")
        train = sum(r.data.metrics["train_time_s"] for r in runs)
        # in-run: from the first trial run's start to the last one's end, so the TensorFlow
        # import, store creation and the coordinator's set-up and exit are left out
        span = (max(r.info.end_time for r in runs) - min(r.info.start_time for r in runs)) / 1e3
        ordered = sorted(runs, key=lambda r: r.info.start_time)
        each = [(r.info.end_time - r.info.start_time) / 1e3 - r.data.metrics["train_time_s"]
                for r in ordered]
        inside = sum(each) / len(runs)
        gaps = [(b.info.start_time - a.info.end_time) / 1e3
                for a, b in zip(ordered, ordered[1:], strict=False)]
    print(f"{args.ablation} workers={args.workers}: {len(runs)} trials, wall {wall:.1f}s, "
          f"sum(train_time_s) {train:.1f}s, ratio {wall / train:.3f}, "
          f"overhead {(wall - train) / len(runs):.2f}s/trial; in-run (first run's start to "
          f"last run's end, {span:.1f}s): "
          f"{(span * args.workers - train) / len(runs):.2f}s/trial ({inside:.2f}s inside a run "
          f"beside training, {sum(gaps) / max(len(gaps), 1):.2f}s between runs); inside each "
          f"run in order: {' '.join(f'{x:.2f}' for x in each)}")


if __name__ == "__main__":
    main()
