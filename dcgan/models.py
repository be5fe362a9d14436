"""The classic Keras DCGAN models, layer for layer, as Sequential models of built-in layers.

Built-in layers only, so a saved `generator.keras` loads in any script with
`keras.saving.load_model` and no dcgan code installed.
"""
import keras
from keras import layers

from dcgan.datasets import IMAGE_SHAPE

LATENT_DIM = 100


def build_generator(latent_dim=LATENT_DIM, synchronized=False):
    """Uniform noise in [-1, 1]^latent_dim -> 28x28x1 images in [-1, 1].

    `synchronized` pools batch-norm statistics across devices when a batch is split across them.
    """
    return keras.Sequential(
        [
            keras.Input((latent_dim,)),
            layers.Dense(1024),
            layers.Activation("tanh"),
            layers.Dense(128 * 7 * 7),
            layers.BatchNormalization(synchronized=synchronized),
            layers.Activation("tanh"),
            layers.Reshape((7, 7, 128)),
            layers.UpSampling2D(2),
            layers.Conv2D(64, 5, padding="same"),
            layers.Activation("tanh"),
            layers.UpSampling2D(2),
            layers.Conv2D(IMAGE_SHAPE[-1], 5, padding="same"),
            layers.Activation("tanh"),
        ],
        name="generator",
    )


def build_discriminator():
    """28x28x1 images -> probability that each image is real."""
    return keras.Sequential(
        [
            keras.Input(IMAGE_SHAPE),
            layers.Conv2D(64, 5, padding="same"),
            layers.Activation("tanh"),
            layers.MaxPooling2D(2),
            layers.Conv2D(128, 5),
            layers.Activation("tanh"),
            layers.MaxPooling2D(2),
            layers.Flatten(),
            layers.Dense(1024),
            layers.Activation("tanh"),
            layers.Dense(1),
            layers.Activation("sigmoid", dtype="float32"),  # float32 even under mixed precision, for a stable loss
        ],
        name="discriminator",
    )


def build_d_on_g(generator, discriminator):
    """The generator followed by the discriminator, frozen: training it trains the generator only.

    Freezing sets `discriminator.trainable = False` for good, so the discriminator's
    own update must name its variables explicitly (see Trainer); they are captured
    by `discriminator_variables` before this is called.
    """
    discriminator.trainable = False
    return keras.Sequential([generator, discriminator], name="d_on_g")
