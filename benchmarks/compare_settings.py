"""Training settings compared by sample quality at fixed minutes of training.

    python benchmarks/compare_settings.py [--dataset mnist-sample] [--minutes 5,15,30] [--out compare] [NAME ...]

Each NAME in CANDIDATES (all of them by default) trains with `dcgan train --minutes M` up to the
first point, is scored there with `dcgan evaluate --json`, then goes on with `--resume` to the next
point; resuming continues the run bit for bit, and scoring happens outside the training time.
With --extend, a setting already scored in OUT goes on from its last point instead of starting over,
so a comparison can grow in stages (5 and 15 minutes today, 30 for the best tomorrow).
Prints one markdown table row per point and writes every report to OUT/NAME/scores.json; each
point's sample grid is the last one in OUT/NAME/samples. Minutes are those the trainer counts
(metrics.csv's elapsed_seconds), so run it on an otherwise idle machine.
"""
import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

from dcgan.weights import METRICS_FILE
from dcgan.plots import read_metrics
from points import minute_points

# Every setting but classic, adam, fast, its seeds and those naming a loss or preset was measured when the fast
# preset played bce; this option keeps them as they were.
BCE = ["--loss", "bce"]
# Every row but classic, adam and the fast ones was measured when the fast preset kept the generator's rate all
# along; this option keeps them as they were.
STEADY = ["--halve-generator-lr-at", "none", *BCE]
# Every row but classic, adam, no-feature-matching, steady-generator-lr and fast was measured when the fast preset
# had no feature matching and drew the discriminator's generated images with batch norm's running averages; these
# options keep them as they were.
MOVING = ["--feature-matching", "0", "--fake-batch-norm", "moving", *STEADY]
CANDIDATES = {
    "classic": ["--preset", "classic"],
    "adam": ["--preset", "classic", "--optimizer", "adam", "--lr", "0.0002"],
    # Measured when the fast preset trained both players at 0.0002; the generator's rate keeps them as they were.
    "no-augment": ["--augment", "none", "--generator-lr", "0.0002", *MOVING],
    # Measured when the fast preset augmented every image; --augment-target none keeps them as they were.
    "batch-32": ["--batch-size", "32", "--generator-lr", "0.0002", "--augment-target", "none", *MOVING],
    "equal-lr": ["--generator-lr", "0.0002", "--augment-target", "none", *MOVING],
    "always-augment": ["--augment-target", "none", *MOVING],
    "augment-target-0.6": ["--augment-target", "0.6", *MOVING],
    "moving-batch-norm": MOVING,
    # The defaults before feature matching.
    "no-feature-matching": ["--feature-matching", "0", *STEADY],
    # The defaults before the generator's rate halved at step 4,000, from three seeds.
    "steady-generator-lr": STEADY,
    "steady-generator-lr-seed-1": [*STEADY, "--seed", "1"],
    "steady-generator-lr-seed-2": [*STEADY, "--seed", "2"],
    # The defaults before they played hinge, from three seeds.
    "fast-bce": BCE,
    "fast-bce-seed-1": [*BCE, "--seed", "1"],
    "fast-bce-seed-2": [*BCE, "--seed", "2"],
    # The defaults: the hinge loss, LeakyReLU, Adam (generator 0.0005, discriminator 0.0002), adaptive augmentation,
    # generated images normalized with their batch's statistics, feature matching, a weight average, batch 64, the
    # generator's rate halved at step 4,000.
    "fast": [],
    # The defaults from other seeds: how far apart runs of them land.
    "fast-seed-1": ["--seed", "1"],
    "fast-seed-2": ["--seed", "2"],
}
# Each loss with its paper's settings (hinge with LSGAN's optimizer, as SNGAN's Adam differs only in its betas),
# on the DCGAN paper's models as the papers trained them and on the classic models: NAME-dcgan, NAME-classic.
PAPERS = {
    "bce": ["--preset", "dcgan-paper"],
    "wgan": ["--preset", "wgan"],
    "wgan-gp": ["--preset", "wgan-gp"],
    "hinge": ["--preset", "lsgan", "--loss", "hinge"],
    "lsgan": ["--preset", "lsgan"],
}
CANDIDATES.update({f"{name}-{architecture}": [*options, "--architecture", architecture]
                   for name, options in PAPERS.items() for architecture in ("dcgan", "classic")})
# The defaults' extras (adaptive augmentation, feature matching, the weight average, the rates) on the paper's models.
CANDIDATES["fast-dcgan"] = [*BCE, "--architecture", "dcgan"]
# The defaults with least squares, measured against fast and fast-bce to choose the default's loss.
CANDIDATES["fast-lsgan"] = ["--loss", "lsgan"]
# The defaults trained on the labels, each way of giving the discriminator the class (docs/conditional.md).
CANDIDATES.update({f"conditional-{conditioning}": [*BCE, "--conditional", "--conditioning", conditioning]
                   for conditioning in ("projection", "concat")})
COLUMNS = ("| setting | minutes | step | Fréchet distance (floor) | × floor | classes | precision | recall "
           "| class accuracy | intra-class distance (floor) |")


def dcgan(*args):
    command = [str(Path(sys.executable).parent / "dcgan"), *map(str, args)]
    finished = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    if finished.returncode:
        sys.exit(f"failed ({finished.returncode}): {' '.join(command)}\n{finished.stdout[-2000:]}")
    return finished.stdout


def table_row(name, report):
    generated, real = report["generated"], report["real"]
    floor = real["frechet_distance"]
    row = (f"| {name} | {report['minutes']:.1f} | {report['step']} | {generated['frechet_distance']:.1f} ({floor:.2f}) "
           f"| {generated['frechet_distance'] / floor:.1f} | {generated['classes_covered']} "
           f"| {generated['precision']:.3f} | {generated['recall']:.3f} |")
    if "class_accuracy" not in generated:  # an unconditional run
        return row + " | |"
    return (row + f" {generated['class_accuracy']:.1%} | {generated['intra_class_frechet_distance']:.1f} "
            f"({real['intra_class_frechet_distance']:.1f}) |")


def compare(name, options, dataset, minutes, folder, count, extend):
    folder = Path(folder) / name
    weights = folder / "weights"
    scores = folder / "scores.json"
    if extend and scores.exists():
        reports = json.loads(scores.read_text())
        for report in reports:
            print(table_row(name, report), flush=True)
        minutes = [point for point in minutes if point > reports[-1]["minutes"]]
    else:
        shutil.rmtree(folder, ignore_errors=True)
        reports = []
    for point in minutes:
        dcgan("train", "--dataset", dataset, "--minutes", point, "--epochs", 100_000, "--weights-dir", weights,
              "--samples-dir", folder / "samples", "--sample-every", 100, "--save-every", 100_000,
              *(["--resume"] if reports else options))
        report = json.loads(
            dcgan("evaluate", "--weights-dir", weights, "--dataset", dataset, "--count", count, "--json")
        )
        elapsed = read_metrics(weights / METRICS_FILE)["elapsed_seconds"][-1]
        report.update(setting=name, options=options, minutes=float(elapsed) / 60)
        reports.append(report)
        print(table_row(name, report), flush=True)
        scores.write_text(json.dumps(reports, indent=2))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", default=list(CANDIDATES), metavar="NAME",
                        help=f"settings to compare: {', '.join(CANDIDATES)}  (default: all)")
    parser.add_argument("--dataset", default="mnist-sample")
    parser.add_argument(
        "--minutes", type=minute_points, default=[5, 15, 30], help="comma-separated minutes of training to score at"
    )
    parser.add_argument("--count", type=int, default=10_000, help="generated images per score")
    parser.add_argument("--out", default="compare", help="folder for the runs")
    parser.add_argument(
        "--extend", action="store_true", help="continue settings already scored in OUT from their last point"
    )
    args = parser.parse_args()
    unknown = set(args.names) - set(CANDIDATES)
    if unknown:
        parser.error(f"unknown setting {', '.join(sorted(unknown))}; choose from {', '.join(CANDIDATES)}")
    print(
        f"{args.dataset}, scored at {', '.join(f'{m:g}' for m in args.minutes)} minutes of "
        f"training\n\n{COLUMNS}\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    )
    for name in args.names:
        compare(name, CANDIDATES[name], args.dataset, args.minutes, args.out, args.count, args.extend)


if __name__ == "__main__":
    main()
