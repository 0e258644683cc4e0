"""How the study queue's costs grow with its size (issue 24): enqueue, claim, the
coordinator's poll, `ablab list`'s queue query, and a trial's claim + finish, at 100, 1,000
and 10,000 trials of an ablation (4 learning rates x N/4 seeds of `digits_cnn`, the configs
a real study enqueues), on a journal file, sqlite and a fresh local PostgreSQL 15 cluster.
Each (storage, size) gets a storage of its own. Times are medians of 7 where repeated.

    .venv/bin/python -m bench.queue_scale            # all three sizes (about 3 minutes)
    .venv/bin/python -m bench.queue_scale --smoke    # 100 and 1,000 only

The per-trial MLflow side is `bench/trial_mlflow.py`.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from optuna.trial import TrialState

from bench import median_seconds
from core.config import load_experiment
from core.inventory import _queue_totals
from core.lifecycle import Outcome
from core.server import ensure_databases, with_db
from core.study.coordinator import key_states
from core.study.queue import LIVE_STATES, Queue
from core.trial import Trial
from tests.pg import postgres

LRS = (0.0003, 0.001, 0.003, 0.01)


def items(n: int) -> list[tuple[dict, None]]:
    exps = [load_experiment("digits_cnn", [f"train.lr={lr}"]) for lr in LRS]
    out = []
    for seed in range(n // len(LRS)):
        for lr, exp in zip(LRS, exps, strict=True):
            t = Trial.new(exp, seed, "scale", variant=f"train.lr={lr}",
                          parent_run_id="0" * 32)
            out.append((dict(t.to_attrs()), None))
    return out


def measure(storage: str, n: int) -> dict[str, float]:
    work = items(n)
    q = Queue(storage, "ablation:scale")
    out = {"enqueue_s": median_seconds(lambda: q.enqueue_many(work))}
    keys = [a["key"] for a, _ in work]
    assert q.count((TrialState.WAITING,)) == n

    def poll() -> None:  # what the coordinator reads each second (Study._drive's step)
        q.count((TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL))
        key_states(keys, q.light())
        q.count(LIVE_STATES)
        q.count((TrialState.WAITING,))

    out["poll_s"] = median_seconds(poll, 3)
    out["list_s"] = median_seconds(lambda: _queue_totals(storage), 3)
    worker = Queue(storage, "ablation:scale", create=False)  # a worker's own connection
    claims, cycles = [], []
    for _ in range(7):
        t = time.perf_counter()
        job = worker.claim("bench:1")
        claims.append(time.perf_counter() - t)
        assert job is not None and job.attrs["config"]
        worker.finish(job, Outcome.OK, 0.9, "run")
        cycles.append(time.perf_counter() - t)
    out["claim_s"] = statistics.median(claims)
    out["claim_finish_s"] = statistics.median(cycles)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--smoke", action="store_true", help="100 and 1,000 trials only")
    ap.add_argument("--kinds", default="journal,sqlite,postgresql")
    args = ap.parse_args()
    sizes = (100, 1000) if args.smoke else (100, 1000, 10_000)
    kinds = args.kinds.split(",")
    rows = []
    with tempfile.TemporaryDirectory() as tmp, (
            postgres("postgres") if "postgresql" in kinds else _none()) as pg:
        for kind in kinds:
            for n in sizes:
                if kind == "journal":
                    storage = str(Path(tmp) / f"q{n}.journal")
                elif kind == "sqlite":
                    storage = f"sqlite:///{Path(tmp) / f'q{n}.db'}"
                else:
                    ensure_databases(pg, (f"scale{n}",))
                    storage = with_db(pg, f"scale{n}")
                r = measure(storage, n)
                rows.append((kind, n, r))
                print(f"{kind:10s} {n:6d}  enqueue {r['enqueue_s']:7.3f} s  claim "
                      f"{r['claim_s'] * 1000:7.1f} ms  claim+finish "
                      f"{r['claim_finish_s'] * 1000:7.1f} ms  poll {r['poll_s'] * 1000:7.1f} ms"
                      f"  list {r['list_s'] * 1000:7.1f} ms", flush=True)
    print("\n| storage | trials | enqueue | claim (median of 7) | claim + finish | poll | "
          "list (queue) |\n|---|---|---|---|---|---|---|")
    for kind, n, r in rows:
        print(f"| {kind} | {n:,} | {r['enqueue_s']:.2f} s | {r['claim_s'] * 1000:.1f} ms | "
              f"{r['claim_finish_s'] * 1000:.1f} ms | {r['poll_s'] * 1000:.0f} ms | "
              f"{r['list_s'] * 1000:.0f} ms |")


class _none:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


if __name__ == "__main__":
    main()
