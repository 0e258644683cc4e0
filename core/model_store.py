"""Backbones as MLflow Keras models: logged once by a pretraining run, loaded by trials."""

from __future__ import annotations

from typing import TYPE_CHECKING

from core import lifecycle, tracking
from core.errors import ConfigError

if TYPE_CHECKING:
    from mlflow import MlflowClient

_LOCAL: dict[str, str] = {}  # model URI -> downloaded folder (once per process)


def log_backbone(c: MlflowClient, run_id: str, backbone) -> str:
    """Log the backbone as an MLflow Keras model; its URI is kept as a tag of the run."""
    import logging

    import mlflow

    logging.getLogger("mlflow.keras.save").setLevel(logging.ERROR)  # no signature: by design
    mlflow.set_tracking_uri(c.tracking_uri)
    with mlflow.start_run(run_id=run_id):
        info = mlflow.keras.log_model(backbone, name="backbone",
                                      pip_requirements=["keras>=3", "tensorflow>=2.16"])
    tracking.set_tags(c, run_id, {lifecycle.MODEL_URI: info.model_uri})
    return info.model_uri


def load_backbone(uri: str, c: MlflowClient):
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
