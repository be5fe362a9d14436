"""Where a training step's time goes: forward + backward of each layer of both models.

    python benchmarks/profile_step.py [--batch-size 128] [--repeats 5]

Each layer runs alone as one compiled function on an input of its real shape, computing the
gradients its step needs (weights and input). The discriminator's layers see 2 x batch-size
images, as in the discriminator's update.
"""
import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from dcgan.models import build_discriminator, build_generator  # noqa: E402

from bench_train import cpu_peak_flops, forward_flops_per_image  # noqa: E402


def time_layer(layer, inputs, repeats):
    @tf.function
    def forward_backward(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=True)
            total = tf.reduce_sum(y)
        return tape.gradient(total, [x, *layer.trainable_variables])

    forward_backward(inputs)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        [g.numpy() for g in forward_backward(inputs) if g is not None]
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    peak, _ = cpu_peak_flops()
    print(f"{'model':<14} {'layer':<22} {'output':<16} {'ms':>7} {'GFLOP/s':>8} {'of peak':>7}")
    total = 0.0
    for model, batch_size in ((build_generator(), args.batch_size), (build_discriminator(), 2 * args.batch_size)):
        for layer in model.layers:
            inputs = tf.constant(
                np.random.default_rng(0).uniform(-1, 1, (batch_size, *layer.input.shape[1:])).astype(np.float32)
            )
            seconds = time_layer(layer, inputs, args.repeats)
            total += seconds
            flops = 3 * batch_size * forward_flops_per_image([layer])
            rate = f"{flops / seconds / 1e9:>8.1f} {flops / seconds / peak:>7.1%}" if flops else f"{'':>8} {'':>7}"
            print(
                f"{model.name:<14} {layer.name:<22} {str(tuple(layer.output.shape[1:])):<16} {seconds * 1000:>7.1f} "
                f"{rate}"
            )
    print(f"{'':<14} {'all layers':<22} {'':<16} {total * 1000:>7.1f}")


if __name__ == "__main__":
    main()
