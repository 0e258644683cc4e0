"""Adaptive seeds (`core/sequential.py`): boundaries against gsDesign's published values and a
Monte-Carlo Brownian motion; the rule itself by simulating thousands of studies (the same
simulated accuracies as the fixed-n calibration tests) and measuring its false better/worse
rate, its power at 2·delta and the seeds it spends. Figures in BENCHMARKS.md come from
`python -m tests.test_sequential`."""

import math
import re

import numpy as np
import pytest
from scipy import stats as st

from core.ablation.spec import Ablation, AdaptiveSeeds
from core.errors import ConfigError
from core.sequential import (
    SeedPlan,
    boundaries,
    decide,
    nominal_levels,
    spent,
    t_levels,
    wanted,
)
from tests.test_stats_calibration import ALPHA, simulate

SIMS = 2000
DELTA = 0.01
PLAN = SeedPlan(3, 30, 3)  # the issue's example: looks at 3, 6, ..., 30 seeds


def mc_error(p: float, n: int) -> float:
    return 3 * math.sqrt(p * (1 - p) / n)


# ----------------------------------------------------------------------------- boundaries


def test_obrien_fleming_boundaries_match_gsdesign():
    """gsDesign(k=5, test.type=2, alpha=0.025, sfu=sfLDOF): upper bounds 4.877, 3.357,
    2.680, 2.290, 2.031."""
    got = boundaries((1, 2, 3, 4, 5), 0.05, "obf")
    assert got == pytest.approx([4.877, 3.357, 2.680, 2.290, 2.031], abs=2e-3)


def test_one_look_is_the_fixed_test():
    assert boundaries((10,), 0.05, "obf")[0] == pytest.approx(st.norm.isf(0.025), abs=1e-6)
    assert nominal_levels((10,), 0.05, "pocock")[0] == pytest.approx(0.05, abs=1e-6)


@pytest.mark.parametrize("kind", ["obf", "pocock"])
def test_boundaries_spend_what_they_promise(kind):
    """A simulated score process under H0 crosses look k's boundary for the first time with
    the probability the spending function assigns to it."""
    looks = (4, 8, 12, 16, 20)
    c = np.array(boundaries(looks, 0.05, kind))
    rng = np.random.default_rng(1)
    t = np.array(looks) / looks[-1]
    steps = rng.normal(0, np.sqrt(np.diff(t, prepend=0)), (200_000, len(t)))
    z = np.cumsum(steps, axis=1) / np.sqrt(t)
    crossed = np.abs(z) > c
    first = np.where(crossed.any(axis=1), crossed.argmax(axis=1), -1)
    for k, tk in enumerate(t):
        want = spent(tk, 0.05, kind)
        got = np.mean((first >= 0) & (first <= k))
        assert got == pytest.approx(want, abs=4 * math.sqrt(want / 200_000) + 5e-4), k
    if kind == "obf":
        assert list(c) == sorted(c, reverse=True)  # strict early, close to 1.96 at the end


@pytest.mark.parametrize("looks, kind, alpha", [((2, 3, 4, 5, 6, 7, 8, 9, 10), "pocock", 0.05),
                                               ((3, 6, 9, 12, 15), "obf", 0.01)])
def test_t_levels_spend_the_increments_on_fresh_paths(looks, kind, alpha):
    """Issue 21, case 2: paired t-tests of null studies (paths drawn apart from the
    calibration's own seed, at another scale: the t-test is scale-free) first cross look k's
    calibrated level with the spending function's increment, within 4 Monte Carlo SE."""
    levels = np.array(t_levels(looks, alpha, kind))
    rng = np.random.default_rng(7)
    d = rng.normal(0, 0.03, (100_000, looks[-1]))
    p = np.stack([st.ttest_1samp(d[:, :n], 0, axis=1).pvalue for n in looks], axis=1)
    crossed = p < levels
    first = np.where(crossed.any(axis=1), crossed.argmax(axis=1), -1)
    t = np.array(looks) / looks[-1]
    for k, tk in enumerate(t):
        want = spent(tk, alpha, kind)
        got = np.mean((first >= 0) & (first <= k))
        assert got == pytest.approx(want, abs=4 * math.sqrt(want / 100_000) + 2e-4), k


def sequential_false_rate(plan: SeedPlan, n_variants: int, studies: int,
                          seed: int = 5) -> float:
    """The share of simulated null studies (every variant as good as the baseline) in which
    the sequential rule calls some variant better or worse. Continuous accuracies (a shared
    seed effect plus normal run noise): the case the t calibration is about. Accuracies of
    k/300 images make the differences coarse and the rule more conservative still (0.035-0.041
    in the three plans below, against 0.044-0.057 at z boundaries)."""
    rng = np.random.default_rng(seed)
    hits = 0
    for _ in range(studies):
        shared = rng.normal(0, 0.02, plan.max)
        arms = [dict(enumerate(0.85 + shared + rng.normal(0, 0.02, plan.max)))
                for _ in range(n_variants + 1)]
        d = decide(arms[0], {f"v{i}": a for i, a in enumerate(arms[1:])}, plan)
        hits += any(x.state in ("better", "worse") for x in d.values())
    return hits / studies


SMALL_LOOKS = [(SeedPlan(2, 10, 1, "pocock"), 1, 4000),   # z boundaries: 0.061
               (SeedPlan(3, 30, 3, "pocock"), 5, 2500),   # 0.060
               (SeedPlan(2, 10, 1, "obf"), 8, 2500)]      # 0.060


@pytest.mark.parametrize("plan, n_variants, studies", SMALL_LOOKS)
def test_issue21_case2_small_looks_keep_the_false_rate(plan, n_variants, studies):
    """Issue 21, case 2: with z boundaries turned into p-levels, the looks' t-tests said
    better/worse in 6.0-6.1% of these null studies (the review saw 5.8-6.9%); at the
    t-calibrated levels at most 0.05 + 2 Monte Carlo SE, with Holm across up to 8
    variants."""
    rate = sequential_false_rate(plan, n_variants, studies)
    assert rate <= ALPHA + 2 * math.sqrt(ALPHA * (1 - ALPHA) / studies), rate


# ----------------------------------------------------------------------------- the rule


def _study(rng, diffs: list[float], plan: SeedPlan = PLAN, delta: float | None = DELTA):
    arms = simulate(rng, plan.max, diffs)
    others = {f"v{i}": dict(enumerate(a)) for i, a in enumerate(arms[1:])}
    return decide(dict(enumerate(arms[0])), others, plan, delta=delta)


def _rates(diffs: list[float], sims: int = SIMS, seed: int = 0):
    rng = np.random.default_rng(seed)
    decided, seeds = [], []
    for _ in range(sims):
        d = _study(rng, diffs)
        decided.append([x.state for x in d.values()])
        seeds.append(wanted(d, PLAN)[None])  # the baseline: the most seeds any variant used
    return np.array(decided), np.array(seeds)


def operating_characteristics(sims: int = SIMS) -> dict[str, float]:
    null, null_seeds = _rates([0.0], sims)
    alt, alt_seeds = _rates([2 * DELTA], sims, seed=1)
    fam, _ = _rates([0.0, 0.0, 0.0], sims // 2, seed=2)
    return {"false_rate": float(np.isin(null, ["better", "worse"]).mean()),
            "false_rate_3_variants": float(np.isin(fam, ["better", "worse"]).any(axis=1)
                                           .mean()),
            "power_2delta": float((alt == "better").mean()),
            "wrong_sign_2delta": float((alt == "worse").mean()),
            "mean_seeds_null": float(null_seeds.mean()),
            "mean_seeds_2delta": float(alt_seeds.mean()),
            "max": PLAN.max}


@pytest.fixture(scope="module")
def oc():
    return operating_characteristics()


def test_no_true_difference_rarely_gives_a_verdict(oc):
    assert oc["false_rate"] <= ALPHA + mc_error(ALPHA, SIMS)
    assert oc["false_rate_3_variants"] <= ALPHA + mc_error(ALPHA, SIMS // 2)


def test_a_difference_of_two_delta_is_found(oc):
    assert oc["power_2delta"] >= 0.8
    assert oc["wrong_sign_2delta"] <= 0.01


def test_seeds_are_saved(oc):
    """At least 30% below `max` on average, with and without a true difference."""
    assert oc["mean_seeds_null"] <= 0.7 * PLAN.max
    assert oc["mean_seeds_2delta"] <= 0.7 * PLAN.max


def test_a_look_waits_for_every_open_variant():
    """Decisions are a pure function of complete looks: extra seeds of one variant change
    nothing until every open variant has its next look's seeds."""
    plan = SeedPlan(4, 12, 4, "pocock")
    rng = np.random.default_rng(3)
    arms = simulate(rng, 12, [-0.3, 0.0])
    base = dict(enumerate(arms[0]))
    early = {"far": dict(enumerate(arms[1][:4])), "close": dict(enumerate(arms[2][:4]))}
    more = {"far": dict(enumerate(arms[1])), "close": dict(enumerate(arms[2][:6]))}
    a, b = decide(base, early, plan), decide(base, more, plan)
    assert [(d.state, d.n) for d in a.values()] == [(d.state, d.n) for d in b.values()]
    assert a["far"].state == "worse" and a["far"].n == 4  # decided at the first look
    assert a["close"].state == "open"
    assert wanted(a, plan) == {"far": 4, "close": 8, None: 8}


def test_futility_and_equivalence_stop_a_variant():
    rng = np.random.default_rng(4)
    states = [_study(rng, [0.0], delta=0.03)["v0"] for _ in range(200)]
    assert any(d.state == "equivalent" and d.n < PLAN.max for d in states)
    states = [_study(rng, [0.0], delta=None)["v0"] for _ in range(200)]
    futile = [d for d in states if d.state == "futile"]
    assert futile and all(d.n >= 2 * PLAN.step for d in futile)  # never at the first look
    assert "conditional power" in futile[0].why()


def test_missing_seeds_are_left_out_of_their_pair():
    base = {s: 0.8 + 0.01 * (s % 3) for s in range(6)}
    v = {**{s: 0.3 for s in range(6)}, 2: math.nan}
    d = decide(base, {"v": v}, SeedPlan(3, 6, 3))["v"]
    assert d.looks[0].n == 3 and math.isfinite(d.looks[0].p)


# ----------------------------------------------------------------------------- the spec


def test_adaptive_seeds_in_an_ablation_file():
    ab = Ablation(base="digits_cnn", vary={"augment": ["none", "extreme"]},
                  seeds={"min": 4, "max": 12, "step": 4})
    assert isinstance(ab.seeds, AdaptiveSeeds)
    assert ab.seed_plan() == SeedPlan(4, 12, 4, "obf")
    assert ab.seed_plan().looks() == (4, 8, 12)
    assert ab.seed_list() == list(range(12))
    assert ab.seed_plan(override=5) is None and ab.seed_list(5) == list(range(5))
    assert SeedPlan(3, 10, 4).looks() == (3, 7, 10)


@pytest.mark.parametrize("seeds, msg", [({"min": 5, "max": 5}, "max (5) must be above min"),
                                        ({"min": 1, "max": 5}, "min"),
                                        ({"min": 3, "max": 9, "stp": 3}, "stp")])
def test_bad_adaptive_seeds_name_the_field(seeds, msg):
    from core.config import validate_model

    with pytest.raises(ConfigError, match=re.escape(msg)):
        validate_model(Ablation, {"base": "digits_cnn", "seeds": seeds}, "x.yaml")


if __name__ == "__main__":
    import json
    import time

    t = time.perf_counter()
    out = operating_characteristics()
    for plan, m, studies in SMALL_LOOKS:
        out[f"false_rate {plan.spending} {plan.min}..{plan.max}/{plan.step}, {m} variants"] = \
            sequential_false_rate(plan, m, studies)
    out["seconds"] = round(time.perf_counter() - t, 1)
    print(json.dumps(out, indent=1))
