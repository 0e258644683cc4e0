import pytest

from core.axes import AXES, TRANSFER_ONLY, by_alias, describe, get_axis, registered, resolve_path
from core.config import ConfigError, load_experiment
from tests.conftest import run_cli

MISSION_AXES = ["augment.strength", "model.bn_trainable", "model.head", "train.lr",
                "train.batch_size", "model.depth"]


def test_registry_is_large_and_has_the_mission_axes():
    paths = {a.path for a in registered()}
    assert len(paths) >= 20
    for p in MISSION_AXES:
        assert p in paths


def test_aliases_are_unique():
    aliases = [a.alias for a in AXES]
    assert len(aliases) == len(set(aliases))


@pytest.mark.parametrize("axis", [a for a in registered() if a.path != "seed"],
                         ids=lambda a: a.path)
def test_every_axis_is_settable(axis):
    """Each registered axis: its path exists, its default and an allowed value validate."""
    d = describe(axis)
    assert d["type"] and d["values"] and d["meaning"]
    base = "digits_transfer" if axis.path in TRANSFER_ONLY else "digits_cnn"
    if axis.path == "model.weights":
        d = {**d, "default": "none"}
    exp = load_experiment(base, [f"{axis.alias}={d['default']}"])
    value = exp
    for part in axis.path.split("."):
        value = getattr(value, part)
    assert str(value).lower() == d["default"].lower()
    if d["type"] == "choice":
        for v in d["values"].split(", "):
            load_experiment(base, [f"{axis.path}={v}"])
    elif axis.suggested:
        load_experiment(base, [f"{axis.alias}={axis.suggested[-1]}"])


def test_resolve_and_lookup():
    assert resolve_path("lr") == "train.lr"
    assert resolve_path("train.lr") == "train.lr"
    assert by_alias()["head"].path == "model.head"
    with pytest.raises(ConfigError, match="did you mean"):
        get_axis("heads")


def test_cli_axes_lists_every_axis():
    proc = run_cli("axes", env={"COLUMNS": "200"})
    assert proc.returncode == 0, proc.stderr
    for a in registered():
        assert a.path in proc.stdout
