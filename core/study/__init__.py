"""What every study shares: its spec, queue, worker pool, MLflow record, progress display and
run options. Ablations (core/ablation) and searches (core/search) are strategies on it."""

from core.study.coordinator import Plan, Study
from core.study.options import RunOptions

__all__ = ["Plan", "RunOptions", "Study"]
