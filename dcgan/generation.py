"""Drawing images from a trained generator: plain, the best the discriminator sees, walks through its latent
space, or many single images for use elsewhere."""
import math
import re
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

from dcgan.conditioning import BODY
from dcgan.errors import UserError
from dcgan.files import new_partial, place_new, remove, write_atomically
from dcgan.images import save_animation, save_grid, to_picture, to_uint8
from dcgan.weights import RunFolder

BATCH = 500  # images per forward pass: bounds memory whatever the count
NICE_CHUNK = 20 * BATCH  # images --nice draws before it keeps the best of them and draws on
GIF_SIDE = 256  # the interpolation GIF's shorter side is at least this many pixels


def generate(weights_dir="weights", count=128, seed=0, nice_factor=None, classes=None):
    """`count` images in [-1, 1] from the generator in `weights_dir`, and their discriminator scores.

    A conditional run's generator draws `count` images of each class in `classes` (indices; None:
    every class), class after class, the n-th image of each class from the same noise.
    With `nice_factor`, draw `count * nice_factor` images (of each class) and keep the `count`
    the discriminator scores highest (in each class), best first; without it the scores are None.
    The noise is a pure function of `seed`, so the same seed gives the same images.
    """
    run = RunFolder.of(weights_dir)
    generator = run.model("generator")
    noise = latent_noise(np.random.default_rng(seed), count * (nice_factor or 1), generator)
    if not _conditional(generator):
        return _best(run, generator, noise, None, count, nice_factor)
    classes = all_classes(run) if classes is None else list(classes)
    kept = [_best(run, generator, noise, label, count, nice_factor) for label in classes]
    images = np.concatenate([images for images, _ in kept])
    return images, np.concatenate([scores for _, scores in kept]) if nice_factor else None


def _best(run, generator, noise, label, count, nice_factor):
    """The images drawn from `noise` (of class `label`, None for an unconditional run) and their scores, or with
    `nice_factor` the `count` the discriminator scores highest, best first (ties in drawing order). Drawn
    NICE_CHUNK at a time, keeping only the best so far: memory stays that of count + NICE_CHUNK images."""
    def inputs(rows):
        return rows if label is None else [rows, np.full(len(rows), label, np.int32)]

    if not nice_factor:
        return generator.predict(inputs(noise), batch_size=BATCH, verbose=0), None
    discriminator = run.model("discriminator")
    images, scores = np.zeros((0, *generator.output_shape[1:]), np.float32), np.zeros(0, np.float32)
    for start in range(0, len(noise), NICE_CHUNK):
        drawn = generator.predict(inputs(noise[start:start + NICE_CHUNK]), batch_size=BATCH, verbose=0)
        judged = discriminator.predict(drawn if label is None else [drawn, inputs(drawn)[1]], batch_size=BATCH,
                                       verbose=0)[:, 0]
        images, scores = np.concatenate([images, drawn]), np.concatenate([scores, judged])
        best = np.argsort(-scores, kind="stable")[:count]  # the best so far come first, so ties keep their order
        images, scores = images[best], scores[best]
    return images, scores


def interpolate(weights_dir="weights", walks=8, points=10, seed=0, spherical=False, classes=None):
    """Images along `walks` straight (or `spherical`) lines between random pairs of latent points.

    Returns (walks, points, H, W, C): row i walks from one random point to another in `points` steps.
    Spherical walks follow the great circle between the two points, keeping their length
    as it goes, where a straight line cuts through the middle of the latent space.

    A conditional run's walks keep a class: the one in `classes`, or (None) walk i class i modulo
    the classes. Given two classes, each walk instead keeps its noise and moves from the first
    class to the second.
    """
    run = RunFolder.of(weights_dir)
    generator = run.model("generator")
    conditional = _conditional(generator)
    start, end = np.random.default_rng(seed).uniform(-1, 1, (2, walks, _latent_dim(generator)))
    fractions = np.linspace(0, 1, points)[None, :, None]
    class_count = len(run.class_names)
    if conditional and classes is not None and len(classes) == 2:
        noise = np.repeat(start[:, None], points, axis=1).reshape(walks * points, -1)
        one_hot = np.eye(class_count)[list(classes)]
        mixed = (
            ((1 - fractions) * one_hot[0] + fractions * one_hot[1]).repeat(walks, axis=0).reshape(walks * points, -1)
        )
        body = generator.get_layer(BODY)  # the conditional generator past its label's one-hot vector
        images = body.predict(np.concatenate([noise, mixed], axis=1).astype(np.float32), batch_size=BATCH, verbose=0)
        return images.reshape(walks, points, *images.shape[1:])
    if spherical:
        cosine = np.sum(start * end, 1) / (np.linalg.norm(start, axis=1) * np.linalg.norm(end, axis=1))
        angle = np.arccos(np.clip(cosine, -1, 1))[:, None, None]
        sine = np.maximum(np.sin(angle), 1e-8)
        noise = (np.sin((1 - fractions) * angle) * start[:, None] + np.sin(fractions * angle) * end[:, None]) / sine
    else:
        noise = (1 - fractions) * start[:, None] + fractions * end[:, None]
    inputs = noise.reshape(walks * points, -1).astype(np.float32)
    if conditional:
        walk_classes = np.arange(walks) % class_count if classes is None else np.full(walks, classes[0])
        inputs = [inputs, np.repeat(walk_classes, points).astype(np.int32)]
    images = generator.predict(inputs, batch_size=BATCH, verbose=0)
    return images.reshape(walks, points, *images.shape[1:])


def all_classes(weights_dir):
    """The class indices of the conditional run in `weights_dir` (a folder or its RunFolder): empty for another run."""
    run = RunFolder.of(weights_dir)
    return list(range(len(run.class_names))) if run.config.conditioning else []


def class_indices(weights_dir, requested):
    """The class indices that `requested` names ("all", class names or indices) in the run in `weights_dir`,
    in the order given, each once."""
    run = RunFolder.of(weights_dir)
    names = run.class_names if run.config.conditioning else None
    if not names:
        raise UserError(f"--class works only with a conditional run, and {weights_dir} was trained without labels; "
                        "train with --conditional to choose classes")
    indices = []
    for text in requested:
        if text.strip().lower() == "all":
            found = range(len(names))
        elif text in names:
            found = [names.index(text)]
        elif [name.casefold() for name in names].count(text.casefold()) == 1:
            found = [[name.casefold() for name in names].index(text.casefold())]
        elif re.fullmatch(r"[0-9]+", text.strip()) and int(text) < len(names):  # not isdigit: "²" is a digit
            found = [int(text)]
        else:
            listed = ", ".join(
                f"{index} ({name})" if name != str(index) else name for index, name in enumerate(names[:20])
            )
            raise UserError(f"the run has no class {text!r}; choose from {listed}{', ...' if len(names) > 20 else ''}, "
                            "by name or index, or all")
        indices += [index for index in found if index not in indices]
    return indices


def latent_noise(rng, count, generator):
    """`count` noise vectors for `generator`, uniform in [-1, 1], drawn from the numpy Generator `rng`: the
    rows drawn one batch after another are those drawn at once."""
    return rng.uniform(-1, 1, (count, _latent_dim(generator))).astype(np.float32)


def _conditional(generator):
    return isinstance(generator.input_shape, list)


def _latent_dim(generator):
    return (generator.input_shape[0] if _conditional(generator) else generator.input_shape)[-1]


def save_walks(walks, path, gif=False):
    """`interpolate`'s walks as a PNG grid, a row per walk; with `gif`, also an animation beside it
    (same name, .gif) with one frame per point, there and back, every walk in each frame."""
    save_grid(walks.reshape(-1, *walks.shape[2:]), path, columns=walks.shape[1], replace=False)
    if gif:
        points = walks.shape[1]
        frames = [to_picture(walks[:, point]) for point in [*range(points), *range(points - 2, 0, -1)]]
        # Pixels repeated, not smoothed, up to a side of at least GIF_SIDE: a grid of 28-pixel digits is tiny on a
        # screen.
        scale = math.ceil(GIF_SIDE / min(frames[0].size))
        frames = [
            frame.resize((frame.width * scale, frame.height * scale), Image.Resampling.NEAREST) for frame in frames
        ]
        save_animation(frames, Path(path).with_suffix(".gif"), frame_seconds=0.15, replace=False)


def draw_batches(weights_dir, count, seed, classes=None):
    """`count` images in [-1, 1] and their labels (None for an unconditional run), BATCH at a time, so that
    memory stays bounded whatever the count; a pure function of `seed`, whose first images are those of any
    smaller count. A conditional run draws the classes in `classes` (None: all) in turn: image i is of class
    classes[i % len(classes)]."""
    run = RunFolder.of(weights_dir)
    generator = run.model("generator")
    conditional = _conditional(generator)
    if conditional:
        classes = np.asarray(all_classes(run) if classes is None else classes, np.int32)
    rng = np.random.default_rng(seed)
    for start in range(0, count, BATCH):
        size = min(BATCH, count - start)
        noise = latent_noise(rng, size, generator)
        if not conditional:
            yield generator.predict(noise, batch_size=BATCH, verbose=0), None
            continue
        labels = classes[np.arange(start, start + size) % len(classes)]
        yield generator.predict([noise, labels], batch_size=BATCH, verbose=0), labels


def save_images(weights_dir, count, seed, output, classes=None):
    """Write `count` generated images to `output`: a .npz holding `x`, uint8 (count, H, W, C), which
    `dcgan train --dataset` reads back, and for a conditional run their labels `y`; or else a new folder
    of PNGs, image_000000.png onwards (image_000000_7.png, with the class's name, for a conditional run).
    `classes` as in `draw_batches`.

    Each appears whole or not at all: the folder is filled under a hidden name and then renamed; an output that
    another command creates meanwhile is not replaced.
    """
    output = Path(output)
    run = RunFolder.of(weights_dir)
    batches = draw_batches(run, count, seed, classes)
    if output.suffix.lower() == ".npz":
        write_atomically(output, lambda temporary: _write_npz(batches, count, temporary), replace=False)
        return
    names = [_file_safe(name) for name in run.class_names]
    partial = new_partial(output)
    try:
        partial.mkdir()
        index = 0
        for images, labels in batches:
            for position, image in enumerate(images):
                label = "" if labels is None else f"_{names[labels[position]]}"
                to_picture(image[None]).save(partial / f"image_{index:06d}{label}.png")
                index += 1
        place_new(partial, output)
    finally:
        remove(partial)


def _file_safe(name):
    """A class name as part of a file name: letters, digits, - and _ kept, anything else (/, .., spaces) a -."""
    return re.sub(r"[^A-Za-z0-9_-]+", "-", name).strip("-")[:40] or "class"


def _write_npz(batches, count, path):
    """np.savez's layout, written a batch at a time instead of from one array in memory: x, and y if labelled."""
    labels = []
    with zipfile.ZipFile(path, "w") as archive:
        with archive.open("x.npy", "w", force_zip64=True) as member:
            for index, (images, batch_labels) in enumerate(batches):
                if index == 0:
                    header = {"descr": "|u1", "fortran_order": False, "shape": (count, *images.shape[1:])}
                    np.lib.format.write_array_header_1_0(member, header)
                member.write(to_uint8(images).tobytes())
                if batch_labels is not None:
                    labels.append(batch_labels.astype(np.int64))
        if labels:  # 8 bytes an image: small beside the images
            with archive.open("y.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.concatenate(labels), allow_pickle=False)
