from core.augment._base import register
from core.schema import OpRanges


@register("custom", uses_ops=True)
def custom(ops: OpRanges) -> OpRanges:
    """Exactly the per-op ranges given under `augment.ops`."""
    return ops
