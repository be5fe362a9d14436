"""Drawing images from a trained generator: plain, the best the discriminator sees, walks through its latent
space, or many single images for use elsewhere."""
import math
import os
import shutil
import uuid
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

from dcgan.images import save_animation, save_grid, to_picture, to_uint8
from dcgan.files import write_atomically
from dcgan.weights import load_discriminator, load_generator

BATCH = 500  # images per forward pass: bounds memory whatever the count
GIF_SIDE = 256  # the interpolation GIF's shorter side is at least this many pixels


def generate(weights_dir="weights", count=128, seed=0, nice_factor=None):
    """`count` images in [-1, 1] from the generator in `weights_dir`, and their discriminator scores.

    With `nice_factor`, draw `count * nice_factor` images and keep the `count`
    the discriminator scores highest, best first; without it the scores are None.
    The noise is a pure function of `seed`, so the same seed gives the same images.
    """
    images = np.concatenate(list(draw_batches(weights_dir, count * (nice_factor or 1), seed)))
    if not nice_factor:
        return images, None
    scores = load_discriminator(weights_dir).predict(images, batch_size=BATCH, verbose=0)[:, 0]
    best = np.argsort(-scores, kind="stable")[:count]
    return images[best], scores[best]


def interpolate(weights_dir="weights", walks=8, points=10, seed=0, spherical=False):
    """Images along `walks` straight (or `spherical`) lines between random pairs of latent points.

    Returns (walks, points, H, W, C): row i walks from one random point to another in `points` steps.
    Spherical walks follow the great circle between the two points, keeping their length
    as it goes, where a straight line cuts through the middle of the latent space.
    """
    generator = load_generator(weights_dir)
    rng = np.random.default_rng(seed)
    start, end = rng.uniform(-1, 1, (2, walks, generator.input_shape[-1]))
    fractions = np.linspace(0, 1, points)[None, :, None]
    if spherical:
        cosine = np.sum(start * end, 1) / (np.linalg.norm(start, axis=1) * np.linalg.norm(end, axis=1))
        angle = np.arccos(np.clip(cosine, -1, 1))[:, None, None]
        sine = np.maximum(np.sin(angle), 1e-8)
        noise = (np.sin((1 - fractions) * angle) * start[:, None] + np.sin(fractions * angle) * end[:, None]) / sine
    else:
        noise = (1 - fractions) * start[:, None] + fractions * end[:, None]
    images = generator.predict(noise.reshape(walks * points, -1).astype(np.float32), batch_size=BATCH, verbose=0)
    return images.reshape(walks, points, *images.shape[1:])


def save_walks(walks, path, gif=False):
    """`interpolate`'s walks as a PNG grid, a row per walk; with `gif`, also an animation beside it
    (same name, .gif) with one frame per point, there and back, every walk in each frame."""
    save_grid(walks.reshape(-1, *walks.shape[2:]), path, columns=walks.shape[1])
    if gif:
        points = walks.shape[1]
        frames = [to_picture(walks[:, point]) for point in [*range(points), *range(points - 2, 0, -1)]]
        # Pixels repeated, not smoothed, up to a side of at least GIF_SIDE: a grid of 28-pixel digits is tiny on a screen.
        scale = math.ceil(GIF_SIDE / min(frames[0].size))
        frames = [frame.resize((frame.width * scale, frame.height * scale), Image.Resampling.NEAREST) for frame in frames]
        save_animation(frames, Path(path).with_suffix(".gif"), frame_seconds=0.15)


def draw_batches(weights_dir, count, seed):
    """`count` images in [-1, 1], BATCH at a time, so that memory stays bounded whatever the count; a pure
    function of `seed`, whose first images are those of any smaller count."""
    generator = load_generator(weights_dir)
    rng = np.random.default_rng(seed)
    for start in range(0, count, BATCH):
        noise = rng.uniform(-1, 1, (min(BATCH, count - start), generator.input_shape[-1]))
        yield generator.predict(noise.astype(np.float32), batch_size=BATCH, verbose=0)


def save_images(weights_dir, count, seed, output):
    """Write `count` generated images to `output`: a .npz holding `x`, uint8 (count, H, W, C), which
    `dcgan train --dataset` reads back; or else a new folder of PNGs, image_000000.png onwards.

    Each appears whole or not at all: the folder is filled under a hidden name and then renamed.
    """
    output = Path(output)
    batches = draw_batches(weights_dir, count, seed)
    if output.suffix.lower() == ".npz":
        write_atomically(output, lambda temporary: _write_npz(batches, count, temporary))
        return
    partial = output.with_name(f".{output.name}.partial-{uuid.uuid4().hex[:8]}")
    try:
        partial.mkdir()
        for index, image in enumerate(image for images in batches for image in images):
            to_picture(image[None]).save(partial / f"image_{index:06d}.png")
        os.rename(partial, output)
    finally:
        shutil.rmtree(partial, ignore_errors=True)


def _write_npz(batches, count, path):
    """np.savez's layout, written a batch at a time instead of from one array in memory."""
    with zipfile.ZipFile(path, "w") as archive, archive.open("x.npy", "w", force_zip64=True) as member:
        for index, images in enumerate(batches):
            if index == 0:
                header = {"descr": "|u1", "fortran_order": False, "shape": (count, *images.shape[1:])}
                np.lib.format.write_array_header_1_0(member, header)
            member.write(to_uint8(images).tobytes())
