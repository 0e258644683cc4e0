"""Seeds per hour of a whole study: the hand-written Keras loop (bench/handwritten.py), then
`ablab run ten_seed_baseline` unpacked and with `--set train.pack=K`, each on a fresh store
with one worker, wall-clock from the command's start to its end (report included).

    .venv/bin/python bench/pack_study.py --packs 10
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STUDY = "ten_seed_baseline"


def accuracies(uri: str) -> list[float]:
    from mlflow import MlflowClient

    c = MlflowClient(uri)
    exp = c.get_experiment_by_name(STUDY)
    runs = c.search_runs([exp.experiment_id], "tags.`ablab.role` = 'trial' and "
                         "attributes.status = 'FINISHED'")
    return [r.data.metrics["test_accuracy"] for r in runs]


def ablab(pack: int) -> dict:
    import numpy as np

    folder = Path(tempfile.mkdtemp(prefix="ablab-pack-bench-"))
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    cmd = [sys.executable, "-m", "core.cli", "run", STUDY, "--workers", "1",
           "--tracking-uri", uri, "--storage", str(folder / "q.journal")]
    if pack > 1:
        cmd += ["--set", f"train.pack={pack}"]
    env = {**os.environ, "ABLAB_MLRUNS": str(folder), "ABLAB_REPORTS": str(folder / "r")}
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, env=env, check=True, capture_output=True)
    wall = time.perf_counter() - t0
    accs = accuracies(uri)
    return {"what": f"ablab run {STUDY}" + (f" --set train.pack={pack}" if pack > 1 else ""),
            "wall_s": round(wall, 1), "seeds": len(accs),
            "mean_test_accuracy": round(float(np.mean(accs)), 4),
            "sd": round(float(np.std(accs, ddof=1)), 4)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--packs", default="10")
    ap.add_argument("--skip-handwritten", action="store_true")
    a = ap.parse_args()
    rows = []
    if not a.skip_handwritten:
        out = subprocess.run([sys.executable, str(ROOT / "bench" / "handwritten.py")],
                             cwd=ROOT, check=True, capture_output=True, text=True).stdout
        hw = json.loads(out.strip().splitlines()[-1])
        rows.append({"what": "hand-written Keras loop", "wall_s": hw["wall_s"], "seeds": 10,
                     "mean_test_accuracy": hw["mean_test_accuracy"], "sd": hw["sd"]})
        print(json.dumps(rows[-1]), flush=True)
    for k in [1, *(int(x) for x in a.packs.split(",") if x)]:
        rows.append(ablab(k))
        print(json.dumps(rows[-1]), flush=True)
    for r in rows:
        r["seeds_per_hour"] = round(r["seeds"] / r["wall_s"] * 3600)
    print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
