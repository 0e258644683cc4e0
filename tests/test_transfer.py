"""Fine-tune policies with Keras 3 semantics, checked the way Keras' own
`test_trainable_behavior` does: one step, then exactly which weights moved."""

import numpy as np
import pytest

from core.models import BACKBONES, build_model
from core.seeding import seed_everything
from core.train import compile_model, fit
from tests.conftest import OFFLINE, migrated_store, run_cli, tiny

RNG = np.random.default_rng(0)
X = RNG.random((16, 8, 8, 3)).astype("float32")
Y = np.eye(3, dtype="float32")[np.arange(16) % 3]
PRETRAINED = "pretrain:digits_0_4_pretrain"  # any non-"none" value marks the backbone pretrained


def _kind(path: str) -> str:
    for k in ("moving_mean", "moving_variance", "gamma", "beta", "kernel", "bias"):
        if path.endswith(k):
            return k
    return "other"


def _step(finetune, bn_trainable):
    exp = tiny(model={"depth": 2, "width": 4, "weights": PRETRAINED, "finetune": finetune,
                      "bn_trainable": bn_trainable})
    seed_everything(0, "strict")
    backbone = BACKBONES["cnn"](exp.model, (8, 8, 3))  # stands in for a loaded pretrained one
    model = build_model(exp, (8, 8, 3), 3, backbone=backbone)
    compile_model(model, exp, 1)
    bb = model.get_layer("backbone")
    before_bb = {v.path: np.array(v) for v in bb.weights}
    head = model.get_layer("classifier")
    before_head = [np.array(w) for w in head.weights]
    model.train_on_batch(X, Y)
    changed = {p: not np.array_equal(before_bb[p], np.array(v))
               for p, v in ((v.path, v) for v in bb.weights)}
    head_changed = any(not np.array_equal(a, np.array(b))
                       for a, b in zip(before_head, head.weights, strict=True))
    by_kind: dict[str, set[bool]] = {}
    for p, c in changed.items():
        by_kind.setdefault(_kind(p), set()).add(c)
    return by_kind, head_changed


@pytest.mark.parametrize(("finetune", "bn_trainable", "moves", "stays"), [
    ("head_only", False, set(), {"kernel", "gamma", "beta", "moving_mean", "moving_variance"}),
    ("head_only", True, set(), {"kernel", "gamma", "beta", "moving_mean", "moving_variance"}),
    ("bn_only", False, {"gamma", "beta", "moving_mean", "moving_variance"}, {"kernel"}),
    ("full", False, {"kernel"}, {"gamma", "beta", "moving_mean", "moving_variance"}),
    ("full", True, {"kernel", "gamma", "beta", "moving_mean", "moving_variance"}, set()),
])
def test_policy_changes_exactly_the_expected_weights(finetune, bn_trainable, moves, stays):
    by_kind, head_changed = _step(finetune, bn_trainable)
    assert head_changed, "the head always trains"
    for k in moves:
        assert by_kind[k] == {True}, f"{k} should change under {finetune}"
    for k in stays:
        assert by_kind[k] == {False}, f"{k} should stay under {finetune}"


def test_from_scratch_ignores_policies_and_rejects_them():
    from core.config import load_experiment
    from core.errors import ConfigError

    with pytest.raises(ConfigError, match="model.bn_trainable=true has no effect") as err:
        load_experiment("digits_cnn", ["bn_trainable=true"])
    assert "pretrained weights" in str(err.value)


def test_two_phase_fine_tuning_lowers_the_lr(tmp_path):
    from core.data import load_dataset

    exp = tiny(model={"depth": 1, "weights": PRETRAINED, "head_epochs": 1,
                      "finetune_lr_factor": 0.1}, train={"epochs": 3, "lr": 0.01})
    seed_everything(0, "strict")
    rows = []
    backbone = BACKBONES["cnn"](exp.model, (8, 8, 3))
    res = fit(exp, load_dataset(exp.data), 0, sink=lambda e, r: rows.append((e, r["lr"])),
              backbone=backbone)
    assert [e for e, _ in rows] == [0, 1, 2] and res.epochs_run == 3
    assert rows[0][1] == pytest.approx(0.01) and rows[1][1] == pytest.approx(0.001)
    assert all(layer.trainable for layer in res.model.get_layer("backbone").layers
               if "conv" in layer.name)  # unfrozen for phase 2


def test_imagenet_offline_says_how_to_provide_weights(tmp_path):
    proc = run_cli("train", "digits_cnn", "--set", "model.backbone=efficientnetb0",
                   "--set", "model.weights=imagenet", "--set", "train.epochs=1",
                   "--tracking-uri", migrated_store(tmp_path),
                   env={"KERAS_HOME": str(tmp_path / "keras"), **OFFLINE})
    assert proc.returncode == 1
    err = " ".join(proc.stderr.split())
    assert "could not download the ImageNet weights" in err
    assert "~/.keras/models/" in err
    assert "Traceback" not in proc.stderr + proc.stdout
