"""Named bundles of training settings, kept apart from TensorFlow so that `dcgan --help` can list them.

"fast", the default, plays the hinge game (as SNGAN and BigGAN) on the classic models' layers
with LeakyReLU instead of tanh, with Adam on batches of 64 (the generator faster than the
discriminator, and at half its rate from step 4,000), augments what the discriminator sees as
often as it needs to stop it learning the data by heart, shows the discriminator generated images
normalized as the generator's own step makes them, pulls the mean of the discriminator's
features on generated images towards that on real ones, and averages the generator's weights.
It was chosen by measuring candidates with `dcgan evaluate` (docs/choosing-defaults.md; the loss
in docs/gan-family.md). A semi-supervised run plays bce instead unless told otherwise: its
real-or-generated probability is read from the class logits (dcgan.semi_supervised). "classic"
is the classic keras-dcgan algorithm, step for step. The others reproduce published recipes: the
DCGAN paper's models and settings (Radford et al. 2015), WGAN (Arjovsky et al. 2017), WGAN-GP
(Gulrajani et al. 2017) and LSGAN (Mao et al. 2017), each on the DCGAN paper's models as those
papers trained them.
"""
from dcgan.errors import UserError

# The settings every preset gives a value; the rest of a TrainConfig (data, cadences, folders) is the run's own.
# clip and gp_weight are None in every preset: the loss that uses one supplies its default (dcgan.losses).
_PLAIN = {"architecture": "classic", "loss": "bce", "clip": None, "gp_weight": None, "d_steps": 1, "g_steps": 1,
          "beta1": 0.5, "beta2": 0.999, "generator_lr": None, "halve_generator_lr_at": None, "ema": 0.0,
          "augment": "none", "augment_target": None, "fake_batch_norm": "batch", "feature_matching": 0.0}
PRESETS = {
    "fast": {
        **_PLAIN,
        "loss": "hinge",
        "activation": "leaky_relu",
        "optimizer": "adam",
        "lr": 0.0002,
        "generator_lr": 0.0005,
        "halve_generator_lr_at": 4000,
        "ema": 0.999,
        "batch_size": 64,
        "augment": "translation,cutout",
        "augment_target": 0.7,
        "feature_matching": 1.0,
    },
    "classic": {
        **_PLAIN,
        "activation": "tanh",
        "optimizer": "sgd",
        "lr": 0.0005,
        "batch_size": 128,
        "fake_batch_norm": "moving",
    },
    "dcgan-paper": {
        **_PLAIN,
        "architecture": "dcgan",
        "activation": "leaky_relu",
        "optimizer": "adam",
        "lr": 0.0002,
        "batch_size": 128,
    },
    "wgan": {
        **_PLAIN,
        "architecture": "dcgan",
        "loss": "wgan",
        "activation": "leaky_relu",
        "optimizer": "rmsprop",
        "lr": 0.00005,
        "batch_size": 64,
        "d_steps": 5,
    },
    "wgan-gp": {
        **_PLAIN,
        "architecture": "dcgan",
        "loss": "wgan-gp",
        "activation": "leaky_relu",
        "optimizer": "adam",
        "lr": 0.0001,
        "beta1": 0.0,
        "beta2": 0.9,
        "batch_size": 64,
        "d_steps": 5,
    },
    "lsgan": {
        **_PLAIN,
        "architecture": "dcgan",
        "loss": "lsgan",
        "activation": "leaky_relu",
        "optimizer": "adam",
        "lr": 0.0002,
        "batch_size": 64,
    },
}
DEFAULT_PRESET = "fast"
OPTIMIZERS = ("adam", "sgd", "rmsprop")
ACTIVATIONS = ("leaky_relu", "tanh")
AUGMENTATIONS = ("translation", "cutout")
FAKE_BATCH_NORMS = ("batch", "moving")
# Names only, so that the command line can offer them without TensorFlow; dcgan.losses and
# dcgan.models hold what each is, and a test keeps the two lists the same.
LOSS_NAMES = ("bce", "wgan", "wgan-gp", "hinge", "lsgan")
ARCHITECTURE_NAMES = ("classic", "dcgan", "mlp")
# dcgan export's formats (dcgan.export.FORMATS says what each is).
EXPORT_FORMATS = ("savedmodel", "tflite", "onnx")
# How a conditional run gives the discriminator the label (dcgan.conditioning); --conditional alone takes the first,
# the better of the two on mnist-sample and fashion-mnist (docs/conditional.md).
CONDITIONINGS = ("concat", "projection")
# How a semi-supervised run's discriminator tells generated images (dcgan.semi_supervised); --semi-supervised alone
# takes the first.
SEMI_SUPERVISIONS = ("derived", "extra")
# The one setting a loss owns, and its value when not given; no other loss takes it.
LOSS_SETTINGS = {"wgan": ("clip", 0.01), "wgan-gp": ("gp_weight", 10.0)}
# The only game a semi-supervised discriminator plays (dcgan.semi_supervised), whatever its preset's.
SEMI_SUPERVISED_LOSS = "bce"

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


def shown(value):
    """A setting's value as the command line spells it: None, an unset setting, is "none"."""
    return "none" if value is None else value


def preset_defaults(setting):
    """'0.0002 with fast, lsgan; 0.0005 with classic': a setting's value in each preset, for help texts."""
    presets_by_value = {}
    for name, values in PRESETS.items():
        presets_by_value.setdefault(shown(values[setting]), []).append(name)
    if len(presets_by_value) == 1:
        return str(next(iter(presets_by_value)))
    return "; ".join(f"{value} with {', '.join(names)}" for value, names in presets_by_value.items())
