"""Adaptive seeds: a group-sequential rule that decides, look by look, whether a variant
differs from the baseline, so seeds go only where the verdict is still open.

The plan: looks at n = min, min + step, ..., max paired seeds. Each look may decide a variant
`better`/`worse` (its paired t-test crosses the look's boundary), `equivalent` within ±delta
(TOST at the look's nominal level), or `futile` (from the second look and a third of the
information on: with the trend seen so far, the final look's boundary is out of reach,
conditional power under 5%). A look is taken only when every open variant has all its seeds
(and the baseline its), so the looks, and therefore the seeds run, do not depend on which
worker finished first. Boundaries come from Lan-DeMets alpha spending (O'Brien-Fleming-like
by default: strict early, close to the fixed-n level at max; Pocock-like spends evenly),
computed by the Armitage-McPherson-Rowe recursion on a grid for z statistics. The looks
test with paired t statistics, though, and at a handful of seeds their joint law is not the
Brownian motion's: z boundaries turned into p-values let Pocock 2..10 say "better" 5.8% of
the time under the null. So the levels the looks use are calibrated for t (`t_levels`):
200,000 simulated null paths of the paired t-test at the plan's looks, each look's p-level
set so the paths first crossing there are exactly the spending function's increment (scale-
free: the t-test does not depend on the differences' SD). Across variants, group-sequential
Holm: each hypothesis is tested at the levels calibrated for its share of alpha, alpha /
(open variants), and only a rejected variant frees its share (one stopped as futile or
equivalent keeps it).

Why not a library: PyPI's `gsdesign` calls itself experimental (R's gsDesign is the
reference, and the boundaries are checked against its published values and a simulated
Brownian motion); an anytime-valid confidence sequence (`confseq`) buys validity at any
number of looks, which a plan of a few looks does not need, with wider boundaries at the
handful of seeds a study has.

Everything here is a pure function of the per-seed results, so a study killed at any point
and run again replays the same looks and continues the same plan.
`tests/test_sequential.py` simulates thousands of studies to measure its error rates, power
and the seeds it spends (figures in BENCHMARKS.md).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import numpy as np
from scipy import special as sp
from scipy import stats as st
from scipy.optimize import brentq

from core import stats

FUTILITY_FROM = 0.34  # information fraction from which futility may stop a variant
FUTILITY_POWER = 0.05  # ... when its conditional power is below this


@dataclass(frozen=True)
class SeedPlan:
    min: int
    max: int
    step: int
    spending: str = "obf"  # obf | pocock

    def looks(self) -> tuple[int, ...]:
        ns = list(range(self.min, self.max + 1, self.step))
        return tuple(ns if ns[-1] == self.max else [*ns, self.max])

    def __str__(self) -> str:
        return (f"adaptive seeds: looks at n = {', '.join(map(str, self.looks()))} "
                f"({'Pocock' if self.spending == 'pocock' else 'O-Brien-Fleming'} spending)")


def spent(t: float, alpha: float, kind: str) -> float:
    """Two-sided alpha spent by information fraction t (Lan & DeMets 1983): O'Brien-Fleming-
    like, each side spending alpha/2 by 2 - 2 Phi(z_{1-alpha/4} / sqrt(t)) as gsDesign's
    sfLDOF does; or Pocock-like, alpha log(1 + (e - 1) t)."""
    if t <= 0:
        return 0.0
    t = min(t, 1.0)
    if kind == "pocock":
        return alpha * math.log(1 + (math.e - 1) * t)
    return float(4 - 4 * st.norm.cdf(st.norm.ppf(1 - alpha / 4) / math.sqrt(t)))


@functools.lru_cache(maxsize=256)
def boundaries(looks: tuple[int, ...], alpha: float = stats.ALPHA,
               kind: str = "obf") -> tuple[float, ...]:
    """Two-sided z boundaries c_k of the looks (sample sizes), by the recursive numerical
    integration of the score process under H0 (grid of 801 points per look)."""
    t = np.asarray(looks, float) / looks[-1]
    grid_n = 801
    out: list[float] = []
    density: np.ndarray | None = None  # of S_{k-1} on its continuation region, on `grid`
    grid = np.zeros(0)
    prev_t = 0.0
    for k, tk in enumerate(t):
        a_k = spent(tk, alpha, kind) - spent(prev_t, alpha, kind)
        dt = tk - prev_t
        if density is None:
            c = float(st.norm.ppf(1 - a_k / 2))
            new_density = None
        else:
            sd = math.sqrt(dt)

            def crossing(c: float, grid=grid, density=density, sd=sd, tk=tk) -> float:
                b = c * math.sqrt(tk)
                p = st.norm.sf((b - grid) / sd) + st.norm.cdf((-b - grid) / sd)
                return float(np.trapezoid(density * p, grid))

            lo, hi = 0.0, 40.0
            if crossing(hi) >= a_k:
                c = hi
            else:
                c = float(brentq(lambda x, a=a_k: crossing(x) - a, lo, hi, xtol=1e-7))
        out.append(c)
        b = c * math.sqrt(tk)
        new_grid = np.linspace(-b, b, grid_n)
        if density is None:
            new_density = st.norm.pdf(new_grid, scale=math.sqrt(tk))
        else:
            sd = math.sqrt(dt)
            kernel = st.norm.pdf((new_grid[:, None] - grid[None, :]) / sd) / sd
            new_density = np.trapezoid(kernel * density[None, :], grid, axis=1)
        grid, density, prev_t = new_grid, new_density, tk
        if k == len(t) - 1:
            break
    return tuple(out)


def nominal_levels(looks: tuple[int, ...], alpha: float = stats.ALPHA,
                   kind: str = "obf") -> tuple[float, ...]:
    """Each look's z boundary as a two-sided nominal p-value level (right for z statistics;
    the looks' t-tests use `t_levels`)."""
    return tuple(float(2 * st.norm.sf(c)) for c in boundaries(looks, alpha, kind))


CALIBRATION_PATHS = 200_000
CALIBRATION_SEED = 20261203
MIN_CROSSINGS = 50  # below this many calibration paths, a look falls back to its increment


@functools.lru_cache(maxsize=8)
def _null_t_pvalues(looks: tuple[int, ...]) -> np.ndarray:
    """Two-sided paired-t p-values at each look of CALIBRATION_PATHS null studies (standard
    normal differences: the t-test is scale-free), float32, shape (paths, looks)."""
    rng = np.random.default_rng(CALIBRATION_SEED)
    total = np.zeros(CALIBRATION_PATHS)
    squares = np.zeros(CALIBRATION_PATHS)
    out = np.empty((CALIBRATION_PATHS, len(looks)), np.float32)
    prev = 0
    for k, n in enumerate(looks):
        for _ in range(n - prev):  # one seed at a time: memory stays at a few vectors
            x = rng.standard_normal(CALIBRATION_PATHS)
            total += x
            squares += x * x
        prev = n
        mean = total / n
        var = np.maximum(squares - n * mean * mean, 1e-300) / (n - 1)
        out[:, k] = 2 * st.t.sf(np.abs(mean) / np.sqrt(var / n), n - 1)
    return out


@functools.lru_cache(maxsize=512)
def t_levels(looks: tuple[int, ...], alpha: float = stats.ALPHA,
             kind: str = "obf") -> tuple[float, ...]:
    """Each look's two-sided p-level for the paired t-test, calibrated by simulation so that
    P(first crossing at look k) is the spending function's increment at look k: the false
    better/worse rate is alpha at any n, including a first look at 2 seeds. A look whose
    increment is too small for the simulation to resolve (fewer than MIN_CROSSINGS paths;
    O'Brien-Fleming's first looks at a small alpha share) gets the increment itself as its
    level, which can only spend less. Deterministic (a fixed seed), cached per plan."""
    if looks[0] < 2:
        raise ValueError(f"a look needs at least 2 seeds for a t-test, not {looks[0]}")
    p = _null_t_pvalues(looks)
    alive = np.ones(len(p), bool)
    t = np.asarray(looks, float) / looks[-1]
    out: list[float] = []
    prev = 0.0
    for k, tk in enumerate(t):
        a_k = spent(tk, alpha, kind) - spent(prev, alpha, kind)
        prev = tk
        want = int(round(a_k * len(p)))
        if want < MIN_CROSSINGS:
            level = a_k
        else:
            live = np.sort(p[alive, k])
            level = float((live[want - 1] + live[want]) / 2) if want < len(live) else 1.0
        out.append(level)
        alive &= p[:, k] >= level
    return tuple(out)


@dataclass
class Look:
    n: int
    diff: float
    p: float  # paired t-test
    level: float  # the nominal level this look's p must beat (Holm-adjusted)
    p_tost: float
    power_left: float  # conditional power to cross the final boundary
    decision: str  # open | better | worse | equivalent | futile


@dataclass
class Decision:
    variant: str
    state: str  # open | better | worse | equivalent | futile | max
    n: int  # paired seeds it was decided with (or has so far)
    looks: list[Look] = field(default_factory=list)

    @property
    def decided(self) -> bool:
        return self.state != "open"

    def why(self) -> str:
        last = self.looks[-1] if self.looks else None
        if last is None:
            return "no look yet"
        if self.state in ("better", "worse"):
            return f"p={last.p:.2g} < boundary {last.level:.2g} at n={last.n}"
        if self.state == "equivalent":
            return f"TOST p={last.p_tost:.2g} < {last.level:.2g} at n={last.n}"
        if self.state == "futile":
            return (f"conditional power {last.power_left:.2f} < {FUTILITY_POWER} at "
                    f"n={last.n}")
        if self.state == "max":
            return f"undecided at the maximum n={last.n}"
        return f"open after n={last.n}"


def _conditional_power(z: float, t: float, c_final: float) -> float:
    """P(|Z_1| > c_final) given Z_t = z, the drift estimated from the current trend (the
    B-value method)."""
    if t >= 1:
        return float(abs(z) > c_final)
    b = z * math.sqrt(t)
    drift = b / t
    mean = b + drift * (1 - t)
    sd = math.sqrt(1 - t)
    return float(sp.ndtr((mean - c_final) / sd) + sp.ndtr((-c_final - mean) / sd))


def decide(base: dict[int, float], variants: dict[str, dict[int, float]], plan: SeedPlan,
           direction: str = "maximize", delta: float | None = None,
           alpha: float = stats.ALPHA) -> dict[str, Decision]:
    """Replay the looks on the per-seed results (seed -> value, NaN for a seed that ran
    but counts as missing; the plan's seeds are 0..max-1, used in order) and say, per
    variant, where it stands. Holm across the variants at each look (group-sequential Holm,
    Ye et al. 2013): the j-th smallest p among the open variants is compared with the look's
    t-calibrated level for alpha / (m - rejected - j), m the number of variants."""
    looks = plan.looks()
    c_final = boundaries(looks, alpha, plan.spending)[-1]
    out = {v: Decision(v, "open", 0) for v in variants}
    for k, n in enumerate(looks):
        open_now = [v for v in variants if not out[v].decided]
        if not open_now or not all(s in base for s in range(n)):
            break
        ready = {}
        for v in open_now:
            vals = variants[v]
            if not all(s in vals for s in range(n)):
                break
            pairs = np.array([(base[s], vals[s]) for s in range(n)], float)
            pairs = pairs[np.isfinite(pairs).all(axis=1)]
            ready[v] = stats.compare(pairs[:, 0], pairs[:, 1], paired=True, delta=delta,
                                     extras=False)
        if len(ready) < len(open_now):
            break  # a look waits for every open variant's seeds
        order = sorted(ready, key=lambda v: (ready[v]["p_value"]
                                            if math.isfinite(ready[v]["p_value"]) else 2.0))
        holm_open = True
        # Holm recycles the alpha of rejected hypotheses only: a variant stopped as
        # futile or equivalent still counts in the denominator (as a p-value of 1).
        rejected = sum(d.state in ("better", "worse") for d in out.values())
        for j, v in enumerate(order):
            r = ready[v]
            share = alpha / max(1, len(variants) - rejected - j)
            level = t_levels(looks, share, plan.spending)[k]
            p = r["p_value"] if math.isfinite(r["p_value"]) else 1.0
            p_tost = r["p_tost"] if math.isfinite(r["p_tost"]) else 1.0
            z = math.copysign(-sp.ndtri(p / 2), r["diff"]) if p < 1 else 0.0
            power_left = _conditional_power(z, n / looks[-1], c_final)
            state = "open"
            if r.get("replicates", 1) and holm_open and p < level:
                up = r["diff"] > 0 if direction == "maximize" else r["diff"] < 0
                state = "better" if up else "worse"
            else:
                holm_open = False
                if delta and p_tost < level:
                    state = "equivalent"
                elif n >= looks[-1]:
                    state = "max"
                elif k > 0 and n / looks[-1] >= FUTILITY_FROM and \
                        power_left < FUTILITY_POWER:
                    state = "futile"
            d = out[v]
            d.looks.append(Look(n, r["diff"], p, level, p_tost, power_left, state))
            d.n = n
            d.state = state
    return out


def next_n(d: Decision, looks: tuple[int, ...]) -> int:
    """The seeds a variant needs now: those it was decided with, or its next look's."""
    if d.decided:
        return d.n
    if not d.looks:
        return looks[0]
    return looks[min(looks.index(d.n) + 1, len(looks) - 1)]


def wanted(decisions: dict[str, Decision], plan: SeedPlan) -> dict[str | None, int]:
    """Seeds per variant that the plan runs now; the baseline (key None) needs the most."""
    per: dict[str | None, int] = {v: next_n(d, plan.looks()) for v, d in decisions.items()}
    per[None] = max(per.values(), default=plan.min)
    return per
