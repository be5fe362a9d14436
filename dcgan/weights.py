"""The weights folder of a run, and the checkpoints that make it resumable.

    weights/
      generator.weights.h5, discriminator.weights.h5   the latest weights
      generator.keras, discriminator.keras             the same models, self-describing
      training_generator.*                             with a weight average: the generator it averages
      classifier.*                                     a semi-supervised run's classifier
      run.json                                         configuration, step, epoch, augment probability,
                                                       versions (written last)
      metrics.csv                                      one row per step
      snapshots/step0000500/                           the newest: a whole checkpoint, both models' weights,
                                                       optimizers.npz (momentum) and run.json; older
                                                       ones keep the models and run.json only
      train.lock                                       held by the trainer writing here
      .previous-run/                                   a run replaced by --overwrite, until the new
                                                       run's first checkpoint is saved

A snapshot is written into a temporary folder and renamed into place, so every folder named
`step*` is complete: a process killed at any moment leaves the previous one loadable.
Any snapshot folder is itself a weights folder for `load_generator` and `dcgan generate`.

This module is the one place that knows this layout; `RunFolder` reads a run's run.json once and
rebuilds its models from it.
"""
import dataclasses
import functools
import json
import platform
import re
import shutil
import zipfile
from importlib import metadata
from pathlib import Path

import numpy as np

from dcgan.array_files import NPZ_ERRORS, npy_header
from dcgan.config import TrainConfig, json_text, saved_config, settings_problem
from dcgan.datasets import MAX_CLASSES
from dcgan.errors import UserError, first_line
from dcgan.files import fsync_folder, open_bounded, read_small_file, remove, write_atomically
from dcgan.sizes import check_image_size

RUN_FILE = "run.json"
SNAPSHOTS = "snapshots"
OPTIMIZERS_FILE = "optimizers.npz"
METRICS_FILE_BYTES = 200_000_000  # about 150 bytes a step
RUN_FILE_BYTES = 1_000_000  # a run.json is a few kilobytes; a larger one is not read
MAX_LATENT_DIM = 10_000  # dcgan's models take 100 (more with labels): a larger one is damage
# The models a run may save, each as ROLE.weights.h5 and ROLE.keras (Trainer.models() gives a run's own):
# the generator users load (the weight average, with one), the discriminator, the generator behind the average,
# and a semi-supervised run's classifier.
MODEL_ROLES = ("generator", "discriminator", "training_generator", "classifier")
RESUME_ONLY_FILES = (OPTIMIZERS_FILE, "training_generator.weights.h5")
METRICS_FILE = "metrics.csv"  # one row per step
# Where semi-supervised runs saved before this version kept their class names; "class_names" now, as conditional runs.
LEGACY_CLASS_NAMES = "classifier_class_names"
GRID_PREFIX = "fakes"  # the sample grids, in the samples folder: fakes_epoch0001_step0000200.png
GRID_NAME = re.compile(GRID_PREFIX + r"_epoch\d+_step(\d+)\.png")


def versions():
    found = {"python": platform.python_version()}
    for package in ("dcgan", "keras", "tensorflow", "numpy"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = None
    return found


def open_metrics(path):
    """metrics.csv, opened to read as text; refused unread if it is not a regular file or is larger than any run's
    (about a million steps)."""
    return open_bounded(path, METRICS_FILE_BYTES, newline="")


def grid_name(step, epoch):
    """The sample grid drawn at `step` (in `epoch`, from 1), named to sort by step."""
    return f"{GRID_PREFIX}_epoch{epoch:04d}_step{step:07d}.png"


def grid_files(samples_dir):
    """The run's sample grids in `samples_dir`, as (step, path) in step order."""
    found = []
    for path in Path(samples_dir).glob(f"{GRID_PREFIX}_epoch*_step*.png"):
        match = GRID_NAME.fullmatch(path.name)
        if match:
            found.append((int(match.group(1)), path))
    return sorted(found)


def snapshot_name(step):
    return f"step{step:07d}"


def snapshot_folder(weights_dir, step):
    return Path(weights_dir) / SNAPSHOTS / snapshot_name(step)


def snapshot_steps(folder):
    """Steps of the complete snapshots in the weights folder `folder`, oldest first."""
    snapshots = Path(folder) / SNAPSHOTS
    if not snapshots.is_dir():
        return []
    # A snapshot is a folder of the run's own: a symbolic link there is not followed, to read or to prune.
    return sorted(
        int(p.name[4:]) for p in snapshots.iterdir()
        if re.fullmatch(r"step\d{7}", p.name) and p.is_dir() and not p.is_symlink()
    )


def save_checkpoint(folder, trainer, run_info, keep):
    """Write a snapshot of `trainer` at `run_info["step"]`, refresh the latest files, keep the newest `keep` snapshots
    (0: all). Returns the snapshot's folder."""
    folder = Path(folder)
    snapshots = folder / SNAPSHOTS
    snapshots.mkdir(exist_ok=True)
    # A float32 read as a Python float survives JSON exactly, so a resumed run augments as the original did.
    augment_probability = float(trainer.augment_probability.numpy())
    run_text = (
        json.dumps({**run_info, "augment_probability": augment_probability, "versions": versions()}, indent=2) + "\n"
    )
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
        write_atomically(
            folder / f"{name}.weights.h5", lambda path: shutil.copyfile(final / f"{name}.weights.h5", path)
        )
        write_atomically(folder / f"{name}.keras", model.save)
    write_atomically(folder / RUN_FILE, lambda path: path.write_text(run_text))
    # Older snapshots keep what looking back needs (the models that generate, evaluate and --nice read),
    # not what only resuming needs: the optimizers' state and the raw generator behind the average,
    # about three quarters of a snapshot. The newest holds everything.
    for step in snapshot_steps(folder)[:-1]:
        for name in RESUME_ONLY_FILES:
            (snapshots / snapshot_name(step) / name).unlink(missing_ok=True)
    if keep:
        for step in snapshot_steps(folder)[:-keep]:
            remove(snapshots / snapshot_name(step))
    return final


def run_record(config, image_shape, latent_dim, dataset_size, steps_per_epoch, class_names):
    """What run.json says of a run from its start: its settings and what it trains on. Each checkpoint adds its
    step, epoch, augment probability and the versions that wrote it (`save_checkpoint`)."""
    return {"config": dataclasses.asdict(config), "image_shape": list(image_shape), "latent_dim": latent_dim,
            "dataset_size": dataset_size, "steps_per_epoch": steps_per_epoch,
            **({"class_names": list(class_names)} if config.conditioning or config.semi_supervised else {})}


def class_names_of(run_info):
    """The class names a run.json holds, under today's key or a semi-supervised run's older one; [] for none."""
    return run_info.get("class_names") or run_info.get(LEGACY_CLASS_NAMES) or []


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
    if not (snapshot / OPTIMIZERS_FILE).exists():
        raise UserError(
            f"{snapshot} holds no {OPTIMIZERS_FILE}: only a run's newest snapshot keeps the optimizers' state "
            "that resuming needs, and this one's is gone; the models there still generate, but to train "
            "on, start a new run"
        )
    for name, model in trainer.models().items():
        _load_weights(model, snapshot / f"{name}.weights.h5")
    _load_optimizers(trainer, snapshot / OPTIMIZERS_FILE)
    if "augment_probability" in run_info:  # runs saved before it existed kept it at its starting value
        trainer.augment_probability.assign(run_info["augment_probability"])
    return run_info


def _load_optimizers(trainer, path):
    """The optimizers' state (step counts, momentum) from `path`, each array's header checked against its variable
    before it is read (a small file of deflated zeros may claim gigabytes), and its values after."""
    expected = {f"{role}_{i}": variable for role, optimizer in trainer.optimizers().items()
                for i, variable in enumerate(optimizer.variables)}
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            for name, variable in expected.items():
                if f"{name}.npy" not in names or npy_header(path, archive, name)[0] != tuple(variable.shape):
                    raise UserError(f"{path} does not hold this run's optimizer state ({name}); "
                                    f"{_damaged_advice(path.parent)}")
        with np.load(path, allow_pickle=False) as saved:
            arrays = {name: saved[name] for name in expected}
    except NPZ_ERRORS as error:
        raise UserError(f"cannot read {path} ({first_line(error)}); {_damaged_advice(path.parent)}") from None
    for name, array in arrays.items():
        if array.dtype.kind not in "biuf" or not np.all(np.isfinite(array)):
            raise UserError(
                f"{path} does not hold this run's optimizer state ({name}); {_damaged_advice(path.parent)}"
            )
    for name, variable in expected.items():
        variable.assign(arrays[name])


def read_run_info(folder):
    """The contents of `run.json` in the weights folder (or snapshot folder) `folder`, see `complete_folder`."""
    folder = complete_folder(folder)
    if not folder.is_dir():
        raise UserError(
            f"weights folder {folder} does not exist; train first (dcgan train --weights-dir {folder}) or pass "
            "--weights-dir"
        )
    path = folder / RUN_FILE
    try:
        run_info = json.loads(read_small_file(path, RUN_FILE_BYTES))
    except FileNotFoundError:
        raise UserError(
            f"{folder} holds no {RUN_FILE}, so it is not a dcgan weights folder; pass the --weights-dir of a dcgan "
            "train run"
        ) from None
    except (OSError, ValueError) as error:
        raise UserError(f"cannot read {path} ({error}); {_damaged_advice(folder)}") from None
    problem = run_info_problem(run_info)
    if problem:
        raise UserError(f"{path} is damaged: {problem}; {_damaged_advice(folder)}")
    return run_info


def run_info_problem(run_info):
    """What is wrong with the contents of a run.json, or None."""
    def whole(value, low):
        return isinstance(value, int) and not isinstance(value, bool) and value >= low

    if not isinstance(run_info, dict) or not isinstance(run_info.get("config"), dict):
        return "it holds no settings (config)"
    problem = settings_problem(run_info["config"])
    if problem:
        return problem
    shape = run_info.get("image_shape")
    if not (
        isinstance(shape, list) and len(shape) == 3 and all(whole(side, 1) for side in shape) and shape[2] in (1, 3)
    ):
        return f"image_shape is {shape!r}, not [height, width, 1 or 3]"
    for name in ("dataset_size", "steps_per_epoch"):
        if name in run_info and not whole(run_info[name], 1):
            return f"{name} is {run_info[name]!r}, not a whole number above 0"
    if "step" in run_info and not whole(run_info["step"], 0):
        return f"step is {run_info['step']!r}, not a whole number"
    if not whole(run_info.get("latent_dim"), 1) or run_info["latent_dim"] > MAX_LATENT_DIM:
        return f"latent_dim is {json_text(run_info.get('latent_dim'))}, not a whole number from 1 to {MAX_LATENT_DIM}"
    config = run_info["config"]
    labelled = config.get("conditioning") is not None or config.get("semi_supervised") is not None
    keys = [key for key in ("class_names", LEGACY_CLASS_NAMES) if key in run_info] or (["class_names"] * labelled)
    for key in keys:
        names = run_info.get(key)
        if not (
            isinstance(names, list) and 2 <= len(names) <= MAX_CLASSES and all(isinstance(name, str) for name in names)
        ):
            return f"{key} is {json_text(names)}, not a list of 2 to {MAX_CLASSES} class names"
    if len(keys) == 2 and run_info[keys[0]] != run_info[keys[1]]:
        return f"class_names and {LEGACY_CLASS_NAMES} name different classes"
    probability = run_info.get("augment_probability", 0.0)
    if not isinstance(probability, (int, float)) or not 0 <= probability <= 1:
        return f"augment_probability is {probability!r}, not a number from 0 to 1"
    if shape[0] != shape[1]:
        return f"image_shape is {shape!r}, not square"
    try:  # a shape no model can have costs gigabytes to build before it fails
        check_image_size(run_info["config"].get("architecture", "classic"), shape[0])
    except UserError as error:
        return str(error).split(";")[0]
    return None


def _damaged_advice(folder):
    """What to do about a damaged file in the weights folder or snapshot folder `folder`."""
    if Path(folder).parent.name == SNAPSHOTS:
        return (f"move {folder} out of {Path(folder).parent}; the snapshot before it keeps the models, for generate "
                "and evaluate")
    return f"copy {RUN_FILE} from the newest snapshot in {Path(folder) / SNAPSHOTS} over it, or train a new run"


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


class RunFolder:
    """A saved run, as `dcgan train` left it in a weights folder (or one of its snapshots): its run.json, read
    once, and its models, rebuilt from it. What generate, evaluate, classify, export and plot read of a run."""

    def __init__(self, weights_dir="weights"):
        self.path = complete_folder(weights_dir)

    @classmethod
    def of(cls, run):
        """`run` if it is a RunFolder already, else the RunFolder of the weights folder `run`."""
        return run if isinstance(run, cls) else cls(run)

    def __fspath__(self):
        return str(self.path)

    def __str__(self):
        return str(self.path)

    @functools.cached_property
    def info(self):
        """run.json's contents."""
        return read_run_info(self.path)

    @functools.cached_property
    def config(self):
        """The run's TrainConfig, settings it predates filled with what it trained with."""
        return TrainConfig(**saved_config(self.info))

    @property
    def class_names(self):
        """The classes of a conditional or semi-supervised run; [] for others."""
        return class_names_of(self.info)

    def model(self, role):
        """The run's trained "generator", "discriminator" or (semi-supervised) "classifier", as a ready Keras model."""
        from dcgan.semi_supervised import build_classifier
        from dcgan.trainer import build_model  # Keras loads only when a model is needed: reading a run stays quick

        if role == "classifier":
            if not self.config.semi_supervised:
                raise UserError(f"{self.path} holds no classifier: the run trained without --semi-supervised; "
                                "train one with dcgan train --semi-supervised")
            return build_classifier(self.model("discriminator"))
        model = build_model(role, self.config, self.info["image_shape"], self.info["latent_dim"], len(self.class_names))
        _load_weights(model, self.path / f"{role}.weights.h5")
        return model


def load_generator(weights_dir="weights"):
    """The trained generator from a weights folder, as a ready Keras model: noise (N, latent_dim) -> images in [-1, 1];
    a conditional run's takes [noise, labels (N,)]."""
    return RunFolder.of(weights_dir).model("generator")


def load_discriminator(weights_dir="weights"):
    """The trained discriminator from a weights folder: images -> score, higher for more real-looking images
    (a probability for the bce loss, an unbounded critic score for the others); a conditional run's takes
    [images, labels]."""
    return RunFolder.of(weights_dir).model("discriminator")


def load_classifier(weights_dir="weights"):
    """A semi-supervised run's classifier: images -> the probability of each class in RunFolder.class_names."""
    return RunFolder.of(weights_dir).model("classifier")


def _load_weights(model, path):
    if not path.exists():
        raise UserError(f"{path} is missing; the weights folder holds no {model.name} weights")
    try:
        _check_array_shapes(model, path)
        model.load_weights(path)
    except (ValueError, KeyError, OSError) as error:
        raise UserError(
            f"{path} does not fit dcgan's {model.name} ({_mismatch(error)}); use weights written by dcgan train"
        ) from None


def _check_array_shapes(model, path):
    """Refuse a weights file with an array of a shape `model` has none of, or more arrays than it has weights, before
    Keras reads one: a header may claim gigabytes that a few compressed bytes fill."""
    import h5py

    shapes = {tuple(weight.shape) for weight in model.weights}
    arrays = []

    def note(name, item):  # returns None: anything else stops visititems
        if isinstance(item, h5py.Dataset):
            arrays.append((name, item.shape))

    with h5py.File(path, "r") as file:
        file.visititems(note)
    for name, shape in arrays:
        if shape not in shapes:
            raise ValueError(f"it holds {name} of shape {shape}, which no layer has")
    if len(arrays) > len(model.weights):
        raise ValueError(f"it holds {len(arrays)} arrays for {len(model.weights)} weights")


def _mismatch(error):
    """The useful part of Keras's long load error: which shapes disagree."""
    shapes = re.search(r"variable\.shape=(\(.*?\)), Received: value\.shape=(\(.*?\))", str(error))
    if shapes:
        return f"a layer expects shape {shapes[1]}, the file holds {shapes[2]}"
    return first_line(error)
