"""The `dcgan` command: parses and checks options, then calls the dcgan library."""
import contextlib
import dataclasses
import json
import os
import secrets
from pathlib import Path

import click

# Quiets TensorFlow's C++ log once it is running (its first lines at load time only obey the
# variable when it is set in the shell); a user's own setting wins.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

# dcgan is imported inside the commands: it imports TensorFlow, which `--help` should not wait for.
POSITIVE = click.IntRange(min=1)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
def main():
    """Train the classic DCGAN on digits or your own data, and draw images from it."""


@main.command()
@click.option("--dataset", default="mnist",
              help="mnist, mnist-sample (5,000 bundled digits), fashion-mnist, or a path to a .npz (x_train or x), "
                   "an IDX file or a folder of IDX files. mnist falls back to mnist-sample when it cannot be found or downloaded.")
@click.option("--batch-size", type=POSITIVE, default=128, help="Real images per step; the discriminator also sees as many generated ones.")
@click.option("--epochs", type=POSITIVE, default=30, help="Passes over the data.")
@click.option("--steps", type=POSITIVE, default=None, help="Stop after this many steps in all, if that comes first.  [default: no cap]")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=0.0005, help="Learning rate of both SGD optimizers (Nesterov momentum 0.9).")
@click.option("--seed", type=int, default=0, help="Seeds the initial weights, data order, training noise and sample noise.")
@click.option("--weights-dir", type=click.Path(file_okay=False), default="weights", help="Folder for weights, run.json and metrics.csv.")
@click.option("--samples-dir", type=click.Path(file_okay=False), default="samples", help="Folder for the sample grid PNGs.")
@click.option("--sample-every", type=POSITIVE, default=200, help="Steps between sample grids; one is also written at the end of every epoch.")
@click.option("--save-every", type=POSITIVE, default=500, help="Steps between checkpoints; one is also saved at the end and on Ctrl-C.")
@click.option("--keep", type=click.IntRange(min=0), default=5, help="Snapshots to keep in WEIGHTS_DIR/snapshots, newest first; 0 keeps all.")
@click.option("--sample-count", type=POSITIVE, default=64, help="Images in each sample grid, all from one fixed noise batch.")
@click.option("--resume", is_flag=True,
              help="Continue the run in --weights-dir from its newest snapshot. Its other settings are kept; "
                   "--epochs, --steps, cadences, --keep and --samples-dir may be changed.")
@click.option("--threads", type=POSITIVE, default=None, help="CPU threads for TensorFlow's ops.  [default: every core]")
@click.option("--devices", default=None,
              help="Split each batch across these TensorFlow devices, comma-separated (e.g. GPU:0,GPU:1), "
                   "with MirroredStrategy on one machine.  [default: one device]")
@click.option("--mixed-precision", is_flag=True, help="On a GPU: compute in float16, keep weights and loss in float32, scale losses.")
@click.option("--xla/--no-xla", default=None,
              help="Compile the training step with XLA.  [default: on with a single GPU; off on a CPU, where it is slower]")
@click.option("--overwrite", is_flag=True, help="Replace a training run already in --weights-dir, snapshots included.")
@click.option("--dry-run", is_flag=True, help="Print the run's configuration as JSON and exit without training.")
@click.pass_context
def train(ctx, dry_run, resume, **options):
    """Train the generator and discriminator, writing sample grids, metrics and checkpoints.

    Ctrl-C (or SIGTERM) stops after the current step and saves a checkpoint that --resume continues from.
    """
    from dcgan import TrainConfig, train as run_training
    from dcgan.weights import read_run_info

    with user_errors():
        if resume:
            # The saved run's settings, overridden only by the options given on this command line.
            given = {name: value for name, value in options.items()
                     if ctx.get_parameter_source(name) is not click.core.ParameterSource.DEFAULT}
            options = {**read_run_info(options["weights_dir"])["config"], "overwrite": False, **given}
        config = TrainConfig(**options)
        if dry_run:
            click.echo(json.dumps(dataclasses.asdict(config), indent=2))
            return
        run_training(config, resume=resume)


@main.command()
@click.option("--weights-dir", type=click.Path(file_okay=False), default="weights", help="Folder written by dcgan train.")
@click.option("--snapshot", type=click.IntRange(min=0), default=None,
              help="Use the snapshot saved at this step (in WEIGHTS_DIR/snapshots) instead of the latest weights.")
@click.option("--batch-size", type=POSITIVE, default=128, help="Images in the output grid.")
@click.option("--nice", is_flag=True, help="Draw batch-size x nice-factor images and keep the ones the discriminator scores highest, best first.")
@click.option("--nice-factor", type=POSITIVE, default=20, help="With --nice: how many images to draw for each one kept.")
@click.option("--seed", type=int, default=None, help="Seed of the noise; the same seed gives the same PNG.  [default: random, printed]")
@click.option("--output", type=click.Path(dir_okay=False), default=None,
              help="PNG to write.  [default: samples/generated_seedSEED.png, or samples/nice_seedSEED.png with --nice]")
def generate(weights_dir, snapshot, batch_size, nice, nice_factor, seed, output):
    """Draw images from a trained generator into one tiled PNG."""
    from dcgan import generate as generate_images, save_grid
    from dcgan.files import writable_folder
    from dcgan.weights import SNAPSHOTS, snapshot_name

    if snapshot is not None:
        weights_dir = Path(weights_dir) / SNAPSHOTS / snapshot_name(snapshot)
    if seed is None:
        seed = secrets.randbelow(2**31)
    output = Path(output or f"samples/{'nice' if nice else 'generated'}_seed{seed}.png")
    with user_errors():
        writable_folder(output.parent, "--output")
        images, _ = generate_images(weights_dir, batch_size, seed, nice_factor if nice else None)
        save_grid(images, output)
    click.echo(f"Wrote {len(images)} images to {output} (seed {seed})")


@contextlib.contextmanager
def user_errors():
    """Turns a dcgan.UserError into click's one-line `Error: ...` and exit status 1."""
    from dcgan import UserError

    try:
        yield
    except UserError as error:
        exception = click.ClickException(str(error))
        exception.exit_code = error.exit_code
        raise exception from None
    except KeyboardInterrupt:
        click.echo("Interrupted before training started; nothing was saved.", err=True)
        raise SystemExit(130) from None


if __name__ == "__main__":
    main()
