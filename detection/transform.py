"""The model-side transform every detector uses: torchvision's ``GeneralizedRCNNTransform``.

It normalises with ImageNet statistics, resizes (keeping the aspect ratio between
``min_size`` and ``max_size``, or to an exact ``fixed_size`` square for heads with a fixed
input), batches into one padded tensor, rescales training targets with the images, and its
``postprocess`` maps predicted boxes (and masks) back to each original image size.
"""

from torchvision.models.detection.transform import GeneralizedRCNNTransform

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
SIZE_DIVISIBLE = 32  # the deepest backbone stride


def build_transform(
    *, min_size: int = 800, max_size: int = 1333, fixed_size: int | None = None, size_divisible: int = SIZE_DIVISIBLE
) -> GeneralizedRCNNTransform:
    """``fixed_size`` resizes every image to ``fixed_size x fixed_size`` (aspect not kept)."""
    return GeneralizedRCNNTransform(
        min_size=fixed_size or min_size,
        max_size=fixed_size or max_size,
        image_mean=list(IMAGENET_MEAN),
        image_std=list(IMAGENET_STD),
        size_divisible=size_divisible,
        fixed_size=(fixed_size, fixed_size) if fixed_size else None,
    )
