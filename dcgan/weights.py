"""The weights folder: both models as `.weights.h5` and self-describing `.keras`, and `run.json`.

`run.json` is written last, so it always describes weight files that are complete.
"""
import json
import re
import platform
from importlib import metadata
from pathlib import Path

import keras

from dcgan.errors import UserError
from dcgan.files import write_atomically
from dcgan.models import build_discriminator, build_generator

RUN_FILE = "run.json"


def versions():
    found = {"python": platform.python_version()}
    for package in ("dcgan", "keras", "tensorflow", "numpy"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = None
    return found


def save_models(folder, generator, discriminator, run_info):
    """Write both models and then `run.json` holding `run_info`, each file atomically."""
    folder = Path(folder)
    for name, model in (("generator", generator), ("discriminator", discriminator)):
        write_atomically(folder / f"{name}.weights.h5", model.save_weights)
        write_atomically(folder / f"{name}.keras", model.save)
    text = json.dumps({**run_info, "versions": versions()}, indent=2)
    write_atomically(folder / RUN_FILE, lambda temporary: temporary.write_text(text + "\n"))


def read_run_info(folder):
    """The contents of `run.json` in the weights folder `folder`."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"weights folder {folder} does not exist; train first (dcgan train --weights-dir {folder}) or pass --weights-dir")
    path = folder / RUN_FILE
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{folder} holds no {RUN_FILE}, so it is not a dcgan weights folder; pass the --weights-dir of a dcgan train run") from None
    except (OSError, ValueError) as error:
        raise UserError(f"cannot read {path} ({error}); it may be damaged") from None


def load_generator(weights_dir="weights"):
    """The trained generator from a weights folder, as a ready Keras model: noise (N, latent_dim) -> images in [-1, 1]."""
    run_info = read_run_info(weights_dir)
    generator = build_generator(run_info["latent_dim"])
    _load_weights(generator, Path(weights_dir) / "generator.weights.h5")
    return generator


def load_discriminator(weights_dir="weights"):
    """The trained discriminator from a weights folder: images -> probability of being real."""
    read_run_info(weights_dir)
    discriminator = build_discriminator()
    _load_weights(discriminator, Path(weights_dir) / "discriminator.weights.h5")
    return discriminator


def _load_weights(model, path):
    if not path.exists():
        raise UserError(f"{path} is missing; the weights folder holds no {model.name} weights")
    try:
        model.load_weights(path)
    except (ValueError, KeyError, OSError) as error:
        raise UserError(
            f"{path} does not fit dcgan's {model.name} ({_mismatch(error)}); use weights written by dcgan train"
        ) from None


def _mismatch(error):
    """The useful part of Keras's long load error: which shapes disagree."""
    shapes = re.search(r"variable\.shape=(\(.*?\)), Received: value\.shape=(\(.*?\))", str(error))
    if shapes:
        return f"a layer expects shape {shapes[1]}, the file holds {shapes[2]}"
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__
