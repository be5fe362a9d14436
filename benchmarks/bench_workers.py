"""What training across worker processes costs a step: two localhost workers against one process.

    python benchmarks/bench_workers.py [--steps 40] [--batch-sizes 64,128] [--rounds 2] [--preset fast]

Runs the real `dcgan train` command for `--steps` steps, once in one process and once as two
workers on this machine (each with half the cores, so that together they use what the single
process uses), alternating round by round so that a noisy machine slows them alike. A step's time
is read from the chief's metrics.csv: the median gap between logged steps after the first 10,
which compile. Also prints the bytes a step all-reduces (every trainable weight's gradient, once
per update of its model, in float32) and, from them, what a ring all-reduce of that size takes on
a 10 Gbit/s link for 2, 4 and 8 machines.
"""
import argparse
import csv
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from dcgan.cluster import local_workers

LINK_BYTES_PER_SECOND = 10e9 / 8
# A ring all-reduce's latency per hop on a data-centre network, assumed: 2 (N - 1) hops a reduction.
HOP_SECONDS = 50e-6


def dcgan_command():
    return str(Path(sys.executable).parent / "dcgan")


def seconds_a_step(weights_dir):
    with open(Path(weights_dir) / "metrics.csv", newline="") as file:
        elapsed = [float(row["elapsed_seconds"]) for row in csv.DictReader(file)]
    return statistics.median(b - a for a, b in zip(elapsed[10:], elapsed[11:]))


def train(folder, workers, batch_size, steps, preset):
    """One timed run of `workers` processes (1: a plain run); returns the chief's seconds a step."""
    common = [
        "train",
        "--dataset",
        "mnist-sample",
        "--preset",
        preset,
        "--batch-size",
        str(batch_size),
        "--steps",
        str(steps),
        "--sample-every",
        str(steps),
        "--save-every",
        str(steps),
        "--threads",
        str(max(1, os.cpu_count() // workers)),
    ]
    if workers == 1:
        subprocess.run(
            [dcgan_command(), *common, "--weights-dir", f"{folder}/one", "--samples-dir", f"{folder}/one-samples"],
            check=True,
            capture_output=True,
        )
        return seconds_a_step(f"{folder}/one")
    addresses = local_workers(workers)
    processes = [
        subprocess.Popen(
            [
                dcgan_command(),
                *common,
                "--workers",
                addresses,
                "--worker-index",
                str(index),
                "--weights-dir",
                f"{folder}/many",
                "--samples-dir",
                f"{folder}/many-samples",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for index in range(workers)
    ]
    for process in processes:
        _, err = process.communicate()
        if process.returncode:
            raise SystemExit(err)
    return seconds_a_step(f"{folder}/many")


def reduced_bytes(preset):
    """Bytes one step all-reduces: each model's trainable weights, once per update of that model, as float32."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from dcgan import TrainConfig, Trainer

    config = TrainConfig.from_preset(preset)
    trainer = Trainer(config)
    count = lambda variables: sum(int(v.numpy().size) for v in variables)
    return 4 * (
        config.d_steps * count(trainer.discriminator_variables) + config.g_steps * count(trainer.generator_variables)
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--batch-sizes", default="64,128")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--preset", default="fast")
    args = parser.parse_args()
    for batch_size in map(int, args.batch_sizes.split(",")):
        times = {1: [], 2: []}
        for round_number in range(args.rounds):
            for workers in times:
                with tempfile.TemporaryDirectory() as folder:
                    times[workers].append(train(folder, workers, batch_size, args.steps, args.preset))
                print(
                    f"batch {batch_size}, round {round_number + 1}: {workers} worker(s) {times[workers][-1]:.3f} s a "
                    "step",
                    flush=True,
                )
        one, two = (statistics.median(times[workers]) for workers in times)
        print(
            f"batch {batch_size}: one process {one:.3f} s a step, two localhost workers {two:.3f} s ({two / one:.2f}x, "
            f"{(two - one) * 1000:.0f} ms more)\n",
            flush=True,
        )
    size = reduced_bytes(args.preset)
    print(f"{args.preset} preset: a step all-reduces {size / 1e6:.1f} MB of gradients")
    for machines in (2, 4, 8):
        # A ring all-reduce sends and receives 2 (N - 1) / N of the data on each machine's link.
        seconds = 2 * (machines - 1) / machines * size / LINK_BYTES_PER_SECOND + 2 * (machines - 1) * HOP_SECONDS
        print(f"{machines} machines, 10 Gbit/s: {seconds * 1000:.1f} ms of all-reduce a step")


if __name__ == "__main__":
    main()
