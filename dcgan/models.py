"""The classic Keras DCGAN models, layer for layer, as Sequential models of built-in layers,
and the same family scaled to other image sizes and to colour.

Built-in layers only, so a saved `generator.keras` loads in any script with
`keras.saving.load_model` and no dcgan code installed.
"""
import keras
import numpy as np
import tensorflow as tf
from keras import layers

from dcgan.datasets import IMAGE_SHAPE
from dcgan.errors import UserError
from dcgan.presets import ACTIVATIONS

LATENT_DIM = 100
# The discriminator's final Dense and sigmoid: what turns its last hidden layer, whose features feature
# matching compares, into a score.
DISCRIMINATOR_HEAD_LAYERS = 2


def hidden_activation(name):
    """The layer after each hidden layer: the classic's tanh, or LeakyReLU with slope 0.2 as in the DCGAN paper."""
    if name == "tanh":
        return layers.Activation("tanh")
    if name == "leaky_relu":
        return layers.LeakyReLU(negative_slope=0.2)
    raise UserError(f"unknown activation {name!r}; choose one of {', '.join(ACTIVATIONS)}")


def supported_sizes():
    """Image sizes the scaled models support: base x 2^doublings, base 4..8, at least 2 doublings, up to 256."""
    return sorted({base * 2**doublings for base in range(4, 9) for doublings in range(2, 7) if base * 2**doublings <= 256})


def doublings(size):
    """How many times the generator doubles its starting map to reach `size` (2 for the classic 28 = 7 x 4).

    The fewest that bring the starting map to 8x8 or less: the classic's dense layer feeds
    128 x 7 x 7 units, and this keeps it that small at any size.
    """
    for count in range(2, 7):
        if size % 2**count == 0 and 4 <= size // 2**count <= 8:
            return count
    sizes = ", ".join(map(str, supported_sizes()))
    raise UserError(f"image size {size} is not supported; use one of {sizes} (a base of 4 to 8 pixels doubled twice or more)")


def build_generator(latent_dim=LATENT_DIM, image_shape=IMAGE_SHAPE, synchronized=False, activation="tanh"):
    """Uniform noise in [-1, 1]^latent_dim -> images of `image_shape` in [-1, 1].

    At 28x28x1 it is the classic generator exactly; `activation` may replace its hidden tanh
    layers (the output stays tanh). Other sizes start from a smaller or larger
    map and add an upsampling block for each extra doubling, halving the filters towards the image.
    `synchronized` pools batch-norm statistics across devices when a batch is split across them.
    """
    size, _, channels = image_shape
    count = doublings(size)
    base = size // 2**count
    blocks = []
    for filters in [64 * 2**i for i in reversed(range(count - 1))]:
        blocks += [layers.UpSampling2D(2), layers.Conv2D(filters, 5, padding="same"), hidden_activation(activation)]
    return keras.Sequential(
        [
            keras.Input((latent_dim,)),
            layers.Dense(1024),
            hidden_activation(activation),
            layers.Dense(128 * base * base),
            layers.BatchNormalization(synchronized=synchronized),
            hidden_activation(activation),
            layers.Reshape((base, base, 128)),
            *blocks,
            layers.UpSampling2D(2),
            layers.Conv2D(channels, 5, padding="same"),
            layers.Activation("tanh"),
        ],
        name="generator",
    )


def build_discriminator(image_shape=IMAGE_SHAPE, activation="tanh"):
    """Images of `image_shape` -> probability that each image is real.

    At 28x28x1 it is the classic discriminator exactly; `activation` may replace its hidden tanh
    layers. Other sizes get one convolution and
    pooling block per doubling, doubling the filters from 64.
    """
    blocks = []
    for index in range(doublings(image_shape[0])):
        # The classic pads only its first convolution.
        blocks += [layers.Conv2D(64 * 2**index, 5, padding="same" if index == 0 else "valid"),
                   hidden_activation(activation), layers.MaxPooling2D(2)]
    return keras.Sequential(
        [
            keras.Input(tuple(image_shape)),
            *blocks,
            layers.Flatten(),
            layers.Dense(1024),
            hidden_activation(activation),
            layers.Dense(1),
            layers.Activation("sigmoid", dtype="float32"),  # float32 even under mixed precision, for a stable loss
        ],
        name="discriminator",
    )


def discriminator_features(discriminator, images):
    """The last hidden layer of a `build_discriminator` model, in training mode: all its layers but the head."""
    for layer in discriminator.layers[:-DISCRIMINATOR_HEAD_LAYERS]:
        images = layer(images, training=True)
    return images


def discriminator_head(discriminator, features):
    """The score from `discriminator_features`' output: the discriminator's final Dense and sigmoid."""
    for layer in discriminator.layers[-DISCRIMINATOR_HEAD_LAYERS:]:
        features = layer(features, training=True)
    return features


def build_d_on_g(generator, discriminator):
    """The generator followed by the discriminator, frozen: training it trains the generator only.

    Freezing sets `discriminator.trainable = False` for good, so the discriminator's
    own update must name its variables explicitly (see Trainer); they are captured
    by `discriminator_variables` before this is called.
    """
    discriminator.trainable = False
    return keras.Sequential([generator, discriminator], name="d_on_g")


# Nearest 2x upsampling then a 5x5 "same" convolution equals a 3x3 convolution of the small
# image into 4x the channels, one per position in each 2x2 block, then depth_to_space(2):
# output pixel (2i+a, 2j+b) reads input rows i + (a+u)//2 for kernel rows u in -2..2.
# It does 36% of the arithmetic. Training uses it; the saved models keep the plain layers.
_TAPS = np.array([[[1.0 if (a + u) // 2 == d else 0.0 for u in range(-2, 3)] for d in (-1, 0, 1)] for a in (0, 1)])


def upsampled_conv(images, kernel, bias):
    """UpSampling2D(2) then Conv2D(5x5, same) with `kernel` and `bias`, computed the cheap way."""
    inputs, outputs = kernel.shape[2], kernel.shape[3]
    taps = tf.constant(_TAPS, kernel.dtype)
    small = tf.einsum("apu,cqv,uvio->pqiaco", taps, taps, kernel)
    small = tf.cast(tf.reshape(small, (3, 3, inputs, 4 * outputs)), images.dtype)
    blocks = tf.nn.conv2d(images, small, strides=1, padding="SAME") + tf.cast(tf.tile(bias, [4]), images.dtype)
    return tf.nn.depth_to_space(blocks, 2)


def run_generator(generator, noise, training):
    """The generator's output, with each UpSampling2D + 5x5 Conv2D pair computed by `upsampled_conv`."""
    images, remaining = noise, list(generator.layers)
    while remaining:
        layer = remaining.pop(0)
        if remaining and _is_upsampled_conv(layer, remaining[0]):
            convolution = remaining.pop(0)
            images = upsampled_conv(images, convolution.kernel, convolution.bias)
        else:
            images = layer(images, training=training)
    return images


def _is_upsampled_conv(upsampling, convolution):
    return (
        isinstance(upsampling, layers.UpSampling2D) and upsampling.size == (2, 2) and upsampling.interpolation == "nearest"
        and isinstance(convolution, layers.Conv2D) and convolution.kernel_size == (5, 5) and convolution.padding == "same"
        and convolution.strides == (1, 1) and convolution.dilation_rate == (1, 1) and convolution.use_bias
        and convolution.activation is keras.activations.linear
    )

