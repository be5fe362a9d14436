"""The models: the classic Keras DCGAN's (upsampling and convolution, max-pooling, dense layers),
the DCGAN paper's (strided and transposed convolutions, batch norm), and the original GAN paper's
fully connected pair, as Sequential models of built-in layers, at the image sizes each supports.

Built-in layers only, so a saved `generator.keras` loads in any script with
`keras.saving.load_model` and no dcgan code installed. To add an architecture, add its two
builders and its size rule to ARCHITECTURES, and its name to presets.ARCHITECTURE_NAMES.
"""
import keras
import numpy as np
import tensorflow as tf
from keras import layers

from dcgan.datasets import IMAGE_SHAPE
from dcgan.errors import UserError
from dcgan.losses import LOSSES
from dcgan.presets import ACTIVATIONS
from dcgan.sizes import check_image_size, doublings

LATENT_DIM = 100
# Every discriminator ends in a Dense(1) and its activation: what turns its last hidden layer, whose
# features feature matching compares, into a score.
DISCRIMINATOR_HEAD_LAYERS = 2


def hidden_activation(name):
    """The layer after each hidden layer: the classic's tanh, or LeakyReLU with slope 0.2 as in the DCGAN paper."""
    if name == "tanh":
        return layers.Activation("tanh")
    if name == "leaky_relu":
        return layers.LeakyReLU(negative_slope=0.2)
    raise UserError(f"unknown activation {name!r}; choose one of {', '.join(ACTIVATIONS)}")


def build_generator(latent_dim=LATENT_DIM, image_shape=IMAGE_SHAPE, activation="tanh", architecture="classic"):
    """Uniform noise in [-1, 1]^latent_dim -> images of `image_shape` in [-1, 1], by `architecture`.

    `activation` is the classic and mlp models' hidden activation; the output is always tanh.
    """
    check_image_size(architecture, image_shape[0])
    return ARCHITECTURES[architecture][0](latent_dim, tuple(image_shape), activation)


def build_discriminator(image_shape=IMAGE_SHAPE, activation="tanh", architecture="classic", loss="bce"):
    """Images of `image_shape` -> each image's score, by `architecture`: a probability of being real
    for losses that read probabilities, an unbounded critic score for the others (`loss`)."""
    check_image_size(architecture, image_shape[0])
    return ARCHITECTURES[architecture][1](tuple(image_shape), activation, LOSSES[loss])


def _score(loss):
    # float32 even under mixed precision, for a stable loss.
    return [layers.Dense(1), layers.Activation(loss.head, dtype="float32")]


def classic_generator(latent_dim, image_shape, activation):
    """At 28x28x1 the classic generator exactly, `activation` replacing its hidden tanh layers. Other
    sizes start from a smaller or larger map and add an upsampling block for each extra doubling,
    halving the filters towards the image."""
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
            layers.BatchNormalization(),
            hidden_activation(activation),
            layers.Reshape((base, base, 128)),
            *blocks,
            layers.UpSampling2D(2),
            layers.Conv2D(channels, 5, padding="same"),
            layers.Activation("tanh"),
        ],
        name="generator",
    )


def classic_discriminator(image_shape, activation, loss):
    """At 28x28x1 the classic discriminator exactly (with a linear score for critic losses),
    `activation` replacing its hidden tanh layers. Other sizes get one convolution and pooling
    block per doubling, doubling the filters from 64."""
    blocks = []
    for index in range(doublings(image_shape[0])):
        # The classic pads only its first convolution.
        blocks += [layers.Conv2D(64 * 2**index, 5, padding="same" if index == 0 else "valid"),
                   hidden_activation(activation), layers.MaxPooling2D(2)]
    return keras.Sequential(
        [
            keras.Input(image_shape),
            *blocks,
            layers.Flatten(),
            layers.Dense(1024),
            hidden_activation(activation),
            *_score(loss),
        ],
        name="discriminator",
    )


def dcgan_generator(latent_dim, image_shape, activation):
    """The DCGAN paper's generator (and PyTorch's DCGAN example's): noise projected to a small map, then
    4x4 transposed convolutions of stride 2, each doubling the side and halving the filters down to
    64, with batch norm and ReLU; tanh out. At 64x64: 4x4x512 -> 8x8x256 -> ... -> 64x64. Its
    activations are the paper's; `activation` is not used."""
    size, _, channels = image_shape
    count = doublings(size)
    base = size // 2**count
    filters = [64 * 2**i for i in reversed(range(count))]
    blocks = []
    for width in filters[1:]:
        blocks += [layers.Conv2DTranspose(width, 4, strides=2, padding="same", use_bias=False),
                   layers.BatchNormalization(), layers.ReLU()]
    return keras.Sequential(
        [
            keras.Input((latent_dim,)),
            layers.Dense(base * base * filters[0], use_bias=False),
            layers.BatchNormalization(),
            layers.ReLU(),
            layers.Reshape((base, base, filters[0])),
            *blocks,
            layers.Conv2DTranspose(channels, 4, strides=2, padding="same"),
            layers.Activation("tanh"),
        ],
        name="generator",
    )


def dcgan_discriminator(image_shape, activation, loss):
    """The DCGAN paper's discriminator: 4x4 convolutions of stride 2, each halving the side and doubling
    the filters from 64, with LeakyReLU (0.2) and batch norm after all but the first; then one score.

    With a gradient penalty, layer norm replaces batch norm: the penalty is taken per image, which
    batch statistics would mix (Gulrajani et al. 2017).
    """
    blocks = []
    for index in range(doublings(image_shape[0])):
        norm = []
        if index:
            norm = [layers.LayerNormalization(axis=[1, 2, 3]) if loss.penalized
                    else layers.BatchNormalization()]
        blocks += [layers.Conv2D(64 * 2**index, 4, strides=2, padding="same", use_bias=not norm), *norm,
                   layers.LeakyReLU(negative_slope=0.2)]
    return keras.Sequential([keras.Input(image_shape), *blocks, layers.Flatten(), *_score(loss)], name="discriminator")


def mlp_generator(latent_dim, image_shape, activation):
    """The original GAN paper's fully connected generator (Goodfellow et al. 2014): two hidden layers of 1200."""
    return keras.Sequential(
        [
            keras.Input((latent_dim,)),
            layers.Dense(1200),
            hidden_activation(activation),
            layers.Dense(1200),
            hidden_activation(activation),
            layers.Dense(int(np.prod(image_shape)), activation="tanh"),
            layers.Reshape(image_shape),
        ],
        name="generator",
    )


def mlp_discriminator(image_shape, activation, loss):
    """The original GAN paper's fully connected discriminator: two hidden layers of 240 (LeakyReLU
    or tanh in place of its maxout units, which Keras has no layer for)."""
    return keras.Sequential(
        [
            keras.Input(image_shape),
            layers.Flatten(),
            layers.Dense(240),
            hidden_activation(activation),
            layers.Dense(240),
            hidden_activation(activation),
            *_score(loss),
        ],
        name="discriminator",
    )


ARCHITECTURES = {
    "classic": (classic_generator, classic_discriminator),
    "dcgan": (dcgan_generator, dcgan_discriminator),
    "mlp": (mlp_generator, mlp_discriminator),
}


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
        isinstance(upsampling, layers.UpSampling2D)
        and upsampling.size == (2, 2)
        and upsampling.interpolation == "nearest"
        and isinstance(convolution, layers.Conv2D)
        and convolution.kernel_size == (5, 5)
        and convolution.padding == "same"
        and convolution.strides == (1, 1)
        and convolution.dilation_rate == (1, 1)
        and convolution.use_bias
        and convolution.activation is keras.activations.linear
    )

