"""The training loop's cost a step: this checkout's `dcgan train` against another revision's, interleaved.

    python benchmarks/bench_loop.py --against REV [--rounds 5] [--steps 200]

Each round runs `dcgan train` once from each checkout, one after the other, in a fresh process (the other
revision from a `git worktree` of REV), and reads the seconds of each step from its metrics.csv. A step's
time is the whole loop's: the step, the host round trip of its values, and everything written around it
(metrics, progress line, health checks, grids and checkpoints at their cadences). Two settings: the
smallest step (`--architecture mlp --batch-size 2`), where the loop's own cost shows most, and the defaults
at batch 64. Reports each one's median over the rounds, their ratio, and the range of the rounds' ratios.
"""
import argparse
import csv
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
SETTINGS = {
    "mlp, batch 2": ["--architecture", "mlp", "--batch-size", "2"],
    "defaults, batch 64": [],
}


def step_seconds(checkout, options, steps, folder):
    """The mean seconds of a step (after the first 10, which build and trace it) of one `dcgan train` run: the time
    from step 10 to the last, over the steps between (metrics.csv keeps milliseconds, coarse for one small step)."""
    train = ["train", "--dataset", "mnist-sample", "--steps", str(steps), "--overwrite",
             "--weights-dir", f"{folder}/weights", "--samples-dir", f"{folder}/samples", *options]
    command = [sys.executable, "-c", "import cli; cli.main()", *train]
    environment = {**os.environ, "PYTHONPATH": str(checkout), "TF_CPP_MIN_LOG_LEVEL": "3"}
    subprocess.run(command, cwd=folder, env=environment, check=True, capture_output=True, text=True)
    with open(f"{folder}/weights/metrics.csv", newline="") as file:
        elapsed = [float(row["elapsed_seconds"]) for row in csv.DictReader(file)]
    return (elapsed[-1] - elapsed[9]) / (len(elapsed) - 10)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--against", required=True, help="the git revision to compare this checkout with")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        other = Path(scratch) / "other"
        subprocess.run(["git", "worktree", "add", "--detach", str(other), args.against], cwd=HERE, check=True,
                       capture_output=True)
        try:
            checkouts = {"this": HERE, args.against: other}
            print(f"{args.rounds} interleaved rounds of {args.steps} steps; the median round's mean step after the "
                  "first 10\n")
            print(f"{'setting':<20} {'this':>9} {args.against[:12]:>12} {'ratio':>7} {'range':>13}")
            for name, options in SETTINGS.items():
                times = {label: [] for label in checkouts}
                for _ in range(args.rounds):
                    for label, checkout in checkouts.items():
                        with tempfile.TemporaryDirectory(dir=scratch) as folder:
                            times[label].append(step_seconds(checkout, options, args.steps, folder))
                ratios = [a / b for a, b in zip(times["this"], times[args.against])]
                this, that = statistics.median(times["this"]), statistics.median(times[args.against])
                print(f"{name:<20} {this * 1000:>7.2f}ms {that * 1000:>10.2f}ms {this / that:>7.3f} "
                      f"{min(ratios):>6.3f}-{max(ratios):.3f}")
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(other)], cwd=HERE, check=True)


if __name__ == "__main__":
    main()
