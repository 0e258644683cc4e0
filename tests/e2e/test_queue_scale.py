"""Issue 24, must-hold 4: sixteen processes claim from one PostgreSQL queue of a few hundred
trials at once (a start line they all wait at): no trial is claimed twice and none is lost.
Also the narrow RDB queries (`core.study.rdb`) against a real PostgreSQL."""

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from optuna.trial import TrialState

from core.study.queue import Queue
from tests.pg import postgres

ROOT = Path(__file__).resolve().parents[2]
TRIALS = 400
WORKERS = 16

CLAIMER = """
import json, sys, time
from pathlib import Path
from core.lifecycle import Outcome
from core.study.queue import Queue
storage, go, out, who = sys.argv[1:5]
q = Queue(storage, "ablation:race", create=False)
Path(out + ".ready").touch()
while not Path(go).exists():
    time.sleep(0.01)
mine = []
while (job := q.claim(who)) is not None:
    mine.append([job.trial_id, job.attrs["trial_hash"], job.attrs["config"]])
    q.finish(job, Outcome.OK, 1.0, "run-" + who)
Path(out).write_text(json.dumps(mine))
"""


@pytest.fixture(scope="module")
def pg():
    with postgres() as url:
        yield url


def test_sixteen_processes_claim_each_trial_once(pg, tmp_path):
    q = Queue(pg, "ablation:race")
    q.enqueue_many([({"key": f"k{i}", "trial_hash": f"h{i}", "config": json.dumps({"v": i % 4}),
                      "pack_key": f"p{i % 4}"}, None) for i in range(TRIALS)])
    go = tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, "-c", CLAIMER, pg, str(go),
                               str(tmp_path / f"w{w}.json"), f"w{w}"], cwd=ROOT)
             for w in range(WORKERS)]
    deadline = time.monotonic() + 180  # every process has imported Optuna and connected
    while len(list(tmp_path.glob("*.ready"))) < WORKERS:
        assert time.monotonic() < deadline and all(p.poll() is None for p in procs)
        time.sleep(0.05)
    go.touch()
    for p in procs:
        assert p.wait(timeout=300) == 0
    claims = [c for w in range(WORKERS)
              for c in json.loads((tmp_path / f"w{w}.json").read_text())]
    hashes = [h for _, h, _ in claims]
    assert len(hashes) == len(set(hashes)) == TRIALS  # none twice, none lost
    assert all(json.loads(cfg)["v"] == int(h[1:]) % 4 for _, h, cfg in claims)
    busy = sum(1 for w in range(WORKERS) if json.loads((tmp_path / f"w{w}.json").read_text()))
    assert busy >= WORKERS // 2  # they really ran side by side
    states = {t.state for t in q.trials()}
    assert states == {TrialState.COMPLETE}
    assert q.count((TrialState.COMPLETE,)) == TRIALS


def test_bulk_enqueue_matches_optunas_own(pg):
    """Trials enqueued in one transaction look like Optuna's `enqueue_trial` ones: numbers in
    order after what was there, the same user and system attrs; the config is stored once
    per distinct config and put back on a claimed job."""
    q = Queue(pg, "ablation:bulk")
    q.enqueue({"key": "k0", "trial_hash": "h0", "config": '{"a": 1}'})  # one by one
    q.enqueue_many([({"key": f"k{i}", "trial_hash": f"h{i}", "config": '{"a": 1}'}, None)
                    for i in (1, 2)])
    ts = q.trials()
    assert [t.number for t in ts] == [0, 1, 2]
    assert all(t.state == TrialState.WAITING and t.system_attrs == {"fixed_params": {}}
               for t in ts)
    assert ts[1].user_attrs["trial_hash"] == "h1" and "config" not in ts[1].user_attrs
    assert len({t.user_attrs["config_ref"] for t in ts}) == 1
    assert Queue(pg, "ablation:bulk", create=False).claim("w").attrs["config"] == '{"a": 1}'
    assert [t.user_attrs["key"] for t in q.light((TrialState.WAITING,))] == ["k1", "k2"]
    assert q.count((TrialState.WAITING,)) == 2 and q.count((TrialState.RUNNING,)) == 1
