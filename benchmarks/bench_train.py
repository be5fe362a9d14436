"""Training speed: the classic Keras loop, dcgan's trainer, and the same step in PyTorch.

    python benchmarks/bench_train.py [--batch-sizes 32,128,256] [--rounds 3] [--steps 3]

All three train the same models with the same step (discriminator on real + generated images,
then the generator through the frozen discriminator; SGD with Nesterov momentum) on the same
MNIST digits, in one process, interleaved round by round so that a noisy machine slows them
alike. Ratios between them hold where absolute times do not. PyTorch is skipped when it is not
installed. Peak memory is measured in a child process per implementation, since one process
cannot tell its implementations' peaks apart. Also times `dcgan generate --nice` at batch 128.
"""
import argparse
import contextlib
import io
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

import dcgan  # noqa: E402
import keras  # noqa: E402
import tensorflow as tf  # noqa: E402
from dcgan.datasets import load_dataset  # noqa: E402
from dcgan.models import LATENT_DIM, build_discriminator, build_generator  # noqa: E402

LR = 0.0005


class ClassicLoop:
    """The classic keras-dcgan loop, on Keras 3: g.predict, d.train_on_batch, d_on_g.train_on_batch."""

    name = "classic"

    def __init__(self):
        self.generator, self.discriminator = build_generator(), build_discriminator()
        self.d_on_g = keras.Sequential([self.generator, self.discriminator])
        self.generator.compile(loss="binary_crossentropy", optimizer="SGD")
        self.discriminator.trainable = False
        self.d_on_g.compile(loss="binary_crossentropy", optimizer=keras.optimizers.SGD(LR, momentum=0.9, nesterov=True))
        self.discriminator.trainable = True
        self.discriminator.compile(
            loss="binary_crossentropy", optimizer=keras.optimizers.SGD(LR, momentum=0.9, nesterov=True)
        )

    def step(self, real):
        batch_size = len(real)
        noise = np.random.uniform(-1, 1, (batch_size, LATENT_DIM)).astype(np.float32)
        fake = self.generator.predict(noise, verbose=0)
        self.discriminator.train_on_batch(np.concatenate([real, fake]), np.array([1] * batch_size + [0] * batch_size))
        noise = np.random.uniform(-1, 1, (batch_size, LATENT_DIM)).astype(np.float32)
        self.discriminator.trainable = False
        self.d_on_g.train_on_batch(noise, np.ones(batch_size))
        self.discriminator.trainable = True


class DcganTrainer:
    """dcgan's own compiled step."""

    name = "dcgan"

    def __init__(self):
        self.trainer = dcgan.Trainer(dcgan.TrainConfig.from_preset("classic", lr=LR))
        self.count = 0

    def step(self, real):
        values = self.trainer.train_step(real, tf.constant(self.count, tf.int64))
        float(values["d_loss"])  # wait for the step to finish, as the trainer's loop does
        self.count += 1


class TorchLoop:
    """The same models and step in PyTorch, written the idiomatic way."""

    name = "pytorch"

    def __init__(self):
        import torch
        from torch import nn

        self.torch = torch
        self.generator = nn.Sequential(
            nn.Linear(LATENT_DIM, 1024),
            nn.Tanh(),
            nn.Linear(1024, 128 * 7 * 7),
            nn.BatchNorm1d(128 * 7 * 7),
            nn.Tanh(),
            nn.Unflatten(1, (128, 7, 7)),
            nn.Upsample(scale_factor=2),
            nn.Conv2d(128, 64, 5, padding=2),
            nn.Tanh(),
            nn.Upsample(scale_factor=2),
            nn.Conv2d(64, 1, 5, padding=2),
            nn.Tanh(),
        )
        self.discriminator = nn.Sequential(
            nn.Conv2d(1, 64, 5, padding=2),
            nn.Tanh(),
            nn.MaxPool2d(2),
            nn.Conv2d(64, 128, 5),
            nn.Tanh(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(3200, 1024),
            nn.Tanh(),
            nn.Linear(1024, 1),
            nn.Sigmoid(),
        )
        self.g_optimizer = torch.optim.SGD(self.generator.parameters(), LR, momentum=0.9, nesterov=True)
        self.d_optimizer = torch.optim.SGD(self.discriminator.parameters(), LR, momentum=0.9, nesterov=True)
        self.loss = nn.BCELoss()

    def step(self, real):
        torch = self.torch
        real = torch.from_numpy(real).permute(0, 3, 1, 2)
        batch_size = len(real)
        with torch.no_grad():
            self.generator.eval()
            fake = self.generator(torch.rand(batch_size, LATENT_DIM) * 2 - 1)
            self.generator.train()
        labels = torch.cat([torch.ones(batch_size, 1), torch.zeros(batch_size, 1)])
        self.d_optimizer.zero_grad()
        self.loss(self.discriminator(torch.cat([real, fake])), labels).backward()
        self.d_optimizer.step()
        self.g_optimizer.zero_grad()
        for parameter in self.discriminator.parameters():
            parameter.requires_grad_(False)
        self.loss(
            self.discriminator(self.generator(torch.rand(batch_size, LATENT_DIM) * 2 - 1)), torch.ones(batch_size, 1)
        ).backward()
        for parameter in self.discriminator.parameters():
            parameter.requires_grad_(True)
        self.g_optimizer.step()


def torch_available():
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def forward_flops_per_image(layers):
    """2 x multiply-adds of the Dense and Conv2D layers among `layers` for one image."""
    flops = 0
    for layer in layers:
        if isinstance(layer, keras.layers.Dense):
            flops += 2 * layer.kernel.shape[0] * layer.kernel.shape[1]
        elif isinstance(layer, keras.layers.Conv2D):
            height, width, channels = layer.output.shape[1:]
            flops += 2 * height * width * channels * int(np.prod(layer.kernel.shape[:3]))
    return flops


def flops_per_step(batch_size):
    """The step's arithmetic: a backward pass costs twice its forward pass, or once where only the
    input gradients are needed (the frozen discriminator in the generator's update)."""
    generator, discriminator = (
        forward_flops_per_image(build_generator().layers),
        forward_flops_per_image(build_discriminator().layers),
    )
    discriminator_step = batch_size * generator + 2 * batch_size * 3 * discriminator
    generator_step = batch_size * (3 * generator + 2 * discriminator)
    return discriminator_step + generator_step


def cpu_peak_flops():
    """FP32 peak of this CPU: cores x clock x 2 FMA units x vector lanes x 2, and how it was found."""
    info = open("/proc/cpuinfo").read()
    megahertz = float(re.search(r"cpu MHz\s*:\s*([\d.]+)", info)[1])
    flags = re.search(r"flags\s*:(.*)", info)[1].split()
    lanes = 16 if "avx512f" in flags else 8 if "avx2" in flags else 4
    cores = len(os.sched_getaffinity(0))
    peak = cores * megahertz * 1e6 * 2 * lanes * 2
    return peak, f"{cores} cores x {megahertz / 1000:.2f} GHz x 2 FMA units x {lanes} FP32 lanes x 2"


def peak_memory_of(name, batch_size):
    """Peak resident memory (MiB) of a child process that trains `name` for a few steps."""
    child = subprocess.run([sys.executable, __file__, "--memory-of", name, "--batch-sizes", str(batch_size)],
                           capture_output=True, text=True, check=True)
    return float(child.stdout.split()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-sizes", default="32,128,256")
    parser.add_argument(
        "--rounds", type=int, default=3, help="interleaved rounds; each times --steps steps of each implementation"
    )
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--memory-of", help=argparse.SUPPRESS)
    args = parser.parse_args()
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    images = load_dataset("mnist-sample")
    kinds = [ClassicLoop, DcganTrainer] + ([TorchLoop] if torch_available() else [])

    if args.memory_of:
        implementation = next(kind for kind in kinds if kind.name == args.memory_of)()
        for _ in range(3):
            implementation.step(images[: batch_sizes[0]])
        # VmHWM, not ru_maxrss: a child started by fork + exec inherits its parent's ru_maxrss.
        print(int(re.search(r"VmHWM:\s*(\d+) kB", open("/proc/self/status").read())[1]) / 1024)
        return

    peak, peak_how = cpu_peak_flops()
    print(
        f"dcgan training benchmark; TensorFlow {tf.__version__}, Keras {keras.__version__}"
        + (f", PyTorch {__import__('torch').__version__}" if torch_available() else ", PyTorch not installed: skipped")
    )
    print(f"CPU FP32 peak {peak / 1e9:.0f} GFLOP/s ({peak_how}); threads: TensorFlow and PyTorch defaults")
    print(f"{args.rounds} interleaved rounds of {args.steps} steps each, after one warm-up step; median ms per step\n")
    print(
        f"{'batch':>5} {'implementation':<14} {'ms/step':>8} {'img/s':>7} {'vs classic':>10} {'vs pytorch':>10} "
        f"{'GFLOP/s':>8} {'of peak':>7} {'peak MiB':>8}"
    )
    for batch_size in batch_sizes:
        real = images[:batch_size]
        implementations = [kind() for kind in kinds]
        for implementation in implementations:
            implementation.step(real)
        times = {implementation.name: [] for implementation in implementations}
        for _ in range(args.rounds):
            for implementation in implementations:
                start = time.perf_counter()
                for _ in range(args.steps):
                    implementation.step(real)
                times[implementation.name].append((time.perf_counter() - start) / args.steps)
        seconds = {name: statistics.median(values) for name, values in times.items()}
        flops = flops_per_step(batch_size)
        for name, step_seconds in seconds.items():
            versus_torch = f"{seconds['pytorch'] / step_seconds:.2f}x" if "pytorch" in seconds else "-"
            memory = f"{peak_memory_of(name, batch_size):.0f}" if batch_size == 128 else ""
            print(f"{batch_size:>5} {name:<14} {step_seconds * 1000:>8.0f} {batch_size / step_seconds:>7.0f} "
                  f"{seconds['classic'] / step_seconds:>9.2f}x {versus_torch:>10} {flops / step_seconds / 1e9:>8.1f} "
                  f"{flops / step_seconds / peak:>7.1%} {memory:>8}")
        del implementations

    with tempfile.TemporaryDirectory() as folder:
        config = dcgan.TrainConfig(
            dataset="mnist-sample", batch_size=8, steps=1, weights_dir=f"{folder}/w", samples_dir=f"{folder}/s"
        )
        with contextlib.redirect_stdout(io.StringIO()):
            dcgan.train(config)
        dcgan.generate(config.weights_dir, count=128, seed=0, nice_factor=20)
        start = time.perf_counter()
        dcgan.generate(config.weights_dir, count=128, seed=1, nice_factor=20)
        print(f"\ndcgan generate --nice at batch 128 (2,560 drawn and scored): {time.perf_counter() - start:.2f} s")


if __name__ == "__main__":
    main()
