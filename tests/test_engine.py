"""The study engine's decisions, without processes or TensorFlow: the coordinator runs on an
in-memory Optuna storage with a stand-in worker pool whose workers run in this process (the
real handlers, with a stand-in trainer that writes real MLflow runs), so the retry limit, the
ranking of a key's queue trials, the handlers' skip / pack / re-use decisions and the parent
aggregates are checked in seconds."""

from __future__ import annotations

import io
import socket
from types import SimpleNamespace

import optuna
import pytest
from mlflow import MlflowClient
from optuna.storages import InMemoryStorage
from optuna.trial import TrialState
from rich.console import Console

from core import lifecycle, tracking
from core.ablation.handler import AblationHandler, Trainer, pack_size
from core.ablation.spec import Ablation
from core.ablation.study import AblationStudy
from core.lifecycle import Outcome
from core.runner import TrialResult, start_run
from core.study import RunOptions
from core.study.coordinator import Engine, key_states
from core.study.pool import WorkerProc
from core.study.queue import MAX_ATTEMPTS, Queue, StudyMeta
from core.trial import Trial
from tests.conftest import tiny

DEAD_PID = 4_194_999  # above Linux's largest pid: never a live process
CHANCE = 0.1  # digits: 10 classes


def value_of(trial: Trial) -> float:
    """A deterministic stand-in accuracy: each variant its own level, each seed its noise."""
    return round(0.5 + trial.exp.train.lr + 0.01 * trial.seed, 6)


def record_run(trial: Trial, c: MlflowClient, outcome: Outcome = Outcome.OK) -> TrialResult:
    """What a trained trial leaves in MLflow (a real run), without training."""
    exp_id = tracking.get_or_create_experiment(c, trial.study)
    run_id = start_run(trial, c, exp_id)
    metrics = {"n_classes": 10.0}
    if outcome.trained:
        metrics["test_accuracy"] = value_of(trial)
    tracking.log_metrics(c, run_id, metrics)
    lifecycle.end_run(c, run_id, outcome)
    return TrialResult(run_id, outcome, metrics)


class StandInTrainer:
    """Records what it was asked to train; `diverge` seeds end diverged."""

    def __init__(self, diverge: set[tuple[str, int]] = frozenset()):
        self.calls: list[list[Trial]] = []
        self.diverge = diverge

    def outcome(self, t: Trial) -> Outcome:
        return Outcome.DIVERGED if (t.variant, t.seed) in self.diverge else Outcome.OK

    def one(self, trial: Trial, c: MlflowClient, cache=None, **kw) -> TrialResult:
        self.calls.append([trial])
        return record_run(trial, c, self.outcome(trial))

    def pack(self, trials: list[Trial], c: MlflowClient, cache=None) -> list[TrialResult]:
        self.calls.append(list(trials))
        return [record_run(t, c, self.outcome(t)) for t in trials]

    def trainer(self) -> Trainer:
        return Trainer(self.one, self.pack, pack_size)


def refuse(*a, **kw):
    raise AssertionError("nothing should have been trained")


class InProcessPool:
    """A worker pool whose workers run in this process: each round (`reap`) every live
    worker claims one trial and runs it with the real handler, or, for a key in `crash`,
    dies holding it (its process gone, exit code 1), as a SIGKILLed worker would."""

    def __init__(self, storage, tracking_uri: str, trainer: Trainer, crash: set[str],
                 slots: int = 1):
        self.storage, self.uri, self.trainer, self.crash = storage, tracking_uri, trainer, crash
        self.cmd: list[str] = ["stand-in"]
        self.log_dir = None
        self.slots = [{"ABLAB_SLOT": f"cpu{i}"} for i in range(slots)]
        self.procs: dict[int, WorkerProc] = {}
        self.crashes = self.started = 0
        self.name: str | None = None
        self._pid = 1000

    def factory(self, cmd, slots, log_dir) -> InProcessPool:
        self.name = cmd[0]  # the engine's worker_cmd hands the queue name
        self.log_dir = log_dir
        return self

    def fill(self) -> None:
        for slot in range(len(self.slots)):
            if slot not in self.procs:
                self._pid += 1
                proc = SimpleNamespace(pid=self._pid, returncode=None)
                self.procs[slot] = WorkerProc(slot, self.slots[slot], proc, "log")
                self.started += 1

    def live_ids(self) -> set[str]:
        return {w.id for w in self.procs.values()}

    def reap(self) -> list[WorkerProc]:
        gone = []
        queue = Queue(self.storage, self.name, create=False)
        for slot, w in list(self.procs.items()):
            job = queue.claim(w.id)
            if job is None:
                w.proc.returncode = 0
            elif job.attrs["key"] in self.crash:
                # the worker dies mid-trial: its claim stays RUNNING under a dead pid
                queue.storage.set_trial_user_attr(job.trial_id, lifecycle.ATTR_WORKER,
                                                  f"{socket.gethostname()}:{DEAD_PID}")
                w.proc.returncode = 1
                self.crashes += 1
            else:
                AblationHandler(queue, MlflowClient(self.uri), queue.meta, self.trainer).run(job)
                continue
            gone.append(self.procs.pop(slot))
        return gone

    def crash_looping(self) -> bool:
        return self.crashes > 10 * len(self.slots)

    def wait(self) -> None:
        self.procs.clear()

    def interrupt(self, timeout_s: float = 10.0, signum: int = 2) -> None:
        self.procs.clear()


def make_study(tracking_uri: str, trainer: Trainer, crash: set[str] = frozenset(),
               seeds: int = 3, **spec) -> tuple[AblationStudy, InProcessPool, InMemoryStorage]:
    storage = InMemoryStorage()
    pool = InProcessPool(storage, tracking_uri, trainer, set(crash))
    engine = Engine(open_queue=lambda _s, name, direction: Queue(storage, name, direction),
                    client=lambda _uri: MlflowClient(tracking_uri), pool=pool.factory,
                    worker_cmd=lambda name, _s, _t: [name], check_stores=False, poll_s=0.0,
                    sleep=lambda s: None)
    ab = Ablation(**{"name": "engine", "base": "digits_cnn", "vary": {"lr": [0.003, 0.01]},
                     "seeds": seeds, **spec})
    opts = RunOptions(tracking_uri=tracking_uri, storage="(in memory)",
                      console=Console(file=io.StringIO(), width=120))
    return AblationStudy(ab, opts, engine=engine), pool, storage


def test_the_engine_runs_a_study_in_process(tracking_uri):
    trainer = StandInTrainer()
    study, pool, _ = make_study(tracking_uri, trainer.trainer())
    plan = study.run()
    assert len(plan.keys) == 6 and plan.given_up == []
    assert sorted(len(c) for c in trainer.calls) == [1] * 6
    res = study.summarize(False)
    assert res.counts["finished"] == 6 and res.counts[Outcome.OK.value] == 6


def test_a_trial_whose_worker_keeps_dying_is_given_up_after_max_attempts(tracking_uri):
    trainer = StandInTrainer()
    study, pool, storage = make_study(tracking_uri, trainer.trainer())
    doomed = study.trials[1].hash
    pool.crash = {doomed}
    plan = study.run()
    assert plan.given_up == [doomed]
    attempts = [t for t in Queue(storage, study.queue_name, create=False).trials()
                if t.user_attrs.get("key") == doomed]
    assert len(attempts) == MAX_ATTEMPTS
    assert all(t.state == TrialState.FAIL for t in attempts)
    assert {t.user_attrs["outcome"] for t in attempts} == {Outcome.CRASHED.value}
    assert pool.crashes == MAX_ATTEMPTS
    res = study.summarize(False)
    assert res.counts["finished"] == 5 and res.crashed_out == [doomed]


def test_a_key_state_ranks_live_over_done_over_lost():
    q = Queue(InMemoryStorage(), "ablation:ranks")
    for key in ("a", "b", "c", "d"):
        q.enqueue({"key": key})
    jobs = {j.attrs["key"]: j for j in (q.claim("w") for _ in range(4))}
    q.finish(jobs["a"], Outcome.OK, 0.9)  # done, then queued again (its run was lost)
    q.enqueue({"key": "a"})
    q.fail(q.trials()[1], Outcome.CRASHED)  # b: lost, then retried and running
    q.enqueue({"key": "b"})
    retried = next(t for t in q.trials((TrialState.WAITING,)) if t.user_attrs["key"] == "b")
    q.storage.set_trial_state_values(q.trial_id(retried), TrialState.RUNNING)
    q.finish(jobs["c"], Outcome.DIVERGED)  # done (pruned)
    q.finish(jobs["d"], Outcome.KILLED)  # lost, not yet retried
    states = key_states(["a", "b", "c", "d", "e"], q.trials())
    assert states == {"a": "waiting", "b": "running", "c": "done", "d": "fail",
                      "e": "missing"}


def _enqueue(q: Queue, trials: list[Trial]):
    for t in trials:
        q.enqueue(t.to_attrs())


def _handler(q: Queue, c: MlflowClient, trainer: Trainer) -> AblationHandler:
    meta = StudyMeta(kind="ablation", metric="test_accuracy", direction="maximize",
                     missing_as="chance")
    return AblationHandler(q, c, meta, trainer)


def test_the_handler_skips_a_trial_whose_run_already_finished(tracking_uri):
    c = MlflowClient(tracking_uri)
    trial = Trial.new(tiny(), 0, "skip", variant="v")
    done = record_run(trial, c)  # an earlier attempt got it to the end
    q = Queue(InMemoryStorage(), "ablation:skip")
    _enqueue(q, [trial])
    job = q.claim("w")
    out = _handler(q, c, Trainer(refuse, refuse, pack_size)).run(job)
    assert out == Outcome.SKIPPED
    t = q.trials()[0]
    assert t.state == TrialState.COMPLETE and t.value == pytest.approx(value_of(trial))
    assert t.user_attrs["mlflow_run_id"] == done.run_id


def test_the_handler_claims_a_pack_of_the_same_config(tracking_uri):
    c = MlflowClient(tracking_uri)
    packed = [Trial.new(tiny(train={"pack": 3}), s, "pack", variant="v") for s in range(4)]
    other = Trial.new(tiny(train={"pack": 3, "lr": 0.02}), 0, "pack", variant="w")
    q = Queue(InMemoryStorage(), "ablation:pack")
    _enqueue(q, [packed[0], other, *packed[1:]])
    trainer = StandInTrainer()
    _handler(q, c, trainer.trainer()).run(q.claim("w"))
    assert [[t.seed for t in call] for call in trainer.calls] == [[0, 1, 2]]
    states = {(t.user_attrs["variant"], t.user_attrs["seed"]): t.state for t in q.trials()}
    assert states == {("v", 0): TrialState.COMPLETE, ("v", 1): TrialState.COMPLETE,
                      ("v", 2): TrialState.COMPLETE, ("v", 3): TrialState.WAITING,
                      ("w", 0): TrialState.WAITING}
    runs = c.search_runs([c.get_experiment_by_name("pack").experiment_id])
    assert sorted(int(r.data.tags[lifecycle.SEED]) for r in runs) == [0, 1, 2]


def test_an_unpackable_config_runs_alone():
    trial = Trial.new(tiny(train={"pack": 3, "class_weight": "balanced"}), 0, "x")
    assert pack_size(trial) == 1


def test_the_search_handler_reuses_a_result_that_reached_mlflow(tracking_uri):
    from core.search.handler import SearchHandler
    from core.search.spec import load_search
    from core.search.strategy import SearchStudy

    c = MlflowClient(tracking_uri)
    storage = InMemoryStorage()
    study = SearchStudy(load_search("lr_batch"), RunOptions(tracking_uri=tracking_uri))
    q = Queue(storage, study.queue_name, study.s.direction)
    exp_id = tracking.get_or_create_experiment(c, study.name)
    study.prepare(q, c, exp_id)
    meta = StudyMeta(kind="search", study=study.name, metric=study.s.metric,
                     direction=study.s.direction, **study.meta())
    q.enqueue({"key": "ticket-0"})
    job = q.claim("w")
    run = c.create_run(exp_id, tags={lifecycle.TICKET: "ticket-0",
                                     lifecycle.OPTUNA_STATE: TrialState.COMPLETE.name})
    tracking.log_metrics(c, run.info.run_id, {f"objective_{study.s.metric}": 0.77})
    c.set_terminated(run.info.run_id, "FINISHED")
    out = SearchHandler(q, c, meta, train=refuse).run(job)
    assert out == Outcome.SKIPPED
    t = optuna.load_study(study_name=study.queue_name, storage=storage).trials[0]
    assert t.state == TrialState.COMPLETE and t.value == pytest.approx(0.77)
    assert t.user_attrs["outcome"] == Outcome.OK.value


def test_parent_aggregates_count_a_diverged_seed_as_the_study_declares(tracking_uri):
    """Must-hold of the lifecycle issue, in-process: after the run, each parent's mean is the
    report's, with the diverged seed counted at chance."""
    from core.ablation.analysis import variant_table
    from core.ablation.parents import parent_table
    from core.ablation.runs import load_runs

    trainer = StandInTrainer(diverge={("lr=0.01", 1)})
    study, _, _ = make_study(tracking_uri, trainer.trainer())
    study.run()
    c = MlflowClient(tracking_uri)
    exp_id = c.get_experiment_by_name("engine").experiment_id
    vt = variant_table(load_runs("engine", c=c), "test_accuracy", "maximize", "chance")
    held = parent_table(c, exp_id, study.parents, study.baseline, "test_accuracy")
    assert held.set_index("variant")["mean"].to_dict() == pytest.approx(
        vt.set_index("variant")["mean"].to_dict())
    row = vt.set_index("variant").loc["lr=0.01"]
    assert row["imputed"] == 1 and row["n"] == 3
    values = [0.51, CHANCE, 0.51 + 0.02]  # seeds 0 and 2 at lr 0.01; seed 1 diverged
    assert row["mean"] == pytest.approx(sum(values) / 3)


def test_a_parent_is_updated_from_its_ledger_without_reading_trial_runs(tracking_uri,
                                                                       monkeypatch):
    """Issue 24: after each trial the parent's aggregates come from its own ledger (per-seed
    values and outcomes), the same numbers as from the variant's trial runs, with no search
    over the study's runs, so the cost per trial does not grow with the study."""
    from core.ablation.analysis import PARENT_STATS, variant_table
    from core.ablation.parents import ledger_rows, update_parent
    from core.ablation.runs import load_runs

    trainer = StandInTrainer(diverge={("lr=0.01", 1)})
    study, _, _ = make_study(tracking_uri, trainer.trainer())
    study.run()
    c = MlflowClient(tracking_uri)
    vt = variant_table(load_runs("engine", c=c), "test_accuracy", "maximize", "chance")
    for name, pid in study.parents.items():
        want = vt.set_index("variant").loc[name]
        ledger = ledger_rows(c, pid, "test_accuracy")
        assert sorted(ledger["seed"]) == [0, 1, 2]
        got = variant_table(ledger, "test_accuracy", "maximize", "chance").iloc[0]
        for k in (*PARENT_STATS, "n", "imputed", "failures"):
            assert got[k] == pytest.approx(want[k], nan_ok=True), (name, k)

    def no_search(*a, **kw):
        raise AssertionError("update_parent searched the study's runs")

    monkeypatch.setattr(MlflowClient, "search_runs", no_search)
    held = update_parent(c, study.parents["lr=0.01"], "test_accuracy", "maximize", "chance")
    assert held["n_seeds"] == 3 and held["n_imputed"] == 1


def test_a_preempted_trial_waits_again_and_is_no_failed_attempt():
    q = Queue(InMemoryStorage(), "ablation:preempt")
    q.enqueue({"key": "a"})
    job = q.claim("w")
    assert q.finish(job, Outcome.PREEMPTED) == Outcome.PREEMPTED
    (t,) = q.trials()
    assert t.state == TrialState.WAITING and t.user_attrs["preemptions"] == 1
    assert not lifecycle.lost(t) and key_states(["a"], q.trials()) == {"a": "waiting"}
    again = q.claim("w2")  # the same queue trial, claimed again
    assert again is not None and again.trial_id == job.trial_id
    q.finish(again, Outcome.PREEMPTED)
    assert q.trials()[0].user_attrs["preemptions"] == 2 and len(q.trials()) == 1


def test_the_supervisor_passes_a_preemption_on_and_a_ctrl_c_as_ctrl_c():
    import signal as sig

    from core.signals import Preempted
    from core.study.pool import Supervisor

    for stop, expected in ((Preempted("SIGTERM"), sig.SIGTERM),
                           (KeyboardInterrupt(), sig.SIGINT)):
        got = []
        pool = SimpleNamespace(reap=lambda: [], crash_looping=lambda: False,
                               interrupt=lambda timeout_s=10.0, signum=0, got=got:
                               got.append(signum))

        def step(crashed, stop=stop):
            raise stop

        with pytest.raises(KeyboardInterrupt):
            Supervisor(pool, Console(file=io.StringIO())).run(step)
        assert got == [expected]


def test_workers_logging_one_dataset_at_once_do_not_fail(tracking_uri):
    """Workers that start trials on the same data at once race to create its MLflow dataset
    (MLflow checks, then inserts: the loser broke the unique key and its trial FAILED, which
    the cluster test caught). Without the retry, 16 threads hit it in most rounds."""
    import threading

    c = MlflowClient(tracking_uri)
    exp = tracking.get_or_create_experiment(c, "race")
    errors = []
    for round_ in range(3):
        runs = [c.create_run(exp).info.run_id for _ in range(16)]

        def log(run_id, digest=f"d{round_}"):
            try:
                tracking.log_dataset(tracking.client(tracking_uri), run_id, "digits", digest,
                                     "{}", {"train": 1})
            except Exception as err:  # noqa: BLE001 - collected, then asserted empty
                errors.append(err)

        threads = [threading.Thread(target=log, args=(r,)) for r in runs]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert all(len(c.get_run(r).inputs.dataset_inputs) == 1 for r in runs)
    assert errors == []


def test_the_ledger_codes_every_outcome_by_a_fixed_code_not_its_order():
    """Issue 29: the parent's ledger stored each seed's outcome as its index in Outcome, so
    reordering the enum would reread old ledgers wrongly; the codes are now fixed, one per
    outcome, and are the indices the ledgers were written with."""
    from core.ablation.parents import FROM_CODE, LEDGER_CODES
    from core.lifecycle import Outcome

    assert set(LEDGER_CODES) == set(Outcome)
    assert len(set(LEDGER_CODES.values())) == len(Outcome)
    assert all(FROM_CODE[LEDGER_CODES[o]] is o for o in Outcome)
    assert LEDGER_CODES[Outcome.OK] == 0 and LEDGER_CODES[Outcome.DIVERGED] == 2
