"""The training loop, `fit`, as Keras's own: what happens around each step is a callback (dcgan.callbacks).
`train` readies a run (its data, its folder, what it resumes from) and chooses the callbacks."""
import concurrent.futures
import dataclasses
import math
import os
import signal
import sys
import threading
from pathlib import Path

import numpy as np
import tensorflow as tf

from dcgan import callbacks as run_callbacks
from dcgan.cluster import Agreement, check_split, join, lost_worker, settings_digest, share_of
from dcgan.config import check_resumable
from dcgan.conditioning import grid_labels
from dcgan.datasets import dataset_label, load_training_data
from dcgan.devices import check_devices, use_threads
from dcgan.errors import TrainingStopped, UserError
from dcgan.files import FolderLock, writable_folder
from dcgan.image_folders import ImageFolder
from dcgan.models import LATENT_DIM
from dcgan.monitor import HealthCheck, Progress, metrics_columns
from dcgan.plots import ANIMATION_FILE, CURVES_FILE
from dcgan.semi_supervised import choose_labelled, labelled_batch
from dcgan.trainer import Trainer
from dcgan.previous_run import PREVIOUS_RUN, remove_leftovers, set_aside_run, settle_previous_run
from dcgan.weights import METRICS_FILE, RUN_FILE, complete_folder, load_checkpoint, run_record

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
        if self.share[1] == 1:
            return self.images[chosen]
        mine = np.zeros((len(chosen) // self.batch_size, self.batch_size), bool)
        mine[:, share_of(self.batch_size, *self.share)] = True
        batch = np.zeros((len(chosen), *self.images.shape[1:]), np.float32)
        batch[mine.ravel()] = self.images[chosen[mine.ravel()]]
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

    def __init__(self, data, config):
        chosen = choose_labelled(data.labels, config.labelled, config.seed, data.class_names)
        self.images, self.labels = np.asarray(data.images[chosen]), data.labels[chosen]
        self.seed, self.size = config.seed, config.step_images

    def __call__(self, step):
        pick = labelled_batch(self.seed, step, len(self.labels), self.size)
        return self.images[pick], self.labels[pick]


def sample_noise(seed, count, latent_dim=LATENT_DIM):
    """The fixed noise batch behind every sample grid of a run."""
    return np.random.default_rng([seed, 2**31]).uniform(-1, 1, (count, latent_dim)).astype(np.float32)


def train(config, resume=False, callbacks=None):
    """Train per `config`, writing sample grids, metrics and checkpoints. Returns the Trainer.

    With `resume`, continue the run in `config.weights_dir` from its newest snapshot: weights,
    optimizer state, step and epoch, data order and noise all carry on as if it had never stopped.
    `callbacks`: keras.callbacks.Callback objects, called around each step as Keras's fit calls them
    (dcgan.callbacks says with what).
    """
    config.check()  # every setting, before a folder is read or TensorFlow runs
    user_callbacks = run_callbacks.checked(callbacks)
    use_threads(config.threads)  # next: nothing below may start TensorFlow before its threads are set
    cluster = config.cluster
    if cluster:
        # MultiWorkerMirroredStrategy gives every worker as many devices as this one: all its GPUs, or its CPU.
        replicas = len(cluster.workers) * max(1, len(tf.config.list_physical_devices("GPU")))
        check_split(config.batch_size, replicas, f"the {replicas} devices of {len(cluster.workers)} workers")
        join(cluster, settings_digest(config))
    data = TrainingData(*load_training_data(config))
    if config.steps_per_epoch(len(data.images)) == 0:
        raise UserError(
            f"a step takes {config.step_images} images (batch size {config.batch_size} x {config.d_steps} "
            f"discriminator updates), more than the dataset's {len(data.images)}; use a batch size of at most "
            f"{len(data.images) // config.d_steps}"
        )
    if config.devices is not None:
        count = len(config.devices.split(","))
        check_split(config.batch_size, count, f"{count} devices")
        check_devices(config.devices)
    if config.mixed_precision and not tf.config.list_physical_devices("GPU"):
        raise UserError("--mixed-precision needs a GPU (on a CPU float16 is slower than float32); leave it out here")
    if cluster and not cluster.chief:
        # It writes nothing of the run: it reads the chief's folder to resume, and saves where it throws the save away.
        return _train(config, resume, data, Path(config.weights_dir), Path(config.samples_dir), user_callbacks)
    weights_dir = writable_folder(config.weights_dir, "--weights-dir")
    samples_dir = writable_folder(config.samples_dir, "--samples-dir")
    if config.logdir:
        writable_folder(config.logdir, "--logdir")
    with FolderLock(weights_dir):
        replacing = _ready_folder(weights_dir, config.overwrite, resume)
        try:
            return _train(config, resume, data, weights_dir, samples_dir, user_callbacks)
        except BaseException:
            if replacing:
                settle_previous_run(weights_dir)
            raise


@dataclasses.dataclass
class TrainingData:
    images: np.ndarray  # or an ImageFolder, read as it trains
    labels: np.ndarray | None
    class_names: list | None


def _ready_folder(weights_dir, overwrite, resume):
    """Ready the locked `weights_dir` for a run: clear what a killed one left, and set aside the run there that
    --overwrite replaces. Returns whether it set one aside."""
    remove_leftovers(weights_dir)
    settled = settle_previous_run(weights_dir)
    if settled:
        print(settled, file=sys.stderr)
    holds_run = (complete_folder(weights_dir) / RUN_FILE).exists()
    if holds_run and not (overwrite or resume):
        raise UserError(f"{weights_dir} already holds a training run; pass --resume to continue it, --overwrite to "
                        "replace it, or choose another folder with --weights-dir")
    if holds_run and not resume:
        set_aside_run(weights_dir)
        print(f"Replacing the run in {weights_dir}: it is kept in {weights_dir / PREVIOUS_RUN} until this run "
              "saves its first checkpoint, and put back if this run fails before that")
    return holds_run and not resume


@dataclasses.dataclass
class Plan:
    """Where a run starts and where it ends, as `_train` works them out."""

    start: int  # the steps done before this process trains (a resumed run's)
    total_steps: int
    time_limit: float  # seconds of training in all, earlier ones included
    clock: run_callbacks.Clock
    record: dict  # run.json's contents from the start (dcgan.weights.run_record)
    chief: bool  # writes the run's files


def _train(config, resume, data, weights_dir, samples_dir, user_callbacks):
    cluster = config.cluster
    trainer = Trainer(config, data.images.shape[1:], classes=len(data.class_names or ()))
    batches = Batches(data.images, config.seed, config.batch_size, config.d_steps,
                      data.labels if config.conditioning else None,
                      (cluster.index, len(cluster.workers)) if cluster else (0, 1))
    labelled_at = LabelledBatches(data, config) if config.semi_supervised else lambda step: None
    record = run_record(config, data.images.shape[1:], trainer.latent_dim, len(data.images), batches.steps_per_epoch,
                        data.class_names)
    step = 0
    if resume:
        step = load_checkpoint(weights_dir, trainer, check=lambda saved: check_resumable(config, record, saved))["step"]
    chief = cluster is None or cluster.chief
    elapsed = 0.0
    if chief:
        augment_p = f"{float(trainer.augment_probability.numpy()):g}"
        elapsed = run_callbacks.restart_metrics(
            weights_dir / METRICS_FILE, step, {"augment_p": augment_p}, _columns(config)
        )
    agree = Agreement(trainer.strategy) if cluster else None
    if agree:  # the workers start from the same step, and count the chief's minutes
        elapsed = agree.on_start(step, elapsed, cluster)
    time_limit = math.inf if config.minutes is None else 60 * config.minutes
    total_steps = config.total_steps(batches.steps_per_epoch)
    plan = Plan(step, total_steps, time_limit, run_callbacks.Clock(elapsed), record, chief)
    if plan.start >= plan.total_steps or elapsed >= plan.time_limit:
        print(f"Nothing to do: the run in {weights_dir} is at step {step} of {plan.total_steps} after "
              f"{elapsed / 60:.1f} minutes of training; raise --epochs, --steps or --minutes to train on")
        return trainer
    print(_opening(config, resume, data, plan, batches.steps_per_epoch, cluster, weights_dir, samples_dir))
    callbacks = run_callbacks.Callbacks(
        standard_callbacks(config, trainer, data, plan, resume, weights_dir, samples_dir, user_callbacks),
        model=trainer.sampling_generator(), trainer=trainer, epochs=config.epochs, steps=plan.total_steps,
        steps_per_epoch=batches.steps_per_epoch)
    step = plan.start
    with StopOnSignal() as stop:
        try:
            step, stopped_by = fit(trainer, batches, labelled_at, callbacks, plan, stop, agree)
        except LOST_WORKER_ERRORS as error:
            if cluster is None:
                raise
            raise UserError(
                f"{lost_worker(cluster, error)} stopped answering after step {_steps_done(callbacks, plan)}, "
                f"so this worker stopped too; {_last_good(callbacks)}. Start every worker again with --resume"
            ) from None
        except OSError as error:
            if chief:
                remove_leftovers(weights_dir)
            raise UserError(
                f"writing {error.filename or 'to disk'} failed at step {_steps_done(callbacks, plan)} "
                f"({error.strerror or error}); {_last_good(callbacks)}. "
                "Free some space or fix the folder, then continue with --resume"
            ) from None
        finally:
            callbacks.close()
    return _ended(trainer, callbacks, step, stopped_by, stop, cluster, plan, weights_dir, samples_dir)


def _columns(config):
    return metrics_columns(classifies=bool(config.semi_supervised))


def _checkpoints(callbacks):
    return next(callback for callback in callbacks.callbacks if isinstance(callback, run_callbacks.Checkpoints))


def _steps_done(callbacks, plan):
    """The steps done when the run broke off: the last one the callbacks heard, or where it started."""
    heard = _checkpoints(callbacks).step
    return plan.start if heard is None else heard


def _last_good(callbacks):
    return _checkpoints(callbacks).last_good()


def _opening(config, resume, data, plan, steps_per_epoch, cluster, weights_dir, samples_dir):
    """The line a run starts with: what it trains on, for how long, and where it writes."""
    shape = "x".join(map(str, data.images.shape[1:]))
    limit = "" if config.minutes is None else f" or {config.minutes:g} minutes in all, whichever comes first"
    where = f"weights in {weights_dir}, samples in {samples_dir}"
    if not plan.chief:
        where = f"worker {cluster.index} of {len(cluster.workers)}; the chief, {cluster.name(0)}, writes the files"
    return (f"{'Resuming at step ' + str(plan.start) + ' on' if resume else 'Training on'} {len(data.images)} images "
            f"({shape}) from {dataset_label(config.dataset)}: {plan.total_steps} steps of batch {config.batch_size} "
            f"({steps_per_epoch} per epoch){limit}; {where}")


def standard_callbacks(config, trainer, data, plan, resume, weights_dir, samples_dir, user_callbacks):
    """What a run writes as it trains, around the user's callbacks: the chief's outputs, and the checkpoints that
    every worker takes part in. Those that watch a step come before the user's, those that save after them, so
    that a callback that stops the run is heard by the step's checkpoint and grid."""
    c = run_callbacks
    steps_per_epoch = config.steps_per_epoch(len(data.images))
    progress = Progress(plan.start, plan.total_steps, steps_per_epoch, config.epochs, config.step_images,
                        plan.clock.before, plan.time_limit, trainer.loss.wasserstein)
    checkpoints = c.Checkpoints(weights_dir, plan.record, config.keep, config.save_every,
                                plan.start if resume else None, plan.chief)
    if not plan.chief:
        return [c.ProgressLine(progress), *user_callbacks, checkpoints]
    sample_images = data.images[epoch_order(config.seed, 0, len(data.images))[: config.sample_count]]
    health = HealthCheck(sample_images, watch_winning=trainer.loss.warns_when_winning)
    inputs, columns = grid_inputs(config, data.class_names)
    return [
        c.MetricsFile(weights_dir / METRICS_FILE, _columns(config), plan.clock), c.ProgressLine(progress),
        c.HealthWarnings(health, progress), *([c.EventFiles(config.logdir, progress)] if config.logdir else []),
        *user_callbacks,
        checkpoints, c.SampleGrids(samples_dir, inputs, columns, config.sample_every),
        c.RunPictures(weights_dir, samples_dir),
    ]


def grid_inputs(config, class_names):
    """The fixed inputs of every grid of a run, and its columns (None: square); conditional, one row per class with
    the same noise down each column."""
    if not config.conditioning:
        return sample_noise(config.seed, config.sample_count), None
    labels, columns = grid_labels(len(class_names), config.sample_count)
    return [np.tile(sample_noise(config.seed, columns), (len(labels) // columns, 1)), labels], columns


def fit(trainer, batches, labelled_at, callbacks, plan, stop, agree=None):
    """Train from `plan.start` until the run's last step, its time limit, a signal (`stop`), or a callback that sets
    `model.stop_training`; with several workers (`agree`), all end at the same step. Returns the steps done and
    the signal that stopped the run, or None. The callbacks hear every moment as Keras's fit tells them."""
    model, steps_per_epoch = callbacks.model, batches.steps_per_epoch
    model.stop_training = False
    callbacks.on_train_begin()
    if callbacks.failure():
        raise UserError(f"{callbacks.failure()}, before the first step; nothing was trained")
    step, ending, stopped_by, logs = plan.start, False, None, {}
    while not ending:
        epoch = step // steps_per_epoch
        if step == plan.start or step % steps_per_epoch == 0:
            callbacks.on_epoch_begin(epoch)
            epoch_logs = []
        callbacks.on_train_batch_begin(step)
        step_at = tf.constant(step, tf.int64)
        values = trainer.train_step(batches(step), step_at, batches.labels_at(step), labelled_at(step))
        logs = {name: float(value) for name, value in values.items()}
        logs[run_callbacks.LOSS] = logs["d_loss"] + logs["g_loss"]
        plan.clock.tick()
        callbacks.on_train_batch_end(step, logs)
        epoch_logs.append(logs)
        step += 1
        epoch_over = step % steps_per_epoch == 0
        if epoch_over:
            callbacks.on_epoch_end(epoch, _means(epoch_logs))
        ends = step == plan.total_steps or plan.clock.now >= plan.time_limit or model.stop_training
        stopped_by = stop.signal_number
        if agree:  # every worker ends or stops at the same step, whichever asked
            ends, stopped_by = agree(ends, stopped_by)
        ending = ends or bool(stopped_by)
        if ending and not epoch_over:
            callbacks.on_epoch_end(epoch, _means(epoch_logs))
    callbacks.on_train_end(logs)
    return step, stopped_by


def _means(logs):
    return {name: float(np.mean([values[name] for values in logs])) for name in logs[0]}


def _ended(trainer, callbacks, step, stopped_by, stop, cluster, plan, weights_dir, samples_dir):
    """Say how the run ended: a user's callback that failed, a signal, a callback's stop, or its end."""
    resume_with = f"dcgan train --resume --weights-dir {weights_dir}"
    if callbacks.failure():
        raise UserError(f"{callbacks.failure()}; the run stopped after step {step}, and {_last_good(callbacks)}: "
                        f"fix the callback, then continue with dcgan.train(config, resume=True) or {resume_with}")
    if stopped_by:
        name = signal.Signals(stopped_by).name
        raise TrainingStopped(
            f"Stopped by {name if stop.signal_number else name + ' on another worker'} at step {step}; "
            f"checkpoint saved in {weights_dir}. Continue with: {resume_with}"
            + (" and this worker's --workers and --worker-index, on every worker" if cluster else ""),
            stopped_by,
        )
    if callbacks.model.stop_training:
        print(f"Stopped by a callback at step {step}; checkpoint saved in {weights_dir}. Continue with "
              f"dcgan.train(config, resume=True) or {resume_with}")
        return trainer
    print(f"Done: step {step} after {plan.clock.now:.0f} s of training; " +
          (f"weights in {weights_dir}; grids, {CURVES_FILE} and {ANIMATION_FILE} in {samples_dir}" if plan.chief else
           f"the chief, {cluster.name(0)}, wrote the weights and samples"))
    return trainer


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
