"""Named bundles of training settings, kept apart from TensorFlow so that `dcgan --help` can list them.

Both presets train the classic models' layers. "fast" swaps their hidden tanh for LeakyReLU,
trains them with Adam on batches of 64 (the generator faster than the discriminator, and at half
its rate from step 4,000), augments what the discriminator sees as often as it needs to stop it
learning the data by heart, shows the discriminator generated images normalized as the
generator's own step makes them, pulls the mean of the discriminator's features on generated
images towards that on real ones, and averages the generator's weights. It was chosen by
measuring candidates with `dcgan evaluate` (the README's comparison). "classic" is the classic
keras-dcgan algorithm, step for step.
"""
from dcgan.errors import UserError

PRESETS = {
    "fast": {"activation": "leaky_relu", "optimizer": "adam", "lr": 0.0002, "generator_lr": 0.0005,
             "halve_generator_lr_at": 4000, "ema": 0.999,
             "batch_size": 64, "augment": "translation,cutout", "augment_target": 0.7, "fake_batch_norm": "batch",
             "feature_matching": 1.0},
    "classic": {"activation": "tanh", "optimizer": "sgd", "lr": 0.0005, "generator_lr": None,
                "halve_generator_lr_at": None, "ema": 0.0,
                "batch_size": 128, "augment": "none", "augment_target": None, "fake_batch_norm": "moving",
                "feature_matching": 0.0},
}
DEFAULT_PRESET = "fast"
OPTIMIZERS = ("adam", "sgd")
ACTIVATIONS = ("leaky_relu", "tanh")
AUGMENTATIONS = ("translation", "cutout")
FAKE_BATCH_NORMS = ("batch", "moving")


def augmentations(setting):
    """("translation", "cutout") from the setting "translation,cutout"; () from "none"."""
    names = tuple(name.strip() for name in setting.split(",") if name.strip())
    if names == ("none",):
        return ()
    unknown = [name for name in names if name not in AUGMENTATIONS]
    if unknown or not names:
        raise UserError(f"unknown augmentation {', '.join(unknown) or repr(setting)}; give a comma-separated list of "
                        f"{' and '.join(AUGMENTATIONS)}, or none")
    return names


def saved_config(run_info):
    """The TrainConfig fields of a saved run.

    Runs saved before presets existed trained the classic way; runs saved before augmentation
    existed trained without it, those saved before the generator had its own learning rate
    trained it at `lr`, those saved before augmentation adapted augmented every image, and those
    saved before `fake_batch_norm` existed drew the discriminator's generated images as the classic does,
    those saved before `feature_matching` existed trained without it, and those saved before
    `halve_generator_lr_at` existed kept the generator's rate.
    """
    config = run_info["config"]
    if "preset" not in config:
        config = {"preset": "classic", **PRESETS["classic"], **config}
    return {"augment": "none", "generator_lr": None, "augment_target": None, "fake_batch_norm": "moving",
            "feature_matching": 0.0, "halve_generator_lr_at": None, **config}


def shown(value):
    """A setting's value as the command line spells it: None, an unset setting, is "none"."""
    return "none" if value is None else value


def preset_defaults(setting):
    """'0.0002 with fast, 0.0005 with classic': a setting's value in each preset, for help texts."""
    return ", ".join(f"{shown(values[setting])} with {name}" for name, values in PRESETS.items())
