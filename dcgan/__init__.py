"""dcgan: a command-line GAN trainer on Keras, and a library: the classic Keras DCGAN and its family.

    from dcgan import load_generator
    generator = load_generator("weights")
    images = generator(noise)  # noise: (N, 100) uniform in [-1, 1] -> (N, 28, 28, 1) in [-1, 1]
"""
import importlib
import os

# Keras reads its backend once, at its first import; dcgan is built on TensorFlow.
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

# Where each public name lives. They are imported on first use, so that the parts that only read
# a run's files (dcgan.plots, dcgan.weights.read_run_info) do not wait seconds for TensorFlow.
_EXPORTS = {
    "TrainConfig": "dcgan.config",
    "Callback": "dcgan.callbacks",
    "RunFolder": "dcgan.weights",
    "Trainer": "dcgan.trainer",
    "train": "dcgan.training",
    "UserError": "dcgan.errors",
    "generate": "dcgan.generation",
    "interpolate": "dcgan.generation",
    "evaluate": "dcgan.evaluation",
    "export_generator": "dcgan.export",
    "save_grid": "dcgan.images",
    "load_classifier": "dcgan.weights",
    "load_discriminator": "dcgan.weights",
    "load_generator": "dcgan.weights",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'dcgan' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
