"""The work queue of a study is an Optuna study. Work is enqueued as WAITING trials carrying
what a worker needs in user attrs (a config once per distinct config, as a study attr the
trials refer to); workers claim them with Optuna's own atomic WAITING -> RUNNING transition.
On RDB storages the queue finds work, counts and lists through narrow queries
(`core.study.rdb`), so a claim does not grow with the queue. Ablations enqueue one trial per
(variant, seed); searches enqueue one empty "ticket" per trial to run, whose parameters the worker's
sampler fills in when it claims it. Every queued trial has a `key` (the trial hash, or the
ticket), so lost work is retried by key and nothing is run twice.

RDB storages (sqlite://, postgresql://) get Optuna heartbeats: a worker that stops beating is
failed by `fail_stale_trials`, and `RetryHeartbeatStaleTrialCallback` queues its trial again.
Journal files have no heartbeats: the local coordinator watches its own worker processes.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
import socket
import threading
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypedDict, cast

import optuna
from optuna.storages import BaseStorage, RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from core import names
from core.lifecycle import ATTR_KEY, ATTR_OUTCOME, ATTR_WORKER, Outcome, fail_lost, finish
from core.study import rdb
from core.study.rdb import Light
from core.trial import TrialAttrs

optuna.logging.set_verbosity(optuna.logging.WARNING)
# fail_stale_trials and the retry callback are marked experimental since Optuna 2.8/2.9.
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)

# On RDB storage a worker beats every HEARTBEAT_S; one silent for GRACE_S is taken for dead
# (noticed within HEARTBEAT_S + GRACE_S) and its trial retried, at most MAX_ATTEMPTS times in
# all. ABLAB_HEARTBEAT_S / ABLAB_GRACE_S set them (every process of a study needs the same).
HEARTBEAT_S = int(os.environ.get("ABLAB_HEARTBEAT_S", 10))
GRACE_S = int(os.environ.get("ABLAB_GRACE_S", 40))
MAX_ATTEMPTS = 3
FINISHED_STATES = (TrialState.COMPLETE, TrialState.PRUNED)
LIVE_STATES = (TrialState.WAITING, TrialState.RUNNING)
META = names.QUEUE_META
CONFIG = names.QUEUE_CONFIG  # + the config's hash: a study attr holding one config's JSON
CONFIG_REF = "config_ref"  # a trial's pointer to it
LIGHT_KEYS = (ATTR_KEY, ATTR_OUTCOME, ATTR_WORKER, "pack_key")  # what bookkeeping reads
CLAIM_CANDIDATES = 32  # WAITING trials a claim looks at: others' wins are skipped


def is_url(storage: str) -> bool:
    return "://" in storage


def redact(url: str) -> str:
    """A storage URL without its password, for messages."""
    import re

    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)


def check_storage(storage: str, timeout_s: int = 5) -> None:
    """Fail fast, with one message naming the storage, when it cannot be opened or written:
    a database that does not answer, a journal file in a folder that cannot be written."""
    from pathlib import Path

    from core.errors import ConfigError

    if is_url(storage):
        import sqlalchemy

        args = {"connect_timeout": timeout_s} if storage.startswith("postgresql") else {}
        try:
            engine = sqlalchemy.create_engine(storage, connect_args=args)
            with engine.connect() as con:
                con.exec_driver_sql("SELECT 1")
            engine.dispose()
        except Exception as err:  # noqa: BLE001 - any failure to connect means the same
            reason = str(getattr(err, "orig", err)).strip().splitlines()[0]
            raise ConfigError(f"Optuna storage {redact(storage)} cannot be opened ({reason}); "
                              "fix --storage / ABLAB_STORAGE") from None
        return
    path = Path(storage)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a"):
            pass
    except OSError as err:
        raise ConfigError(f"Optuna storage {path} cannot be written ({err.strerror}); fix "
                          "--storage / ABLAB_STORAGE") from None


def open_storage(storage: str):
    if is_url(storage):
        return RDBStorage(
            storage, heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S,
            heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=MAX_ATTEMPTS),
            engine_kwargs={"pool_pre_ping": True} if storage.startswith("postgresql") else None,
        )
    from pathlib import Path

    from optuna.storages.journal import JournalFileBackend, JournalStorage

    Path(storage).parent.mkdir(parents=True, exist_ok=True)
    return JournalStorage(JournalFileBackend(storage))


def study_name(kind: str, name: str) -> str:
    return f"{kind}:{name}"


def worker_id(pid: int | None = None) -> str:
    """How a worker names itself in the trials it claims: host and process id."""
    return f"{socket.gethostname()}:{pid or os.getpid()}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def dead_local_worker(who: str | None, live: set[str] | frozenset[str]) -> bool:
    if not who:
        return True
    host, _, pid = who.rpartition(":")
    if who in live or host != socket.gethostname():
        return False
    return not (pid.isdigit() and _pid_alive(int(pid)))


class StudyMeta(TypedDict, total=False):
    """What the coordinator tells every worker through the queue (a study user attr)."""

    kind: str  # ablation | search: which handler runs its trials
    study: str
    metric: str
    direction: str
    missing_as: str  # ablations: how a seed without a metric counts in the aggregates
    # searches
    spec: dict[str, Any]
    raw: dict[str, Any]
    explicit: list[str]
    source: str
    parent_run_id: str
    source_hash: str | None
    weights_uri: str | None


@dataclass
class Job:
    """A claimed trial: its storage id, its number and what was enqueued with it."""

    trial_id: int
    number: int
    attrs: TrialAttrs
    params: dict[str, Any]
    who: str = ""  # the worker that claimed it


class Queue:
    """One Optuna study used as a work queue, through Optuna's public storage API."""

    def __init__(self, storage_uri: str | BaseStorage, name: str,
                 direction: str | list[str] = "maximize", create: bool = True, sampler=None,
                 pruner=None):
        """`storage_uri`: a URL or journal path, or an open Optuna storage (tests hand an
        `InMemoryStorage`). `direction`: one, or a list (a multi-objective search)."""
        dirs = [direction] if isinstance(direction, str) else list(direction)
        if isinstance(storage_uri, BaseStorage):
            self.uri, self.storage = "(in memory)", storage_uri
        else:
            self.uri, self.storage = storage_uri, open_storage(storage_uri)
        self.name = name
        if create:
            self.study = optuna.create_study(
                study_name=name, storage=self.storage, load_if_exists=True, sampler=sampler,
                pruner=pruner, directions=[StudyDirection[d.upper()] for d in dirs])
        else:
            self.study = optuna.load_study(study_name=name, storage=self.storage,
                                           sampler=sampler, pruner=pruner)
        self.study_id = self.storage.get_study_id_from_name(name)
        self._configs: dict[str, str] = {}  # config hash -> JSON, read once

    @classmethod
    def existing(cls, storage_uri: str, name: str, **kw: Any) -> Queue | None:
        try:
            return cls(storage_uri, name, create=False, **kw)
        except KeyError:
            return None

    @property
    def has_heartbeat(self) -> bool:
        return isinstance(self.storage, RDBStorage)

    # -- what the coordinator tells every worker --------------------------------------------

    def set_meta(self, meta: StudyMeta) -> None:
        self.study.set_user_attr(META, dict(meta))

    @property
    def meta(self) -> StudyMeta:
        return self.storage.get_study_user_attrs(self.study_id).get(META, {})

    ENQUEUING = names.QUEUE_ENQUEUING

    def set_enqueuing(self, on: bool) -> None:
        """While a coordinator fills the queue, workers wait instead of leaving it empty."""
        self.study.set_user_attr(self.ENQUEUING, time.time() if on else 0.0)

    def enqueuing(self, max_age_s: float = 120.0) -> bool:
        since = self.storage.get_study_user_attrs(self.study_id).get(self.ENQUEUING) or 0.0
        return 0 < time.time() - since < max_age_s

    # -- trials ------------------------------------------------------------------------------

    @property
    def is_rdb(self) -> bool:
        return isinstance(self.storage, RDBStorage)

    def trials(self, states: tuple[TrialState, ...] | None = None) -> list[FrozenTrial]:
        """Whole trials (searches' samplers need their values and params)."""
        return self.storage.get_all_trials(self.study_id, deepcopy=False, states=states)

    def light(self, states: tuple[TrialState, ...] | None = None) -> list[Light]:
        """Trials with only what bookkeeping reads (key, outcome, worker, pack key)."""
        if self.is_rdb:
            return rdb.light(cast(RDBStorage, self.storage), self.study_id, LIGHT_KEYS, states)
        return [Light(t._trial_id, t.number, t.state,
                      {k: t.user_attrs[k] for k in LIGHT_KEYS if k in t.user_attrs})
                for t in self.trials(states)]

    def trial_id(self, t: FrozenTrial | Light) -> int:
        return t._trial_id

    def by_key(self) -> dict[str, list[Light]]:
        out: dict[str, list[Light]] = {}
        for t in self.light():
            k = t.user_attrs.get(ATTR_KEY)
            if k:
                out.setdefault(k, []).append(t)
        return out

    def count(self, states: tuple[TrialState, ...]) -> int:
        if self.is_rdb:
            n = rdb.counts(cast(RDBStorage, self.storage), self.study_id)
            return sum(n.get(s, 0) for s in states)
        return len(self.trials(states))

    def has_work(self) -> bool:
        return self.count(LIVE_STATES) > 0

    # -- enqueueing ----------------------------------------------------------------------------

    def enqueue(self, attrs: TrialAttrs | dict[str, Any],
                params: dict[str, Any] | None = None) -> None:
        """`params`: fixed parameters (a search trial retried with what it had sampled)."""
        self.enqueue_many([(attrs, params)])

    def enqueue_many(self, items: Sequence[tuple[TrialAttrs | dict[str, Any],
                                                 dict[str, Any] | None]]) -> None:
        """Many trials at once: on RDB storage one transaction (10,000 trials in seconds,
        not minutes), each distinct config stored once."""
        plain: list[dict[str, Any]] = []
        for attrs, params in items:
            a = self._store_config(dict(attrs))
            if params or not self.is_rdb:
                self.study.enqueue_trial(params=params or {}, user_attrs=a,
                                         skip_if_exists=False)
            else:
                plain.append(a)
        rdb.enqueue_many(cast(RDBStorage, self.storage), self.study_id, plain)

    def _store_config(self, attrs: dict[str, Any]) -> dict[str, Any]:
        """Replace a trial's config by a reference to a study attr holding it (once)."""
        config = attrs.pop("config", None)
        if config is None:
            return attrs
        ref = hashlib.sha256(config.encode()).hexdigest()[:16]
        if ref not in self._configs:
            if CONFIG + ref not in self.storage.get_study_user_attrs(self.study_id):
                self.study.set_user_attr(CONFIG + ref, config)
            self._configs[ref] = config
        return {**attrs, CONFIG_REF: ref}

    def _with_config(self, attrs: dict[str, Any]) -> dict[str, Any]:
        ref = attrs.get(CONFIG_REF)
        if ref and "config" not in attrs:
            if ref not in self._configs:
                held = self.storage.get_study_user_attrs(self.study_id)
                self._configs.update({k[len(CONFIG):]: v for k, v in held.items()
                                      if k.startswith(CONFIG)})
            attrs = {**attrs, "config": self._configs[ref]}
        return attrs

    # -- claiming ------------------------------------------------------------------------------

    def _waiting(self, limit: int, attr: tuple[str, Any] | None = None) -> list[int]:
        if self.is_rdb:
            return rdb.waiting_ids(cast(RDBStorage, self.storage), self.study_id, limit, attr)
        ts = self.trials((TrialState.WAITING,))
        if attr is not None:
            ts = [t for t in ts if t.user_attrs.get(attr[0]) == attr[1]]
        return [t._trial_id for t in ts[:limit]]

    def claim(self, who: str) -> Job | None:
        """Optuna's claiming: only one caller wins WAITING -> RUNNING for a trial. The oldest
        waiting trial first; when another worker won it, the other candidates in random
        order, so many workers starting together do not all fight for the same next one."""
        while True:
            ids = self._waiting(CLAIM_CANDIDATES)
            if not ids:
                return None
            first, rest = ids[0], ids[1:]
            random.shuffle(rest)
            for tid in [first, *rest]:
                job = self._take(tid, who)
                if job is not None:
                    return job

    def claim_like(self, job: Job, n: int) -> list[Job]:
        """Up to `n` more WAITING trials with `job`'s pack key (its config, other seeds), each
        won through the same WAITING -> RUNNING as `claim`: a trial another worker took
        first is simply not in this pack."""
        key = job.attrs.get("pack_key")
        out: list[Job] = []
        for tid in self._waiting(4 * n, ("pack_key", key)) if key and n > 0 else []:
            taken = self._take(tid, job.who)
            if taken is not None:
                out.append(taken)
                if len(out) == n:
                    break
        return out

    def take(self, tid: int, who: str) -> Job | None:
        """This WAITING trial, won as `claim` wins one (a preempted pack's partners); None
        when another worker took it first."""
        return self._take(tid, who)

    def _take(self, tid: int, who: str) -> Job | None:
        try:
            if not self.storage.set_trial_state_values(tid, state=TrialState.RUNNING):
                return None
        except optuna.exceptions.UpdateFinishedTrialError:
            return None
        if isinstance(self.storage, RDBStorage):
            self.storage.record_heartbeat(tid)
        self.storage.set_trial_user_attr(tid, ATTR_WORKER, who)
        t = self.storage.get_trial(tid)
        return Job(tid, t.number, cast(TrialAttrs, self._with_config(dict(t.user_attrs))),
                   dict(t.params), who)

    def finish(self, job: Job, outcome: Outcome, value: float | list[float] | None = None,
               run_id: str | None = None, **kw: Any) -> Outcome:
        """End a claimed trial (core.lifecycle.finish)."""
        return finish(self.storage, job.trial_id, outcome, value, run_id, **kw)

    def fail(self, t: FrozenTrial | Light, outcome: Outcome) -> bool:
        """A RUNNING trial whose worker is gone ends FAIL with why; False if it had ended."""
        return fail_lost(self.storage, self.trial_id(t), outcome)

    def fail_dead_workers(self, live: set[str] | frozenset[str] = frozenset()) -> None:
        """After a crash or SIGKILL. RDB storage: Optuna's heartbeats decide what is stale.
        Journal file: RUNNING trials whose worker process on this host is gone are failed."""
        self.fail_stale()
        if not self.has_heartbeat:
            for t in self.light((TrialState.RUNNING,)):
                if dead_local_worker(t.user_attrs.get(ATTR_WORKER), live):
                    self.fail(t, Outcome.CRASHED)

    def fail_stale(self) -> None:
        if self.has_heartbeat:
            optuna.storages.fail_stale_trials(self.study)

    def heartbeat(self, trial_id: int) -> Heartbeat:
        return Heartbeat(self.storage if self.has_heartbeat else None, trial_id)


class Heartbeat:
    """Beats for one RUNNING trial on RDB storage (no-op on journal files)."""

    def __init__(self, storage, trial_id: int):
        self._storage = storage
        self._trial_id = trial_id
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _run(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            with contextlib.suppress(Exception):  # a missed beat is retried next interval
                self._storage.record_heartbeat(self._trial_id)

    def __enter__(self) -> Heartbeat:
        if self._storage is not None:
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)
