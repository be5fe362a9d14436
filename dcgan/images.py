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


def tile(images, columns=None):
    """Images (N, H, W, C) in [-1, 1] -> one uint8 picture, row by row; cells left over stay black.

    `columns` defaults to the most nearly square grid.
    """
    images = to_uint8(images)
    count, height, width, channels = images.shape
    rows, columns = grid_shape(count) if columns is None else (math.ceil(count / columns), columns)
    picture = np.zeros((rows * height, columns * width, channels), np.uint8)
    for index, image in enumerate(images):
        row, column = divmod(index, columns)
        picture[row * height : (row + 1) * height, column * width : (column + 1) * width] = image
    return picture


def to_picture(images, columns=None):
    """`tile`d images as a PIL image, grayscale or RGB."""
    picture = tile(images, columns)
    return Image.fromarray(picture[..., 0] if picture.shape[-1] == 1 else picture)


def save_grid(images, path, columns=None, replace=True):
    """Tile `images` and write them as a PNG at `path`, atomically (see `write_atomically` for `replace`)."""
    picture = to_picture(images, columns)
    write_atomically(path, lambda temporary: picture.save(temporary, format="PNG"), replace)


def save_animation(frames, path, frame_seconds, hold_last_seconds=None, replace=True):
    """PIL images as an endlessly looping animated GIF at `path`, written atomically."""
    durations = [round(frame_seconds * 1000)] * len(frames)
    if hold_last_seconds is not None:
        durations[-1] = round(hold_last_seconds * 1000)
    write_atomically(path, lambda temporary: frames[0].save(
        temporary, format="GIF", save_all=True, append_images=frames[1:], duration=durations, loop=0), replace)
