"""The image sizes each architecture can build, checked without loading TensorFlow."""
from dcgan.errors import UserError

MLP_SIZES = (8, 128)  # smallest and largest image side of the fully connected models


def supported_sizes():
    """Image sizes the convolutional models support: base x 2^doublings, base 4..8, at least 2 doublings, up to 256."""
    return sorted(
        {base * 2**doublings for base in range(4, 9) for doublings in range(2, 7) if base * 2**doublings <= 256}
    )


def doublings(size):
    """How many times the generator doubles its starting map to reach `size` (2 for the classic 28 = 7 x 4).

    The fewest that bring the starting map to 8x8 or less: the classic's dense layer feeds
    128 x 7 x 7 units, and this keeps it that small at any size.
    """
    for count in range(2, 7):
        if size % 2**count == 0 and 4 <= size // 2**count <= 8:
            return count
    sizes = ", ".join(map(str, supported_sizes()))
    raise UserError(
        f"image size {size} is not supported; use one of {sizes} (a base of 4 to 8 pixels doubled twice or more)"
    )


def check_image_size(architecture, size):
    """Refuse an image side that `architecture` cannot build, naming the sizes it can."""
    if architecture != "mlp":
        doublings(size)
    elif not MLP_SIZES[0] <= size <= MLP_SIZES[1]:
        raise UserError(f"image size {size} is not supported by --architecture mlp; use a size from "
                        f"{MLP_SIZES[0]} to {MLP_SIZES[1]}")
