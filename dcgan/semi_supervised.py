"""Semi-supervised training: the discriminator also sorts real images into the data's classes, learning
them from a few labelled images while the GAN game teaches it from all of them (Odena 2016; Salimans
et al. 2016, "Improved Techniques for Training GANs").

The discriminator's head is one Dense layer of class logits l over the classes of the data:
- "derived": K logits, and the probability that an image is real is Z / (Z + 1) with Z = sum exp(l)
  (Salimans et al.): a softmax over the K classes and a generated class whose logit is fixed at 0.
- "extra": K + 1 logits, the last for generated images (Odena's explicit extra class).

Its real/fake logit is logsumexp(l[:K]) - l_fake (l_fake = 0 when derived), which the bce game
trains on; the labelled images add the cross-entropy of their class among the K. The generator
learns by feature matching alone, which Salimans et al. found best for classification.

The saved discriminator ends in layers that turn the logits into the probability of being real
(softmax, then the sum of the real classes' shares), so `--nice` ranks by it; the classifier
(`classifier.keras`) is the discriminator's body and the K real classes' logits, then a softmax.
Built-in layers only, so both load in plain Keras.
"""
import dataclasses

import keras
import numpy as np
import tensorflow as tf
from keras import layers

from dcgan.errors import UserError
from dcgan.models import build_discriminator as build_unconditional_discriminator
from dcgan.models import DISCRIMINATOR_HEAD_LAYERS

CLASS_LOGITS = "class_logits"
REAL_SHARE = "real_share"  # the sum of the real classes' probabilities: a fixed Dense layer of ones (and a 0)
LABELLED_STREAM = 2**31 + 1  # seeds the choice of the labelled images and each step's labelled batch


@dataclasses.dataclass(frozen=True)
class SemiSupervision:
    extra_class: bool  # a logit of its own for generated images

    def build_discriminator(self, image_shape, classes, **models):
        """The unconditional discriminator's body, then the class logits, then the probability of being real."""
        body = build_unconditional_discriminator(image_shape, **models).layers[:-DISCRIMINATOR_HEAD_LAYERS]
        logits = classes + self.extra_class
        # Without an extra class, a generated class with logit 0 joins the softmax: Z / (Z + 1) = 1 - its share.
        fake_logit = [] if self.extra_class else [layers.Reshape((classes, 1)), layers.ZeroPadding1D((0, 1)),
                                                  layers.Reshape((classes + 1,))]
        real = layers.Dense(1, use_bias=False, trainable=False, name=REAL_SHARE)
        model = keras.Sequential(
            [keras.Input(image_shape), *body, layers.Dense(logits, name=CLASS_LOGITS, dtype="float32"), *fake_logit,
             layers.Activation("softmax", dtype="float32"), real],
            name="discriminator",
        )
        real.set_weights([np.array([[1.0]] * classes + [[0.0]], np.float32)])
        return model

    def features(self, discriminator, images, labels=None):
        """The discriminator's last hidden layer, in training mode."""
        for layer in discriminator.layers[: _logits_index(discriminator)]:
            images = layer(images, training=True)
        return images

    def head(self, discriminator, features, labels=None):
        """The probability of being real, from the logits (so that binary cross-entropy is taken from its logit)."""
        logits = discriminator.get_layer(CLASS_LOGITS)(features)
        classes = _classes(discriminator)
        fake = logits[:, classes:] if self.extra_class else 0.0
        return keras.ops.sigmoid(tf.reduce_logsumexp(logits[:, :classes], axis=1, keepdims=True) - fake)

    def class_logits(self, discriminator, features):
        """The logits of the K real classes."""
        return discriminator.get_layer(CLASS_LOGITS)(features)[:, : _classes(discriminator)]


def _logits_index(discriminator):
    return discriminator.layers.index(discriminator.get_layer(CLASS_LOGITS))


def _classes(discriminator):
    return discriminator.get_layer(REAL_SHARE).kernel.shape[0] - 1


SEMI_SUPERVISIONS = {
    "derived": SemiSupervision(extra_class=False),
    "extra": SemiSupervision(extra_class=True),
}


def supervised_loss(logits, labels):
    """Cross-entropy of each labelled image's class among the real classes."""
    return tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True))


def build_classifier(discriminator):
    """Images -> class probabilities: the discriminator's body and its real classes' logits, then a softmax."""
    classes = _classes(discriminator)
    index = _logits_index(discriminator)
    kernel, bias = discriminator.get_layer(CLASS_LOGITS).get_weights()
    logits = layers.Dense(classes, name=CLASS_LOGITS)
    model = keras.Sequential([keras.Input(discriminator.input_shape[1:]), *discriminator.layers[:index], logits,
                              layers.Activation("softmax")], name="classifier")
    logits.set_weights([kernel[:, :classes], bias[:classes]])
    return model


def choose_labelled(labels, count, seed, class_names):
    """The indices of `count` labelled images, as even across the classes as `count` allows (the first
    classes take one more), drawn from `seed`."""
    classes = len(class_names)
    if count < classes:
        raise UserError(
            f"--labelled {count} is fewer than one image per class ({classes} classes); give at least {classes}"
        )
    if count > len(labels):
        raise UserError(
            f"--labelled {count} is more than the {len(labels)} training images; give at most {len(labels)}"
        )
    rng = np.random.default_rng([seed, LABELLED_STREAM])
    chosen = []
    for label, name in enumerate(class_names):
        share = count // classes + (label < count % classes)
        members = np.flatnonzero(labels == label)
        if share > len(members):
            raise UserError(f"class {name} has {len(members)} training images, fewer than its {share} of --labelled "
                            f"{count}; give at most {len(members) * classes}")
        chosen.append(rng.choice(members, share, replace=False))
    return np.sort(np.concatenate(chosen))


def labelled_batch(seed, step, labelled_count, size):
    """The indices (into the labelled images) of step `step`'s labelled batch: a pure function of (seed, step),
    so a resumed run draws what it would have; with replacement only when there are fewer than `size`."""
    rng = np.random.default_rng([seed, LABELLED_STREAM, step])
    return rng.choice(labelled_count, size, replace=labelled_count < size)
