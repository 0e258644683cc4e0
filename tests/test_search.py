import optuna
import pytest

from core.errors import ConfigError
from core.search.samplers import PRUNERS, SAMPLERS, make_pruner, make_sampler
from core.search.spec import Param, Search, experiment_for, load_search
from core.study.spec import study_base


def test_shipped_searches_load_and_build():
    for name in ("lr_batch", "architecture"):
        s = load_search(name)
        base = study_base(s)
        study = optuna.create_study(sampler=make_sampler(s), direction=s.direction)
        trial = study.ask()
        params = {k: p.suggest(trial, k) for k, p in s.space.items()}
        exp = experiment_for(base, params, "test")
        assert exp.train.epochs == 8
        study_base(s, smoke=True).experiment()


def test_param_kinds():
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    t = study.ask()
    assert 1e-4 <= Param(type="float", low=1e-4, high=1e-1, log=True).suggest(t, "a") <= 0.1
    v = Param(type="int", low=16, high=128, step=16).suggest(t, "b")
    assert v % 16 == 0 and 16 <= v <= 128
    assert Param(type="categorical", choices=["x", "y"]).suggest(t, "c") in ("x", "y")
    assert Param(type="int", low=1, high=3).grid() == [1, 2, 3]
    assert Param(type="float", low=0.0, high=0.2, step=0.1).grid() == pytest.approx([0, .1, .2])
    with pytest.raises(ValueError, match="grid sampler"):
        Param(type="float", low=0.0, high=1.0).grid()
    with pytest.raises(ValueError, match="low < high"):
        Param(type="float", low=1.0, high=0.5)


def test_space_keys_must_be_axes(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("base: digits_cnn\nspace:\n  learning_rate: {type: float, low: 0.1, high: 1}\n")
    with pytest.raises(ConfigError, match="not an axis"):
        load_search(f)


def test_unknown_sampler_or_pruner_lists_the_valid_ones(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("base: digits_cnn\nspace:\n  lr: {type: float, low: 0.1, high: 1}\n"
                 "sampler: tpee\n")
    with pytest.raises(ConfigError, match="did you mean tpe") as err:
        load_search(f)
    assert all(n in str(err.value) for n in SAMPLERS.names())
    f.write_text("base: digits_cnn\nspace:\n  lr: {type: float, low: 0.1, high: 1}\n"
                 "pruner: {type: medain}\n")
    with pytest.raises(ConfigError, match="did you mean median"):
        load_search(f)


def test_a_space_axis_that_cannot_act_is_refused(tmp_path):
    """weight_decay acts only with adamw: alone on an adam base it is refused; searched
    together with the optimizer it is not (it acts for some samples)."""
    f = tmp_path / "wd.yaml"
    f.write_text("base: digits_cnn\nspace:\n  weight_decay: {type: float, low: 0, high: 0.1}\n")
    from core.search.strategy import SearchStudy
    from core.study import RunOptions

    with pytest.raises(ConfigError, match="train.optimizer=adamw"):
        SearchStudy(load_search(f), RunOptions())
    f.write_text("base: digits_cnn\nspace:\n  weight_decay: {type: float, low: 0, high: 0.1}\n"
                 "  optimizer: {type: categorical, choices: [adam, adamw]}\n")
    SearchStudy(load_search(f), RunOptions())


@pytest.mark.parametrize("pruner", PRUNERS.names())
def test_every_pruner_builds(pruner):
    s = Search(base="digits_cnn", space={"lr": Param(type="float", low=0.1, high=1)},
               pruner=pruner)
    assert isinstance(make_pruner(s, 5), optuna.pruners.BasePruner)


def test_pruner_spec_forms():
    s = Search(base="digits_cnn", space={"lr": Param(type="float", low=0.1, high=1)},
               pruner="hyperband")
    assert s.pruner_spec.type == "hyperband"


@pytest.mark.parametrize("sampler", SAMPLERS.names())
def test_every_sampler_runs_the_space(sampler):
    space = {"lr": Param(type="float", low=0.001, high=0.1, step=0.001),
             "depth": Param(type="int", low=1, high=3)}
    if sampler != "cmaes":
        space["head"] = Param(type="categorical", choices=["gap", "gap_dense"])
    s = Search(base="digits_cnn", space=space, sampler=sampler)
    base = study_base(s)
    study = optuna.create_study(sampler=make_sampler(s), direction="maximize")

    def objective(trial):
        exp = experiment_for(base, {k: p.suggest(trial, k) for k, p in s.space.items()}, "t")
        return -abs(exp.train.lr - 0.01) - exp.model.depth

    study.optimize(objective, n_trials=4)
    assert len(study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))) == 4
