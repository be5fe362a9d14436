"""Training images from named datasets and files on disk, and their labels for scoring a generator.

Every loader returns float32 images of shape (N, H, H, C) scaled to [-1, 1], the range of the
generator's tanh output: (N, 28, 28, 1) for the named datasets.
"""
import collections
import contextlib
import math
import os
import sys
from pathlib import Path

import numpy as np

from dcgan.array_files import read_idx, read_npz
from dcgan.errors import UserError
from dcgan.image_folders import IN_MEMORY_BYTES, ImageFolder, load_image_folder

IMAGE_SHAPE = (28, 28, 1)
DATASET_NAMES = ("mnist", "mnist-sample", "fashion-mnist")
MNIST_SAMPLE = Path(__file__).parent / "assets" / "mnist_sample.npz"
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
MAX_CLASSES = 1000
DIGITS = tuple(str(digit) for digit in range(10))
MNIST_TRAINING_SHAPE = (60_000, 28, 28, 1)
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                         "Ankle boot")


def keras_datasets_dir():
    """Where Keras caches downloaded datasets (KERAS_HOME, else ~/.keras)."""
    return Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras") / "datasets"


def load_dataset(dataset, image_size=None, channels=None, center_crop=False, memory_limit=IN_MEMORY_BYTES):
    """Images for `dataset`: one of DATASET_NAMES, or a path to a .npz, an IDX file, a folder of IDX files
    or a folder of PNG and JPEG images.

    `image_size`, `channels` and `center_crop` say how to read a folder of images (see
    image_folders); other data is used as it is stored, so they may only repeat its shape.
    A folder too big for `memory_limit` bytes comes back as an ImageFolder that reads batches from disk.
    """
    path = None if dataset in DATASET_NAMES else existing_path(dataset)
    if path and path.is_dir() and not _idx_files(path):
        return load_image_folder(path, image_size, channels, center_crop, memory_limit)
    if dataset == "mnist":
        images = _load_npz(_mnist_file())
    elif dataset == "mnist-sample":
        images = _load_npz(MNIST_SAMPLE)
    elif dataset == "fashion-mnist":
        images = _load_idx_folder(_fashion_mnist_folder())
    elif path.is_dir():
        images = _load_idx_folder(path)
    elif path.suffix == ".npz":
        images = _load_npz(path)
    else:
        images = _to_unit_range(read_idx(path), path)
    stored = images.shape[1:]
    if (image_size or stored[0]) != stored[0] or (channels or stored[2]) != stored[2] or center_crop:
        raise UserError(
            f"{dataset} holds {stored[0]}x{stored[1]}x{stored[2]} images, used as stored: --image-size, --channels "
            "and --center-crop apply to folders of PNG or JPEG images; leave them out here"
        )
    return images


def load_training_data(config):
    """A TrainConfig's images, and with `config.conditioning` or `config.semi_supervised` their labels and class
    names (else None and None).

    A semi-supervised run trains on the training part of load_labelled's split, so that its
    classifier is scored on images it never saw, labelled or not.
    """
    source = (config.dataset, config.image_size, config.channels, config.center_crop)
    if config.semi_supervised:
        data = load_labelled(*source, needed_by="--semi-supervised")
        _check_classes(data.train_labels, config.dataset, "--semi-supervised")
        return data.train_images, data.train_labels, labelled_class_names(config.dataset, data.train_labels)
    if config.conditioning:
        return load_conditional(*source)
    return load_dataset(*source), None, None


def load_conditional(dataset, image_size=None, channels=None, center_crop=False, memory_limit=IN_MEMORY_BYTES):
    """Images of `dataset` with their classes, for conditional training: (images, labels, class names).

    The labels: a .npz's y_train (beside x_train) or y (beside x); an IDX folder's training labels
    file; a folder of images, the first-level subfolder each image lies in, the classes being the
    subfolder names, sorted (as keras.utils.image_dataset_from_directory reads them). The classes
    are numbered 0 to K - 1, every one with images, K at least 2.
    """
    path = None if dataset in DATASET_NAMES else existing_path(dataset)
    if path and path.is_dir() and not _idx_files(path):
        return load_image_folder(path, image_size, channels, center_crop, memory_limit, labelled=True)
    if dataset in ("mnist", "mnist-sample"):
        path = _mnist_file() if dataset == "mnist" else MNIST_SAMPLE  # once: mnist says if it falls back
    elif dataset == "fashion-mnist":
        path = _fashion_mnist_folder()
    images = load_dataset(str(path), image_size, channels, center_crop, memory_limit)
    if path.is_dir():
        labels = _idx_training_labels(path, len(images))
    elif path.suffix == ".npz":
        labels = _npz_labels(path, len(images))
    else:
        raise UserError(
            f"{path} holds images without labels, which --conditional needs: pass a .npz with y_train "
            "(or y) beside the images, a folder of IDX images and labels files, or a folder of class subfolders"
        )
    _check_classes(labels, path)
    return images, labels, labelled_class_names(dataset, labels)


def labelled_class_names(dataset, labels):
    """The names of the classes 0 to labels.max() of labelled `dataset`: the digits, Fashion-MNIST's, a folder's
    class subfolders, or the numbers."""
    classes = int(labels.max()) + 1
    names = {"mnist": DIGITS, "mnist-sample": DIGITS, "fashion-mnist": FASHION_MNIST_CLASSES}.get(dataset)
    if names is None and Path(dataset).is_dir() and not _idx_files(Path(dataset)):
        names = sorted(path.name for path in Path(dataset).iterdir() if path.is_dir())
    return list(names or map(str, range(classes)))[:classes]


def _check_classes(labels, source, option="--conditional"):
    """Refuse labels that leave a class between 0 and the highest without images, or that are all one class."""
    present = np.unique(labels)
    if not len(present):  # a semi-supervised run holds out an image of each class for scoring, even its only one
        raise UserError(f"{source} leaves no images to train on once one of each class is held out for scoring: "
                        f"{option} needs two images or more of each class")
    if len(present) < 2:
        raise UserError(f"every image in {source} is labelled {present[0]}: {option} needs two classes or more; "
                        f"train without {option}")
    missing = sorted(set(range(int(present[-1]) + 1)) - set(present.tolist()))
    if missing:
        shown = ", ".join(map(str, missing[:5])) + (", ..." if len(missing) > 5 else "")
        raise UserError(f"{source} labels classes up to {present[-1]} but none of its images is in class {shown}; "
                        f"number the classes 0 to {len(present) - 1} without gaps")


def _npz_labels(path, count):
    found, names = read_npz(path, ("y_train", "y"))
    key = "y_train" if "x_train" in names else "y"  # beside the images load_dataset took
    if key not in found:
        raise UserError(
            f"{path} holds no labels for its images (found: {', '.join(names)}), which --conditional needs; "
            f"save them as {key}, one integer class per image"
        )
    return _labels(found[key], count, f"{path} ({key})")


def _idx_training_labels(folder, count):
    files = sorted(p for p in folder.iterdir() if "idx1-ubyte" in p.name)
    files = [p for p in files if "train" in p.name] or files
    if not files:
        raise UserError(
            f"{folder} holds no IDX labels file (a name containing 'idx1-ubyte'), which --conditional needs; "
            "put the training labels file beside the images"
        )
    return _labels(np.concatenate([read_idx(p) for p in files]), count, files[0] if len(files) == 1 else folder)


def must_download(dataset):
    """Whether `dataset` is full MNIST, which is not here yet: reading it first downloads it."""
    return dataset == "mnist" and not (keras_datasets_dir() / "mnist.npz").exists()


def _mnist_file():
    """Keras' mnist.npz, downloaded if possible, else the bundled sample (saying so)."""
    cached = keras_datasets_dir() / "mnist.npz"
    if not cached.exists():
        try:
            import keras

            with contextlib.redirect_stdout(sys.stderr):  # Keras prints its progress; stdout is for results
                keras.datasets.mnist.load_data()
        except Exception as error:  # Keras raises a bare Exception for a failed download
            reason = (str(error).strip().splitlines() or [type(error).__name__])[-1][:200]
            print(
                f"Full MNIST is not available: {cached} is missing and downloading it failed ({reason}). "
                f"Training on mnist-sample, the bundled 5,000 digits, instead; for all 60,000 put mnist.npz at "
                f"{cached}, or pass --dataset PATH.",
                file=sys.stderr,
            )
            return MNIST_SAMPLE
    return cached


def dataset_label(dataset):
    """How to name `dataset` to the user: mnist says when it stands for the bundled sample."""
    if must_download(dataset):
        return "mnist (the bundled mnist-sample: full MNIST is not here)"
    return dataset


def _fashion_mnist_folder():
    candidates = [keras_datasets_dir() / "fashion-mnist", DEBIAN_FASHION_MNIST]
    for folder in candidates:
        if (folder / "train-images-idx3-ubyte.gz").exists():
            return folder
    raise UserError(
        f"Fashion-MNIST not found in {candidates[0]} (Keras cache) or {candidates[1]} "
        "(Debian: apt-get install dataset-fashion-mnist); install it there or pass --dataset PATH"
    )


def existing_path(dataset):
    """`dataset`, a path, as a Path: refused in one line if it is not there, or is neither a file nor a folder."""
    path = Path(dataset).expanduser()
    if not path.exists():
        raise UserError(
            f"dataset {dataset!r} is neither a known name ({', '.join(DATASET_NAMES)}) "
            "nor an existing path; pass one of those names or the path of a .npz, IDX file or folder"
        )
    if not (path.is_file() or path.is_dir()):  # a FIFO would block the read, a device never end it
        raise UserError(f"{path} is neither a file nor a folder; pass a .npz, an IDX file or a folder")
    return path


Labelled = collections.namedtuple("Labelled", "train_images train_labels test_images test_labels")


def load_labelled(dataset, image_size=None, channels=None, center_crop=False, memory_limit=IN_MEMORY_BYTES,
                  needed_by="scoring"):
    """Images and integer labels of `dataset`, split into a training part and a held-out part.

    Datasets that come split (MNIST, Fashion-MNIST, a .npz with x_test and y_test, an IDX folder
    with t10k files) keep their split; others hold out a fifth of each class, the same images every time.
    A folder of class subfolders is read as load_image_folder reads it with `image_size`, `channels`
    and `center_crop`; if it is bigger than `memory_limit`, a seeded share of it that fits is read.
    `needed_by` names what needs the labels, in the error for data without them.
    """
    if dataset in ("mnist", "mnist-sample"):
        return _labelled_npz(_mnist_file() if dataset == "mnist" else MNIST_SAMPLE)
    if dataset == "fashion-mnist":
        return _labelled_idx_folder(_fashion_mnist_folder())
    path = existing_path(dataset)
    if path.is_dir() and _idx_files(path):
        return _labelled_idx_folder(path)
    if path.is_dir() and any(entry.is_dir() for entry in path.iterdir()):
        return _labelled_image_folder(path, image_size, channels, center_crop, memory_limit)
    if path.suffix == ".npz":
        return _labelled_npz(path)
    raise UserError(
        f"{path} holds images without labels; {needed_by} needs labels: pass a .npz with x and y "
        "(or x_train and y_train), a folder holding the IDX images and labels files, or a folder of class subfolders"
    )


def _labelled_image_folder(folder, image_size, channels, center_crop, memory_limit):
    images, labels, _ = load_image_folder(folder, image_size, channels, center_crop, memory_limit, labelled=True)
    if isinstance(images, ImageFolder):
        fitting = memory_limit // (images.nbytes // len(images))
        pick = np.sort(np.random.default_rng(0).permutation(len(images))[:fitting])
        images, labels = images[pick], labels[pick]
    return _hold_out(images, labels)


def _labelled_npz(path):
    found, names = read_npz(path, ("x_train", "y_train", "x_test", "y_test", "x", "y"))
    for images, labels in (("x_train", "y_train"), ("x", "y")):
        if images in found and labels in found:
            train = (_to_unit_range(found[images], path), _labels(found[labels], len(found[images]), path))
            if "x_test" in found and "y_test" in found:
                test = (_to_unit_range(found["x_test"], path), _labels(found["y_test"], len(found["x_test"]), path))
                return Labelled(*train, *test)
            return _hold_out(*train)
    raise UserError(
        f"{path} holds no labelled images (found: {', '.join(names) or 'nothing'}); "
        "save them as x and y, or x_train and y_train (with x_test and y_test if you have a held-out set)"
    )


def _labelled_idx_folder(folder):
    def pair(part):
        images = sorted(p for p in folder.iterdir() if part in p.name and "idx3-ubyte" in p.name)
        labels = sorted(p for p in folder.iterdir() if part in p.name and "idx1-ubyte" in p.name)
        if len(images) != 1 or len(labels) != 1:
            return None
        pixels = _to_unit_range(read_idx(images[0]), images[0])
        return pixels, _labels(read_idx(labels[0]), len(pixels), labels[0])

    train = pair("train")
    if train is None:
        raise UserError(
            f"{folder} needs one training images file and one labels file (names containing 'train' and "
            "'idx3-ubyte' or 'idx1-ubyte'); put them there, or pass a .npz with x and y"
        )
    test = pair("t10k") or pair("test")
    return Labelled(*train, *test) if test else _hold_out(*train)


def _labels(labels, count, source):
    labels = np.asarray(labels)
    if labels.ndim == 2 and labels.shape[1:] == (1,):  # a column, as some tools save labels
        labels = labels[:, 0]
    if labels.shape != (count,) or labels.dtype.kind not in "biuf":
        raise UserError(f"{source} holds labels of shape {labels.shape} and type {labels.dtype}; "
                        f"it needs {count} integer labels, one per image")
    if labels.dtype.kind == "f":
        fractional = labels[~np.isfinite(labels) | (labels != np.round(labels))]
        if len(fractional):
            raise UserError(f"{source} holds the label {fractional[0]:g}, which is not a class number; "
                            "label each image with a whole number from 0")
    if count and (labels.min() < 0 or labels.max() >= MAX_CLASSES):
        raise UserError(f"{source} holds labels from {labels.min()} to {labels.max()}; "
                        f"number the classes from 0, below {MAX_CLASSES}")
    return labels.astype(np.int64)


def _hold_out(images, labels, fraction=0.2):
    """Split off `fraction` of each class, chosen by a fixed seed, as the held-out part."""
    rng = np.random.default_rng(0)
    held_out = np.zeros(len(labels), bool)
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        held_out[rng.choice(members, max(1, round(fraction * len(members))), replace=False)] = True
    return Labelled(images[~held_out], labels[~held_out], images[held_out], labels[held_out])


def _load_npz(path):
    found, names = read_npz(path, ("x_train", "x"))
    for key in ("x_train", "x"):
        if key in found:
            return _to_unit_range(found[key], path)
    raise UserError(f"{path} holds no 'x_train' or 'x' array (found: {', '.join(names) or 'nothing'}); "
                    "save the images under one of those keys")


def _idx_files(folder):
    return sorted(p for p in folder.iterdir() if "idx3-ubyte" in p.name and p.is_file())


def _load_idx_folder(folder):
    files = _idx_files(folder)
    if not files:
        raise UserError(
            f"no IDX image files (names containing 'idx3-ubyte') in folder {folder}; "
            "pass a folder holding them, or a .npz or IDX file"
        )
    # A folder laid out like MNIST holds train and t10k files: train on the training split only.
    train_files = [p for p in files if "train" in p.name] or files
    return np.concatenate([_to_unit_range(read_idx(p), p) for p in train_files])


def _to_unit_range(images, source):
    stored = images.shape
    if images.ndim == 3:
        images = images[..., np.newaxis]
    if images.ndim != 4 or len(images) == 0 or images.shape[1] != images.shape[2] or images.shape[3] not in (1, 3):
        raise UserError(
            f"{source} holds an array of shape {stored}, but dcgan needs square grayscale or colour images: "
            "shape (N, H, H), (N, H, H, 1) or (N, H, H, 3) with N > 0"
        )
    if images.dtype.kind not in "biuf":
        raise UserError(f"{source} holds {images.dtype} values, not numbers; save the images as integers or floats")
    low, high = float(images.min()), float(images.max())
    if not (math.isfinite(low) and math.isfinite(high)):
        raise UserError(
            f"{source} holds NaN or infinite values; replace them, then scale the images to [0, 255], [0, 1] or [-1, 1]"
        )
    integers = images.dtype.kind in "biu"
    if low >= 0 and high <= 1:  # [0, 1] floats, or integer images of 0s and 1s: black and white
        scale = 0.5
    elif low >= -1 and high <= 1:
        scale = None
    elif low >= 0 and high <= 255:
        scale = 127.5
    elif integers and low >= 0 and high <= 65535:  # 16-bit images
        scale = 32767.5
    else:
        raise UserError(f"{source} holds values from {low:g} to {high:g}; scale them to [0, 255], [0, 1] or [-1, 1]")
    images = images.astype(np.float32)
    if scale:  # in place: one float32 copy of the data in memory, not three
        images /= scale
        images -= 1
    return images
