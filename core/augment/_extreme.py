from core.augment._base import register
from core.schema import OpRanges


@register("extreme")
def extreme(_: OpRanges) -> OpRanges:
    """Heavy distortion (with flips): the 'too much augmentation' end of the axis."""
    return OpRanges(rotation=0.25, shear=0.3, zoom=0.4, translation=0.25,
                    horizontal_flip=True, brightness=0.4, contrast=0.5)
