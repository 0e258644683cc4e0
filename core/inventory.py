"""What a store holds and whether this machine can use it: `ablab list` (the studies in a
tracking store and an Optuna storage) and `ablab doctor` (versions, GPUs, stores, disk)."""

from __future__ import annotations

import contextlib
import math
import shutil
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from core import lifecycle, names, tracking
from core.errors import ConfigError
from core.lifecycle import Outcome, Role, role_filter

VERDICTS = ("better", "worse", "equivalent")


def existing_client(uri: str | None):
    """A client for a store that must already exist: a sqlite file that is not there is an
    error (nothing has run there), not a new empty store."""
    uri = uri or tracking.default_tracking_uri()
    db = tracking.sqlite_path(uri)
    if db is not None and not db.exists():
        raise ConfigError(f"no MLflow store at {db}: nothing has run there yet (check "
                          "--tracking-uri / MLFLOW_TRACKING_URI)")
    tracking.check_reachable(uri)
    return tracking.client(uri)


@dataclass
class StudyRow:
    study: str
    kind: str  # ablation | search
    trials_done: int
    trials_total: int
    failed: int
    running: int
    decided: str  # "2/3" variants with a better/worse/equivalent verdict; searches: -
    best: str  # the best variant (by mean) or the search's best value
    best_value: float | None


def _queue_totals(storage: str | None) -> dict[str, tuple[int, int, int]]:
    """study name -> (work items in its queue, of them waiting or running, running), from
    the queue's light rows (no configs are read)."""
    if not storage:
        return {}
    import optuna
    from optuna.trial import TrialState

    from core.study.queue import LIVE_STATES, Queue, check_storage, is_url, open_storage

    if not is_url(storage) and not Path(storage).exists():
        raise ConfigError(f"no Optuna storage at {storage}: nothing has been queued there "
                          "(check --storage / ABLAB_STORAGE)")
    check_storage(storage)
    out = {}
    opened = open_storage(storage)
    for name in optuna.get_all_study_names(opened):
        kind, _, study = name.partition(":")
        if kind not in ("ablation", "search"):
            continue
        q = Queue(opened, name, create=False)
        keys = q.by_key()
        live = sum(1 for ts in keys.values() if any(t.state in LIVE_STATES for t in ts))
        running = sum(1 for ts in keys.values()
                      if any(t.state == TrialState.RUNNING for t in ts))
        out[study] = (len(keys), live, running)
    return out


def list_studies(tracking_uri: str | None, storage: str | None) -> list[StudyRow]:
    """Each study's progress and best result. An ablation's counts come from its variants'
    parent runs (each holds its finished and failed trials since issue 24), so a study of
    10,000 trials is listed without reading its trial runs; studies whose parents predate
    that are counted from their trial runs."""
    c = existing_client(tracking_uri)
    queued = _queue_totals(storage)
    rows = []
    for exp in c.search_experiments():
        parents = tracking.search(c, exp.experiment_id, role_filter(Role.VARIANT))
        if parents:
            rows.append(_ablation_row(c, exp, parents, queued.get(exp.name)))
            continue
        searches = tracking.search(c, exp.experiment_id, role_filter(Role.SEARCH))
        if searches:
            rows.append(_search_row(c, exp, searches[0], queued.get(exp.name)))
    return rows


def _trial_counts(c, exp_id: str) -> tuple[int, int, int, int]:
    """(finished, failed, running, distinct trials) from the trial runs themselves."""
    trials = tracking.search(c, exp_id, role_filter(Role.TRIAL))
    return (sum(r.info.status == Outcome.OK.status for r in trials),
            sum(r.info.status == Outcome.FAILED.status for r in trials),
            sum(r.info.status == "RUNNING" for r in trials),
            len({r.data.tags.get(lifecycle.TRIAL_HASH) for r in trials}))


def _ablation_row(c, exp, parents: list, queued: tuple[int, int, int] | None) -> StudyRow:
    held = [p.data.metrics for p in parents]
    if queued is not None and all("n_finished" in m for m in held):
        done = int(sum(m["n_finished"] for m in held))
        failed = int(sum(m.get("n_failed", 0) for m in held))
        running, distinct = queued[2], done + failed
    else:
        done, failed, running, distinct = _trial_counts(c, exp.experiment_id)
    total = max(queued[0] if queued else 0, distinct)
    metric = parents[0].data.tags.get(lifecycle.METRIC, "test_accuracy")
    verdicts = [p.data.tags.get(lifecycle.verdict_tag(metric)) for p in parents]
    compared = [v for v in verdicts if v]
    decided = f"{sum(v.startswith(VERDICTS) for v in compared)}/{len(compared)}"
    sign = -1 if names.default_direction(metric) == "minimize" else 1
    scored = [(p.data.metrics.get(f"mean_{metric}"), p) for p in parents]
    scored = [(v, p) for v, p in scored if v is not None and not math.isnan(v)]
    best = max(scored, key=lambda vp: sign * vp[0]) if scored else None
    return StudyRow(exp.name, "ablation", done, total, failed, running, decided,
                    best[1].data.tags.get(lifecycle.VARIANT, "") if best else "",
                    best[0] if best else None)


def _search_row(c, exp, parent, queued: tuple[int, int, int] | None) -> StudyRow:
    done, failed, running, _ = _trial_counts(c, exp.experiment_id)
    metric = parent.data.tags.get(lifecycle.METRIC, "")
    value = parent.data.metrics.get(f"best_{metric}")
    total = max(queued[0] if queued else 0, done + failed)
    best_trial = parent.data.tags.get(lifecycle.OPTUNA_BEST_TRIAL, "")
    return StudyRow(exp.name, "search", done, total, failed, running, "-",
                    f"trial {best_trial}" if best_trial else "", value)


def print_rows(rows: list[StudyRow], console) -> None:
    from core.termtable import show

    if not rows:
        console.print("no studies in this store yet")
        return
    show(console, ("study", "kind", "trials", Outcome.FAILED.value, "running", "decided",
                   "best"),
         [(r.study, r.kind, f"{r.trials_done}/{r.trials_total}", str(r.failed),
           str(r.running), r.decided,
           r.best + (f" ({r.best_value:.4f})" if r.best_value is not None else ""))
          for r in rows], "ablab studies")


def rows_json(rows: list[StudyRow]) -> list[dict]:
    return [asdict(r) for r in rows]


# ----------------------------------------------------------------------------- doctor


@dataclass
class Check:
    what: str
    found: str
    ok: bool
    fix: str = ""


def _version(module: str) -> str:
    try:
        return __import__(module).__version__
    except Exception as err:  # noqa: BLE001 - a broken install is what doctor reports
        return f"missing ({type(err).__name__})"


def doctor(tracking_uri: str | None, storage: str | None) -> list[Check]:
    from core.paths import default_storage, mlruns_dir
    from core.seeding import import_tensorflow

    with contextlib.suppress(Exception):  # a broken install is reported below, by module
        import_tensorflow()
    checks = [Check("Python", sys.version.split()[0], sys.version_info >= (3, 10),
                    "use Python 3.10 or newer")]
    for module, fix in (("tensorflow", "make setup (installs tensorflow-cpu, or tensorflow "
                                       "with CUDA where nvidia-smi sees a GPU)"),
                        ("keras", "make setup"), ("mlflow", "make setup"),
                        ("optuna", "make setup")):
        v = _version(module)
        checks.append(Check(module, v, not v.startswith("missing"), fix))
    gpus = []
    try:
        import tensorflow as tf

        gpus = [d.name for d in tf.config.list_physical_devices("GPU")]
    except Exception:  # noqa: BLE001 - reported as no GPU
        pass
    from core.study.slots import list_gpus

    smi = list_gpus()
    found = ", ".join(gpus) if gpus else "none (training runs on the CPU)"
    ok = not smi or bool(gpus)
    checks.append(Check("GPUs seen by TensorFlow", found + (
        f"; nvidia-smi sees {len(smi)}" if smi else ""), ok,
        "nvidia-smi sees GPUs TensorFlow does not: make setup TF=gpu (tensorflow[and-cuda])"))
    uri = tracking_uri or tracking.default_tracking_uri()
    try:
        c = tracking.client(tracking.check_reachable(uri))
        exp = tracking.get_or_create_experiment(c, "ablab-doctor")
        c.set_experiment_tag(exp, names.DOCTOR, "written")
        checks.append(Check("tracking store", f"{uri}: reachable, writable", True))
    except Exception as err:  # noqa: BLE001 - whatever fails is the finding
        checks.append(Check("tracking store", f"{uri}: {str(err).splitlines()[0][:200]}", False,
                            "start the server (ablab server) or fix --tracking-uri"))
    store = storage or default_storage()
    try:
        import optuna

        from core.study.queue import check_storage, open_storage, redact

        check_storage(store)
        st = open_storage(store)
        optuna.create_study(study_name="ablab-doctor", storage=st, load_if_exists=True)
        optuna.delete_study(study_name="ablab-doctor", storage=st)
        checks.append(Check("Optuna storage", f"{redact(store)}: reachable, writable", True))
    except Exception as err:  # noqa: BLE001
        checks.append(Check("Optuna storage", f"{store}: {str(err).splitlines()[0][:200]}",
                            False, "fix --storage / ABLAB_STORAGE"))
    folder = mlruns_dir() if mlruns_dir().exists() else mlruns_dir().parent
    free_gb = shutil.disk_usage(folder).free / 2**30
    checks.append(Check("disk space", f"{free_gb:.1f} GB free at {folder}", free_gb >= 2,
                        "free some space: studies write runs, artifacts and caches"))
    return checks


def print_checks(checks: list[Check], console) -> bool:
    """The checks as a table, then a `fix` line per problem; True when all passed."""
    from core.termtable import show

    show(console, ("check", "found", "status"),
         [(ch.what, ch.found, "passed" if ch.ok else "problem") for ch in checks], "ablab doctor")
    bad = [ch for ch in checks if not ch.ok]
    for ch in bad:
        console.print(f"[red]fix[/] {ch.what}: {ch.fix}")
    return not bad
