"""The training loop: batches, sample grids, metrics, checkpoints, resume and stopping on a signal."""
import concurrent.futures
import csv
import dataclasses
import math
import os
import signal
import sys
import tempfile
import threading
from pathlib import Path

import numpy as np
import tensorflow as tf

from dcgan.cluster import Agreement, cluster_of, join, lost_worker, settings_digest
from dcgan.conditioning import grid_labels
from dcgan.datasets import dataset_label, load_training_data
from dcgan.errors import TrainingStopped, UserError
from dcgan.files import FolderLock, writable_folder
from dcgan.image_folders import ImageFolder
from dcgan.images import save_grid
from dcgan.models import LATENT_DIM
from dcgan.monitor import METRICS_COLUMNS, METRICS_FILE, EventLog, HealthCheck, Progress, metrics_columns
from dcgan.plots import ANIMATION_FILE, CURVES_FILE, animate_grids, grid_files, plot_curves
from dcgan.presets import saved_config, shown
from dcgan.semi_supervised import choose_labelled, labelled_batch
from dcgan.trainer import Trainer
from dcgan.weights import (PREVIOUS_RUN, RUN_FILE, complete_folder, drop_previous_run, load_checkpoint, remove_leftovers,
                           save_checkpoint, set_aside_run, settle_previous_run)

# What TensorFlow raises when a worker of a run stops answering in a collective.
LOST_WORKER_ERRORS = (tf.errors.UnavailableError, tf.errors.DeadlineExceededError, tf.errors.AbortedError,
                      tf.errors.CancelledError)


def epoch_order(seed, epoch, count):
    """The data order of one epoch, a pure function of (seed, epoch)."""
    return np.random.default_rng([seed, epoch]).permutation(count)


class Batches:
    """The real images of each step: `per_step` batches of `batch_size`, one for each discriminator update,
    taken in turn from each epoch's order `epoch_order(seed, e)`; an epoch's last images that fill no
    whole step wait for the next epoch's order.

    Images read from disk (an ImageFolder) are read one step ahead, on another thread, while
    the current step trains. `labels_at(step)` gives the batches' `labels`, when there are any.
    `share`, (part, parts): the worker `part` of `parts` trains on that share of each batch, so it reads
    only those images; the others' rows are zeros.
    """

    def __init__(self, images, seed, batch_size, per_step=1, labels=None, share=(0, 1)):
        self.images = images
        self.labels = labels
        self.seed = seed
        self.batch_size = batch_size
        self.share = share
        self.step_size = batch_size * per_step
        self.steps_per_epoch = len(images) // self.step_size
        self.reader = concurrent.futures.ThreadPoolExecutor(1) if isinstance(images, ImageFolder) else None
        self.ahead = None  # (step, future batch)
        self.orders = {}  # epoch -> its data order

    def __call__(self, step):
        if self.ahead and self.ahead[0] == step:
            batch = self.ahead[1].result()
        else:
            batch = self.read(step)
        if self.reader:
            self.ahead = (step + 1, self.reader.submit(self.read, step + 1))
        return batch

    def read(self, step):
        chosen = self._chosen(step)
        part, parts = self.share
        if parts == 1:
            return self.images[chosen]
        mine = (np.arange(len(chosen)) % self.batch_size) // (self.batch_size // parts) == part
        batch = np.zeros((len(chosen), *self.images.shape[1:]), np.float32)
        batch[mine] = self.images[chosen[mine]]
        return batch

    def labels_at(self, step):
        """The labels of the images of `step`; None without labels."""
        return None if self.labels is None else self.labels[self._chosen(step)]

    def _chosen(self, step):
        epoch, index = divmod(step, self.steps_per_epoch)
        return self._order(epoch + 1)[index * self.step_size : (index + 1) * self.step_size]

    def _order(self, epoch):
        if epoch not in self.orders:
            # This epoch's and the next: the reader thread may already be one step into the next.
            self.orders = {e: o for e, o in self.orders.items() if e >= epoch - 1}
            self.orders[epoch] = epoch_order(self.seed, epoch, len(self.images))
        return self.orders[epoch]


class LabelledBatches:
    """A semi-supervised run's labelled images, `config.labelled` of them chosen from the seed, and each step's
    batch of them: (images, classes) for every discriminator update, a pure function of (seed, step)."""

    def __init__(self, images, labels, class_names, config):
        chosen = choose_labelled(labels, config.labelled, config.seed, class_names)
        self.images, self.labels = np.asarray(images[chosen]), labels[chosen]
        self.seed, self.size = config.seed, config.step_images

    def __call__(self, step):
        pick = labelled_batch(self.seed, step, len(self.labels), self.size)
        return self.images[pick], self.labels[pick]


def sample_noise(seed, count, latent_dim=LATENT_DIM):
    """The fixed noise batch behind every sample grid of a run."""
    return np.random.default_rng([seed, 2**31]).uniform(-1, 1, (count, latent_dim)).astype(np.float32)


def train(config, resume=False):
    """Train per `config`, writing sample grids, metrics and checkpoints. Returns the Trainer.

    With `resume`, continue the run in `config.weights_dir` from its newest snapshot: weights,
    optimizer state, step and epoch, data order and noise all carry on as if it had never stopped.
    """
    config.check()  # every setting, before a folder is read or TensorFlow runs
    use_threads(config.threads)  # next: nothing below may start TensorFlow before its threads are set
    cluster = cluster_of(config)
    if cluster:
        # MultiWorkerMirroredStrategy gives every worker as many devices as this one: all its GPUs, or its CPU.
        replicas = len(cluster.workers) * max(1, len(tf.config.list_physical_devices("GPU")))
        if config.batch_size % replicas:
            raise UserError(f"batch size {config.batch_size} does not split evenly across the {replicas} devices of "
                            f"{len(cluster.workers)} workers; use a multiple of {replicas}")
        join(cluster, settings_digest(config))
    images, labels, class_names = load_training_data(config)
    labelled_at = LabelledBatches(images, labels, class_names, config) if config.semi_supervised else lambda step: None
    if config.steps_per_epoch(len(images)) == 0:
        raise UserError(
            f"a step takes {config.step_images} images (batch size {config.batch_size} x {config.d_steps} discriminator "
            f"updates), more than the dataset's {len(images)}; use a batch size of at most {len(images) // config.d_steps}"
        )
    if config.devices is not None:
        count = len(config.devices.split(","))
        if config.batch_size % count:
            raise UserError(f"batch size {config.batch_size} does not split evenly across {count} devices; use a multiple of {count}")
        check_devices(config.devices)
    if config.mixed_precision and not tf.config.list_physical_devices("GPU"):
        raise UserError("--mixed-precision needs a GPU (on a CPU float16 is slower than float32); leave it out here")
    if cluster and not cluster.chief:
        # It writes nothing of the run: it reads the chief's folder to resume, and saves where it throws the save away.
        return _train(config, resume, images, labels, class_names, labelled_at, Path(config.weights_dir),
                      Path(config.samples_dir), cluster)
    weights_dir = writable_folder(config.weights_dir, "--weights-dir")
    samples_dir = writable_folder(config.samples_dir, "--samples-dir")
    if config.logdir:
        writable_folder(config.logdir, "--logdir")
    with FolderLock(weights_dir):
        remove_leftovers(weights_dir)
        settled = settle_previous_run(weights_dir)
        if settled:
            print(settled, file=sys.stderr)
        if (complete_folder(weights_dir) / RUN_FILE).exists() and not (config.overwrite or resume):
            raise UserError(
                f"{weights_dir} already holds a training run; pass --resume to continue it, --overwrite to replace it, "
                "or choose another folder with --weights-dir"
            )
        replacing = (complete_folder(weights_dir) / RUN_FILE).exists() and not resume
        if replacing:
            set_aside_run(weights_dir)
            print(f"Replacing the run in {weights_dir}: it is kept in {weights_dir / PREVIOUS_RUN} until this run "
                  "saves its first checkpoint, and put back if this run fails before that")
        try:
            return _train(config, resume, images, labels, class_names, labelled_at, weights_dir, samples_dir, cluster)
        except BaseException:
            if replacing:
                settle_previous_run(weights_dir)
            raise


def _train(config, resume, images, labels, class_names, labelled_at, weights_dir, samples_dir, cluster):
    trainer = Trainer(config, images.shape[1:], classes=len(class_names or ()))
    writes = cluster is None or cluster.chief  # the run's files: only the chief of several workers writes them
    batches = Batches(images, config.seed, config.batch_size, config.d_steps, labels if config.conditioning else None,
                      (cluster.index, len(cluster.workers)) if cluster else (0, 1))
    agree = Agreement(trainer.strategy) if cluster else None
    steps_per_epoch = batches.steps_per_epoch
    run_info = {
        "config": dataclasses.asdict(config),
        "image_shape": list(images.shape[1:]),
        "latent_dim": trainer.latent_dim,
        "dataset_size": len(images),
        "steps_per_epoch": steps_per_epoch,
        **({"class_names": class_names} if config.conditioning else {}),
        **({"classifier_class_names": class_names} if config.semi_supervised else {}),
    }
    step = 0
    if resume:
        step = load_checkpoint(weights_dir, trainer, check=lambda saved: check_resumable(config, run_info, saved))["step"]
    total_steps = config.total_steps(steps_per_epoch)
    metrics_path = weights_dir / METRICS_FILE
    columns = metrics_columns(classifies=bool(config.semi_supervised))
    elapsed_before = 0.0
    if writes:
        elapsed_before = restart_metrics(metrics_path, step, {"augment_p": f"{float(trainer.augment_probability.numpy()):g}"},
                                         columns)
    if agree:  # the workers start from the same step, and count the chief's minutes
        elapsed_before = agree.on_start(step, elapsed_before, cluster)
    time_limit = math.inf if config.minutes is None else 60 * config.minutes
    if step >= total_steps or elapsed_before >= time_limit:
        print(f"Nothing to do: the run in {weights_dir} is at step {step} of {total_steps} after "
              f"{elapsed_before / 60:.1f} minutes of training; raise --epochs, --steps or --minutes to train on")
        return trainer
    print(
        f"{'Resuming at step ' + str(step) + ' on' if resume else 'Training on'} {len(images)} images "
        f"({'x'.join(map(str, images.shape[1:]))}) from {dataset_label(config.dataset)}: "
        f"{total_steps} steps of batch {config.batch_size} ({steps_per_epoch} per epoch)"
        f"{'' if config.minutes is None else f' or {config.minutes:g} minutes in all, whichever comes first'}; "
        + (f"weights in {weights_dir}, samples in {samples_dir}" if writes else
           f"worker {cluster.index} of {len(cluster.workers)}; the chief, {cluster.name(0)}, writes the weights and samples")
    )

    # The fixed inputs of every grid: conditional, one row per class with the same noise down each column.
    if config.conditioning:
        fixed_labels, grid_columns = grid_labels(len(class_names), config.sample_count)
        fixed_inputs = [np.tile(sample_noise(config.seed, grid_columns), (len(fixed_labels) // grid_columns, 1)), fixed_labels]
    else:
        fixed_inputs, grid_columns = sample_noise(config.seed, config.sample_count), None
    last_saved = step if resume else None

    def save(step, epoch):
        nonlocal last_saved
        if last_saved == step:
            return
        info = {**run_info, "step": step, "epoch": epoch}
        if writes:
            save_checkpoint(weights_dir, trainer, info, config.keep)
            if last_saved is None:
                drop_previous_run(weights_dir)  # a run replaced by --overwrite: this one can stand in for it now
        else:
            # Every worker takes part in a save, as TensorFlow asks (reading a variable may need them all);
            # only the chief's is kept.
            with tempfile.TemporaryDirectory(prefix="dcgan-worker-") as scratch:
                save_checkpoint(scratch, trainer, info, config.keep)
        last_saved = step

    health = HealthCheck(images[epoch_order(config.seed, 0, len(images))[: config.sample_count]],
                         watch_winning=trainer.loss.warns_when_winning)
    events = EventLog(config.logdir) if config.logdir and writes else None

    def sample(step, epoch):
        if not writes:
            return None
        grid = trainer.sampling_generator()(fixed_inputs, training=False).numpy()
        save_grid(grid, samples_dir / f"fakes_epoch{epoch:04d}_step{step:07d}.png", grid_columns)
        if events:
            events.grid(step, grid)
        return health.after_grid(step, grid)

    progress = Progress(step, total_steps, steps_per_epoch, config.epochs, config.step_images, elapsed_before, time_limit,
                        trainer.loss.wasserstein)
    with open(metrics_path if writes else os.devnull, "a", newline="") as metrics_file, StopOnSignal() as stop:
        metrics = csv.writer(metrics_file)
        try:
            while True:
                epoch = step // steps_per_epoch + 1
                step_values = trainer.train_step(batches(step), tf.constant(step, tf.int64), batches.labels_at(step),
                                                 labelled_at(step))
                values = {k: float(v) for k, v in step_values.items()}
                step += 1
                for name in ("d_loss", "g_loss"):
                    if not math.isfinite(values[name]):
                        raise UserError(
                            f"{name} became {values[name]} at step {step}, so training stopped without saving it; "
                            f"{_last_checkpoint(last_saved, weights_dir)}. Try a lower --lr"
                        )
                # The run's training time, its earlier minutes included, as metrics.csv keeps it: the time limit
                # reads the same value, so that the last row is the first at or past it and resume agrees.
                elapsed = round(progress.elapsed(), 3)
                metrics.writerow([step, epoch, *(f"{values[k]:.6g}" for k in columns[2:-1]), f"{elapsed:.3f}"])
                metrics_file.flush()
                progress.update(values)
                warnings = [health.after_step(step, values)]
                if events:
                    events.scalars(step, {**values, "images_per_second": progress.images_per_second()})
                last_step = step == total_steps or elapsed >= time_limit
                stopped_by = stop.signal_number
                if agree:  # every worker ends or stops at the same step, whichever asked
                    last_step, stopped_by = agree(last_step, stopped_by)
                if last_step or stopped_by:
                    progress.finish()
                # One grid per sample_every steps however short the epochs, and one where the run ends or stops.
                if step % config.sample_every == 0 or last_step or stopped_by:
                    warnings.append(sample(step, epoch))
                for warning in filter(None, warnings):
                    progress.warn(warning)
                if step % config.save_every == 0 or last_step or stopped_by:
                    save(step, epoch)
                if last_step:
                    break
                if stopped_by:
                    if writes:
                        draw_run_pictures(weights_dir, samples_dir)
                    name = signal.Signals(stopped_by).name
                    raise TrainingStopped(
                        f"Stopped by {name if stop.signal_number else name + ' on another worker'} at step {step}; "
                        f"checkpoint saved in {weights_dir}. Continue with: dcgan train --resume --weights-dir {weights_dir}"
                        + (" and this worker's --workers and --worker-index, on every worker" if cluster else ""),
                        stopped_by,
                    )
            if writes:
                draw_run_pictures(weights_dir, samples_dir)
        except LOST_WORKER_ERRORS as error:
            if cluster is None:
                raise
            raise UserError(f"{lost_worker(cluster, error)} stopped answering after step {step}, so this worker stopped "
                            f"too; {_last_checkpoint(last_saved, weights_dir)}. Start every worker again with --resume") from None
        except OSError as error:
            if writes:
                remove_leftovers(weights_dir)
            raise UserError(
                f"writing {error.filename or 'to disk'} failed at step {step} ({error.strerror or error}); "
                f"{_last_checkpoint(last_saved, weights_dir)}. Free some space or fix the folder, then continue with --resume"
            ) from None
        finally:
            if events:
                events.close()
    print(f"Done: step {step} after {progress.elapsed():.0f} s of training; " +
          (f"weights in {weights_dir}; grids, {CURVES_FILE} and {ANIMATION_FILE} in {samples_dir}" if writes else
           f"the chief, {cluster.name(0)}, wrote the weights and samples"))
    return trainer


def check_devices(setting):
    """Refuse a device name in the comma-separated `setting` that TensorFlow does not have, or one named twice."""
    devices = setting.split(",")
    present = [device.name.removeprefix("/device:") for device in tf.config.list_logical_devices()]
    named = [name.strip().upper().removeprefix("/DEVICE:").removeprefix("/") for name in devices]
    for name, device in zip(devices, named):
        if device not in present:
            raise UserError(f"--devices {setting}: there is no device {name!r} here; choose from {', '.join(present)}")
    if len(set(named)) < len(named):
        raise UserError(f"--devices {setting} names a device twice; name each once")


def draw_run_pictures(weights_dir, samples_dir):
    """The training curves and, once there are sample grids, their animation, as they stand."""
    plot_curves(Path(weights_dir) / METRICS_FILE, Path(samples_dir) / CURVES_FILE)
    if grid_files(samples_dir):
        animate_grids(samples_dir, Path(samples_dir) / ANIMATION_FILE)


def use_threads(count=None):
    """Run TensorFlow's ops one at a time, each on `count` threads (None: every core), and trace steps
    without Grappler's constant folding: both keep a seed training the same weights in any process.

    The threads can be set only before TensorFlow has run anything else. After, `count` is refused; without one,
    ops stay side by side, as TensorFlow started them, and training says that another process may
    not train the same weights.
    """
    # Grappler's constant folding may fold the constants of two traces of the same step in a
    # different order, so their float rounding differs: two trainers with the same seed parted
    # at step 96 with it and stayed identical without it.
    tf.config.optimizer.set_experimental_options({"constant_folding": False})
    try:
        if count:
            tf.config.threading.set_intra_op_parallelism_threads(count)
        # Ops side by side made two processes with the same seed train weights that differ in the
        # last bits, and drift apart from there; one at a time, they train the same.
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:
        if count:
            raise UserError(
                f"cannot switch to {count} threads: TensorFlow already started with "
                f"{tf.config.threading.get_intra_op_parallelism_threads() or 'all'}; set threads before anything else runs"
            ) from None
        print("TensorFlow started before training, running ops side by side: another process with the same seed "
              "may train slightly different weights (train before anything else runs to make them the same)")


FIXED_ON_RESUME = ("dataset", "image_size", "channels", "center_crop", "preset", "architecture", "loss", "clip", "gp_weight",
                   "d_steps", "g_steps", "activation", "optimizer", "lr", "beta1", "beta2", "generator_lr",
                   "halve_generator_lr_at", "ema", "augment", "augment_target", "fake_batch_norm", "feature_matching",
                   "batch_size", "seed", "sample_count", "mixed_precision", "conditioning", "semi_supervised", "labelled")


def check_resumable(config, run_info, saved):
    """Refuse to resume with settings that would make the continued run a different run."""
    settings = saved_config(saved)
    if bool(config.conditioning) != bool(settings["conditioning"]):
        raise UserError(f"cannot resume {'with' if config.conditioning else 'without'} --conditional: the saved run trained "
                        f"{'without' if config.conditioning else 'with'} labels; resume it as it is, or start a new run "
                        "in another --weights-dir")
    for name in FIXED_ON_RESUME:
        if getattr(config, name) != settings[name]:
            option = "--" + name.replace("_", "-")
            raise UserError(
                f"cannot resume with {option} {shown(getattr(config, name))}: the saved run used {shown(settings[name])}; "
                f"leave {option} out to keep it, or start a new run in another --weights-dir"
            )
    for name in ("image_shape", "latent_dim", "dataset_size", "class_names", "classifier_class_names"):
        if run_info.get(name) != saved.get(name):
            raise UserError(
                f"cannot resume: the saved run had {name} {saved[name]}, now it is {run_info[name]}; "
                "the data or model changed, so start a new run in another --weights-dir"
            )


def restart_metrics(path, step, fill, columns=METRICS_COLUMNS):
    """Keep the metrics rows up to `step` (a killed run may have logged steps past its checkpoint), under `columns`.

    Columns an earlier dcgan did not write take their value from `fill`, {column: text}: a run
    saved then had a constant augment probability. Returns the elapsed seconds at `step`, so the
    time column carries on.
    """
    rows = []
    if step and path.exists():
        try:
            with open(path, newline="") as file:
                rows = [row for row in csv.DictReader(file) if int(row["step"]) <= step]
            elapsed = float(rows[-1]["elapsed_seconds"]) if rows else 0.0
        except (csv.Error, UnicodeDecodeError, KeyError, TypeError, ValueError):
            raise UserError(f"{path} is damaged; move it aside to resume with new metrics (its curves and "
                            "minutes start again from this step)") from None
    with open(path, "w", newline="") as file:
        csv.writer(file).writerows([columns, *([row.get(name, fill.get(name)) for name in columns] for row in rows)])
    return elapsed if rows else 0.0


def _last_checkpoint(step, weights_dir):
    if step is None:
        return "no checkpoint had been saved yet"
    return f"the last good checkpoint (step {step}) is in {weights_dir}"


class StopOnSignal:
    """Turns the first SIGINT or SIGTERM into a request to stop after the current step.

    A second one exits at once: every file is written atomically, so that is safe too.
    """

    def __init__(self):
        self.signal_name = None
        self.signal_number = None
        self.previous = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for number in (signal.SIGINT, signal.SIGTERM):
                self.previous[number] = signal.signal(number, self._handle)
        return self

    def __exit__(self, *exception):
        for number, handler in self.previous.items():
            signal.signal(number, handler)

    def _handle(self, number, frame):
        if self.signal_name:
            print(f"\n{signal.Signals(number).name} again: quit at once, without saving this step; the newest "
                  "checkpoint stays and --resume continues from it", file=sys.stderr, flush=True)
            os._exit(128 + number)
        self.signal_number = number
        self.signal_name = signal.Signals(number).name
        print(f"\n{self.signal_name}: stopping after this step and saving a checkpoint; "
              "send it again to quit at once", file=sys.stderr, flush=True)
