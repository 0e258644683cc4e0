"""Does TensorFlow's oneDNN keep strict determinism on the CPU, and what is it worth?

    .venv/bin/python bench/onednn.py digits_cnn --epochs 3 --runs 2

For TF_ENABLE_ONEDNN_OPTS=0 and =1, `--runs` fresh processes each train the same seed
(strict determinism, unpacked and packed K=3) and print a SHA-256 of the trained weights and
the training time: the same hash in every process means bitwise-identical results.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def child(config: str, epochs: int) -> None:
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import numpy as np

    from bench.pack import experiment
    from core.data import load_dataset
    from core.pack import fit_packed
    from core.seeding import seed_everything
    from core.train import fit

    exp = experiment(config)
    exp = exp.model_copy(update={"train": exp.train.model_copy(update={"epochs": epochs})})
    data = load_dataset(exp.data, 0)

    def digest(models) -> str:
        h = hashlib.sha256()
        for m in models:
            for w in m.get_weights():
                h.update(np.ascontiguousarray(w).tobytes())
        return h.hexdigest()[:16]

    t0 = time.perf_counter()
    seed_everything(0, "strict")
    one = fit(exp, data, 0).model
    t1 = time.perf_counter()
    packed = [f.model for f in fit_packed(exp, data, [0, 1, 2])]
    t2 = time.perf_counter()
    print(json.dumps({"unpacked": digest([one]), "packed": digest(packed),
                      "unpacked_s": round(t1 - t0, 2), "packed_s": round(t2 - t1, 2)}))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("config")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--child", action="store_true")
    a = ap.parse_args()
    if a.child:
        child(a.config, a.epochs)
        return
    out = {}
    for flag in ("0", "1"):
        rows = []
        for _ in range(a.runs):
            env = {**os.environ, "TF_ENABLE_ONEDNN_OPTS": flag}
            p = subprocess.run([sys.executable, __file__, a.config, "--epochs", str(a.epochs),
                                "--child"], env=env, capture_output=True, text=True, cwd=ROOT)
            rows.append(json.loads(p.stdout.strip().splitlines()[-1]))
            print(flag, rows[-1], flush=True)
        out[f"onednn={flag}"] = {
            "bitwise_identical_across_processes": all(
                r["unpacked"] == rows[0]["unpacked"] and r["packed"] == rows[0]["packed"]
                for r in rows),
            "runs": rows}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
