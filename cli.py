"""The `dcgan` command: parses and checks options, then calls the dcgan library."""
import contextlib
import importlib
import json
import os
import secrets
import sys
from pathlib import Path

import click

from dcgan.config import CHANGEABLE_ON_RESUME, MAX_SAMPLE_COUNT, option_names
from dcgan.errors import first_line, one_line
from dcgan.presets import (
    ACTIVATIONS,
    ARCHITECTURE_NAMES,
    CONDITIONINGS,
    DEFAULT_PRESET,
    EXPORT_FORMATS,
    FAKE_BATCH_NORMS,
    LOSS_NAMES,
    LOSS_SETTINGS,
    OPTIMIZERS,
    PRESETS,
    SEMI_SUPERVISIONS,
    preset_defaults,
)

# Quiets TensorFlow's C++ log once it is running; a user's own setting wins.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def import_tensorflow_quietly():
    """Import TensorFlow with file descriptor 2 pointed at /dev/null.

    TensorFlow 2.21 prints its start-up lines (absl, oneDNN, the CUDA stub) twice from C++ while its
    libraries load, before TF_CPP_MIN_LOG_LEVEL is read, so only the descriptor hides them.
    TF_CPP_MIN_LOG_LEVEL=0 shows them. A failing import still raises its Python error.
    """
    if "tensorflow" not in sys.modules:
        with native_output_hidden():
            importlib.import_module("tensorflow")


@contextlib.contextmanager
def native_output_hidden():
    """File descriptor 2 pointed at /dev/null, unless TF_CPP_MIN_LOG_LEVEL=0 asks for TensorFlow's own lines."""
    if os.environ["TF_CPP_MIN_LOG_LEVEL"] == "0":
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


# dcgan is imported inside the commands: it imports TensorFlow, which `--help` should not wait for.
POSITIVE = click.IntRange(min=1)
SEED = click.IntRange(0, 2**32 - 1)
MAX_DRAWN = 100_000  # images one generate command draws (with --nice, batch size x nice factor)
MAX_COUNT = 1_000_000  # single images one generate --count writes: 784 MB of 28x28 digits in a .npz


class NumberOrNone(click.ParamType):
    """A number in the click range `numbers`, or "none" for None: a setting a preset may have and a user may turn
    off."""

    def __init__(self, numbers):
        self.numbers = numbers
        self.name = f"{numbers.name}|none"

    def convert(self, value, param, ctx):
        if isinstance(value, str):
            if value.strip().lower() == "none":
                return None
            try:
                float(value)
            except ValueError:
                self.fail(f"{value!r} is neither a number nor none", param, ctx)
        return self.numbers.convert(value, param, ctx)


class OneLineErrors(click.Group):
    """Prints every error as one line, `Error: what is wrong` (naming the help to read for an option
    mistake), where click would print the usage first."""

    def main(self, args=None, prog_name=None, **extra):
        try:
            result = super().main(args, prog_name, standalone_mode=False, **extra)
        except click.exceptions.NoArgsIsHelpError as error:  # `dcgan` alone: the help
            error.show()
            sys.exit(error.exit_code)
        except click.UsageError as error:
            where = f" (see {error.ctx.command_path} --help)" if error.ctx else ""
            click.echo(f"Error: {one_line(error.format_message())}{where}", err=True)
            sys.exit(error.exit_code)
        except click.ClickException as error:
            error.show()
            sys.exit(error.exit_code)
        except click.Abort:
            click.echo("Aborted.", err=True)
            sys.exit(1)
        sys.exit(result if isinstance(result, int) else 0)  # --help and --version return their exit status


@click.group(cls=OneLineErrors, context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.version_option(package_name="dcgan", message="%(prog)s %(version)s")
def main():
    """Train the classic DCGAN on digits or your own data, and draw images from it."""


@main.command()
@click.option("--dataset", default="mnist",
              help="mnist, mnist-sample (5,000 bundled digits), fashion-mnist, or a path: a folder of PNG/JPEG "
                   "images, a .npz (x_train or x), an IDX file or folder. mnist falls back to mnist-sample offline.")
@click.option("--image-size", type=POSITIVE, default=None,
              help="For a folder of images: the square size to resize them to; 16 to 256, a base of 4 to 8 pixels "
                   "doubled (e.g. 28, 32, 64, 128), or 8 to 128 for --architecture mlp.  [default: 28]")
@click.option(
    "--channels",
    type=click.Choice(["1", "3"]),
    default=None,
    help="For a folder of images: 1 reads them as grayscale, 3 as colour.  [default: 1 if every image is grayscale, "
         "else 3]",
)
@click.option(
    "--center-crop",
    is_flag=True,
    help="For a folder of images: crop each to its square centre before resizing (needed for non-square images).",
)
@click.option(
    "--conditional/--unconditional",
    default=None,
    help="Train on the data's class labels, so that generate can draw a chosen class: labelled datasets, a .npz "
    "with y_train (or y), or a folder of images in one subfolder per class.  [default: unconditional]",
)
@click.option(
    "--conditioning",
    type=click.Choice(CONDITIONINGS),
    default=None,
    help="With --conditional: how the discriminator reads the label: concat (a learned label map beside the "
    f"image, as the conditional GAN) or projection (Miyato and Koyama 2018).  [default: {CONDITIONINGS[0]}]",
)
@click.option(
    "--semi-supervised",
    type=click.Choice(SEMI_SUPERVISIONS),
    is_flag=False,
    flag_value=SEMI_SUPERVISIONS[0],
    default=None,
    help="Also train the discriminator as a classifier of the data's classes, from --labelled of its images' "
    "labels and all of its images, saved as classifier.keras: derived (real or generated read from the "
    "class logits, Salimans et al. 2016) or extra (a class of its own for generated images, Odena 2016).  "
    f"[default: not; given alone: {SEMI_SUPERVISIONS[0]}]",
)
@click.option("--labelled", type=int, default=None,
              help="With --semi-supervised: how many training images keep their labels, as even across the classes as "
                   "they divide, chosen by --seed.  [default: 100]")
@click.option("--preset", type=click.Choice(list(PRESETS)), default=DEFAULT_PRESET,
              help="Settings to start from; options given beside it override them. fast: good digits within minutes "
                   "on a CPU; classic: keras-dcgan exactly; dcgan-paper, wgan, wgan-gp, lsgan: each paper's recipe.")
@click.option(
    "--architecture",
    type=click.Choice(ARCHITECTURE_NAMES),
    default=None,
    help="The models: classic (keras-dcgan's), dcgan (the DCGAN paper's strided convolutions and batch norm) "
    f"or mlp (the original GAN paper's fully connected pair).  [default: {preset_defaults('architecture')}]",
)
@click.option("--loss", type=click.Choice(LOSS_NAMES), default=None,
              help="The game: bce (non-saturating cross-entropy), wgan (weight clipping), wgan-gp (gradient penalty), "
                   f"hinge or lsgan (least squares).  [default: {preset_defaults('loss')}; bce with --semi-supervised]")
@click.option(
    "--clip",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help=f"With --loss wgan: clip the critic's weights to [-CLIP, CLIP] after each update.  [default: "
         f"{LOSS_SETTINGS['wgan'][1]:g}]",
)
@click.option("--gp-weight", type=click.FloatRange(min=0), default=None,
              help=f"With --loss wgan-gp: weight of the gradient penalty.  [default: {LOSS_SETTINGS['wgan-gp'][1]:g}]")
@click.option(
    "--d-steps",
    type=POSITIVE,
    default=None,
    help=f"Discriminator updates per step, each on its own real batch.  [default: {preset_defaults('d_steps')}]",
)
@click.option("--g-steps", type=POSITIVE, default=None,
              help=f"Generator updates per step, after the discriminator's.  [default: {preset_defaults('g_steps')}]")
@click.option("--activation", type=click.Choice(ACTIVATIONS), default=None,
              help="Hidden activation of the classic and mlp models: leaky_relu (slope 0.2) or tanh (the classic's); "
                   f"the dcgan models use the paper's ReLU and LeakyReLU.  [default: {preset_defaults('activation')}]")
@click.option("--optimizer", type=click.Choice(OPTIMIZERS), default=None,
              help="Both players' optimizer: adam (--beta1, --beta2), sgd (Nesterov momentum 0.9, the classic's) or "
                   f"rmsprop (WGAN's).  [default: {preset_defaults('optimizer')}]")
@click.option("--beta1", type=click.FloatRange(min=0, max=1, max_open=True), default=None,
              help=f"Adam's first-moment decay.  [default: {preset_defaults('beta1')}]")
@click.option("--beta2", type=click.FloatRange(min=0, max=1, max_open=True), default=None,
              help=f"Adam's second-moment decay.  [default: {preset_defaults('beta2')}]")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=None,
              help=f"The discriminator's learning rate, and the generator's too where --generator-lr is none.  "
                   f"[default: {preset_defaults('lr')}]")
@click.option("--generator-lr", type=NumberOrNone(click.FloatRange(min=0, min_open=True)), default=None,
              help="The generator's learning rate, or none to use --lr.  "
                   f"[default: {preset_defaults('generator_lr')}]")
@click.option("--halve-generator-lr-at", type=NumberOrNone(click.IntRange(min=0)), default=None, metavar="STEP|none",
              help="Halve the generator's learning rate from this step on, or none.  "
                   f"[default: {preset_defaults('halve_generator_lr_at')}]")
@click.option(
    "--ema",
    type=click.FloatRange(min=0, max=1, max_open=True),
    default=None,
    help="Decay of a moving average of the generator's weights, which draws the grids and is saved; 0: none.  "
    f"[default: {preset_defaults('ema')}]",
)
@click.option(
    "--batch-size",
    type=POSITIVE,
    default=None,
    help=f"Real images per step; the discriminator also sees as many generated ones.  [default: "
         f"{preset_defaults('batch_size')}]",
)
@click.option("--augment", default=None,
              help="Augment the images the discriminator sees (DiffAugment): translation, cutout, both "
                   f"comma-separated, or none.  [default: {preset_defaults('augment')}]")
@click.option(
    "--augment-target",
    type=NumberOrNone(click.FloatRange(min=0, max=1, min_open=True, max_open=True)),
    default=None,
    help="Augment only as often as needed, adapting so the discriminator calls this share of real images "
    f"real (StyleGAN2-ADA); none: always.  [default: {preset_defaults('augment_target')}]",
)
@click.option("--fake-batch-norm", type=click.Choice(FAKE_BATCH_NORMS), default=None,
              help="Batch norm of the generated images the discriminator learns from: each batch's own statistics, "
                   f"or the running averages (the classic).  [default: {preset_defaults('fake_batch_norm')}]")
@click.option("--feature-matching", type=click.FloatRange(min=0), default=None,
              help="Weight of feature matching in the generator's loss (Salimans et al. 2016); 0: none.  "
                   f"[default: {preset_defaults('feature_matching')}]")
@click.option("--epochs", type=POSITIVE, default=30, help="Passes over the data.")
@click.option(
    "--steps",
    type=POSITIVE,
    default=None,
    help="Stop after this many steps in all, if that comes first.  [default: no cap]",
)
@click.option(
    "--minutes",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Stop after this many minutes of training in all, counting a resumed run's earlier ones.  [default: no limit]",
)
@click.option(
    "--seed", type=SEED, default=0, help="Seeds the initial weights, data order, training noise and sample noise."
)
@click.option(
    "--weights-dir",
    type=click.Path(file_okay=False),
    default="weights",
    help="Folder for weights, run.json and metrics.csv.",
)
@click.option(
    "--samples-dir", type=click.Path(file_okay=False), default="samples", help="Folder for the sample grid PNGs."
)
@click.option(
    "--sample-every",
    type=POSITIVE,
    default=200,
    help="Steps between sample grids; one is also drawn where the run ends or stops.",
)
@click.option(
    "--save-every",
    type=POSITIVE,
    default=500,
    help="Steps between checkpoints; one is also saved at the end and on Ctrl-C.",
)
@click.option(
    "--keep",
    type=click.IntRange(min=0),
    default=5,
    help="Snapshots to keep in WEIGHTS_DIR/snapshots, newest first; 0 keeps all.",
)
@click.option(
    "--sample-count", type=POSITIVE, default=64, help="Images in each sample grid, all from one fixed noise batch."
)
@click.option(
    "--resume",
    is_flag=True,
    help="Continue the run in --weights-dir from its newest snapshot, with its settings; "
    f"{option_names(CHANGEABLE_ON_RESUME)} may change.",
)
@click.option("--threads", type=POSITIVE, default=None,
              help="CPU threads for each TensorFlow op.  [default: every core]")
@click.option("--devices", default=None,
              help="Split each batch across these TensorFlow devices, comma-separated (e.g. GPU:0,GPU:1), "
                   "with MirroredStrategy on one machine.  [default: one device]")
@click.option("--workers", default=None,
              help="Train one run on several machines: every worker's host:port, comma-separated, the same on each "
                   "(MultiWorkerMirroredStrategy; or give TF_CONFIG).  [default: one process]")
@click.option("--worker-index", type=int, default=None,
              help="Which of --workers this machine is: 0, the chief, writes the run's files.")
@click.option(
    "--mixed-precision",
    is_flag=True,
    help="On a GPU: compute in float16, keep weights and loss in float32, scale losses.",
)
@click.option(
    "--xla/--no-xla",
    default=None,
    help="Compile the training step with XLA.  [default: on with a single GPU; off on a CPU, where it is slower]",
)
@click.option(
    "--logdir",
    type=click.Path(file_okay=False),
    default=None,
    help="Also write TensorBoard event files here: losses, scores, accuracies and speed per step, and the sample "
         "grids.  "
    "[default: none]",
)
@click.option("--overwrite", is_flag=True,
              help="Replace the run in --weights-dir; it is kept aside until the new run's first checkpoint is saved.")
@click.option("--dry-run", is_flag=True,
              help="Print the settings as they will be used and the steps the run will make, as JSON; train nothing.")
@click.pass_context
def train(ctx, dry_run, resume, **options):
    """Train the generator and discriminator, writing sample grids, metrics and checkpoints.

    Ctrl-C (or SIGTERM) stops after the current step and saves a checkpoint that --resume continues from.
    """
    from dcgan.config import TrainConfig, resumed_config  # neither these nor reading a run load TensorFlow
    from dcgan.datasets import DATASET_NAMES, existing_path
    from dcgan.weights import read_run_info

    options["channels"] = options["channels"] and int(options["channels"])
    conditional = options.pop("conditional")
    if conditional is False and options["conditioning"]:
        raise click.UsageError(f"--conditioning {options['conditioning']} chooses how a conditional run reads labels; "
                               "leave out --unconditional or --conditioning")
    if options["labelled"] is not None and not (options["semi_supervised"] or resume):
        raise click.UsageError("--labelled says how many labels a semi-supervised run uses; add --semi-supervised")
    # Options given on this command line override the saved run's settings or the preset's, even as none.
    given = {
        name: value
        for name, value in options.items()
        if ctx.get_parameter_source(name) is not click.core.ParameterSource.DEFAULT
    }
    if conditional is not None:
        options["conditioning"] = given["conditioning"] = (
            (options["conditioning"] or CONDITIONINGS[0]) if conditional else None
        )
    with user_errors():
        saved = read_run_info(options["weights_dir"]) if resume else None
        if resume:  # the folder read, not the one its run.json names (it may have been moved)
            config = resumed_config(saved, **{**given, "weights_dir": options["weights_dir"]})
        else:
            config = TrainConfig.from_preset(
                **{name: value for name, value in options.items() if value is not None or name in given}
            )
        config.check()
        if config.dataset not in DATASET_NAMES:  # a path that is not there is refused before TensorFlow loads
            existing_path(config.dataset)
        if dry_run:
            click.echo(json.dumps(dry_run_plan(config, saved["step"] if resume else 0), indent=2))
            return
        import_tensorflow_quietly()
        from dcgan.training import train as run_training

        run_training(config, resume=resume)


def dry_run_plan(config, step):
    """The settings as the run would use them, and how many steps it would make on its data from `step`.

    It reads the data to know its size and shape (and the checks a run makes of it), but downloads nothing: full
    MNIST not yet here is planned from its known size, and downloaded by the run itself."""
    from dcgan.datasets import DIGITS, MNIST_TRAINING_SHAPE, load_training_data, must_download

    if must_download(config.dataset):
        count, image_shape = MNIST_TRAINING_SHAPE[0], MNIST_TRAINING_SHAPE[1:]
        class_names = DIGITS if config.conditioning or config.semi_supervised else None
    else:
        images, _, class_names = load_training_data(config)
        count, image_shape = len(images), images.shape[1:]
    steps_per_epoch = config.steps_per_epoch(count)
    return {**config.resolved(image_shape),
            "plan": {"images": count, "image_shape": list(image_shape), "steps_per_epoch": steps_per_epoch,
                     "from_step": step, "to_step": config.total_steps(steps_per_epoch),
                     **({"class_names": list(class_names)} if class_names else {})}}


def weights_folder(weights_dir, snapshot):
    """The run to load from (a dcgan.weights.RunFolder): the run's latest weights, or one of its snapshots."""
    from dcgan import UserError
    from dcgan.weights import RunFolder, snapshot_folder, snapshot_steps

    if snapshot is None:
        return RunFolder(weights_dir)
    steps = snapshot_steps(weights_dir)
    if snapshot not in steps:
        raise UserError(
            f"{weights_dir} has no snapshot at step {snapshot}; "
            + (f"its snapshots are at steps {', '.join(map(str, steps))}" if steps else "it has no snapshots")
        )
    return RunFolder(snapshot_folder(weights_dir, snapshot))


def run_samples_folder(run):
    """The run's own sample grids folder, where generate writes by default; ./samples if it is not here."""
    samples = Path(run.config.samples_dir)
    return samples if samples.is_dir() else Path("samples")


def unused_name(folder, stem, suffix):
    """folder/stem.suffix, or folder/stem-2.suffix and on when that is taken: a default name never replaces a file."""
    path = folder / f"{stem}{suffix}"
    number = 2
    while path.exists() or path.with_suffix(".gif").exists():
        path = folder / f"{stem}-{number}{suffix}"
        number += 1
    return path


WEIGHTS_DIR = click.option(
    "--weights-dir", type=click.Path(file_okay=False), default="weights", help="Folder written by dcgan train."
)
SNAPSHOT = click.option(
    "--snapshot",
    type=click.IntRange(min=0),
    default=None,
    help="Use the snapshot saved at this step (in WEIGHTS_DIR/snapshots) instead of the latest weights.",
)


@main.command()
@WEIGHTS_DIR
@SNAPSHOT
@click.option("--batch-size", type=click.IntRange(1, 4096), default=128, help="Images in the output grid.")
@click.option(
    "--nice",
    is_flag=True,
    help="Draw batch-size x nice-factor images and keep the ones the discriminator scores highest, best first.",
)
@click.option(
    "--nice-factor", type=POSITIVE, default=20, help="With --nice: how many images to draw for each one kept."
)
@click.option(
    "--interpolate",
    is_flag=True,
    help="Instead: walk between random latent points, one walk per row of the grid, to see how smoothly the images "
         "change.",
)
@click.option(
    "--walks",
    type=click.IntRange(1, 256),
    default=8,
    help="With --interpolate: rows of the grid, each a walk between two random points.",
)
@click.option(
    "--points",
    type=click.IntRange(2, 256),
    default=10,
    help="With --interpolate: images along each walk, both ends included.",
)
@click.option(
    "--spherical",
    is_flag=True,
    help="With --interpolate: walk along the great circle between the points instead of a straight line.",
)
@click.option(
    "--gif",
    is_flag=True,
    help="With --interpolate: also write an animated GIF of all walks moving together, beside the PNG.",
)
@click.option("--count", type=click.IntRange(1, MAX_COUNT), default=None,
              help="Instead of a grid: this many single images, for use elsewhere, into --output: a folder of PNGs "
                   "(image_000000.png, ...; a conditional run's named by class, image_000000_7.png) or a .npz of uint8 "
                   "images under x (a conditional run's labels under y), which --dataset reads.")
@click.option(
    "--class",
    "classes",
    multiple=True,
    help="For a conditional run: the class to draw, by name or index; repeat it for several, or all. The grid "
    "gets a row per class, the same noise down each column; --interpolate takes one class to keep or two to "
    "move between.  [default: all]",
)
@click.option(
    "--seed",
    type=SEED,
    default=None,
    help="Seed of the noise; the same seed gives the same PNG.  [default: random, printed]",
)
@click.option(
    "--output",
    type=click.Path(),
    default=None,
    help="PNG to write; an existing file is never replaced.  [default: generated_seedSEED.png, nice_seedSEED.png or "
    "interpolate_seedSEED.png in the run's samples folder, numbered if taken]",
)
@click.pass_context
def generate(
    ctx,
    weights_dir,
    snapshot,
    batch_size,
    nice,
    nice_factor,
    interpolate,
    walks,
    points,
    spherical,
    gif,
    count,
    classes,
    seed,
    output,
):
    """Draw images from a trained generator into one tiled PNG, or with --count into single images."""
    import_tensorflow_quietly()
    from dcgan import UserError, generate as generate_images, interpolate as interpolate_images, save_grid
    from dcgan.files import writable_folder
    from dcgan.generation import all_classes, class_indices, save_images, save_walks

    given = {name.replace("_", "-") for name in ("batch_size", "nice_factor", "walks", "points", "spherical", "gif")
             if ctx.get_parameter_source(name) is not click.core.ParameterSource.DEFAULT}
    walk_options = sorted(given & {"walks", "points", "spherical", "gif"})
    if interpolate and nice:
        raise click.UsageError("--nice and --interpolate draw different grids; pass one of them")
    if count is not None and (nice or interpolate or given):
        raise click.UsageError(f"--count writes single images, not a grid; leave out "
                               f"--{'nice' if nice else 'interpolate' if interpolate else sorted(given)[0]}")
    if walk_options and not interpolate:
        raise click.UsageError(f"--{walk_options[0]} works only with --interpolate; add --interpolate or leave it out")
    if nice and batch_size * nice_factor > MAX_DRAWN:
        raise click.UsageError(f"--nice draws batch size x nice factor = {batch_size * nice_factor:,} images; "
                               f"keep it at most {MAX_DRAWN:,} (e.g. --nice-factor {max(1, MAX_DRAWN // batch_size)})")
    if interpolate and walks * points > MAX_SAMPLE_COUNT:  # at 256 pixels in colour, about 1 GB in memory
        raise click.UsageError(f"--walks x --points = {walks * points:,} images, more than a grid can show; keep it at "
                               f"most {MAX_SAMPLE_COUNT:,} (e.g. --points {max(2, MAX_SAMPLE_COUNT // walks)})")
    if count is not None and (not output or Path(output).suffix.lower() not in ("", ".npz")):
        raise click.UsageError("--count writes into --output: give a new folder for the PNGs, or a name ending in .npz")
    if count is None and output and Path(output).suffix.lower() != ".png":
        raise click.UsageError(f"--output {output}: give a name ending in .png (--gif writes the GIF beside it)")
    if seed is None:
        seed = secrets.randbelow(2**31)
    kind = "interpolate" if interpolate else "nice" if nice else "generated"
    with user_errors():
        folder = weights_folder(weights_dir, snapshot)
        output = Path(output) if output else unused_name(run_samples_folder(folder), f"{kind}_seed{seed}", ".png")
        for path in [output, output.with_suffix(".gif")] if gif else [output]:
            if path.exists():
                raise UserError(f"{path} exists already; choose another --output, or remove it first")
        writable_folder(output.parent, "--output")
        chosen = class_indices(folder, classes) if classes else None
        if interpolate and "all" in [name.strip().lower() for name in classes]:
            chosen = None  # each walk keeps a class of its own, in turn
        if interpolate and chosen and len(chosen) > 2:
            raise UserError(f"--interpolate takes one class to keep or two to move between, not {len(chosen)}")
        if count is not None:
            save_images(folder, count, seed, output, chosen)
        elif interpolate:
            images = interpolate_images(folder, walks, points, seed, spherical, chosen)
            save_walks(images, output, gif)
            count = images.shape[0] * images.shape[1]
        else:
            rows = len(chosen or all_classes(folder))  # one row per class, for a conditional run of several
            per_class = max(1, batch_size // rows) if rows > 1 else batch_size
            images, _ = generate_images(folder, per_class, seed, nice_factor if nice else None, chosen)
            save_grid(images, output, per_class if rows > 1 else None)
            count = len(images)
    click.echo(
        f"Wrote {count} images to {output}{' and ' + str(output.with_suffix('.gif')) if gif else ''} (seed {seed})"
    )


@main.command()
@WEIGHTS_DIR
@SNAPSHOT
@click.option(
    "--dataset",
    default=None,
    help="Labelled data to score against: mnist, mnist-sample, fashion-mnist, or a .npz with x and y "
    "(or x_train, y_train, x_test, y_test), a folder of IDX images and labels, or a folder of class subfolders.  "
    "[default: the run's dataset]",
)
@click.option("--count", type=click.IntRange(10, 50_000), default=10_000, help="Generated images to score.")
@click.option("--seed", type=SEED, default=0, help="Seed of the noise the images are drawn from.")
@click.option("--cache-dir", type=click.Path(file_okay=False), default=None,
              help="Where the scoring classifier is cached.  [default: $DCGAN_CACHE, else ~/.cache/dcgan]")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON, for scripts.")
def evaluate(weights_dir, snapshot, dataset, count, seed, cache_dir, as_json):
    """Score a trained generator against real labelled images.

    Reports, for the generated images and for real training images (the floor): the Fréchet distance
    to held-out real images in a small classifier's features, the classes covered and how evenly,
    the classifier's confidence, and k-NN precision and recall. The classifier is trained on the
    dataset the first time and cached; its held-out accuracy is reported.
    """
    import_tensorflow_quietly()
    from dcgan.evaluation import evaluate as score_generator, format_report

    with user_errors():
        report = score_generator(weights_folder(weights_dir, snapshot), dataset, count, seed, cache_dir,
                                 log=lambda line: click.echo(line, err=True))
    click.echo(json.dumps(report, indent=2) if as_json else format_report(report))


@main.command()
@click.argument("inputs", metavar="INPUT", type=click.Path())
@WEIGHTS_DIR
@SNAPSHOT
@click.option("--output", type=click.Path(dir_okay=False), default=None,
              help="Write a CSV file (image, class, confidence) here instead of printing.")
def classify(inputs, weights_dir, snapshot, output):
    """Sort images into classes with a semi-supervised run's classifier.

    INPUT is a PNG or JPEG image, a folder of them (subfolders included), or a .npz of images under
    x_train or x, of the size and channels the run trained on. Prints each image's class and the
    classifier's confidence in it; unreadable images are skipped, with a count.
    """
    import_tensorflow_quietly()
    from dcgan.classification import classify as classify_images, write_csv
    from dcgan.errors import UserError
    from dcgan.files import writable_folder

    with user_errors():
        if output and Path(output).exists():
            raise UserError(f"{output} exists already; choose another --output, or remove it first")
        if output:
            writable_folder(Path(output).parent, "--output")
        rows = classify_images(inputs, weights_folder(weights_dir, snapshot))
        if output:
            write_csv(rows, output)
            click.echo(f"Wrote the classes of {len(rows)} images to {output}")
        else:
            for name, label, confidence in rows:
                click.echo(f"{name}\t{label}\t{confidence:.3f}")


@main.command()
@WEIGHTS_DIR
@SNAPSHOT
@click.option(
    "--format",
    "export_format",
    type=click.Choice(EXPORT_FORMATS),
    required=True,
    help="savedmodel: a TensorFlow SavedModel folder, for TensorFlow Serving; tflite: a TensorFlow Lite file, "
    "for phones; onnx: an ONNX file, for ONNX Runtime and other frameworks.",
)
@click.option("--output", type=click.Path(), required=True,
              help="Where to write: a file ending in .tflite or .onnx, or a folder for savedmodel.")
@click.option(
    "--overwrite", is_flag=True, help="Replace --output if it exists, once the new export has passed its check."
)
def export(weights_dir, snapshot, export_format, output, overwrite):
    """Write the trained generator for serving, phones or other frameworks.

    The model takes `noise` (N, latent size), and for a conditional run `labels` (N,), and returns
    `images` (N, height, width, channels) in [-1, 1]. Before it is moved into place, the export is loaded in its own
    runtime and must draw the Keras generator's images from the same noise to within 1e-4. tflite and onnx need
    pip install 'dcgan[export]'.
    """
    import_tensorflow_quietly()
    from dcgan.export import export_generator

    with user_errors(), native_output_hidden():  # the converters' and runtimes' own log lines
        exported = export_generator(weights_folder(weights_dir, snapshot), export_format, output, overwrite)
    click.echo(f"Wrote {exported.path} ({exported.size / 1e6:.1f} MB); it draws the generator's images to within "
               f"{exported.difference:.1g}")


@main.command()
@click.option(
    "--weights-dir", type=click.Path(file_okay=False), default="weights", help="Folder of a run written by dcgan train."
)
@click.option(
    "--samples-dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Folder of the run's sample grids, where the pictures go too.  [default: the run's own --samples-dir]",
)
def plot(weights_dir, samples_dir):
    """Draw a run's training curves (curves.png) and an animated GIF of its sample grids (fakes.gif), now.

    dcgan train draws both when it finishes or is stopped; this draws them while it runs, or again later.
    """
    from dcgan.files import writable_folder
    from dcgan.plots import ANIMATION_FILE, CURVES_FILE, animate_grids, plot_curves
    from dcgan.weights import METRICS_FILE, RunFolder

    with user_errors():
        samples_dir = writable_folder(samples_dir or RunFolder(weights_dir).config.samples_dir, "--samples-dir")
        plot_curves(Path(weights_dir) / METRICS_FILE, samples_dir / CURVES_FILE)
        frames = animate_grids(samples_dir, samples_dir / ANIMATION_FILE)
    click.echo(f"Wrote {samples_dir / CURVES_FILE} and {samples_dir / ANIMATION_FILE} ({frames} frames)")


@contextlib.contextmanager
def user_errors():
    """Turns a dcgan.UserError into click's one-line `Error: ...` and exit status 1."""
    from dcgan.errors import TrainingStopped, UserError

    try:
        yield
    except TrainingStopped as error:  # asked for, so not an error: the message and the signal's exit status
        click.echo(str(error), err=True)
        raise SystemExit(error.exit_code) from None
    except UserError as error:
        exception = click.ClickException(one_line(str(error)))
        exception.exit_code = error.exit_code
        raise exception from None
    except OSError as error:  # the disk is full, a name too long, a folder gone: what the system said, and where
        where = f" ({error.filename})" if error.filename else ""
        raise click.ClickException(one_line(
            f"{error.strerror or first_line(error)}{where}; nothing was replaced: make room or choose another path, "
            "then run the command again"
        )) from None
    except KeyboardInterrupt:
        click.echo("Interrupted before training started; nothing was saved.", err=True)
        raise SystemExit(130) from None


if __name__ == "__main__":
    main()
