"""dcgan: the classic Keras DCGAN as a command-line trainer and a library.

    from dcgan import load_generator
    generator = load_generator("weights")
    images = generator(noise)  # noise: (N, 100) uniform in [-1, 1] -> (N, 28, 28, 1) in [-1, 1]
"""
import os

# Keras reads its backend once, at its first import; dcgan is built on TensorFlow.
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from dcgan.errors import UserError  # noqa: E402
from dcgan.generate import generate  # noqa: E402
from dcgan.images import save_grid  # noqa: E402
from dcgan.train import TrainConfig, Trainer, train  # noqa: E402
from dcgan.weights import load_discriminator, load_generator  # noqa: E402

__all__ = ["TrainConfig", "Trainer", "UserError", "generate", "load_discriminator", "load_generator", "save_grid", "train"]
