"""Optuna searches over the same axes: the spec (core/search/spec.py), samplers and pruners by
name (samplers.py), the strategy on the shared study engine (strategy.py), the report."""
