"""Where a step's fixed cost goes: one traced call a step, as `dcgan train` calls it, against K steps in one call.

    python benchmarks/bench_step_calls.py [--rounds 3] [--steps 96]

For the smallest step (`--architecture mlp --batch-size 2`), where the fixed cost is most of a step, and the
defaults at batch 64, with and without XLA: milliseconds a step of the Trainer's step called once a step with its
values read back to the host (what the loop does), and of K = 8 and 32 steps traced into one call with their values
read back once a call (what a `steps_per_execution` seam would do). Rounds interleave the three; the median of the
rounds is reported. The loop's own cost around the step (metrics, progress, callbacks) is bench_loop.py's.
"""
import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import dcgan  # noqa: E402
from dcgan.devices import use_threads  # noqa: E402

SETTINGS = {"mlp, batch 2": {"architecture": "mlp", "batch_size": 2}, "defaults, batch 64": {"batch_size": 64}}
CALL_SIZES = (1, 8, 32)


def per_step_ms(settings, xla, rounds, steps):
    trainer = dcgan.Trainer(dcgan.TrainConfig.from_preset(xla=xla, **settings))
    batch = np.random.default_rng(0).uniform(-1, 1, (settings["batch_size"], 28, 28, 1)).astype(np.float32)

    def several(batches, first):  # K steps in one trace, as the loop's step function would run them
        values = [trainer._train_step(batches[index], first + index) for index in range(batches.shape[0])]
        return {name: tf.stack([step[name] for step in values]) for name in values[0]}

    calls = {size: tf.function(several) for size in CALL_SIZES if size > 1}

    def run(size, step):
        if size == 1:
            values = trainer.train_step(batch, tf.constant(step, tf.int64))
            return {name: float(value) for name, value in values.items()}
        values = calls[size](np.stack([batch] * size), tf.constant(step, tf.int64))
        return {name: value.numpy() for name, value in values.items()}

    for size in CALL_SIZES:  # trace each first
        run(size, 0)
    times = {size: [] for size in CALL_SIZES}
    for _ in range(rounds):
        for size in CALL_SIZES:
            start = time.perf_counter()
            for step in range(0, steps, size):
                run(size, step)
            times[size].append((time.perf_counter() - start) / steps * 1000)
    return {size: statistics.median(values) for size, values in times.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=96, help="steps a round, a multiple of 32")
    args = parser.parse_args()
    use_threads()
    print(f"TensorFlow {tf.__version__}; median of {args.rounds} interleaved rounds of {args.steps} steps; ms a step")
    print(f"{'setting':<20} {'xla':<5} " + " ".join(f"{f'K={size}':>8}" for size in CALL_SIZES))
    for name, settings in SETTINGS.items():
        for xla in (False, True):
            result = per_step_ms(settings, xla, args.rounds, args.steps)
            print(f"{name:<20} {str(xla):<5} " + " ".join(f"{result[size]:8.2f}" for size in CALL_SIZES), flush=True)


if __name__ == "__main__":
    main()
