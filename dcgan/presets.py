"""Named bundles of training settings, kept apart from TensorFlow so that `dcgan --help` can list them.

Both presets train the classic models' layers. "fast" swaps their hidden tanh for LeakyReLU,
trains them with Adam on batches of 64, and averages the generator's weights. It was chosen by measuring candidates with `dcgan evaluate` (the
README's comparison). "classic" is the classic keras-dcgan algorithm, step for step.
"""
PRESETS = {
    "fast": {"activation": "leaky_relu", "optimizer": "adam", "lr": 0.0002, "ema": 0.999, "batch_size": 64},
    "classic": {"activation": "tanh", "optimizer": "sgd", "lr": 0.0005, "ema": 0.0, "batch_size": 128},
}
DEFAULT_PRESET = "fast"
OPTIMIZERS = ("adam", "sgd")
ACTIVATIONS = ("leaky_relu", "tanh")


def saved_config(run_info):
    """The TrainConfig fields of a saved run. Runs saved before presets existed trained the classic way."""
    config = run_info["config"]
    return config if "preset" in config else {"preset": "classic", **PRESETS["classic"], **config}


def preset_defaults(setting):
    """'0.0002 with fast, 0.0005 with classic': a setting's value in each preset, for help texts."""
    return ", ".join(f"{values[setting]} with {name}" for name, values in PRESETS.items())
