"""Training images from named datasets and files on disk.

Every loader returns float32 images of shape (N, 28, 28, 1) scaled to [-1, 1],
the range of the generator's tanh output.
"""
import gzip
import math
import os
import struct
import sys
import zipfile
from pathlib import Path

import numpy as np

from dcgan.errors import UserError

IMAGE_SHAPE = (28, 28, 1)
DATASET_NAMES = ("mnist", "mnist-sample", "fashion-mnist")
MNIST_SAMPLE = Path(__file__).parent / "assets" / "mnist_sample.npz"
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
IDX_UBYTE = 0x08


def keras_datasets_dir():
    """Where Keras caches downloaded datasets (KERAS_HOME, else ~/.keras)."""
    return Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras") / "datasets"


def load_dataset(dataset):
    """Images for `dataset`: one of DATASET_NAMES, or a path to a .npz, an IDX file or a folder of IDX files."""
    if dataset == "mnist":
        return _load_mnist()
    if dataset == "mnist-sample":
        return _load_npz(MNIST_SAMPLE)
    if dataset == "fashion-mnist":
        return _load_fashion_mnist()
    path = Path(dataset).expanduser()
    if not path.exists():
        raise UserError(
            f"dataset {dataset!r} is neither a known name ({', '.join(DATASET_NAMES)}) "
            "nor an existing path; pass one of those names or the path of a .npz, IDX file or folder"
        )
    if path.is_dir():
        return _load_idx_folder(path)
    if path.suffix == ".npz":
        return _load_npz(path)
    return _to_unit_range(read_idx(path), path)


def _load_mnist():
    cached = keras_datasets_dir() / "mnist.npz"
    if not cached.exists():
        try:
            import keras

            keras.datasets.mnist.load_data()
        except Exception as error:
            print(
                f"Full MNIST is not available: {cached} is missing and downloading it failed "
                f"({type(error).__name__}). Training on the bundled 5,000-digit sample instead; "
                f"to use all 60,000 digits put mnist.npz at {cached}, or pass --dataset PATH.",
                file=sys.stderr,
            )
            return _load_npz(MNIST_SAMPLE)
    return _load_npz(cached)


def _load_fashion_mnist():
    candidates = [keras_datasets_dir() / "fashion-mnist", DEBIAN_FASHION_MNIST]
    for folder in candidates:
        images = folder / "train-images-idx3-ubyte.gz"
        if images.exists():
            return _to_unit_range(read_idx(images), images)
    raise UserError(
        f"Fashion-MNIST not found in {candidates[0]} (Keras cache) or {candidates[1]} "
        "(Debian: apt-get install dataset-fashion-mnist); install it there or pass --dataset PATH"
    )


def _load_npz(path):
    try:
        with np.load(path) as arrays:
            for key in ("x_train", "x"):
                if key in arrays:
                    return _to_unit_range(arrays[key], path)
            found = ", ".join(arrays.files) or "nothing"
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as error:
        raise UserError(f"cannot read {path} as a .npz file ({error}); check the file or rebuild it") from None
    raise UserError(f"{path} holds no 'x_train' or 'x' array (found: {found}); save the images under one of those keys")


def _load_idx_folder(folder):
    files = sorted(p for p in folder.iterdir() if "idx3-ubyte" in p.name)
    if not files:
        raise UserError(
            f"no IDX image files (names containing 'idx3-ubyte') in folder {folder}; "
            "pass a folder holding them, or a .npz or IDX file"
        )
    # A folder laid out like MNIST holds train and t10k files: train on the training split only.
    train_files = [p for p in files if "train" in p.name] or files
    return np.concatenate([_to_unit_range(read_idx(p), p) for p in train_files])


def read_idx(path):
    """The array in an IDX file (raw or gzipped) of unsigned bytes, as used by MNIST."""
    path = Path(path)
    try:
        with (gzip.open(path) if path.suffix == ".gz" else open(path, "rb")) as file:
            data = file.read()
    except (OSError, EOFError) as error:
        raise UserError(f"cannot read {path} ({error}); pass a readable .npz, IDX file or folder") from None
    if len(data) < 4 or data[:2] != b"\0\0" or data[2] != IDX_UBYTE:
        raise UserError(f"{path} is not an IDX file of unsigned bytes; pass a .npz (x_train or x), an IDX file or a folder")
    ndim = data[3]
    header_size = 4 + 4 * ndim
    shape = struct.unpack(f">{ndim}I", data[4:header_size])
    if len(data) - header_size != math.prod(shape):
        raise UserError(f"{path} is truncated: its header promises shape {shape}; download or copy it again")
    return np.frombuffer(data, np.uint8, offset=header_size).reshape(shape)


def _to_unit_range(images, source):
    if images.ndim == 3:
        images = images[..., np.newaxis]
    if images.shape[1:] != IMAGE_SHAPE or len(images) == 0:
        raise UserError(
            f"{source} holds images of shape {images.shape}, but dcgan needs grayscale 28x28 images, "
            "shape (N, 28, 28) or (N, 28, 28, 1), N > 0"
        )
    if images.dtype == np.uint8:
        return images.astype(np.float32) / 127.5 - 1
    images = images.astype(np.float32)
    low, high = float(images.min()), float(images.max())
    if low >= 0 and high <= 1:
        return images * 2 - 1
    if low >= -1 and high <= 1:
        return images
    if low >= 0 and high <= 255:
        return images / 127.5 - 1
    raise UserError(f"{source} holds values from {low} to {high}; scale them to [0, 255], [0, 1] or [-1, 1]")
