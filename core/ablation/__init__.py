"""Ablation studies: the spec and its expansion (spec.py), the strategy on the shared study
engine (study.py), and the report with its statistics (report.py)."""
