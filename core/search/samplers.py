"""Optuna samplers and pruners by name (registries of a search file's `sampler:` and
`pruner.type`). An unknown name is a config error listing the valid ones."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import optuna

from core.registry import Registry

# Each entry takes the search spec (core.search.spec.Search) and a seed or epoch count.
Search = Any
SAMPLERS: Registry[Callable[[Search, int], optuna.samplers.BaseSampler]] = Registry("sampler")
PRUNERS: Registry[Callable[[Search, int], optuna.pruners.BasePruner]] = Registry("pruner.type")


# The trial user attr a worker sets before telling Optuna: one value per constraint of the
# search file, <= 0 when satisfied (Optuna's convention for `constraints_func`).
CONSTRAINTS_ATTR = "constraints"


def constraints_func(s: Search):
    """Optuna's `constraints_func` for a search with `constraints:`, else None."""
    if not getattr(s, "constraints", None):
        return None
    n = len(s.constraints)
    return lambda t: t.user_attrs.get(CONSTRAINTS_ATTR, [1.0] * n)


@SAMPLERS.register("tpe", multi=True)
def tpe(s: Search, seed: int) -> optuna.samplers.BaseSampler:
    return optuna.samplers.TPESampler(seed=seed, constraints_func=constraints_func(s))


@SAMPLERS.register("nsga2", multi=True)
def nsga2(s: Search, seed: int) -> optuna.samplers.BaseSampler:
    """NSGA-II, Optuna's genetic sampler for several objectives (Pareto fronts)."""
    return optuna.samplers.NSGAIISampler(seed=seed, constraints_func=constraints_func(s))


@SAMPLERS.register("random", multi=True)
def random(s: Search, seed: int) -> optuna.samplers.BaseSampler:
    return optuna.samplers.RandomSampler(seed=seed)


@SAMPLERS.register("grid", multi=True)
def grid(s: Search, seed: int) -> optuna.samplers.BaseSampler:
    return optuna.samplers.GridSampler({k: p.grid() for k, p in s.space.items()}, seed=seed)


@SAMPLERS.register("cmaes")
def cmaes(s: Search, seed: int) -> optuna.samplers.BaseSampler:
    return optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)


@PRUNERS.register("median")
def median(s: Search, epochs: int) -> optuna.pruners.BasePruner:
    p = s.pruner_spec
    return optuna.pruners.MedianPruner(n_startup_trials=p.startup_trials,
                                       n_warmup_steps=p.warmup_epochs)


@PRUNERS.register("hyperband")
def hyperband(s: Search, epochs: int) -> optuna.pruners.BasePruner:
    return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(epochs, 2),
                                          reduction_factor=3)


@PRUNERS.register("none")
def nop(s: Search, epochs: int) -> optuna.pruners.BasePruner:
    return optuna.pruners.NopPruner()


def make_sampler(s: Search, worker_index: int = 0) -> optuna.samplers.BaseSampler:
    """Distinct seeded streams per worker, so parallel workers do not repeat each other."""
    return SAMPLERS[s.sampler](s, s.seed + worker_index)


def make_pruner(s: Search, epochs: int) -> optuna.pruners.BasePruner:
    return PRUNERS[s.pruner_spec.type](s, epochs)
