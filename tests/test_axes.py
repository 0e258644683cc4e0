"""The axis registry: every axis is settable, and every axis acts.

`test_every_axis_acts` is parametrized over the whole registry: an axis added tomorrow is
varied between two valid values on a small base config, and the built model, its compiled
training or its first steps must differ. An axis that can only act in some configs says so
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


def _values(axis) -> list:
    """Valid values to try: the suggested ones, else the registry's or Literal's choices;
    names that need the network or a folder are left out."""
    vals = list(axis.suggested) or axis.choices()
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


def _stages(exp, seed: int = 0):
    """What an axis can change: the data, the model, the compiled training (optimizer,
    callbacks, XLA, plan), then the numbers of two training steps and a TTA prediction."""
    import keras

    from core import pack
    from core.data import load_dataset, to_tf
    from core.models import BACKBONES, build_model
    from core.pretrain import source
    from core.seeding import seed_everything
    from core.train import callbacks, class_weights, compile_model, jit_compile, predict
    from core.trial import source_name

    keras.backend.clear_session()  # layer names restart, so two builds compare equal
    data = load_dataset(exp.data)
    yield ("data", data.x_train.shape, data.x_test.shape, int(data.y_train.sum()))
    policy = "mixed_bfloat16" if exp.train.mixed_precision else "float32"
    keras.mixed_precision.set_global_policy(policy)
    try:
        seed_everything(seed, exp.train.deterministic)
        backbone = None
        if source_name(exp.model.weights):  # stands in for the pretrained backbone
            src = source(source_name(exp.model.weights)).exp
            backbone = BACKBONES[src.model.backbone](src.model, data.input_shape)
        two_phase = exp.model.pretrained and exp.model.head_epochs > 0
        model = build_model(exp, data.input_shape, data.n_classes, backbone=backbone,
                            finetune="head_only" if two_phase else None)
        yield ("model", model.to_json(), model.count_params(),
               sum(int(np.prod(w.shape)) for w in model.trainable_weights))
        steps = -(-len(data.y_train) // exp.train.batch_size)
        compile_model(model, exp, steps)
        model.run_eagerly = True  # two steps do not repay tracing a graph
        opt = model.optimizer.get_config()
        yield ("training", json.dumps(opt, sort_keys=True, default=str), jit_compile(exp),
               pack.plan(exp),
               [(type(cb).__name__, getattr(cb, "patience", None))
                for cb in callbacks(exp.train, None, [])],
               exp.train.epochs * steps, exp.model.finetune_lr_factor if two_phase else None)
        weights = class_weights(data.y_train, data.n_classes) \
            if exp.train.class_weight == "balanced" else None  # what fit() is given
        x, y = next(iter(to_tf(data.x_train, data.y_train, data.n_classes,
                               exp.train.batch_size, seed, shuffle=True)))
        losses = [float(model.train_on_batch(x, y, class_weight=weights, return_dict=True)
                        ["loss"]) for _ in range(2)]
        _, tta = predict(model, data.x_test[:32], tta=exp.eval.tta)
        yield ("steps", losses, None if tta is None else tta.round(6).tolist())
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
