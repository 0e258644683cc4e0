import pytest

from core.ablation.spec import (
    Ablation,
    expand_trials,
    expand_variants,
    load_ablation,
    variant_name,
)
from core.errors import ConfigError
from core.paths import ablations_dir


def ab(**kw):
    return Ablation(**{"name": "t", "base": "digits_cnn", **kw})


def test_vary_is_one_factor_at_a_time_and_dedupes_the_base():
    vs, _ = expand_variants(ab(vary={"augment": ["none", "moderate"], "lr": [0.003, 0.01]}))
    # digits_cnn has augment=none and lr=0.003: those two are the same config -> one variant
    assert [v.name for v in vs] == ["augment=none", "augment=moderate", "lr=0.01"]
    assert [v.is_baseline for v in vs] == [True, False, False]
    assert vs[1].exp.augment.strength == "moderate" and vs[1].exp.train.lr == 0.003
    assert vs[2].exp.train.lr == 0.01 and vs[2].exp.augment.strength == "none"


def test_vary_adds_a_baseline_when_no_value_is_the_base():
    vs, _ = expand_variants(ab(vary={"head": ["flatten_dense", "gap_dense"]}))
    assert [v.name for v in vs] == ["baseline", "head=flatten_dense", "head=gap_dense"]
    assert vs[0].is_baseline


def test_grid_is_full_factorial_with_readable_names():
    vs, _ = expand_variants(ab(grid={"head": ["gap", "flatten_dense"], "lr": [0.001, 0.01]}))
    assert [v.name for v in vs] == ["head=gap,lr=0.001", "head=gap,lr=0.01",
                                    "head=flatten_dense,lr=0.001", "head=flatten_dense,lr=0.01"]
    assert sum(v.is_baseline for v in vs) == 1


def test_explicit_baseline_and_bad_baseline():
    vs, _ = expand_variants(ab(vary={"lr": [0.001, 0.01]}, baseline="lr=0.01"))
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
    assert len(trials) == 4 and trials[0].variant == "baseline"


def test_overrides_apply_to_every_variant():
    trials = expand_trials(ab(vary={"head": ["gap", "flatten_dense"]}, set={"train.epochs": 1},
                              smoke={"data.image_size": 8}), sets=["batch_size=16"], smoke=True)
    for t in trials:
        assert t.exp.train.epochs == 1
        assert t.exp.data.image_size == 8
        assert t.exp.train.batch_size == 16


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


SHIPPED = sorted(p.stem for p in ablations_dir().glob("*.yaml"))


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_ablations_expand(name):
    a = load_ablation(name)
    variants, _ = expand_variants(a)
    trials = expand_trials(a)
    seeds = len(a.seed_list())
    assert seeds >= (10 if name == "ten_seed_baseline" else 5)
    assert sum(v.is_baseline for v in variants) == 1
    assert len(trials) == seeds * len(variants)
    expand_trials(a, smoke=True)  # the smoke switch validates too


def test_vary_seed_says_where_seeds_go():
    with pytest.raises(ConfigError, match="seeds:"):
        expand_variants(ab(vary={"seed": [0, 1]}))


def test_varying_an_axis_that_cannot_act_is_an_error():
    """augment.ops.* only act under the custom policy: digits_cnn uses none."""
    with pytest.raises(ConfigError) as err:
        expand_variants(ab(vary={"rotation": [0.1, 0.3]}))
    assert "augment.strength" in str(err.value) and "custom" in str(err.value)
    vs, _ = expand_variants(ab(set={"augment": "custom"}, vary={"rotation": [0.1, 0.3]}))
    assert [v.exp.augment.ops.rotation for v in vs] == [0.0, 0.1, 0.3]


def test_a_set_axis_is_checked_on_the_base_only():
    """rotation set for every variant acts under custom; a variant may turn it off."""
    vs, _ = expand_variants(ab(set={"augment": "custom", "rotation": 0.2},
                               vary={"augment": ["none", "custom"]}))
    assert [v.name for v in vs] == ["augment=none", "augment=custom"]


def test_hashes_are_taken_once_at_expansion(tmp_path):
    """Editing a pretraining source while a study runs does not change queued trials."""
    from core.trial import Trial

    src = tmp_path / "source.yaml"
    src.write_text("base: digits_cnn\ntrain: {epochs: 3}\n")
    target = tmp_path / "target.yaml"
    target.write_text(f"base: digits_cnn\nmodel: {{weights: 'pretrain:{src}'}}\n")
    a = Ablation(name="t", base=str(tmp_path / "target.yaml"),
                 vary={"finetune": ["full", "head_only"]}, seeds=2)
    trials = expand_trials(a)
    attrs = [t.to_attrs() for t in trials]  # what the queue holds
    src.write_text("base: digits_cnn\ntrain: {epochs: 4}\n")
    assert [Trial.from_attrs(x).hash for x in attrs] == [t.hash for t in trials]
    assert [t.hash for t in expand_trials(a)] != [t.hash for t in trials]  # a new expansion
