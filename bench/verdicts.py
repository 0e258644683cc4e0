"""The verdict rules' simulated operating figures (issues 21 and 31): seeds planned for
80% power against simulated power, power under Holm at the planned n, Welch with 2 seeds
against the permutation test, CI coverage at the accuracy ceiling, the sequential rule's false
rate at t-calibrated levels, the sign-flip test where failure counts differ, the failure
caveat's firing rates (exact and simulated), and how often verdict and interval agree in
small permutation-decided studies. Pure numpy, about two minutes.

    .venv/bin/python -m bench.verdicts
"""

from __future__ import annotations

import numpy as np
from scipy import stats as st

from core import planning, stats
from tests.test_sequential import SMALL_LOOKS, sequential_false_rate
from tests.test_stats import simulate_unpaired_false_rate
from tests.test_stats_calibration import failure_null_rates, simulated_power
from tests.test_verdicts import caveat_rate_exact, caveat_rate_simulated, random_study


def holm_power(m: int, dz: float, n: int, studies: int = 4000) -> float:
    rng = np.random.default_rng(m)
    d = rng.normal(0, 1, (studies, m, n))
    d[:, 0] += dz
    t = d.mean(2) / (d.std(2, ddof=1) / np.sqrt(n))
    p = 2 * st.t.sf(np.abs(t), n - 1)
    return float(np.mean([stats.holm(r)[0] < 0.05 and tr[0] > 0
                          for r, tr in zip(p, t, strict=True)]))


def ceiling_coverage(p: float = 0.995, n_test: int = 90, seeds: int = 3,
                     studies: int = 2000) -> tuple[float, float]:
    rng = np.random.default_rng(0)
    plain = floored = 0
    for _ in range(studies):
        x = rng.binomial(n_test, p, seeds) / n_test
        lo, hi = stats.t_interval(x, bounds=(0, 1))
        plain += lo <= p <= hi
        lo, hi = stats.t_interval(x, bounds=(0, 1),
                                  se_floor=stats.binomial_se_floor(x, n_test))
        floored += lo <= p <= hi
    return plain / studies, floored / studies


def main() -> None:
    for paired in (True, False):
        for e in (0.1, 0.2, 0.5, 1.0, 2.0):
            n = int(planning.seeds_needed(e, paired))
            print(f"seeds_needed({e}, paired={paired}) = {n}: simulated power "
                  f"{simulated_power(n, e, paired):.3f}")
    for m in (1, 3, 5):
        n, naive = (int(planning.seeds_needed(0.8, True, alpha=0.05 / k)) for k in (m, 1))
        print(f"Holm over {m}: planned {n} seeds, power {holm_power(m, 0.8, n):.3f}; "
              f"planned at 0.05 {naive} seeds, power {holm_power(m, 0.8, naive):.3f}")
    print(f"unpaired 2 vs 10 seeds, false better/worse: "
          f"{simulate_unpaired_false_rate(2, 10, 2000):.3f}")
    plain, floored = ceiling_coverage()
    print(f"coverage at 0.995, 3 seeds of 90: {plain:.3f} without the floor, {floored:.3f} with")
    for plan, m, studies in SMALL_LOOKS:
        print(f"sequential {plan.spending} {plan.min}..{plan.max}/{plan.step}, {m} variants, "
              f"{studies} studies: false better/worse "
              f"{sequential_false_rate(plan, m, studies):.4f}")
    for rates in ((0.0, 0.1), (0.1, 0.1)):
        for n in (6, 10):
            r = failure_null_rates(rates, n, 3000, seed=n)
            print(f"collapse rates {rates}, {n} seeds: sign-flip used in {r['used']:.3f}, "
                  f"false better/worse when used {r['false_rate_when_used']:.4f}, "
                  f"whole rule {r['false_rate_overall']:.4f}")
    for rate_b, rate_v in ((0, 0), (0.05, 0.05), (0.1, 0.1), (0.2, 0.2), (0, 0.3)):
        print(f"failure caveat, failure rates baseline {rate_b:.0%} variant {rate_v:.0%}, 10 "
              f"seeds: exact {caveat_rate_exact(rate_b, rate_v):.4f} (McNemar), simulated "
              f"{caveat_rate_simulated(rate_b, rate_v, True, studies=20000):.4f} paired, "
              f"{caveat_rate_simulated(rate_b, rate_v, False, studies=20000):.4f} unpaired")
    from core.ablation.analysis import comparison_table

    rng = np.random.default_rng(31)
    agree = used = 0
    for _ in range(400):
        row = comparison_table(random_study(rng)).iloc[0]
        if row["test"] in ("sign-flip", "permutation"):
            used += 1
            decided = row["verdict"].startswith(("better", "worse"))
            agree += decided == (not row["diff_ci_low"] <= 0 <= row["diff_ci_high"])
    print(f"small permutation-decided studies: verdict and Holm CI agree in {agree}/{used}")


if __name__ == "__main__":
    main()
