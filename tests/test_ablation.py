import pytest

from core.ablation import Ablation, expand_trials, expand_variants, load_ablation, variant_name
from core.config import ConfigError


def ab(**kw):
    return Ablation(**{"name": "t", "base": "digits_cnn", **kw})


def test_vary_is_one_factor_at_a_time_and_dedupes_the_base():
    vs = expand_variants(ab(vary={"augment": ["none", "moderate"], "lr": [0.003, 0.01]}))
    # digits_cnn has augment=none and lr=0.003: those two are the same config -> one variant
    assert [v.name for v in vs] == ["augment=none", "augment=moderate", "lr=0.01"]
    assert [v.is_baseline for v in vs] == [True, False, False]
    assert vs[1].exp.augment.strength == "moderate" and vs[1].exp.train.lr == 0.003
    assert vs[2].exp.train.lr == 0.01 and vs[2].exp.augment.strength == "none"


def test_vary_adds_a_baseline_when_no_value_is_the_base():
    vs = expand_variants(ab(vary={"head": ["flatten_dense", "gap_dense"]}))
    assert [v.name for v in vs] == ["baseline", "head=flatten_dense", "head=gap_dense"]
    assert vs[0].is_baseline


def test_grid_is_full_factorial_with_readable_names():
    vs = expand_variants(ab(grid={"head": ["gap", "flatten_dense"], "lr": [0.001, 0.01]}))
    assert [v.name for v in vs] == ["head=gap,lr=0.001", "head=gap,lr=0.01",
                                    "head=flatten_dense,lr=0.001", "head=flatten_dense,lr=0.01"]
    assert sum(v.is_baseline for v in vs) == 1


def test_explicit_baseline_and_bad_baseline():
    vs = expand_variants(ab(vary={"lr": [0.001, 0.01]}, baseline="lr=0.01"))
    assert [v.name for v in vs if v.is_baseline] == ["lr=0.01"]
    with pytest.raises(ConfigError, match="did you mean 'lr=0.01'"):
        expand_variants(ab(vary={"lr": [0.001, 0.01]}, baseline="lr=0.1"))


def test_seeds_count_list_and_override():
    a = ab(vary={"lr": [0.001, 0.01]}, seeds=3)
    trials = expand_trials(a)
    assert len(trials) == 3 * 3  # baseline + 2 values
    assert [t.seed for t in trials[:3]] == [0, 0, 0]  # seed-major order
    assert len(expand_trials(a, seeds=2)) == 6
    assert {t.seed for t in expand_trials(ab(vary={"lr": [0.01]}, seeds=[7, 11]))} == {7, 11}
    assert len({t.hash for t in trials}) == len(trials)


def test_no_vary_is_one_config_many_seeds():
    trials = expand_trials(ab(seeds=4))
    assert len(trials) == 4 and trials[0].variant.name == "baseline"


def test_overrides_apply_to_every_variant():
    trials = expand_trials(ab(vary={"head": ["gap", "flatten_dense"]}, set={"train.epochs": 1},
                              smoke={"data.image_size": 8}), sets=["batch_size=16"], smoke=True)
    for t in trials:
        assert t.variant.exp.train.epochs == 1
        assert t.variant.exp.data.image_size == 8
        assert t.variant.exp.train.batch_size == 16


@pytest.mark.parametrize(("kw", "match"), [
    ({"vary": {"learning_rate": [0.1]}}, "not an axis"),
    ({"vary": {"lr": [-1.0]}}, "train.lr"),
    ({"vary": {"lr": [0.1]}, "grid": {"head": ["gap"]}}, "not both"),
])
def test_bad_ablations_are_config_errors(kw, match):
    with pytest.raises((ConfigError, ValueError), match=match):
        expand_variants(ab(**kw))


def test_variant_names():
    assert variant_name({"augment": "extreme"}) == "augment=extreme"
    assert variant_name({"head": "gap", "lr": 0.001}) == "head=gap,lr=0.001"
    assert variant_name({"batchnorm": False}) == "batchnorm=false"
    assert variant_name({}) == "baseline"


SHIPPED = ["augmentation_strength", "head", "lr", "batch_size", "depth", "activation",
           "label_smoothing", "ten_seed_baseline"]


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_ablations_expand(name):
    a = load_ablation(name)
    trials = expand_trials(a)
    seeds = len(a.seed_list())
    assert seeds >= (10 if name == "ten_seed_baseline" else 5)
    assert sum(t.variant.is_baseline for t in trials) == seeds
    expand_trials(a, smoke=True)  # the smoke switch validates too
