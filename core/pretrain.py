"""Offline transfer learning: `model.weights: pretrain:<experiment>` names a source task.
The source is trained once, its backbone logged as an MLflow model in a run tagged
`ablab.role=pretrain` and keyed by the hash of its config; every later trial, study or worker
that names the same source reuses it."""

from __future__ import annotations

from core import tracking
from core.config import PRETRAIN_PREFIX as PREFIX
from core.config import PRETRAIN_SEED as SEED
from core.config import ConfigError, Experiment, load_experiment, trial_hash

EXPERIMENT = "ablab-pretrain"
_LOCAL: dict[str, str] = {}  # model URI -> downloaded folder (once per process)


def source_name(weights: str) -> str | None:
    return weights[len(PREFIX):] if weights.startswith(PREFIX) else None


def source_experiment(name: str) -> Experiment:
    exp = load_experiment(name)
    if exp.model.pretrained:
        raise ConfigError(f"pretrain:{name}: a pretraining source cannot itself use "
                          f"model.weights={exp.model.weights}")
    return exp


def pretrain_hash(exp: Experiment) -> str:
    return trial_hash(exp, SEED)


def find(c, exp: Experiment) -> str | None:
    """The model URI of a finished pretraining of exactly this config, if any."""
    e = c.get_experiment_by_name(EXPERIMENT)
    if e is None:
        return None
    runs = tracking.search(
        c, e.experiment_id,
        f"tags.`ablab.role` = 'pretrain' and tags.`ablab.pretrain_hash` = '{pretrain_hash(exp)}'"
        " and attributes.status = 'FINISHED'", max_results=1)
    return runs[0].data.tags.get("ablab.model_uri") if runs else None


def pretrain(name: str, c, cache: dict | None = None) -> str:
    """Train the source experiment and log its backbone (unless already in the store)."""
    from core.trial import TrialSpec, run_trial

    exp = source_experiment(name)
    uri = find(c, exp)
    if uri:
        return uri
    spec = TrialSpec(exp, SEED, EXPERIMENT, run_name=f"pretrain {name}", log_backbone=True,
                     tags={"ablab.role": "pretrain", "ablab.pretrain_hash": pretrain_hash(exp),
                           "ablab.pretrain_source": name})
    res = run_trial(spec, c=c, cache=cache)
    if res.status != "FINISHED":
        raise RuntimeError(f"pretraining {name} failed: {res.error} (run {res.run_id})")
    return c.get_run(res.run_id).data.tags["ablab.model_uri"]


def model_uri(weights: str, c, cache: dict | None = None) -> str:
    name = source_name(weights)
    return pretrain(name, c, cache) if name else weights


def log_backbone(c, run_id: str, backbone) -> str:
    """Log the backbone as an MLflow Keras model; its URI is kept as a tag of the run."""
    import logging

    import mlflow

    logging.getLogger("mlflow.keras.save").setLevel(logging.ERROR)  # no signature: by design
    mlflow.set_tracking_uri(c.tracking_uri)
    with mlflow.start_run(run_id=run_id):
        info = mlflow.keras.log_model(backbone, name="backbone",
                                      pip_requirements=["keras>=3", "tensorflow>=2.16"])
    tracking.set_tags(c, run_id, {"ablab.model_uri": info.model_uri})
    return info.model_uri


def load_backbone(uri: str, c):
    """A fresh copy of the pretrained weights (trials mutate them); downloaded once."""
    import mlflow

    mlflow.set_tracking_uri(c.tracking_uri)
    if uri not in _LOCAL:
        try:
            _LOCAL[uri] = mlflow.artifacts.download_artifacts(artifact_uri=uri)
        except Exception as err:  # noqa: BLE001 - any lookup failure means the same thing
            raise ConfigError(f"model.weights: cannot load MLflow model {uri!r} ({err})") \
                from None
    model = mlflow.keras.load_model(_LOCAL[uri], load_model_kwargs={"safe_mode": False})
    model.name = "backbone"
    return model
