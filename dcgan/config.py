"""TrainConfig: everything that defines a training run, saved as run.json beside its weights.

Each field says, where it is defined, how it behaves beyond its value (`setting`): whether a resumed
run may change it, whether the workers of one run may differ in it, whether a resumed run takes it from
this command rather than the saved run, and what runs saved before it existed trained with. The lists
below are read from there, so a new option is one line here, its click option in cli.py, and its use.
"""
import dataclasses
import math
import os
import typing

from dcgan.errors import UserError
from dcgan.presets import (ACTIVATIONS, ARCHITECTURE_NAMES, CONDITIONINGS, DEFAULT_PRESET, FAKE_BATCH_NORMS, LOSS_NAMES,
                           LOSS_SETTINGS, OPTIMIZERS, PRESETS, SEMI_SUPERVISED_LOSS, SEMI_SUPERVISIONS, augmentations,
                           shown)
from dcgan.sizes import check_image_size

_DEFAULTS = PRESETS[DEFAULT_PRESET]
SEEDS = 2**32  # seeds are 0 to 2**32 - 1, what Keras and numpy seed with
MAX_SAMPLE_COUNT = 1024  # a grid of 32 x 32 images: more is unreadable and takes memory at every grid
MAX_THREADS = 256

# How a setting behaves beyond its value, for `setting`:
FIXED = "fixed"  # a resumed run must keep the saved run's value: another would make it a different run
PER_WORKER = "per_worker"  # the workers of one run may differ in it (where each writes, its threads, its place)
PER_COMMAND = "per_command"  # a resumed run takes it from this command, never from the saved run (where it trains)
_ALWAYS = object()  # `before` of a setting that every saved run has


def setting(default, *behaviours, before=_ALWAYS):
    """A TrainConfig field: its `default`, its `behaviours` (FIXED, PER_WORKER, PER_COMMAND), and `before`, the
    value that a run saved before the setting existed trained with."""
    return dataclasses.field(default=default, metadata={**{name: True for name in behaviours}, "before": before})


@dataclasses.dataclass
class TrainConfig:
    """Everything that defines a training run; saved in run.json so the run can be understood and rebuilt.

    The fields from `activation` to `feature_matching` come from `preset` unless given.
    """

    dataset: str = setting("mnist", FIXED)  # a name in datasets.DATASET_NAMES, or a path to a .npz, IDX file, or
    # folder of IDX or image files
    image_size: int | None = setting(None, FIXED)  # a folder of images is resized to this square size (default 28);
    # other data: as stored
    channels: int | None = setting(None, FIXED)  # a folder of images is read as 1 (grayscale) or 3 (colour) channels;
    # None: detected
    center_crop: bool = setting(False, FIXED)  # crop a folder's images to their square centre before resizing
    conditioning: str | None = setting(None, FIXED, before=None)  # train on the data's labels, to draw a chosen class:
    # how the discriminator reads the label, "projection" or "concat" (dcgan.conditioning); None: unconditional
    semi_supervised: str | None = setting(None, FIXED, before=None)  # also train the discriminator to classify, from
    # `labelled` of the images' labels and all the images: "derived" or "extra" (dcgan.semi_supervised); None: not
    labelled: int = setting(100, FIXED, before=100)  # semi-supervised: training images whose labels are used, even
    # across the classes
    preset: str = setting(DEFAULT_PRESET, FIXED)  # the PRESETS entry that the settings below came from
    architecture: str = setting(_DEFAULTS["architecture"], FIXED, before="classic")  # the models: "classic"
    # (keras-dcgan), "dcgan" (the paper's) or "mlp"
    loss: str = setting(_DEFAULTS["loss"], FIXED, before="bce")  # the game: "bce", "wgan", "wgan-gp", "hinge" or
    # "lsgan"; see dcgan.losses
    clip: float | None = setting(_DEFAULTS["clip"], FIXED, before=None)  # wgan: clip the critic's weights to
    # [-clip, clip] after each update; None: the loss's default (presets.LOSS_SETTINGS)
    gp_weight: float | None = setting(_DEFAULTS["gp_weight"], FIXED, before=None)  # wgan-gp: weight of the gradient
    # penalty; None: the loss's default
    d_steps: int = setting(_DEFAULTS["d_steps"], FIXED, before=1)  # discriminator updates per step, each on its own
    # real batch
    g_steps: int = setting(_DEFAULTS["g_steps"], FIXED, before=1)  # generator updates per step, after the
    # discriminator's
    activation: str = setting(_DEFAULTS["activation"], FIXED)  # hidden layers of the classic and mlp models:
    # "leaky_relu" or "tanh"
    optimizer: str = setting(_DEFAULTS["optimizer"], FIXED)  # both players': "adam", "sgd" (Nesterov momentum 0.9)
    # or "rmsprop"
    lr: float = setting(_DEFAULTS["lr"], FIXED)  # the discriminator's learning rate, and the generator's when
    # generator_lr is None
    beta1: float = setting(_DEFAULTS["beta1"], FIXED, before=0.5)  # Adam's first-moment decay
    beta2: float = setting(_DEFAULTS["beta2"], FIXED, before=0.999)  # Adam's second-moment decay
    generator_lr: float | None = setting(_DEFAULTS["generator_lr"], FIXED, before=None)  # the generator's own
    # learning rate; None: lr
    halve_generator_lr_at: int | None = setting(_DEFAULTS["halve_generator_lr_at"], FIXED, before=None)  # the step
    # from which the generator learns at half its rate; None: never
    ema: float = setting(_DEFAULTS["ema"], FIXED)  # decay of the generator's weight average, which draws and is
    # saved; 0: none
    batch_size: int = setting(_DEFAULTS["batch_size"], FIXED)  # real images per discriminator update; as many
    # generated ones too
    augment: str = setting(_DEFAULTS["augment"], FIXED, before="none")  # "translation", "cutout", both
    # comma-separated, or "none": see dcgan.augment
    augment_target: float | None = setting(_DEFAULTS["augment_target"], FIXED, before=None)  # adapt how often to
    # augment so that the discriminator calls this fraction of the real images it sees real; None: every image
    fake_batch_norm: str = setting(_DEFAULTS["fake_batch_norm"], FIXED, before="moving")  # how the generator
    # normalizes the images the discriminator learns from: "batch" statistics, as in the generator's step, or
    # "moving" averages, as the classic's predict
    feature_matching: float = setting(_DEFAULTS["feature_matching"], FIXED, before=0.0)  # weight, in the generator's
    # loss, of the distance between the mean discriminator features of real and generated images; 0: none
    epochs: int = setting(30)  # passes over the data
    steps: int | None = setting(None)  # stop after this many steps in all, if that comes before the last epoch
    minutes: float | None = setting(None)  # stop after this many minutes of training in all (resumed runs count
    # their earlier time)
    seed: int = setting(0, FIXED)  # seeds the initial weights, the data order, the training noise and the sample noise
    weights_dir: str = setting("weights", PER_WORKER)  # weights, run.json and metrics.csv
    samples_dir: str = setting("samples", PER_WORKER)  # sample grid PNGs
    sample_every: int = setting(200)  # steps between sample grids; one is also drawn where the run ends or stops
    save_every: int = setting(500)  # steps between checkpoints; one is also saved at the end and on Ctrl-C
    keep: int = setting(5)  # snapshots kept in weights_dir/snapshots, newest first; 0 keeps all
    sample_count: int = setting(64, FIXED)  # images in each sample grid, all from one fixed noise batch
    overwrite: bool = setting(False, PER_WORKER, PER_COMMAND)  # replace a run already in weights_dir (its snapshots
    # too)
    threads: int | None = setting(None, PER_WORKER)  # CPU threads for TensorFlow's ops; None uses every core
    devices: str | None = setting(None)  # comma-separated devices to split each batch across, e.g. "GPU:0,GPU:1"
    workers: str | None = setting(None, PER_COMMAND)  # comma-separated host:port of every worker process of a run
    # across machines (dcgan.cluster); None: one process, or the workers of the environment's TF_CONFIG
    worker_index: int | None = setting(None, PER_WORKER, PER_COMMAND)  # which of `workers` this process is; 0 is
    # the chief, which writes the run's files
    mixed_precision: bool = setting(False, FIXED)  # float16 compute on a GPU, float32 weights and loss, with loss
    # scaling
    xla: bool | None = setting(None)  # compile the step with XLA; None: on a single GPU, not on a CPU (slower there)
    logdir: str | None = setting(None, PER_WORKER)  # TensorBoard event files: the step's values and the sample grids

    def __post_init__(self):
        # Paths are kept as text, as run.json writes them: a pathlib.Path given from Python (or to the command
        # from Python) would otherwise fail only when the first checkpoint is written.
        for name in ("dataset", "weights_dir", "samples_dir", "logdir"):
            if isinstance(getattr(self, name), os.PathLike):
                setattr(self, name, os.fspath(getattr(self, name)))

    @classmethod
    def from_preset(cls, preset=DEFAULT_PRESET, **settings):
        """The preset's settings, then `settings` over them; a semi-supervised run plays bce unless `settings` name a
        loss."""
        if preset not in PRESETS:
            raise UserError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
        values = {**PRESETS[preset], **settings}
        if values.get("semi_supervised") and "loss" not in settings:
            values["loss"] = SEMI_SUPERVISED_LOSS
        return cls(preset=preset, **values)

    @property
    def step_images(self):
        """Real images one step takes: a batch for each discriminator update."""
        return self.batch_size * self.d_steps

    def steps_per_epoch(self, image_count):
        """The whole steps that fit in `image_count` images; the last few images wait for the next epoch's order."""
        return image_count // self.step_images

    def total_steps(self, steps_per_epoch):
        """The steps the run makes in all: its epochs, or `steps` if that comes first."""
        return min(self.epochs * steps_per_epoch, self.steps or math.inf)

    @property
    def generator_rate(self):
        """The generator's learning rate: generator_lr, or lr where that is None."""
        return self.lr if self.generator_lr is None else self.generator_lr

    def loss_settings(self):
        """{setting: value} of the one setting this run's loss owns (presets.LOSS_SETTINGS), its default where it is
        None; {} for a loss that owns none."""
        if self.loss not in LOSS_SETTINGS:
            return {}
        name, default = LOSS_SETTINGS[self.loss]
        return {name: default if getattr(self, name) is None else getattr(self, name)}

    def resolved(self, image_shape):
        """The settings as training will use them on images of `image_shape`: what none and a missing
        folder option stand for (the image size and channels, the loss's own setting, the generator's rate)."""
        return {**dataclasses.asdict(self), "image_size": image_shape[0], "channels": image_shape[2],
                "generator_lr": self.generator_rate, **self.loss_settings()}

    @property
    def cluster(self):
        """The workers this run trains on (dcgan.cluster.Cluster), None in one process; read once per set of
        settings."""
        self.check()
        return self._checked[1]

    def check(self):
        """Raise a UserError naming the first setting that cannot work, and what to give instead.

        Once per set of values: the command, the loop and the Trainer all call it, and it reads the cluster."""
        from dcgan.cluster import cluster_of  # which imports this module's lists

        values = dataclasses.astuple(self)
        if getattr(self, "_checked", (None,))[0] != values:
            self._check()
            self._checked = (values, cluster_of(self))

    def _check(self):
        for name, choices in CHOICES.items():
            if getattr(self, name) not in choices:
                raise UserError(
                    f"unknown {name.replace('_', ' ')} {getattr(self, name)!r}; choose one of "
                    f"{', '.join(map(shown, choices))}"
                )
        augmentations(self.augment)
        for name in ("lr", "beta1", "beta2", "generator_lr", "ema", "augment_target", "feature_matching", "clip",
                     "gp_weight", "minutes"):
            value = getattr(self, name)
            if value is not None and not math.isfinite(value):
                raise UserError(f"{_option(name)} {value} is not a number; give a finite value")
        if not self.dataset or not str(self.dataset).strip():
            raise UserError("--dataset is empty; give a dataset name (mnist, mnist-sample, fashion-mnist) or a path")
        check_seed(self.seed)
        _at_least(self, 1, "d_steps", "g_steps", "batch_size", "epochs", "steps", "sample_every", "save_every",
                  "sample_count", "threads")
        _at_least(self, 0, "keep")
        if self.sample_count > MAX_SAMPLE_COUNT:
            raise UserError(
                f"--sample-count {self.sample_count} is more than a grid can show; give at most {MAX_SAMPLE_COUNT}"
            )
        if self.threads is not None and self.threads > MAX_THREADS:
            raise UserError(f"--threads {self.threads} is more than TensorFlow can use; give at most {MAX_THREADS}, "
                            "or leave it out to use every core")
        _at_least(self, 0, "feature_matching", "gp_weight")
        if self.lr <= 0 or (self.generator_lr is not None and self.generator_lr <= 0):
            raise UserError("learning rates must be above 0; give --lr (and --generator-lr) such as 0.0002")
        if self.clip is not None and self.clip <= 0:
            raise UserError(f"--clip {self.clip} would clip every weight to 0; give a bound above 0 such as 0.01")
        if not 0 <= self.ema < 1:
            raise UserError(
                f"EMA decay {self.ema} is outside [0, 1); 0.999 averages over about the last 1,000 steps, 0 turns it "
                "off"
            )
        for name in ("beta1", "beta2"):
            if not 0 <= getattr(self, name) < 1:
                raise UserError(
                    f"{_option(name)} {getattr(self, name)} is outside [0, 1); Adam's decays are such as 0.5 and 0.999"
                )
        if self.image_size:
            check_image_size(self.architecture, self.image_size)
        if self.semi_supervised:
            self._check_semi_supervised()
        for owner, (name, _) in LOSS_SETTINGS.items():
            if getattr(self, name) is not None and owner != self.loss:
                raise UserError(f"{_option(name)} applies only to --loss {owner}; leave it out with --loss {self.loss}")

    def _check_semi_supervised(self):
        if self.labelled < 1:
            raise UserError(
                f"--labelled {self.labelled} labels no image; give at least one image per class, such as 100"
            )
        if self.conditioning:
            raise UserError("--semi-supervised and --conditional do not combine: the first learns to classify images, "
                            "the second to draw a chosen class; choose one")
        if self.loss != SEMI_SUPERVISED_LOSS:
            raise UserError(
                f"--semi-supervised plays the {SEMI_SUPERVISED_LOSS} game, its real-or-generated probability read "
                f"from the class logits (Salimans et al. 2016); leave out --loss {self.loss} (in Python: "
                f"TrainConfig.from_preset, or loss={SEMI_SUPERVISED_LOSS!r})"
            )


def settings_that(behaviour):
    """The names of the TrainConfig fields that have `behaviour` (FIXED, PER_WORKER, PER_COMMAND)."""
    return tuple(field.name for field in dataclasses.fields(TrainConfig) if field.metadata.get(behaviour))


SETTINGS = tuple(field.name for field in dataclasses.fields(TrainConfig))
FIXED_ON_RESUME = settings_that(FIXED)
PER_WORKER_SETTINGS = settings_that(PER_WORKER)
PER_COMMAND_SETTINGS = settings_that(PER_COMMAND)
# What `--resume` may change: all but the fixed settings, the command's own and the folder it continues.
CHANGEABLE_ON_RESUME = tuple(name for name in SETTINGS
                             if name not in (*FIXED_ON_RESUME, *PER_COMMAND_SETTINGS, "weights_dir"))
# What a run saved before a setting existed trained with: the setting's value then.
BEFORE_IT_EXISTED = {field.name: field.metadata["before"] for field in dataclasses.fields(TrainConfig)
                     if field.metadata["before"] is not _ALWAYS}


def saved_config(run_info):
    """The TrainConfig fields of a saved run, those it predates filled with what it trained with. A saved run
    without a preset predates presets and trained the classic way."""
    config = run_info["config"]
    if "preset" not in config:
        config = {"preset": "classic", **PRESETS["classic"], **config}
    return {**BEFORE_IT_EXISTED, **config}


def check_resumable(config, record, saved):
    """Refuse to resume the saved run (its run.json, `saved`) with settings that would make the continued run a
    different run; `record`, what run.json would say of `config`'s run now (dcgan.weights.run_record)."""
    from dcgan.weights import class_names_of

    settings = saved_config(saved)
    if bool(config.conditioning) != bool(settings["conditioning"]):
        raise UserError(
            f"cannot resume {'with' if config.conditioning else 'without'} --conditional: the saved run trained "
            f"{'without' if config.conditioning else 'with'} labels; resume it as it is, or start a new run "
            "in another --weights-dir"
        )
    for name in FIXED_ON_RESUME:
        if getattr(config, name) != settings[name]:
            raise UserError(
                f"cannot resume with {_option(name)} {shown(getattr(config, name))}: the saved run used "
                f"{shown(settings[name])}; leave {_option(name)} out to keep it, or start a new run in another "
                "--weights-dir"
            )
    now, then = {**record, "class_names": class_names_of(record)}, {**saved, "class_names": class_names_of(saved)}
    for name in ("image_shape", "latent_dim", "dataset_size", "class_names"):
        if now.get(name) != then.get(name):
            raise UserError(
                f"cannot resume: the saved run had {name} {then.get(name)}, now it is {now.get(name)}; "
                "the data or model changed, so start a new run in another --weights-dir"
            )


def resumed_config(run_info, **given):
    """The TrainConfig that continues the saved run of `run_info`: its settings, this command's own (PER_COMMAND)
    at their defaults, and the `given` settings over both."""
    own = {field.name: field.default for field in dataclasses.fields(TrainConfig) if field.name in PER_COMMAND_SETTINGS}
    return TrainConfig(**{**saved_config(run_info), **own, **given})


def option_names(names):
    """"--epochs, --steps": settings as the command line names them."""
    return ", ".join(_option(name) for name in names)


# The settings that take one of a few values, and those values.
CHOICES = {"loss": LOSS_NAMES, "architecture": ARCHITECTURE_NAMES, "optimizer": OPTIMIZERS, "activation": ACTIVATIONS,
           "fake_batch_norm": FAKE_BATCH_NORMS, "conditioning": (None, *CONDITIONINGS),
           "semi_supervised": (None, *SEMI_SUPERVISIONS)}


def settings_problem(settings):
    """What is wrong with a dict of TrainConfig settings read from a file (an unknown name, a value of the
    wrong type), or None."""
    fields = {field.name: field.type for field in dataclasses.fields(TrainConfig)}
    for name, value in settings.items():
        if name not in fields:
            return f"unknown setting {name!r}"
        allowed = typing.get_args(fields[name]) or (fields[name],)
        if float in allowed:
            allowed = (*allowed, int)
        if not isinstance(value, allowed) or (isinstance(value, bool) and bool not in allowed):
            kinds = " or ".join(
                "null" if kind is type(None) else kind.__name__
                for kind in allowed
                if kind is not int or float not in allowed
            )
            return f"setting {name!r} is {json_text(value)}, not {kinds}"
        if name in CHOICES and value not in CHOICES[name]:
            return f"setting {name!r} is {json_text(value)}, not one of {', '.join(map(shown, CHOICES[name]))}"
    return None


def json_text(value):
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def check_seed(seed, option="--seed"):
    if not 0 <= seed < SEEDS:
        raise UserError(f"{option} {seed} is out of range; give a whole number from 0 to {SEEDS - 1}")


def _option(name):
    return "--" + name.replace("_", "-")


def _at_least(config, low, *names):
    for name in names:
        value = getattr(config, name)
        if value is not None and value < low:
            raise UserError(f"{_option(name)} {value} is below {low}; give {low} or more")
