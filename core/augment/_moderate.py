from core.augment._base import register
from core.schema import OpRanges


@register("moderate")
def moderate(_: OpRanges) -> OpRanges:
    """Small geometric and photometric jitter that keeps every digit readable."""
    return OpRanges(rotation=0.03, shear=0.05, zoom=0.1, translation=0.08,
                    brightness=0.1, contrast=0.1)
