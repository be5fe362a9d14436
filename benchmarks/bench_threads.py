"""What running TensorFlow's ops one at a time, as `dcgan train` does for reproducibility, costs a step.

    python benchmarks/bench_threads.py [--rounds 5] [--steps 80] [--preset fast]

Times the preset's training step with ops one at a time (inter-op threads 1) and side by side
(TensorFlow's default). A process can set that only before TensorFlow starts, so each timing is a
child process of its own; the two alternate round by round so that a noisy machine slows them alike.
Prints each child's median seconds a step (the first 10 steps, which compile, left out), then the
median of each setting's medians and their ratio.
"""
import argparse
import statistics
import subprocess
import sys

CHILD = """
import os, sys, time
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import numpy as np, tensorflow as tf
one_at_a_time, steps, preset = sys.argv[1] == "one", int(sys.argv[2]), sys.argv[3]
if one_at_a_time:
    tf.config.threading.set_inter_op_parallelism_threads(1)
from dcgan import TrainConfig, Trainer
from dcgan.datasets import load_dataset
from dcgan.training import Batches
config = TrainConfig.from_preset(preset)
images = load_dataset("mnist-sample")
trainer, batches = Trainer(config, images.shape[1:]), Batches(images, 0, config.batch_size)
times = []
for step in range(steps):
    start = time.perf_counter()
    float(trainer.train_step(batches(step), tf.constant(step, tf.int64))["d_loss"])
    times.append(time.perf_counter() - start)
print(np.median(times[10:]))
"""
SETTINGS = {"one": "one at a time", "side": "side by side"}


def seconds_a_step(setting, steps, preset):
    finished = subprocess.run(
        [sys.executable, "-c", CHILD, setting, str(steps), preset], capture_output=True, text=True, check=True
    )
    return float(finished.stdout.split()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=80)
    parser.add_argument("--preset", default="fast")
    args = parser.parse_args()
    medians = {setting: [] for setting in SETTINGS}
    for round_number in range(1, args.rounds + 1):
        for setting in SETTINGS:
            medians[setting].append(seconds_a_step(setting, args.steps, args.preset))
            print(f"round {round_number}: {SETTINGS[setting]}: {medians[setting][-1]:.3f} s a step", flush=True)
    one, side = (statistics.median(medians[setting]) for setting in SETTINGS)
    print(f"\nmedian of {args.rounds} processes each, {args.preset} preset: one at a time {one:.3f} s a step, "
          f"side by side {side:.3f} s; one at a time takes {one / side:.2f}x as long")


if __name__ == "__main__":
    main()
