"""The axis registry: every axis is settable, and every axis acts.

`test_every_axis_acts` is parametrized over the whole registry: an axis added tomorrow is
varied between two valid values on a small base config, and what the real training code does
with it (the `Model.fit` calls it makes, the weights they end with, a TTA prediction) must
differ. An axis that can only act in some configs says so
(`when=`), and setting it elsewhere is a config error."""

import json

import numpy as np
import pytest

from core.axes import AXES, SEED_AXIS, by_alias, describe, get_axis, registered, resolve_path
from core.config import load_experiment, validate
from core.dicts import deep_merge, get_dotted, nest
from core.errors import ConfigError
from tests.conftest import TINY, run_cli

MISSION_AXES = ["augment.strength", "model.bn_trainable", "model.head", "train.lr",
                "train.batch_size", "model.depth"]


def test_registry_is_large_and_has_the_mission_axes():
    paths = {a.path for a in registered()}
    assert len(paths) >= 30
    for p in MISSION_AXES:
        assert p in paths


def test_aliases_are_unique():
    aliases = [a.alias for a in AXES] + [SEED_AXIS]
    assert len(aliases) == len(set(aliases))


def _context(axis) -> dict:
    return dict(axis.when.context) if axis.when else {}


@pytest.mark.parametrize("axis", registered(), ids=lambda a: a.path)
def test_every_axis_is_settable(axis):
    """Its default and every listed value validate where the axis acts, set by its alias."""
    d = describe(axis)
    assert d["type"] and d["values"] and d["meaning"]
    ctx = [f"{k}={v}" for k, v in _context(axis).items()]
    exp = load_experiment("digits_cnn", ctx + [f"{axis.alias}={d['default']}"])
    assert str(get_dotted(exp, axis.path)).lower() == d["default"].lower()
    for v in _values(axis):
        load_experiment("digits_cnn", ctx + [f"{axis.path}={json.dumps(v)}"])


# Axes whose only registered value is the default: a plugin of the `ablab init` example (an
# import path, as a user would give it) is the second value they are varied to.
PLUGIN_VALUES = {"train.fit": ["core.template.project.mymodel:clipped_fit"]}


def _values(axis) -> list:
    """Valid values to try: the suggested ones, else the registry's or Literal's choices;
    names that need the network or a folder are left out."""
    vals = list(axis.suggested) or axis.choices()
    vals += PLUGIN_VALUES.get(axis.path, [])
    offline = [v for v in vals if not str(v).startswith(("keras:", "imagenet"))
               and v != "folder"]
    return offline


# ----------------------------------------------------------------------------- every axis acts

BASE = deep_merge(TINY, {"train": {"epochs": 4}})


def _experiment(axis, value):
    over = {**_context(axis), axis.path: value}
    return validate(deep_merge(BASE, nest(over)), f"{axis.path}={value}", [axis.path])


def _two_values(axis) -> tuple:
    default = axis.default
    for v in _values(axis):
        if v == default:
            continue
        try:
            _experiment(axis, v)
        except ConfigError:
            continue
        return default, v
    raise AssertionError(f"{axis.path}: no second valid value to vary it to")


class FitSpy:
    """Observes the real `keras.Model.compile` and `fit` while the real training code runs:
    what each fit was given (the model, its optimizer, what it was compiled with, epochs,
    class weights, callbacks), how many batches it ran and how many towers (outputs) the
    model had. It runs the steps eagerly (a few
    batches do not repay tracing a graph); nothing else about training changes."""

    def __init__(self):
        self.calls: list[tuple] = []

    def __enter__(self):
        import keras

        spy, original = self, keras.Model.fit
        self._original, self._compile = original, keras.Model.compile
        compiled: dict[int, str] = {}

        def compile(model, *args, **kw):
            compiled[id(model)] = f"jit_compile={kw.get('jit_compile')}"
            return self._compile(model, *args, **kw)

        class Count(keras.callbacks.Callback):
            batches = 0

            def on_train_batch_end(self, batch, logs=None):
                Count.batches += 1

        def fit(model, *args, **kw):
            counter = Count()
            cbs = list(kw.get("callbacks") or [])
            model.run_eagerly = True
            out = original(model, *args, **{**kw, "callbacks": cbs + [counter]})
            trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
            spy.calls.append((
                model.to_json(), model.count_params(), trainable, len(model.outputs),
                json.dumps(model.optimizer.get_config(), sort_keys=True, default=str),
                compiled.get(id(model)), kw.get("epochs"), kw.get("initial_epoch", 0),
                json.dumps(kw.get("class_weight"), sort_keys=True),
                [(type(cb).__name__, getattr(cb, "patience", None)) for cb in cbs],
                Count.batches))
            return out

        keras.Model.fit, keras.Model.compile = fit, compile
        return self

    def __exit__(self, *exc):
        import keras

        keras.Model.fit, keras.Model.compile = self._original, self._compile


def _stages(exp, seed: int = 0):
    """What an axis can change, observed on the real training path: the data; every
    `Model.fit` call that the worker's own code makes (alone, or packed as the handler
    decides); the trained weights' losses; a TTA prediction."""
    import keras

    from core.ablation.handler import pack_size
    from core.data import load_dataset
    from core.models import BACKBONES
    from core.pack import fit_packed
    from core.pretrain import source
    from core.seeding import seed_everything
    from core.train import fit, predict
    from core.trial import Trial, source_name

    keras.backend.clear_session()  # layer names restart, so two builds compare equal
    data = load_dataset(exp.data)
    yield ("data", data.x_train.shape, data.x_test.shape, int(data.y_train.sum()))
    policy = "mixed_bfloat16" if exp.train.mixed_precision else "float32"
    keras.mixed_precision.set_global_policy(policy)
    try:
        seed_everything(seed, exp.train.deterministic)
        backbone, src_hash = None, None
        if source_name(exp.model.weights):  # stands in for the pretrained backbone
            src = source(source_name(exp.model.weights))
            backbone = BACKBONES[src.exp.model.backbone](src.exp.model, data.input_shape)
            src_hash = src.hash
        k = pack_size(Trial.new(exp, seed, "axes", source_hash=src_hash))
        with FitSpy() as spy:
            if k > 1:
                model = fit_packed(exp, data, [seed + i for i in range(k)])[0].model
            else:
                model = fit(exp, data, seed, backbone=backbone).model
        yield ("fit", spy.calls)
        yield ("weights", [np.round(np.asarray(w, dtype="float64"), 5).tolist()
                           for w in model.get_weights()[-2:]])
        _, tta = predict(model, data.x_test[:32], tta=exp.eval.tta)
        yield ("tta", None if tta is None else tta.round(6).tolist())
    finally:
        keras.mixed_precision.set_global_policy("float32")


@pytest.mark.parametrize("axis", registered(), ids=lambda a: a.path)
def test_every_axis_acts(axis):
    a, b = _two_values(axis)
    same = list(_stages(_experiment(axis, a))) == list(_stages(_experiment(axis, b)))
    assert not same, f"{axis.path}: {a!r} and {b!r} build and train the same model"


def test_the_seed_acts():
    """`seed` is not a vary: axis (seeds are the replicates), but it drives the training."""
    from core.config import experiment_from_dict

    exp = experiment_from_dict(BASE)
    assert list(_stages(exp, 0)) != list(_stages(exp, 1))


@pytest.mark.parametrize("axis", [a for a in registered() if a.when], ids=lambda a: a.path)
def test_an_axis_set_where_it_cannot_act_is_an_error(axis):
    """The base digits_cnn (cnn backbone, weights none, gap head, adam, no augmentation):
    each conditional axis either acts there or is refused, naming what it needs."""
    exp = load_experiment("digits_cnn")
    _, other = _two_values(axis)
    if axis.when.test(exp):
        load_experiment("digits_cnn", [f"{axis.path}={json.dumps(other)}"])
        return
    with pytest.raises(ConfigError) as err:
        load_experiment("digits_cnn", [f"{axis.alias}={json.dumps(other)}"])
    msg = str(err.value)
    assert f"{axis.path}=" in msg and "has no effect" in msg
    assert axis.when.shows[0] in msg


def test_resolve_and_lookup():
    assert resolve_path("lr") == "train.lr"
    assert resolve_path("train.lr") == "train.lr"
    assert by_alias()["head"].path == "model.head"
    with pytest.raises(ConfigError, match="did you mean"):
        get_axis("heads")


def test_cli_axes_lists_every_axis_and_the_seed():
    proc = run_cli("axes", env={"COLUMNS": "250"})
    assert proc.returncode == 0, proc.stderr
    for a in registered():
        assert a.path in proc.stdout
    assert "seeds:" in proc.stdout  # where seeds go
