"""The weights folder of a run, and the checkpoints that make it resumable.

    weights/
      generator.weights.h5, discriminator.weights.h5   the latest weights
      generator.keras, discriminator.keras             the same models, self-describing
      run.json                                         configuration, step, epoch, augment probability,
                                                       versions (written last)
      metrics.csv                                      one row per step
      snapshots/step0000500/                           a whole checkpoint: both models' weights,
                                                       optimizers.npz (momentum) and run.json

A snapshot is written into a temporary folder and renamed into place, so every folder named
`step*` is complete: a process killed at any moment leaves the previous one loadable.
Any snapshot folder is itself a weights folder for `load_generator` and `dcgan generate`.
"""
import json
import platform
import re
import shutil
from importlib import metadata
from pathlib import Path

import numpy as np

from dcgan.errors import UserError
from dcgan.files import fsync_folder, write_atomically
from dcgan.presets import saved_config

RUN_FILE = "run.json"
SNAPSHOTS = "snapshots"
OPTIMIZERS_FILE = "optimizers.npz"


def versions():
    found = {"python": platform.python_version()}
    for package in ("dcgan", "keras", "tensorflow", "numpy"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = None
    return found


def snapshot_name(step):
    return f"step{step:07d}"


def snapshot_folder(weights_dir, step):
    return Path(weights_dir) / SNAPSHOTS / snapshot_name(step)


def snapshot_steps(folder):
    """Steps of the complete snapshots in the weights folder `folder`, oldest first."""
    snapshots = Path(folder) / SNAPSHOTS
    if not snapshots.is_dir():
        return []
    return sorted(int(p.name[4:]) for p in snapshots.iterdir() if re.fullmatch(r"step\d{7}", p.name))


def save_checkpoint(folder, trainer, run_info, keep):
    """Write a snapshot of `trainer` at `run_info["step"]`, refresh the latest files, keep the newest `keep` snapshots (0: all)."""
    folder = Path(folder)
    snapshots = folder / SNAPSHOTS
    snapshots.mkdir(exist_ok=True)
    # A float32 read as a Python float survives JSON exactly, so a resumed run augments as the original did.
    augment_probability = float(trainer.augment_probability.numpy())
    run_text = json.dumps({**run_info, "augment_probability": augment_probability, "versions": versions()}, indent=2) + "\n"
    models = trainer.models()
    final = snapshots / snapshot_name(run_info["step"])
    if not final.exists():
        temporary = snapshots / f".tmp-{final.name}"
        temporary.mkdir()
        for name, model in models.items():
            model.save_weights(temporary / f"{name}.weights.h5")
        optimizers = {f"{role}_{i}": v.numpy() for role, optimizer in trainer.optimizers().items()
                      for i, v in enumerate(optimizer.variables)}
        np.savez(temporary / OPTIMIZERS_FILE, **optimizers)
        (temporary / RUN_FILE).write_text(run_text)
        fsync_folder(temporary)
        temporary.rename(final)
        fsync_folder(snapshots)
    for name, model in models.items():
        write_atomically(folder / f"{name}.weights.h5", lambda path: shutil.copyfile(final / f"{name}.weights.h5", path))
        write_atomically(folder / f"{name}.keras", model.save)
    write_atomically(folder / RUN_FILE, lambda path: path.write_text(run_text))
    if keep:
        for step in snapshot_steps(folder)[:-keep]:
            shutil.rmtree(snapshots / snapshot_name(step))


def remove_leftovers(folder):
    """Temporary files and folders of a process that was killed while saving."""
    for path in [*Path(folder).glob(".tmp-*"), *Path(folder, SNAPSHOTS).glob(".tmp-*")]:
        shutil.rmtree(path) if path.is_dir() else path.unlink()


def load_checkpoint(folder, trainer, check=lambda run_info: None):
    """Load the newest snapshot in `folder` into `trainer`; return its run info.

    `check(run_info)` runs first, so that a run that cannot be resumed is refused with its reason
    before weights of another shape fail to load.
    """
    steps = snapshot_steps(folder)
    if not steps:
        raise UserError(f"{folder} holds no checkpoint to resume from; start a new run without --resume")
    snapshot = snapshot_folder(folder, steps[-1])
    run_info = read_run_info(snapshot)
    check(run_info)
    for name, model in trainer.models().items():
        _load_weights(model, snapshot / f"{name}.weights.h5")
    with np.load(snapshot / OPTIMIZERS_FILE) as saved:
        for role, optimizer in trainer.optimizers().items():
            for i, variable in enumerate(optimizer.variables):
                variable.assign(saved[f"{role}_{i}"])
    if "augment_probability" in run_info:  # runs saved before it existed kept it at its starting value
        trainer.augment_probability.assign(run_info["augment_probability"])
    return run_info


def read_run_info(folder):
    """The contents of `run.json` in the weights folder (or snapshot folder) `folder`, see `complete_folder`."""
    folder = complete_folder(folder)
    if not folder.is_dir():
        raise UserError(f"weights folder {folder} does not exist; train first (dcgan train --weights-dir {folder}) or pass --weights-dir")
    path = folder / RUN_FILE
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{folder} holds no {RUN_FILE}, so it is not a dcgan weights folder; pass the --weights-dir of a dcgan train run") from None
    except (OSError, ValueError) as error:
        raise UserError(f"cannot read {path} ({error}); it may be damaged") from None


def complete_folder(weights_dir):
    """`weights_dir`, or its newest snapshot while it has one but not yet its own run.json.

    That happens when a run is stopped during its first save, after the snapshot was renamed
    into place and before the latest files beside it were written.
    """
    weights_dir = Path(weights_dir)
    steps = snapshot_steps(weights_dir)
    if not (weights_dir / RUN_FILE).exists() and steps:
        return snapshot_folder(weights_dir, steps[-1])
    return weights_dir


def load_generator(weights_dir="weights"):
    """The trained generator from a weights folder, as a ready Keras model: noise (N, latent_dim) -> images in [-1, 1]."""
    from dcgan.models import build_generator  # Keras loads only when a model is needed: reading a run stays quick

    weights_dir = complete_folder(weights_dir)
    run_info = read_run_info(weights_dir)
    settings = saved_config(run_info)
    generator = build_generator(run_info["latent_dim"], run_info["image_shape"], activation=settings["activation"],
                                architecture=settings["architecture"])
    _load_weights(generator, Path(weights_dir) / "generator.weights.h5")
    return generator


def load_discriminator(weights_dir="weights"):
    """The trained discriminator from a weights folder: images -> score, higher for more real-looking images
    (a probability for the bce loss, an unbounded critic score for the others)."""
    from dcgan.models import build_discriminator

    weights_dir = complete_folder(weights_dir)
    run_info = read_run_info(weights_dir)
    settings = saved_config(run_info)
    discriminator = build_discriminator(run_info["image_shape"], settings["activation"], settings["architecture"], settings["loss"])
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
