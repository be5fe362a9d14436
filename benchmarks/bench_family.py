"""Step time of every loss on every architecture, of the presets, and of conditional training, against the classic
Keras loop.

    python benchmarks/bench_family.py [--batch-sizes 64,128] [--rounds 3] [--steps 3]
                                      [--rows all|presets|losses|conditional]

All run in one process, interleaved round by round so that a noisy machine slows them alike;
ratios to the classic loop (bench_train.ClassicLoop, the keras-dcgan script's step on Keras 3)
hold where absolute times do not. Each dcgan row is a Trainer's full step: d_steps
discriminator updates and g_steps generator updates (so wgan-gp's row counts its second-order
penalty), with its preset's extras where the row names a preset. The per-update column divides
by the discriminator updates, to compare one update of each game.
"""
import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(__file__))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from bench_train import ClassicLoop  # noqa: E402
from dcgan import TrainConfig, Trainer  # noqa: E402
from dcgan.datasets import load_conditional  # noqa: E402
from dcgan.presets import ARCHITECTURE_NAMES, CONDITIONINGS, LOSS_NAMES  # noqa: E402


class Step:
    """A Trainer's step under `config`, on batches of real images it takes from `images` (with their `labels`
    when the config is conditional)."""

    def __init__(self, name, config, images, labels=None):
        self.name, self.config, self.images = name, config, images
        self.labels = labels if config.conditioning else None
        self.updates = config.d_steps  # discriminator updates a step
        self.trainer = Trainer(config, classes=0 if self.labels is None else int(labels.max()) + 1)
        self.count = 0

    def step(self, batch_size):
        size = batch_size * self.config.d_steps
        labels = None if self.labels is None else self.labels[:size]
        # float(): wait for the step, as the loop does
        float(self.trainer.train_step(self.images[:size], tf.constant(self.count, tf.int64), labels)["d_loss"])
        self.count += 1


class Classic:
    name = "classic Keras loop"
    updates = 1

    def __init__(self, images):
        self.loop, self.images = ClassicLoop(), images

    def step(self, batch_size):
        self.loop.step(self.images[:batch_size])


def candidates(images, labels, which):
    """The rows to time: one update of each loss on each architecture, each preset as it trains, and the
    default preset conditional."""
    rows = [Classic(images)]
    if which in ("all", "presets"):
        rows += [Step(f"preset {preset}", TrainConfig.from_preset(preset), images)
                 for preset in ("classic", "fast", "dcgan-paper", "wgan", "wgan-gp", "lsgan")]
    if which in ("all", "losses"):
        rows += [
            Step(
                f"{loss} on {architecture}",
                TrainConfig.from_preset("classic", loss=loss, architecture=architecture, optimizer="adam"),
                images,
            )
            for architecture in ARCHITECTURE_NAMES
            for loss in LOSS_NAMES
        ]
    if which in ("all", "conditional"):
        rows += [Step(f"fast {conditioning or 'unconditional'}", TrainConfig(conditioning=conditioning), images, labels)
                 for conditioning in (None, *CONDITIONINGS)]
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-sizes", default="64,128")
    parser.add_argument(
        "--rounds", type=int, default=3, help="interleaved rounds; each times --steps steps of every row"
    )
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--rows", choices=("all", "presets", "losses", "conditional"), default="all")
    args = parser.parse_args()
    # Shuffled, so that each batch holds every class, as training's would.
    images, labels, _ = load_conditional("mnist-sample")
    order = np.random.default_rng(0).permutation(len(images))
    images, labels = images[order], labels[order]
    print(f"TensorFlow {tf.__version__}; {args.rounds} interleaved rounds of {args.steps} steps, after two warm-up "
          "steps; median ms per step and per discriminator update\n")
    print(f"{'batch':>5} {'row':<26} {'ms/step':>8} {'ms/update':>9} {'vs classic loop':>15}")
    for batch_size in map(int, args.batch_sizes.split(",")):
        rows = candidates(images, labels, args.rows)
        for row in rows:
            for _ in range(2):
                row.step(batch_size)
        times = {row.name: [] for row in rows}
        for _ in range(args.rounds):
            for row in rows:
                start = time.perf_counter()
                for _ in range(args.steps):
                    row.step(batch_size)
                times[row.name].append((time.perf_counter() - start) / args.steps)
        reference = statistics.median(times[rows[0].name])
        for row in rows:
            seconds = statistics.median(times[row.name])
            print(f"{batch_size:>5} {row.name:<26} {seconds * 1000:>8.0f} {seconds * 1000 / row.updates:>9.0f} "
                  f"{seconds / reference:>14.2f}x", flush=True)
        del rows


if __name__ == "__main__":
    main()
