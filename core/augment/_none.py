from core.augment._base import register
from core.schema import OpRanges


@register("none")
def none(_: OpRanges) -> OpRanges:
    """No augmentation: the model sees the training images as they are."""
    return OpRanges()
