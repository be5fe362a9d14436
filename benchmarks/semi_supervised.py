"""The semi-supervised classifier against the same network trained on its labelled images alone.

    python benchmarks/semi_supervised.py [--dataset mnist-sample] [--labelled 100] [--minutes 5,15,30] [--seeds 0,1,2]
                                         [--head derived|extra] [--no-baseline] [--out semi] [-- TRAIN OPTIONS...]

For each seed (which also chooses the labelled images): `dcgan train --semi-supervised --labelled N
--minutes M` into OUT/seed-S up to the first point of --minutes, its classifier scored on the
held-out images, then on with `--resume` to the next point; then the baseline: the same classifier
network, initialized the same, trained on the same N labelled images alone with the same optimizer
and batch size and every image augmented as the run's augmentation does (the run adapts how often;
a classifier alone has no discriminator to adapt to), scored at the same minutes of training.
Prints one markdown row per seed and point, and the mean and sample standard deviation over the
seeds at each point. Run it on an otherwise idle machine.
"""
import argparse
import dataclasses
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import tensorflow as tf

from dcgan import Trainer, load_classifier
from dcgan.augment import augment
from dcgan.classification import accuracy_and_confusion
from dcgan.config import SEEDS, TrainConfig
from dcgan.datasets import labelled_class_names, load_labelled
from dcgan.errors import UserError
from dcgan.files import FolderLock
from dcgan.weights import METRICS_FILE
from dcgan.plots import read_metrics
from dcgan.presets import SEMI_SUPERVISIONS, saved_config
from dcgan.semi_supervised import build_classifier, choose_labelled, labelled_batch, supervised_loss
from dcgan.weights import read_run_info
from points import minute_points


def train_semi_supervised(args, seed, minutes, resume):
    """Trains (or, with `resume`, goes on training) seed `seed`'s run up to `minutes` of training in all."""
    folder = args.out / f"seed-{seed}"
    command = [
        str(Path(sys.executable).parent / "dcgan"),
        "train",
        "--dataset",
        args.dataset,
        "--minutes",
        str(minutes),
        "--epochs",
        "100000",
        "--weights-dir",
        str(folder / "weights"),
        "--samples-dir",
        str(folder / "samples"),
    ]
    if resume:
        command.append("--resume")
    else:
        if (folder / "weights").is_dir():
            with FolderLock(folder / "weights"):  # refuses, naming it, while another run trains there
                pass
        shutil.rmtree(folder, ignore_errors=True)
        command += [
            "--semi-supervised",
            args.head,
            "--labelled",
            str(args.labelled),
            "--seed",
            str(seed),
            *args.train_options,
        ]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    steps = read_metrics(folder / "weights" / METRICS_FILE)["step"][-1]
    return folder / "weights", int(steps)


class HeldOut:
    """A seed's run as saved (its config, data and class names, read once), and its held-out accuracy."""

    def __init__(self, weights_dir):
        self.config = TrainConfig(**saved_config(read_run_info(weights_dir)))
        self.data = load_labelled(
            self.config.dataset, self.config.image_size, self.config.channels, self.config.center_crop
        )
        self.names = labelled_class_names(self.config.dataset, self.data.train_labels)

    def accuracy(self, classifier):
        return accuracy_and_confusion(classifier, self.data.test_images, self.data.test_labels, len(self.names))[0]


def train_baseline(run, points):
    """The run's classifier network trained from its starting weights on its labelled images alone,
    scored at each of `points` minutes of training (the scoring not counted); returns [(accuracy, steps)]."""
    config = dataclasses.replace(run.config, augment_target=None)
    chosen = choose_labelled(run.data.train_labels, config.labelled, config.seed, run.names)
    images, labels = run.data.train_images[chosen], run.data.train_labels[chosen]
    trainer = Trainer(config, images.shape[1:], classes=len(run.names))  # the seed's starting weights, as the run's
    discriminator, head = trainer.discriminator, trainer.semi_supervision

    @tf.function
    def update(batch, classes, draws):
        with tf.GradientTape() as tape:
            seen = augment(batch, trainer.augmentations, draws) if trainer.augmentations else batch
            loss = supervised_loss(head.class_logits(discriminator, head.features(discriminator, seen)), classes)
        variables = trainer.discriminator_variables
        trainer.d_optimizer.apply(tape.gradient(loss, variables), variables)

    results, trained, step = [], 0.0, 0
    for minutes in points:
        start = time.perf_counter()
        while trained + time.perf_counter() - start < 60 * minutes:
            pick = labelled_batch(config.seed, step, len(labels), config.batch_size)
            draws = trainer.augmentation_draws(config.batch_size, tf.constant(step, tf.int64), parts=(3,))[0]
            update(images[pick], labels[pick], draws)
            step += 1
        trained += time.perf_counter() - start
        results.append((run.accuracy(build_classifier(discriminator)), step))
    return results


def seed_rows(args, seed):
    """Seed `seed`'s semi-supervised run and its baseline, scored at each point of --minutes."""
    semi = []
    for index, point in enumerate(args.minutes):
        weights_dir, steps = train_semi_supervised(args, seed, point, resume=index > 0)
        if index == 0:
            run = HeldOut(weights_dir)
        semi.append((run.accuracy(load_classifier(weights_dir)), steps))
    alone = train_baseline(run, args.minutes) if args.baseline else [(None, None)] * len(args.minutes)
    return [{"minutes": point, "semi_supervised": semi_accuracy, "semi_supervised_steps": semi_steps,
             "supervised_only": alone_accuracy, "supervised_only_steps": alone_steps}
            for point, (semi_accuracy, semi_steps), (alone_accuracy, alone_steps) in zip(args.minutes, semi, alone)]


def seed_list(text):
    """--seeds: comma-separated seeds, whole numbers from 0, each once (each has its own folder)."""
    try:
        seeds = [int(seed) for seed in text.split(",")]
    except ValueError:
        seeds = []
    if not seeds or not 0 <= min(seeds) <= max(seeds) < SEEDS or len(set(seeds)) < len(seeds):
        raise argparse.ArgumentTypeError(f"{text!r} is not different seeds from 0 to {SEEDS - 1}, comma-separated, "
                                         "e.g. 0,1,2")
    return seeds


def shown(value, spec):
    return "–" if value is None else format(value, spec)  # None: no baseline


def spread(accuracies):
    """Mean ± sample standard deviation over the seeds (0 from one seed), or – without a baseline."""
    if None in accuracies:
        return "–"
    deviation = np.std(accuracies, ddof=1) if len(accuracies) > 1 else 0.0
    return f"{np.mean(accuracies):.1%} ± {deviation:.1%}"


def gain(semi, alone):
    """Points of accuracy the semi-supervised classifier gains over the baseline."""
    return shown(None if alone is None else 100 * (semi - alone), "+.1f")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default="mnist-sample")
    parser.add_argument("--labelled", type=int, default=100)
    parser.add_argument("--minutes", type=minute_points, default=[5, 15, 30],
                        help="comma-separated minutes of training to score at")
    parser.add_argument("--seeds", type=seed_list, default=[0, 1, 2], help="comma-separated seeds")
    parser.add_argument("--head", choices=SEMI_SUPERVISIONS, default=SEMI_SUPERVISIONS[0])
    parser.add_argument("--no-baseline", dest="baseline", action="store_false",
                        help="score the semi-supervised runs only (to compare heads, say)")
    parser.add_argument("--out", type=Path, default=Path("semi"))
    parser.add_argument("train_options", nargs="*", help="more dcgan train options, after --")
    args = parser.parse_args()
    try:
        measure(args)
    except UserError as error:
        sys.exit(f"semi_supervised.py: {error}")
    except subprocess.CalledProcessError as error:
        sys.exit(error.returncode)  # dcgan train has said why, in one line


def measure(args):
    print(f"{args.dataset}, {args.labelled} labels, the {args.head} head\n")
    print("| seed | minutes | semi-supervised | supervised only | gain (points) | steps (semi, supervised only) |")
    print("|---:|---:|---:|---:|---:|---:|")
    results = {point: [] for point in args.minutes}
    for seed in args.seeds:
        rows = seed_rows(args, seed)
        for row in rows:
            results[row["minutes"]].append(row)
            print(f"| {seed} | {row['minutes']:g} | {shown(row['semi_supervised'], '.1%')} | "
                  f"{shown(row['supervised_only'], '.1%')} | {gain(row['semi_supervised'], row['supervised_only'])} | "
                  f"{row['semi_supervised_steps']:,}, {shown(row['supervised_only_steps'], ',')} |", flush=True)
        (args.out / f"seed-{seed}" / "accuracies.json").write_text(json.dumps(rows, indent=2))
    for point, rows in results.items():
        semi, alone = ([row[key] for row in rows] for key in ("semi_supervised", "supervised_only"))
        mean_gain = gain(np.mean(semi), None if None in alone else np.mean(alone))
        print(f"| mean ± sd | {point:g} | {spread(semi)} | {spread(alone)} | {mean_gain} | |")


if __name__ == "__main__":
    main()
