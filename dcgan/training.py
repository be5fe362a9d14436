"""The training loop: the DCGAN step, sample grids, metrics and weight saves."""
import concurrent.futures
import contextlib
import csv
import dataclasses
import math
import os
import shutil
import signal
import sys
import threading
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from dcgan.augment import DRAWS_PER_AUGMENTATION, augment, augment_chosen
from dcgan.datasets import IMAGE_SHAPE, load_dataset
from dcgan.errors import TrainingStopped, UserError
from dcgan.files import writable_folder
from dcgan.image_folders import ImageFolder
from dcgan.images import save_grid
from dcgan.models import (LATENT_DIM, build_d_on_g, build_discriminator, build_generator, discriminator_features,
                          discriminator_head, doublings, run_generator)
from dcgan.monitor import METRICS_COLUMNS, METRICS_FILE, STEP_VALUES, EventLog, HealthCheck, Progress
from dcgan.plots import ANIMATION_FILE, CURVES_FILE, animate_grids, grid_files, plot_curves
from dcgan.presets import DEFAULT_PRESET, FAKE_BATCH_NORMS, OPTIMIZERS, PRESETS, augmentations, saved_config, shown
from dcgan.weights import RUN_FILE, SNAPSHOTS, complete_folder, load_checkpoint, remove_leftovers, save_checkpoint

# Real images over which adaptive augmentation can take its probability from 0 to 1 (StyleGAN2-ADA:
# 500,000; a 30-minute run here sees about 330,000).
ADAPTATION_IMAGES = 64_000


@dataclasses.dataclass
class TrainConfig:
    """Everything that defines a training run; saved in run.json so the run can be understood and rebuilt."""

    dataset: str = "mnist"  # a name in datasets.DATASET_NAMES, or a path to a .npz, IDX file, or folder of IDX or image files
    image_size: int | None = None  # a folder of images is resized to this square size (default 28); other data: as stored
    channels: int | None = None  # a folder of images is read as 1 (grayscale) or 3 (colour) channels; None: detected
    center_crop: bool = False  # crop a folder's images to their square centre before resizing
    preset: str = DEFAULT_PRESET  # the PRESETS entry that the settings from activation to feature_matching came from
    activation: str = PRESETS[DEFAULT_PRESET]["activation"]  # both models' hidden layers: "leaky_relu" or the classic "tanh"
    optimizer: str = PRESETS[DEFAULT_PRESET]["optimizer"]  # both players': "adam" (beta1 0.5) or "sgd" (Nesterov momentum 0.9)
    lr: float = PRESETS[DEFAULT_PRESET]["lr"]  # the discriminator's learning rate, and the generator's when generator_lr is None
    generator_lr: float | None = PRESETS[DEFAULT_PRESET]["generator_lr"]  # the generator's own learning rate; None: lr
    halve_generator_lr_at: int | None = PRESETS[DEFAULT_PRESET]["halve_generator_lr_at"]  # the step from which the
    # generator learns at half its rate; None: never
    ema: float = PRESETS[DEFAULT_PRESET]["ema"]  # decay of the generator's weight average, which draws and is saved; 0: none
    batch_size: int = PRESETS[DEFAULT_PRESET]["batch_size"]  # real images per step; the discriminator also sees as many generated ones
    augment: str = PRESETS[DEFAULT_PRESET]["augment"]  # "translation", "cutout", both comma-separated, or "none": see dcgan.augment
    augment_target: float | None = PRESETS[DEFAULT_PRESET]["augment_target"]  # adapt how often to augment so that the
    # discriminator calls this fraction of the real images it sees real; None: augment every image
    fake_batch_norm: str = PRESETS[DEFAULT_PRESET]["fake_batch_norm"]  # how the generator normalizes the images the
    # discriminator learns from: "batch" statistics, as in the generator's step, or "moving" averages, as the classic's predict
    feature_matching: float = PRESETS[DEFAULT_PRESET]["feature_matching"]  # weight, in the generator's loss, of the distance
    # between the mean discriminator features of real and generated images; 0: none, as the classic
    epochs: int = 30  # passes over the data
    steps: int | None = None  # stop after this many steps in all, if that comes before the last epoch
    minutes: float | None = None  # stop after this many minutes of training in all (resumed runs count their earlier time)
    seed: int = 0  # seeds the initial weights, the data order, the training noise and the sample noise
    weights_dir: str = "weights"  # weights, run.json and metrics.csv
    samples_dir: str = "samples"  # sample grid PNGs
    sample_every: int = 200  # steps between sample grids; one is also written at the end of each epoch
    save_every: int = 500  # steps between checkpoints; one is also saved at the end and on Ctrl-C
    keep: int = 5  # snapshots kept in weights_dir/snapshots, newest first; 0 keeps all
    sample_count: int = 64  # images in each sample grid, all from one fixed noise batch
    overwrite: bool = False  # replace a run already in weights_dir (its snapshots too)
    threads: int | None = None  # CPU threads for TensorFlow's ops; None uses every core
    devices: str | None = None  # comma-separated devices to split each batch across, e.g. "GPU:0,GPU:1"
    mixed_precision: bool = False  # float16 compute on a GPU, float32 weights and loss, with loss scaling
    xla: bool | None = None  # compile the step with XLA; None: on a single GPU, not on a CPU (slower there)
    logdir: str | None = None  # TensorBoard event files: the step's values and the sample grids

    @classmethod
    def from_preset(cls, preset=DEFAULT_PRESET, **settings):
        """The preset's settings, then `settings` over them."""
        if preset not in PRESETS:
            raise UserError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
        return cls(preset=preset, **{**PRESETS[preset], **settings})


class Trainer:
    """The generator, the discriminator, the stacked d_on_g model, their optimizers and one training step.

    Its defaults are the classic algorithm. `activation` ("tanh" or "leaky_relu") is both models'
    hidden activation; `optimizer` ("sgd" or "adam") and `lr` set both players' optimizers,
    unless `generator_lr` gives the generator its own learning rate. From step `halve_generator_lr_at`
    on, the generator learns at half its rate.
    `augment` ("translation,cutout", ... or "none") names the dcgan.augment augmentations applied
    to every image the discriminator sees. With `augment_target`, each image is augmented with a
    probability that adapts, as in StyleGAN2-ADA: it starts at 0, and every step it rises while the
    discriminator calls more than that fraction of the real images real, and falls while it calls fewer.
    `fake_batch_norm` "batch" draws the generated images the discriminator learns from with the
    generator's batch norm in training mode, as the generator's step does; "moving" in inference mode, as the classic.
    `feature_matching` > 0 adds `feature_distance` with that weight to the generator's loss.
    With `ema` > 0, `average_generator` keeps an exponential moving average of the generator's
    weights with that decay; it draws the samples and is what gets saved as the generator.
    `devices` (TensorFlow device names) splits each batch across them with MirroredStrategy;
    `mixed_precision` computes in float16 with float32 weights, discriminator output and loss,
    and scales the losses so that small gradients survive. `xla` compiles the step with XLA.
    """

    def __init__(self, lr, seed, latent_dim=LATENT_DIM, image_shape=IMAGE_SHAPE, devices=None, mixed_precision=False, xla=False,
                 optimizer="sgd", ema=0.0, activation="tanh", augment="none", generator_lr=None, augment_target=None,
                 fake_batch_norm="moving", feature_matching=0.0, halve_generator_lr_at=None):
        if fake_batch_norm not in FAKE_BATCH_NORMS:
            raise UserError(f"unknown fake batch norm {fake_batch_norm!r}; choose one of {', '.join(FAKE_BATCH_NORMS)}")
        if feature_matching < 0:
            raise UserError(f"feature matching weight {feature_matching} is negative; give 0 for none, or a weight such as 1")
        keras.utils.set_random_seed(seed)
        self.fake_batch_norm = fake_batch_norm
        self.feature_matching = feature_matching
        self.generator_lr = lr if generator_lr is None else generator_lr
        self.halve_generator_lr_at = halve_generator_lr_at
        self.seed = seed
        self.augmentations = augmentations(augment)
        self.augment_target = augment_target if self.augmentations else None
        self.ema = ema
        self.latent_dim = latent_dim
        self.strategy = tf.distribute.MirroredStrategy(devices) if devices else tf.distribute.get_strategy()
        with self.strategy.scope(), dtype_policy("mixed_float16" if mixed_precision else "float32"):
            # Each device sees part of the batch: batch norm must pool their statistics to match one device.
            synchronized = self.strategy.num_replicas_in_sync > 1
            self.generator = build_generator(latent_dim, image_shape, synchronized, activation)
            self.discriminator = build_discriminator(image_shape, activation)
            # Captured before build_d_on_g freezes the discriminator, which empties its trainable_variables.
            self.discriminator_variables = list(self.discriminator.trainable_variables)
            self.d_on_g = build_d_on_g(self.generator, self.discriminator)
            self.generator_variables = list(self.d_on_g.trainable_variables)
            self.d_optimizer = make_optimizer(optimizer, lr, mixed_precision)
            self.g_optimizer = make_optimizer(optimizer, self.generator_lr, mixed_precision)
            self.d_optimizer.build(self.discriminator_variables)
            self.g_optimizer.build(self.generator_variables)
            self.average_generator = None
            if ema:
                self.average_generator = build_generator(latent_dim, image_shape, synchronized, activation)
                self.average_generator.set_weights(self.generator.get_weights())
            always = self.augmentations and augment_target is None
            self.augment_probability = tf.Variable(1.0 if always else 0.0, trainable=False, name="augment_probability")
        self.discriminator_step = tf.function(self._discriminator_step)
        self.generator_step = tf.function(self._generator_step)
        self.train_step = tf.function(self._train_step)
        # XLA draws stateless random numbers differently, so only the updates are compiled with it.
        self._updates = tf.function(self._both_updates, jit_compile=xla)

    @classmethod
    def for_run(cls, config, image_shape=IMAGE_SHAPE, devices=None, xla=False):
        """The Trainer of a run with TrainConfig `config`, on images of `image_shape`."""
        return cls(config.lr, config.seed, image_shape=image_shape, devices=devices, mixed_precision=config.mixed_precision,
                   xla=xla, optimizer=config.optimizer, ema=config.ema, activation=config.activation, augment=config.augment,
                   generator_lr=config.generator_lr, augment_target=config.augment_target, fake_batch_norm=config.fake_batch_norm,
                   feature_matching=config.feature_matching, halve_generator_lr_at=config.halve_generator_lr_at)

    def models(self):
        """The models a checkpoint holds, by file name. With an average, it is "generator": the one users load."""
        if self.average_generator is None:
            return {"generator": self.generator, "discriminator": self.discriminator}
        return {"generator": self.average_generator, "discriminator": self.discriminator, "training_generator": self.generator}

    def sampling_generator(self):
        return self.models()["generator"]

    def optimizers(self):
        return {"discriminator": self.d_optimizer, "generator": self.g_optimizer}

    def noise(self, count, stream):
        """Uniform noise in [-1, 1], a pure function of (seed, stream): a step's noise never depends on what ran before."""
        return self._uniform((count, self.latent_dim), stream, -1.0)

    def augmentation_draws(self, count, step):
        """The random numbers behind a step's augmentation of its real, generated, and generator-step images.

        Each row: DRAWS_PER_AUGMENTATION numbers per augmentation, after, when augmentation adapts,
        the coin that decides whether the image is augmented (below the augment probability).
        """
        # Negative streams, so that they never meet the noise's (2 * step and 2 * step + 1). The
        # coins come from the same streams folded with 1: drawing them in the same call would
        # change every augmentation that runs saved before they existed drew.
        shape = (count, DRAWS_PER_AUGMENTATION * len(self.augmentations))
        streams = [-1 - (3 * step + part) for part in range(3)]
        draws = [self._uniform(shape, stream) for stream in streams]
        if self.augment_target is None:
            return draws
        return [tf.concat([self._uniform((count, 1), stream, fold=1), d], axis=1) for stream, d in zip(streams, draws)]

    def _uniform(self, shape, stream, minval=0.0, fold=None):
        seed = tf.stack([tf.constant(self.seed, tf.int64), tf.cast(stream, tf.int64)])
        if fold is not None:
            seed = tf.random.experimental.stateless_fold_in(seed, fold)
        return tf.random.stateless_uniform(shape, seed, minval=minval, maxval=1.0, alg="philox")

    def _augment(self, images, draws):
        """`images` augmented with the augment probability; `draws` as `augmentation_draws` makes them."""
        if self.augment_target is None:  # every image or none: no coin to toss, no images to choose between
            return augment(images, self.augmentations, draws)
        return augment_chosen(images, self.augmentations, draws[:, 1:], draws[:, 0] < self.augment_probability)

    def _discriminator_step(self, real, noise, real_draws, fake_draws):
        """One update of the discriminator; returns its step values and the real images as it saw them (augmented)."""
        # The classic draws generated images in inference mode (its `predict`): batch norm then uses
        # running averages that lag behind the batch statistics the generator's own step trains with.
        # The discriminator learns from one batch of real (1) then generated (0), as the classic's.
        fake = tf.cast(run_generator(self.generator, noise, training=self.fake_batch_norm == "batch"), real.dtype)
        batch_size = tf.shape(real)[0]
        images = self._augment(tf.concat([real, fake], axis=0), tf.concat([real_draws, fake_draws], axis=0))
        labels = tf.concat([tf.ones((batch_size, 1)), tf.zeros((batch_size, 1))], axis=0)
        with tf.GradientTape() as tape:
            scores = self.discriminator(images, training=True)
            loss = binary_crossentropy(labels, scores)
            scaled = self.d_optimizer.scale_loss(loss / _replicas())
        gradients = tape.gradient(scaled, self.discriminator_variables)
        self.d_optimizer.apply(gradients, self.discriminator_variables)
        real_scores, fake_scores = scores[:batch_size], scores[batch_size:]
        values = {
            "d_loss": loss,
            "d_real": tf.reduce_mean(real_scores),
            "d_fake": tf.reduce_mean(fake_scores),
            # Right calls: real scored above one half, generated below.
            "d_acc_real": tf.reduce_mean(tf.cast(real_scores > 0.5, tf.float32)),
            "d_acc_fake": tf.reduce_mean(tf.cast(fake_scores < 0.5, tf.float32)),
        }
        return values, images[:batch_size]

    def _generator_step(self, noise, draws, seen_real):
        """One update of the generator; `seen_real`: the real images as the discriminator's step saw them."""
        with tf.GradientTape() as tape:
            # d_on_g(noise), with the generator run the cheap way and the discriminator in two parts, so
            # that feature matching can use its features; it trains d_on_g's unfrozen variables.
            fake = self._augment(run_generator(self.generator, noise, training=True), draws)
            features = discriminator_features(self.discriminator, fake)
            scores = discriminator_head(self.discriminator, features)
            loss = binary_crossentropy(tf.ones_like(scores), scores)
            objective = loss
            if self.feature_matching:
                real_features = tf.stop_gradient(discriminator_features(self.discriminator, seen_real))
                objective += self.feature_matching * feature_distance(real_features, features)
            scaled = self.g_optimizer.scale_loss(objective / _replicas())
        gradients = tape.gradient(scaled, self.generator_variables)
        self.g_optimizer.apply(gradients, self.generator_variables)
        return loss

    def _train_step(self, real, step):
        """One classic step; `step` picks the noise, so the same seed and step give the same update."""
        batch_size = tf.shape(real)[0]
        if self.halve_generator_lr_at is not None:
            # Set every step from the step alone, so a resumed run learns at the rate it would have.
            rate = tf.where(step >= self.halve_generator_lr_at, self.generator_lr / 2, self.generator_lr)
            self.g_optimizer.learning_rate.assign(rate)
        values = self._updates(real, self.noise(batch_size, 2 * step), self.noise(batch_size, 2 * step + 1),
                               *self.augmentation_draws(batch_size, step))
        values["augment_p"] = self.augment_probability.read_value()
        if self.augment_target is not None:
            # As StyleGAN2-ADA's, but every step: from 0 to 1 in ADAPTATION_IMAGES real images at the fastest.
            change = tf.sign(values["d_acc_real"] - self.augment_target) * tf.cast(batch_size, tf.float32) / ADAPTATION_IMAGES
            self.augment_probability.assign(tf.clip_by_value(self.augment_probability + change, 0.0, 1.0))
        if self.average_generator is not None:
            # Warmed up as tf.train.ExponentialMovingAverage does, so early averages are not stuck at the start.
            steps = tf.cast(step, tf.float32)
            decay = tf.minimum(self.ema, (1.0 + steps) / (10.0 + steps))
            for average, variable in zip(self.average_generator.variables, self.generator.variables, strict=True):
                average.assign(decay * average + (1.0 - decay) * variable)
        return values

    def _both_updates(self, *batches):
        values = self.strategy.run(self._replica_step, args=batches)
        return {name: self.strategy.reduce("MEAN", value, axis=None) for name, value in values.items()}

    def _replica_step(self, *batches):
        """Both updates on this device's share of the batch; the optimizers sum gradients across devices."""
        context = tf.distribute.get_replica_context()
        share = tf.shape(batches[0])[0] // context.num_replicas_in_sync
        start = context.replica_id_in_sync_group * share
        real, discriminator_noise, generator_noise, real_draws, fake_draws, generator_draws = (
            batch[start : start + share] for batch in batches)
        d_values, seen_real = self._discriminator_step(real, discriminator_noise, real_draws, fake_draws)
        return {**d_values, "g_loss": self._generator_step(generator_noise, generator_draws, seen_real)}


def _replicas():
    return tf.distribute.get_replica_context().num_replicas_in_sync


def feature_distance(real_features, generated_features):
    """Squared distance between the mean features of real and generated images (feature matching,
    Salimans et al. 2016): it grows when the generator draws some kinds of image too often and others too rarely."""
    difference = tf.reduce_mean(tf.cast(real_features, tf.float32), 0) - tf.reduce_mean(tf.cast(generated_features, tf.float32), 0)
    return tf.reduce_sum(tf.square(difference))


def binary_crossentropy(labels, scores):
    """Mean binary cross-entropy on this device's share of the batch.

    Not keras.losses.BinaryCrossentropy: under a distribution strategy it divides by the number
    of devices itself, which would hide that scaling from the reported loss.
    """
    return tf.reduce_mean(keras.losses.binary_crossentropy(labels, scores))


def make_optimizer(name, lr, mixed_precision):
    if name == "sgd":
        optimizer = keras.optimizers.SGD(lr, momentum=0.9, nesterov=True)  # the classic's
    elif name == "adam":
        optimizer = keras.optimizers.Adam(lr, beta_1=0.5)  # beta1 0.5, as in the DCGAN paper
    else:
        raise UserError(f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}")
    return keras.optimizers.LossScaleOptimizer(optimizer) if mixed_precision else optimizer


@contextlib.contextmanager
def dtype_policy(name):
    """Build layers under the Keras dtype policy `name`, then restore the previous one."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def epoch_order(seed, epoch, count):
    """The data order of one epoch, a pure function of (seed, epoch)."""
    return np.random.default_rng([seed, epoch]).permutation(count)


class Batches:
    """The real images of each step: batch i of epoch e, in the order `epoch_order(seed, e)`.

    Images read from disk (an ImageFolder) are read one step ahead, on another thread, while
    the current step trains.
    """

    def __init__(self, images, seed, batch_size):
        self.images = images
        self.seed = seed
        self.batch_size = batch_size
        self.steps_per_epoch = len(images) // batch_size
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
        epoch, index = divmod(step, self.steps_per_epoch)
        order = self._order(epoch + 1)
        return self.images[order[index * self.batch_size : (index + 1) * self.batch_size]]

    def _order(self, epoch):
        if epoch not in self.orders:
            # This epoch's and the next: the reader thread may already be one step into the next.
            self.orders = {e: o for e, o in self.orders.items() if e >= epoch - 1}
            self.orders[epoch] = epoch_order(self.seed, epoch, len(self.images))
        return self.orders[epoch]


def sample_noise(seed, count, latent_dim=LATENT_DIM):
    """The fixed noise batch behind every sample grid of a run."""
    return np.random.default_rng([seed, 2**31]).uniform(-1, 1, (count, latent_dim)).astype(np.float32)


def train(config, resume=False):
    """Train per `config`, writing sample grids, metrics and checkpoints. Returns the Trainer.

    With `resume`, continue the run in `config.weights_dir` from its newest snapshot: weights,
    optimizer state, step and epoch, data order and noise all carry on as if it had never stopped.
    """
    use_threads(config.threads)  # first: nothing below may start TensorFlow before its threads are set
    if config.image_size:
        doublings(config.image_size)  # an unsupported size fails now, before a folder is read
    augmentations(config.augment)  # as must an unknown augmentation
    images = load_dataset(config.dataset, config.image_size, config.channels, config.center_crop)
    if config.batch_size > len(images):
        raise UserError(
            f"batch size {config.batch_size} is larger than the dataset ({len(images)} images); "
            f"use a batch size of at most {len(images)}"
        )
    if not 0 <= config.ema < 1:
        raise UserError(f"EMA decay {config.ema} is outside [0, 1); 0.999 averages over about the last 1,000 steps, 0 turns it off")
    devices = config.devices.split(",") if config.devices else None
    if devices and config.batch_size % len(devices):
        raise UserError(f"batch size {config.batch_size} does not split evenly across {len(devices)} devices; "
                        f"use a multiple of {len(devices)}")
    if config.mixed_precision and not tf.config.list_physical_devices("GPU"):
        raise UserError("--mixed-precision needs a GPU (on a CPU float16 is slower than float32); leave it out here")
    weights_dir = writable_folder(config.weights_dir, "--weights-dir")
    samples_dir = writable_folder(config.samples_dir, "--samples-dir")
    remove_leftovers(weights_dir)
    if (complete_folder(weights_dir) / RUN_FILE).exists() and not (config.overwrite or resume):
        raise UserError(
            f"{weights_dir} already holds a training run; pass --resume to continue it, --overwrite to replace it, "
            "or choose another folder with --weights-dir"
        )
    if config.overwrite and not resume:
        shutil.rmtree(weights_dir / SNAPSHOTS, ignore_errors=True)

    xla = config.xla
    if xla is None:
        xla = bool(tf.config.list_physical_devices("GPU")) and not devices
    trainer = Trainer.for_run(config, images.shape[1:], devices, xla)
    steps_per_epoch = len(images) // config.batch_size
    run_info = {
        "config": dataclasses.asdict(config),
        "image_shape": list(images.shape[1:]),
        "latent_dim": trainer.latent_dim,
        "dataset_size": len(images),
        "steps_per_epoch": steps_per_epoch,
    }
    step = 0
    if resume:
        step = load_checkpoint(weights_dir, trainer, check=lambda saved: check_resumable(config, run_info, saved))["step"]
    total_steps = config.epochs * steps_per_epoch
    if config.steps is not None:
        total_steps = min(total_steps, config.steps)
    metrics_path = weights_dir / METRICS_FILE
    elapsed_before = restart_metrics(metrics_path, step, {"augment_p": f"{float(trainer.augment_probability.numpy()):g}"})
    time_limit = math.inf if config.minutes is None else 60 * config.minutes
    if step >= total_steps or elapsed_before >= time_limit:
        print(f"Nothing to do: the run in {weights_dir} is at step {step} of {total_steps} after "
              f"{elapsed_before / 60:.1f} minutes of training; raise --epochs, --steps or --minutes to train on")
        return trainer
    print(
        f"{'Resuming at step ' + str(step) + ' on' if resume else 'Training on'} {len(images)} images "
        f"({'x'.join(map(str, images.shape[1:]))}) from {config.dataset}: "
        f"{total_steps} steps of batch {config.batch_size} ({steps_per_epoch} per epoch)"
        f"{'' if config.minutes is None else f' or {config.minutes:g} minutes in all, whichever comes first'}; "
        f"weights in {weights_dir}, samples in {samples_dir}"
    )

    fixed_noise = sample_noise(config.seed, config.sample_count)
    last_saved = step if resume else None

    def save(step, epoch):
        nonlocal last_saved
        if last_saved == step:
            return
        save_checkpoint(weights_dir, trainer, {**run_info, "step": step, "epoch": epoch}, config.keep)
        last_saved = step

    health = HealthCheck(images[epoch_order(config.seed, 0, len(images))[: config.sample_count]])
    events = EventLog(config.logdir) if config.logdir else None

    def sample(step, epoch):
        grid = trainer.sampling_generator()(fixed_noise, training=False).numpy()
        save_grid(grid, samples_dir / f"fakes_epoch{epoch:04d}_step{step:07d}.png")
        if events:
            events.grid(step, grid)
        return health.after_grid(step, grid)

    batches = Batches(images, config.seed, config.batch_size)
    start = time.perf_counter() - elapsed_before
    progress = None
    with open(metrics_path, "a", newline="") as metrics_file, StopOnSignal() as stop:
        metrics = csv.writer(metrics_file)
        try:
            while True:
                epoch, index = divmod(step, steps_per_epoch)
                epoch += 1
                if progress is None:
                    epoch_steps = min(steps_per_epoch, total_steps - (epoch - 1) * steps_per_epoch)
                    progress = Progress(epoch, config.epochs, index, epoch_steps, config.batch_size)
                values = {k: float(v) for k, v in trainer.train_step(batches(step), tf.constant(step, tf.int64)).items()}
                step += 1
                for name in ("d_loss", "g_loss"):
                    if not math.isfinite(values[name]):
                        raise UserError(
                            f"{name} became {values[name]} at step {step}, so training stopped without saving it; "
                            f"{_last_checkpoint(last_saved, weights_dir)}. Try a lower --lr"
                        )
                elapsed = time.perf_counter() - start
                metrics.writerow([step, epoch, *(f"{values[k]:.6g}" for k in STEP_VALUES), f"{elapsed:.3f}"])
                metrics_file.flush()
                progress.update(values)
                warnings = [health.after_step(step, values)]
                if events:
                    events.scalars(step, {**values, "images_per_second": progress.images_per_second()})
                last_step = step == total_steps or elapsed >= time_limit
                end_of_epoch = step % steps_per_epoch == 0 or last_step
                if end_of_epoch:
                    progress.finish()
                if step % config.sample_every == 0 or end_of_epoch:
                    warnings.append(sample(step, epoch))
                for warning in filter(None, warnings):
                    progress.warn(warning)
                if end_of_epoch:
                    progress = None
                if step % config.save_every == 0 or last_step or stop.signal_name:
                    save(step, epoch)
                if last_step:
                    break
                if stop.signal_name:
                    draw_run_pictures(weights_dir, samples_dir)
                    raise TrainingStopped(
                        f"stopped by {stop.signal_name} at step {step}; checkpoint saved in {weights_dir}. "
                        f"Continue with: dcgan train --resume --weights-dir {weights_dir}",
                        stop.signal_number,
                    )
            draw_run_pictures(weights_dir, samples_dir)
        except OSError as error:
            remove_leftovers(weights_dir)
            raise UserError(
                f"writing {error.filename or 'to disk'} failed at step {step} ({error.strerror or error}); "
                f"{_last_checkpoint(last_saved, weights_dir)}. Free some space or fix the folder, then continue with --resume"
            ) from None
        finally:
            if events:
                events.close()
    print(f"Done: step {step} after {time.perf_counter() - start:.0f} s of training; weights in {weights_dir}; "
          f"grids, {CURVES_FILE} and {ANIMATION_FILE} in {samples_dir}")
    return trainer


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


FIXED_ON_RESUME = ("dataset", "image_size", "channels", "center_crop", "preset", "activation", "optimizer", "lr", "generator_lr",
                   "halve_generator_lr_at", "ema",
                   "augment", "augment_target", "fake_batch_norm", "feature_matching", "batch_size", "seed",
                   "sample_count", "mixed_precision")


def check_resumable(config, run_info, saved):
    """Refuse to resume with settings that would make the continued run a different run."""
    settings = saved_config(saved)
    for name in FIXED_ON_RESUME:
        if getattr(config, name) != settings[name]:
            option = "--" + name.replace("_", "-")
            raise UserError(
                f"cannot resume with {option} {shown(getattr(config, name))}: the saved run used {shown(settings[name])}; "
                f"leave {option} out to keep it, or start a new run in another --weights-dir"
            )
    for name in ("image_shape", "latent_dim", "dataset_size"):
        if run_info[name] != saved[name]:
            raise UserError(
                f"cannot resume: the saved run had {name} {saved[name]}, now it is {run_info[name]}; "
                "the data or model changed, so start a new run in another --weights-dir"
            )


def restart_metrics(path, step, fill):
    """Keep the metrics rows up to `step` (a killed run may have logged steps past its checkpoint).

    Columns an earlier dcgan did not write take their value from `fill`, {column: text}: a run
    saved then had a constant augment probability. Returns the elapsed seconds at `step`, so the
    time column carries on.
    """
    rows = []
    if step and path.exists():
        with open(path, newline="") as file:
            rows = [row for row in csv.DictReader(file) if int(row["step"]) <= step]
    with open(path, "w", newline="") as file:
        csv.writer(file).writerows([METRICS_COLUMNS, *([row.get(name, fill.get(name)) for name in METRICS_COLUMNS] for row in rows)])
    return float(rows[-1]["elapsed_seconds"]) if rows else 0.0


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
            os._exit(128 + number)
        self.signal_number = number
        self.signal_name = signal.Signals(number).name
        print(f"\n{self.signal_name}: stopping after this step and saving a checkpoint; "
              "send it again to quit at once", file=sys.stderr, flush=True)
