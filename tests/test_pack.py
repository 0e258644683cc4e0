"""Seed packing (core/pack.py): K seeds as K towers of one model. Per-tower early stopping and
divergence, reproducibility, agreement with unpacked training within the noise, the runs it
logs, claiming a pack from the queue, and the configs that run unpacked."""

import math
import types

import numpy as np
import pytest
from mlflow import MlflowClient

from core import pack
from core.data import load_dataset
from core.study.queue import Queue
from core.trial import Trial
from tests.conftest import migrated_store, tiny


class FakeTower:
    def __init__(self, name):
        self.name, self.w = name, [np.zeros(1)]

    def get_weights(self):
        return [x.copy() for x in self.w]

    def set_weights(self, w):
        self.w = w


def _logs(epoch, val_losses, losses=None):
    out = {}
    for k, v in enumerate(val_losses):
        out.update({f"tower_{k}_loss": (losses or val_losses)[k], f"tower_{k}_accuracy": 0.5,
                    f"val_tower_{k}_loss": v, f"val_tower_{k}_accuracy": 0.5})
    return out


def test_early_stopping_and_divergence_are_per_tower():
    towers = [FakeTower(f"tower_{k}") for k in range(3)]
    fits = [pack.TowerFit(t) for t in towers]
    cb = pack._tower_callback(towers, fits, [None] * 3, patience=2)
    model = types.SimpleNamespace(stop_training=False, optimizer=types.SimpleNamespace(
        learning_rate=0.01))
    cb.set_model(model)
    # tower 0 keeps improving, tower 1 stops improving after epoch 1, tower 2 diverges at 2
    val = [[1.0, 1.0, 1.0], [0.9, 0.5, 0.9], [0.8, 0.6, math.nan], [0.7, 0.7, 0.5],
           [0.6, 0.8, 0.4]]
    for epoch, v in enumerate(val):
        for k, t in enumerate(towers):
            t.w = [np.full(1, epoch * 10 + k)]
        cb.on_epoch_begin(epoch)
        cb.on_epoch_end(epoch, _logs(epoch, v))
    assert fits[1].stopped_epoch == 3 and fits[1].epochs_run == 4  # 2 epochs without gain
    assert fits[0].stopped_epoch is None and fits[0].epochs_run == 5
    assert fits[2].diverged and fits[2].epochs_run == 3  # nothing recorded after NaN
    assert not model.stop_training  # tower 0 still trains
    cb.on_train_end()
    assert towers[1].w[0][0] == 11  # best epoch (1) restored, not the last one seen
    assert towers[0].w[0][0] == 40
    cb.on_epoch_end(5, _logs(5, [0.9, 0.9, 0.9]))  # tower 0 gets worse, twice
    cb.on_epoch_end(6, _logs(6, [0.9, 0.9, 0.9]))
    assert model.stop_training  # every tower done: training ends


@pytest.fixture(scope="module")
def digits():
    return load_dataset(tiny().data, 0)


def _weights(models):
    return [w for m in models for w in m.get_weights()]


def test_packed_training_is_reproducible_and_shaped_like_unpacked(digits):
    import keras

    from core.seeding import seed_everything
    from core.train import fit

    exp = tiny()
    a = pack.fit_packed(exp, digits, [0, 1, 2])
    keras.backend.clear_session()
    b = pack.fit_packed(exp, digits, [0, 1, 2])
    for x, y in zip(_weights(f.model for f in a), _weights(f.model for f in b), strict=True):
        np.testing.assert_array_equal(x, y)  # same pack, same seeds: bitwise the same
    assert not np.array_equal(a[0].model.get_weights()[0], a[1].model.get_weights()[0])
    seed_everything(0, "strict")
    one = fit(exp, digits, 0)
    for f in a:
        assert set(f.history) == {k for k in one.history if k in pack._keys("t")}
        assert f.epochs_run == exp.train.epochs
        assert f.model.count_params() == one.model.count_params()
        assert [layer.name for layer in f.model.layers] == \
            [layer.name for layer in one.model.layers]


def test_packed_and_unpacked_agree_within_the_noise(digits):
    """8 seeds each: the mean test accuracies differ by less than 2 standard errors."""
    import keras

    from core.seeding import seed_everything
    from core.train import fit, predict

    exp = tiny(train={"epochs": 4})
    seeds = list(range(8))

    def acc(model):
        return float((predict(model, digits.x_test)[0].argmax(1) == digits.y_test).mean())

    unpacked = []
    for s in seeds:
        keras.backend.clear_session()
        seed_everything(s, "strict")
        unpacked.append(acc(fit(exp, digits, s).model))
    keras.backend.clear_session()
    packed = [acc(f.model) for f in pack.fit_packed(exp, digits, seeds)]
    se = math.sqrt(np.var(unpacked, ddof=1) / 8 + np.var(packed, ddof=1) / 8)
    assert abs(np.mean(packed) - np.mean(unpacked)) < 2 * se, (unpacked, packed)


def test_a_diverging_tower_is_recorded_diverged_and_its_neighbours_finish(tmp_path,
                                                                          monkeypatch):
    import core.models
    from core.runner import run_pack

    built = []
    real = core.models.build_model

    def build(*a, **kw):
        m = real(*a, **kw)
        built.append(m)
        if len(built) == 2:  # the second tower starts from NaN weights: it diverges
            layer = m.get_layer("classifier")
            layer.set_weights([np.full_like(w, np.nan) for w in layer.get_weights()])
        return m

    monkeypatch.setattr(core.models, "build_model", build)
    uri = migrated_store(tmp_path)
    c = MlflowClient(uri)
    exp = tiny(train={"pack": 3, "epochs": 3})
    trials = [Trial.new(exp, s, "packs", variant="v") for s in range(3)]
    results = run_pack(trials, c)
    assert [r.outcome for r in results][1] == "diverged"
    assert all(r.outcome in ("ok", "collapsed") for r in results[::2])
    assert all(math.isfinite(r.metrics["test_accuracy"]) for r in results[::2])
    for r in results:
        run = c.get_run(r.run_id)
        assert run.info.status == "FINISHED"
        assert run.data.tags["ablab.pack"] == "3"
        assert run.data.tags["ablab.outcome"] == r.outcome
        assert run.data.params["train.pack"] == "3"
        assert "pack_train_time_s" in run.data.metrics


@pytest.mark.parametrize("over, why", [
    ({"train": {"lr_schedule": "reduce_on_plateau"}}, "plateau"),
    ({"train": {"class_weight": "balanced"}}, "class weights"),
    ({"train": {"mixed_precision": True}}, "loss scaling"),
    ({"data": {"vary_split_with_seed": True}}, "own split")])
def test_configs_that_couple_the_towers_run_unpacked(over, why):
    exp = tiny(**{**over, "train": {**over.get("train", {}), "pack": 4}})
    assert why in pack.unpackable(exp)
    assert pack.size(exp) == 1


def test_pack_sizes():
    assert pack.size(tiny(train={"pack": 4})) == 4
    assert pack.size(tiny(train={"pack": "auto"}), "cpu", lambda: 30_000) == 10  # capped
    assert pack.size(tiny(train={"pack": "auto"}), "cpu", lambda: 1_000_000) == 2
    assert pack.size(tiny(train={"pack": "auto"}), "NVIDIA H200", lambda: 1_000_000) == 32
    assert pack.size(tiny(train={"pack": "auto"}), "cpu", lambda: 50_000_000) == 1
    with pytest.raises(Exception, match="pack"):
        tiny(train={"pack": 0})


def test_a_worker_claims_a_pack_of_one_config(tmp_path):
    q = Queue(f"sqlite:///{tmp_path / 'q.db'}", "packs")
    a, b = tiny(train={"pack": 3}), tiny(train={"pack": 3, "lr": 0.1})
    for s in range(4):
        for exp in (a, b):
            t = Trial.new(exp, s, "packs", variant=str(exp.train.lr))
            q.enqueue({**t.to_attrs(), "key": t.hash})
    first = q.claim("w1")
    more = q.claim_like(first, 2)
    assert len(more) == 2
    assert {j.attrs["pack_key"] for j in [first, *more]} == {first.attrs["pack_key"]}
    assert len({j.attrs["seed"] for j in [first, *more]}) == 3
    assert all(j.who == "w1" for j in more)
    other = q.claim("w2")  # another worker takes the other config's seeds
    rest = q.claim_like(other, 5)
    assert other.attrs["pack_key"] != first.attrs["pack_key"]
    assert len(rest) == 3
    assert len(q.claim_like(first, 2)) == 1  # its config's last waiting seed
