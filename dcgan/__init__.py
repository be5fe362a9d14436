"""dcgan: a command-line GAN trainer on Keras, and a library: the classic Keras DCGAN and its family.

    from dcgan import load_generator
    generator = load_generator("weights")
    images = generator(noise)  # noise: (N, 100) uniform in [-1, 1] -> (N, 28, 28, 1) in [-1, 1]

What `dcgan train`, `generate`, `evaluate` and `export` do, from Python:
- TrainConfig: one run's settings (TrainConfig.from_preset("fast", dataset=..., ...)); train(config,
  resume=False, callbacks=[...]) trains it, Keras callbacks included (Callback adds dcgan's own hooks).
- RunFolder: a saved run (its run.json and models); load_generator, load_discriminator, load_classifier.
- generate, interpolate: images from a run's generator; save_grid writes them as one PNG.
- evaluate: scores a run against real labelled images; export_generator: SavedModel, TFLite or ONNX.
- Trainer: a run's models, optimizers and training step, for a loop of your own.
- UserError: every mistake the user can fix; its message says how.
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


def __dir__():
    return sorted([*globals(), *_EXPORTS])  # help(dcgan) and dir(dcgan) list the names imported on first use too
