"""Tiling generated images into one PNG."""
import math

import numpy as np
from PIL import Image

from dcgan.files import write_atomically


def to_uint8(images):
    """[-1, 1] floats -> 0..255 bytes."""
    return np.clip(np.round((np.asarray(images) + 1) * 127.5), 0, 255).astype(np.uint8)


def grid_shape(count):
    """(rows, columns) of the most nearly square grid that holds `count` images."""
    columns = math.ceil(math.sqrt(count))
    return math.ceil(count / columns), columns


def tile(images):
    """Images (N, H, W, C) in [-1, 1] -> one uint8 picture, row by row; cells left over stay black."""
    images = to_uint8(images)
    count, height, width, channels = images.shape
    rows, columns = grid_shape(count)
    picture = np.zeros((rows * height, columns * width, channels), np.uint8)
    for index, image in enumerate(images):
        row, column = divmod(index, columns)
        picture[row * height : (row + 1) * height, column * width : (column + 1) * width] = image
    return picture


def save_grid(images, path):
    """Tile `images` and write them as a PNG at `path`, atomically."""
    picture = tile(images)
    if picture.shape[-1] == 1:
        picture = picture[..., 0]
    write_atomically(path, lambda temporary: Image.fromarray(picture).save(temporary, format="PNG"))
