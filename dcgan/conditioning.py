"""Class-conditional models: the label joins the generator's noise and the discriminator's input or score.

A conditional generator is a Keras model of two inputs, `noise` (N, latent_dim) and `labels` (N,)
integers, and a conditional discriminator one of `images` and `labels`. Both wrap the unconditional
models of dcgan.models, built-in layers only, so the saved files still load in plain Keras:

- The generator (every method) feeds the unconditional generator the noise with the label's one-hot
  vector after it, as the conditional GAN does (Mirza and Osindero 2014).
- "concat" gives the discriminator the label as one more input channel: an embedding of each class
  into a learned map of the image's size (the conditional GAN's label maps, learned, at the cost
  of one channel instead of one per class).
- "projection" adds to the discriminator's score the inner product of a learned embedding of the
  label with the discriminator's features (Miyato and Koyama 2018).

UNCONDITIONAL passes the models through, so the trainer runs one code path. To add a method, add
its entry to CONDITIONINGS and its name to presets.CONDITIONINGS.
"""
import dataclasses
from collections.abc import Callable

import keras
import numpy as np
import tensorflow as tf
from keras import layers

from dcgan.datasets import IMAGE_SHAPE
from dcgan.models import build_discriminator as build_unconditional_discriminator
from dcgan.models import build_generator as build_unconditional_generator
from dcgan.models import LATENT_DIM, discriminator_features, discriminator_head, run_generator

BODY = "unconditional"  # the wrapped unconditional model, a layer of the conditional one
LABEL_MAP, LABEL_EMBEDDING = "label_map", "label_embedding"  # the layers that learn the label's part
SCORE, SCORE_ACTIVATION = "score", "score_activation"  # the projection discriminator's head


def _label_input():
    return keras.Input((), dtype="int32", name="labels")


@dataclasses.dataclass(frozen=True)
class Conditioning:
    wrap_discriminator: (
        Callable  # (image_shape, classes, **build_discriminator's settings) -> the model of [images, labels]
    )
    features: Callable  # (discriminator, images, labels) -> its last hidden layer, in training mode
    head: Callable  # (discriminator, features, labels) -> scores, in training mode
    conditional: bool = True

    def build_generator(self, classes=0, latent_dim=LATENT_DIM, **models):
        """dcgan.models.build_generator's model, taking [noise, labels] when conditional."""
        if not self.conditional:
            return build_unconditional_generator(latent_dim, **models)
        body = build_unconditional_generator(latent_dim + classes, **models)
        body.name = BODY
        noise = keras.Input((latent_dim,), name="noise")
        labels = _label_input()
        one_hot = layers.CategoryEncoding(classes, output_mode="one_hot")(labels)
        return keras.Model([noise, labels], body(layers.Concatenate()([noise, one_hot])), name="generator")

    def build_discriminator(self, classes=0, image_shape=IMAGE_SHAPE, **models):
        """dcgan.models.build_discriminator's model, taking [images, labels] when conditional."""
        if not self.conditional:
            return build_unconditional_discriminator(image_shape, **models)
        return self.wrap_discriminator(image_shape, classes, **models)

    def generate(self, generator, noise, labels, training):
        """The generator's images the trainer's cheap way (dcgan.models.run_generator)."""
        if not self.conditional:
            return run_generator(generator, noise, training)
        body = generator.get_layer(BODY)
        one_hot = tf.one_hot(labels, body.input_shape[-1] - noise.shape[-1], dtype=noise.dtype)
        return run_generator(body, tf.concat([noise, one_hot], axis=1), training)


def _concat_discriminator(image_shape, classes, **models):
    height, width, channels = image_shape
    body = build_unconditional_discriminator((height, width, channels + 1), **models)
    body.name = BODY
    images, labels = keras.Input(image_shape, name="images"), _label_input()
    maps = layers.Reshape((height, width, 1))(layers.Embedding(classes, height * width, name=LABEL_MAP)(labels))
    return keras.Model([images, labels], body(layers.Concatenate()([images, maps])), name="discriminator")


def _with_label_map(discriminator, images, labels):
    maps = discriminator.get_layer(LABEL_MAP)(labels)
    return tf.concat([images, tf.cast(tf.reshape(maps, [-1, *images.shape[1:3], 1]), images.dtype)], axis=3)


def _projection_discriminator(image_shape, classes, **models):
    unconditional = build_unconditional_discriminator(image_shape, **models)
    dense, activation = unconditional.layers[-2:]
    dense.name, activation.name = SCORE, SCORE_ACTIVATION
    body = keras.Sequential([keras.Input(image_shape), *unconditional.layers[:-2]], name=BODY)
    images, labels = keras.Input(image_shape, name="images"), _label_input()
    features = body(images)
    embedded = layers.Embedding(classes, features.shape[-1], name=LABEL_EMBEDDING)(labels)
    score = layers.Add()([dense(features), layers.Dot(axes=1)([embedded, features])])
    return keras.Model([images, labels], activation(score), name="discriminator")


def _projection_head(discriminator, features, labels):
    dense, activation = discriminator.get_layer(SCORE), discriminator.get_layer(SCORE_ACTIVATION)
    embedded = tf.cast(discriminator.get_layer(LABEL_EMBEDDING)(labels), features.dtype)
    return activation(dense(features) + tf.reduce_sum(embedded * features, axis=1, keepdims=True))


UNCONDITIONAL = Conditioning(
    wrap_discriminator=None,
    features=lambda discriminator, images, labels: discriminator_features(discriminator, images),
    head=lambda discriminator, features, labels: discriminator_head(discriminator, features),
    conditional=False,
)
CONDITIONINGS = {
    "concat": Conditioning(
        _concat_discriminator,
        features=lambda discriminator, images, labels: discriminator_features(
            discriminator.get_layer(BODY), _with_label_map(discriminator, images, labels)),
        head=lambda discriminator, features, labels: discriminator_head(discriminator.get_layer(BODY), features),
    ),
    "projection": Conditioning(
        _projection_discriminator,
        features=lambda discriminator, images, labels: discriminator.get_layer(BODY)(images, training=True),
        head=_projection_head,
    ),
}


def conditioning_of(name):
    """The Conditioning of a TrainConfig's `conditioning` setting (None: unconditional)."""
    return UNCONDITIONAL if name is None else CONDITIONINGS[name]


def grid_labels(classes, count):
    """The labels of a sample grid of up to `count` images with one row per class and the same noise down
    each column: (labels, columns). More classes than `count`: the first `count`, one image each."""
    rows = min(classes, count)
    columns = max(1, count // classes)
    return np.repeat(np.arange(rows, dtype=np.int32), columns), columns
