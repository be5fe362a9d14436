"""The semi-supervised classifier against the same network trained on its labelled images alone.

    python benchmarks/semi_supervised.py [--dataset mnist-sample] [--labelled 100] [--minutes 30] [--seeds 0,1,2]
                                         [--out semi] [-- TRAIN OPTIONS...]

For each seed (which also chooses the labelled images): `dcgan train --semi-supervised --labelled N
--minutes M` into OUT/seed-S, its classifier scored on the held-out images; then the baseline: the
same classifier network, initialized the same, trained for the same minutes on the same N labelled
images alone, with the same optimizer and batch size and every image augmented as the run's
augmentation does (the run adapts how often; a classifier alone has no discriminator to adapt to).
Prints one markdown row per seed and the mean and spread. Run it on an otherwise idle machine.
"""
import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import tensorflow as tf

from dcgan import Trainer, load_classifier
from dcgan.augment import augment
from dcgan.classification import accuracy_and_confusion
from dcgan.config import TrainConfig
from dcgan.datasets import labelled_class_names, load_labelled
from dcgan.presets import saved_config
from dcgan.semi_supervised import build_classifier, choose_labelled, labelled_batch, supervised_loss
from dcgan.weights import read_run_info


def train_semi_supervised(args, seed, folder):
    command = [str(Path(sys.executable).parent / "dcgan"), "train", "--dataset", args.dataset, "--semi-supervised",
               "--labelled", str(args.labelled), "--minutes", str(args.minutes), "--epochs", "100000", "--seed", str(seed),
               "--weights-dir", str(folder / "weights"), "--samples-dir", str(folder / "samples"), *args.train_options]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return folder / "weights"


def train_baseline(weights_dir, minutes):
    """The run's classifier network trained from its starting weights on its labelled images alone, for `minutes`."""
    run_info = read_run_info(weights_dir)
    config = TrainConfig(**{**saved_config(run_info), "augment_target": None})
    data = load_labelled(config.dataset, config.image_size, config.channels, config.center_crop)
    names = labelled_class_names(config.dataset, data.train_labels)
    chosen = choose_labelled(data.train_labels, config.labelled, config.seed, names)
    images, labels = data.train_images[chosen], data.train_labels[chosen]
    trainer = Trainer(config, images.shape[1:], classes=len(names))  # the seed's starting weights, as the run's
    discriminator, head = trainer.discriminator, trainer.semi_supervision

    @tf.function
    def update(batch, classes, draws):
        with tf.GradientTape() as tape:
            seen = augment(batch, trainer.augmentations, draws) if trainer.augmentations else batch
            loss = supervised_loss(head.class_logits(discriminator, head.features(discriminator, seen)), classes)
        variables = trainer.discriminator_variables
        trainer.d_optimizer.apply(tape.gradient(loss, variables), variables)

    start, step = time.perf_counter(), 0
    while time.perf_counter() - start < 60 * minutes:
        pick = labelled_batch(config.seed, step, len(labels), config.batch_size)
        draws = trainer.augmentation_draws(config.batch_size, tf.constant(step, tf.int64), parts=(3,))[0]
        update(images[pick], labels[pick], draws)
        step += 1
    return build_classifier(discriminator), data, len(names), step


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default="mnist-sample")
    parser.add_argument("--labelled", type=int, default=100)
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--out", type=Path, default=Path("semi"))
    parser.add_argument("train_options", nargs="*", help="more dcgan train options, after --")
    args = parser.parse_args()
    print(f"{args.dataset}, {args.labelled} labels, {args.minutes:g} minutes of training\n")
    print("| seed | semi-supervised | supervised only | gain (points) | baseline steps |")
    print("|---:|---:|---:|---:|---:|")
    results = []
    for seed in map(int, args.seeds.split(",")):
        weights_dir = train_semi_supervised(args, seed, args.out / f"seed-{seed}")
        baseline, data, classes, steps = train_baseline(weights_dir, args.minutes)
        semi, _ = accuracy_and_confusion(load_classifier(weights_dir), data.test_images, data.test_labels, classes)
        alone, _ = accuracy_and_confusion(baseline, data.test_images, data.test_labels, classes)
        results.append((semi, alone))
        (args.out / f"seed-{seed}" / "accuracies.json").write_text(
            json.dumps({"semi_supervised": semi, "supervised_only": alone, "baseline_steps": steps}, indent=2))
        print(f"| {seed} | {semi:.1%} | {alone:.1%} | {100 * (semi - alone):+.1f} | {steps} |", flush=True)
    semi, alone = np.array(results).T
    print(f"| mean ± sd | {semi.mean():.1%} ± {semi.std():.1%} | {alone.mean():.1%} ± {alone.std():.1%} | "
          f"{100 * (semi - alone).mean():+.1f} | |")


if __name__ == "__main__":
    main()
