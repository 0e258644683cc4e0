from core.augment._base import register
from core.config import OpRanges


@register("custom")
def custom(ops: OpRanges) -> OpRanges:
    """Exactly the per-op ranges given under `augment.ops`."""
    return ops
