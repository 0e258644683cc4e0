"""The user's own code by import path (core/plugins.py): each kind resolved from the project
folder, its signature checked, its options validated by its Options model and varied as axes;
every bad plugin an error before any run; a raising plugin a FAILED trial with its traceback."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import pytest

from core.errors import ConfigError
from core.plugins import SIGNATURES
from tests.conftest import TINY, run_cli

PLUGINS = '''
from __future__ import annotations

import numpy as np
from pydantic import BaseModel, Field


class BlobOptions(BaseModel):
    n: int = Field(120, ge=10)


def blobs(options: BlobOptions, data_config):
    rng = np.random.default_rng(0)
    y = np.arange(options.n) % 3
    x = rng.random((options.n, 12, 12, 1)) * 0.3 + y[:, None, None, None] * 0.3
    return (x * 255).astype("uint8"), y, ["a", "b", "c"]


class NetOptions(BaseModel):
    width: int = Field(4, ge=1, description="filters")


def net(options: NetOptions, input_shape):
    import keras

    inputs = keras.Input(input_shape)
    x = keras.layers.Conv2D(options.width, 3, padding="same", name="myconv")(inputs)
    return keras.Model(inputs, x)


def vector_net(options: NetOptions, input_shape):
    import keras

    inputs = keras.Input(input_shape)
    return keras.Model(inputs, keras.layers.Dense(options.width)(keras.layers.Flatten()(inputs)))


def head(options, features):
    import keras

    return keras.layers.GlobalMaxPooling2D(name="maxpool")(features)


def flips(options):
    import keras

    return [keras.layers.RandomFlip("horizontal_and_vertical")]


def sgd(options, learning_rate):
    import keras

    return keras.optimizers.SGD(learning_rate, momentum=options.get("momentum", 0.0))


def halve(options, lr, total_steps):
    return lr / 2


def boom(options: NetOptions, input_shape):
    raise RuntimeError("my backbone is broken")


def two_args(model, data):
    return {}


def plain_fit(model, data, config, callbacks):
    h = model.fit(data.train, validation_data=data.validation, epochs=config.train.epochs,
                  verbose=0, callbacks=list(callbacks.callbacks))
    return h.history
'''


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A project folder with a plugin module, as `ablab init` would leave it."""
    for kind in ("experiments", "ablations", "searches"):
        (tmp_path / kind).mkdir()
    (tmp_path / "myplug.py").write_text(PLUGINS)
    monkeypatch.setenv("ABLAB_PROJECT", str(tmp_path))
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def exp(**sections):
    from core.config import experiment_from_dict
    from core.dicts import deep_merge

    return experiment_from_dict(deep_merge(TINY, sections))


def test_every_kind_resolves_from_the_project_folder_and_builds(project):
    from core.data import load_dataset
    from core.models import build_model
    from core.optim import make_optimizer

    e = exp(data={"source": "myplug:blobs", "image_size": 8, "channels": 1, "max_samples": None,
                  "options": {"n": 90}},
            augment={"strength": "myplug:flips"},
            model={"backbone": "myplug:net", "head": "myplug:head", "options": {"width": 5}},
            train={"optimizer": "myplug:sgd", "lr_schedule": "myplug:halve",
                   "options": {"momentum": 0.5}})
    data = load_dataset(e.data)
    assert data.class_names == ["a", "b", "c"] and data.input_shape == (8, 8, 1)
    assert data.x_train.min() >= 0.0 and data.x_train.max() <= 1.0  # uint8 scaled
    assert len(data.y_train) + len(data.y_val) + len(data.y_test) == 90
    model = build_model(e, data.input_shape, data.n_classes)
    assert model.get_layer("backbone").get_layer("myconv").filters == 5
    assert model.get_layer("maxpool") is not None
    assert [type(la).__name__ for la in model.get_layer("augment").layers] == ["RandomFlip"]
    opt = make_optimizer(e.train, steps_per_epoch=3)
    assert type(opt).__name__ == "SGD" and float(opt.momentum) == 0.5
    assert float(opt.learning_rate) == pytest.approx(e.train.lr / 2)


def test_a_backbone_returning_a_vector_works_with_the_builtin_heads(project):
    from core.models import build_model

    for head in ("gap", "flatten_dense", "gap_dense"):
        e = exp(model={"backbone": "myplug:vector_net", "head": head})
        model = build_model(e, (8, 8, 3), 10)
        assert model.output_shape == (None, 10)


def test_options_are_validated_by_the_plugins_model(project):
    with pytest.raises(ConfigError, match=r"model.options.widht: not an option of "
                                          r"myplug:net; did you mean model.options.width"):
        exp(model={"backbone": "myplug:net", "options": {"widht": 3}})
    with pytest.raises(ConfigError, match=r"model.options.width: .*greater than or equal"):
        exp(model={"backbone": "myplug:net", "options": {"width": 0}})
    with pytest.raises(ConfigError, match=r"model.options: set .* no field of model names"):
        exp(model={"options": {"width": 3}})


@pytest.mark.parametrize("field", sorted(SIGNATURES))
def test_a_wrong_signature_is_an_error_naming_the_field_and_the_signature(project, field):
    from core.dicts import nest

    with pytest.raises(ConfigError) as err:
        wrong = "myplug:halve" if len(SIGNATURES[field]) != 3 else "myplug:two_args"
        exp(**nest({field: wrong}))
    msg = str(err.value)
    assert field in msg and "must take (" + ", ".join(SIGNATURES[field]) + ")" in msg


@pytest.mark.parametrize("path, says", [
    ("nomodule:net", "cannot import 'nomodule'"),
    ("myplug:nett", "did you mean myplug:net?"),
    ("myplug:", "not an import path"),
])
def test_a_bad_path_is_an_error(project, path, says):
    with pytest.raises(ConfigError, match="model.backbone: .*" + says.replace("?", r"\?")):
        exp(model={"backbone": path})


def test_plugin_options_are_axes_of_an_ablation(project):
    from core.ablation.spec import Ablation, expand

    (project / "experiments" / "mine.yaml").write_text(json.dumps(
        {**TINY, "model": {"backbone": "myplug:net", "options": {"width": 4}}}))
    ab = Ablation(name="w", base="mine", vary={"model.options.width": [2, 8]}, seeds=2)
    variants, trials, _ = expand(ab)
    assert [v.name for v in variants] == ["baseline", "model.options.width=2",
                                          "model.options.width=8"]
    assert [v.exp.model.options["width"] for v in variants] == [4, 2, 8]
    assert len({t.hash for t in trials}) == 6
    with pytest.raises(ConfigError, match="widht"):
        expand(Ablation(name="w", base="mine", vary={"model.options.widht": [2]}, seeds=2))


def test_axes_lists_the_options_of_an_experiments_plugins(project):
    from core.axes import describe_options

    rows = describe_options(exp(model={"backbone": "myplug:net", "options": {"width": 6}}))
    assert [(r["path"], r["type"], r["default"]) for r in rows] == [
        ("model.options.width", "int", "6")]
    assert "myplug:net" in rows[0]["meaning"]


def test_duplicate_values_and_a_one_variant_vary_are_errors(project):
    from core.ablation.spec import Ablation, expand
    from core.config import validate_model

    with pytest.raises(ConfigError, match="'none' listed more than once"):
        validate_model(Ablation, {"base": "digits_cnn", "vary": {"augment": ["none", "none"]}},
                       "test")
    ab = validate_model(Ablation, {"base": "digits_cnn", "vary": {"augment": ["none"]}}, "t")
    with pytest.raises(ConfigError, match="every value gives the same config"):
        expand(ab)


def test_smoke_without_a_smoke_block_is_an_error(project):
    from core.ablation.spec import Ablation, expand

    with pytest.raises(ConfigError, match="--smoke: .* no `smoke:` block"):
        expand(Ablation(name="x", base="digits_cnn", vary={"lr": [0.1]}), smoke=True)


def test_a_raising_plugin_fails_its_trial_with_the_traceback_and_others_run(project,
                                                                            tracking_uri):
    from mlflow import MlflowClient

    from core.lifecycle import Outcome
    from core.runner import run_trial
    from core.trial import Trial

    c = MlflowClient(tracking_uri)
    bad = run_trial(Trial.new(exp(model={"backbone": "myplug:boom"}), 0, "plug"), c=c)
    good = run_trial(Trial.new(exp(model={"backbone": "myplug:net"}), 0, "plug"), c=c)
    assert bad.outcome == Outcome.FAILED and "my backbone is broken" in (bad.error or "")
    tb = c.download_artifacts(bad.run_id, "traceback.txt")
    assert "RuntimeError: my backbone is broken" in Path(tb).read_text()
    assert good.outcome in (Outcome.OK, Outcome.COLLAPSED)
    tags = c.get_run(good.run_id).data.tags
    assert tags["ablab.code.model.backbone"].startswith("myplug:net@")
    assert len(tags["ablab.code"]) == 12


def test_a_fit_plugin_trains_with_ablabs_callbacks(project, tracking_uri):
    from mlflow import MlflowClient

    from core.runner import run_trial
    from core.trial import Trial

    c = MlflowClient(tracking_uri)
    res = run_trial(Trial.new(exp(train={"fit": "myplug:plain_fit", "epochs": 2}), 0, "fit"),
                    c=c)
    assert res.outcome.trained, res.error
    assert len(c.get_metric_history(res.run_id, "val_loss")) == 2  # ablab's epoch logger
    assert np.isfinite(res.metrics["test_accuracy"])


BAD_CONFIGS = {
    "module": {"model": {"backbone": "nomodule:net"}},
    "function": {"model": {"backbone": "myplug:nett"}},
    "signature": {"model": {"backbone": "myplug:halve"}},
    "option": {"model": {"backbone": "myplug:net", "options": {"widht": 3}}},
}


@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
def test_bad_plugins_exit_2_in_one_line_before_any_run(project, tmp_path, case):
    from tests.conftest import migrated_store

    (project / "experiments" / "bad.yaml").write_text(json.dumps(
        {**TINY, **BAD_CONFIGS[case]}))
    (project / "ablations" / "bad.yaml").write_text(textwrap.dedent("""\
        base: bad
        vary: {lr: [0.1]}
        seeds: 1
        """))
    uri = migrated_store(tmp_path / "store")
    r = run_cli("run", "bad", "--tracking-uri", uri, "--storage", str(tmp_path / "q.journal"),
                cwd=project, env={"ABLAB_PROJECT": str(project)})
    assert r.returncode == 2, r.stdout + r.stderr
    err = r.stderr.strip()
    assert err.startswith("error:") and "model." in err
    from mlflow import MlflowClient

    assert MlflowClient(uri).search_experiments(filter_string="name = 'bad'") == []
