"""The GAN games: what the discriminator and the generator each minimize, given the discriminator's scores.

Each loss is one `Loss` in LOSSES, and everything that reads scores asks it: the discriminator's
last activation (a probability or an unbounded critic score), which score calls an image real
(accuracy, adaptive augmentation), what the progress line shows, and whether the health check's
"discriminator wins outright" means anything. To add a loss, add an entry here and its name to
presets.LOSS_NAMES (and any setting it owns to presets.LOSS_SETTINGS).

Scores arrive as (n, 1) float32 tensors, this device's share of the batch. The discriminator's
loss takes the real images' and the generated ones' scores as the one tensor the discriminator
returned: Keras computes cross-entropy from the logits behind a sigmoid's output tensor, which
a slice of it no longer carries, so bce stays exact and stable.
"""
import dataclasses
from collections.abc import Callable

import keras
import tensorflow as tf

from dcgan.presets import LOSS_SETTINGS


@dataclasses.dataclass(frozen=True)
class Loss:
    discriminator: Callable  # (scores, n) -> its loss: the scores of n real images, then of n generated ones
    generator: Callable  # generated scores -> the generator's loss
    head: str  # the discriminator's last activation: "sigmoid" (scores are probabilities) or "linear" (a critic)
    real_above: float  # a score above this calls an image real
    wasserstein: bool = False  # mean real minus mean generated score estimates the Wasserstein distance
    setting: str | None = (
        None  # the TrainConfig field this loss owns (presets.LOSS_SETTINGS; TrainConfig.loss_settings)
    )

    @property
    def penalized(self):
        """A gradient penalty: the critic then normalizes each image on its own, not the batch (Gulrajani et al.)."""
        return self.setting == "gp_weight"

    @property
    def warns_when_winning(self):
        """A discriminator that separates real from generated perfectly is a failure; a Wasserstein critic
        is meant to be trained that far, and its loss is negative by design."""
        return not self.wasserstein


def _mean(values):
    return tf.reduce_mean(tf.cast(values, tf.float32))


def _bce_discriminator(scores, count):
    # One cross-entropy over real (1) then generated (0), as the classic's single train_on_batch.
    labels = tf.concat([tf.ones((count, 1)), tf.zeros((count, 1))], axis=0)
    return tf.reduce_mean(keras.losses.binary_crossentropy(labels, scores))


def _halves(loss):
    """A discriminator's loss of (real scores, generated scores) as one of (scores, n)."""
    return lambda scores, count: loss(scores[:count], scores[count:])


def _wasserstein_critic(loss_name):
    """A critic without sigmoid or log, whose mean scores' difference estimates the Wasserstein distance; what keeps
    it 1-Lipschitz is the setting `loss_name` owns (presets.LOSS_SETTINGS)."""
    return Loss(_halves(lambda real, fake: _mean(fake) - _mean(real)), lambda fake: -_mean(fake), head="linear",
                real_above=0.0, wasserstein=True, setting=LOSS_SETTINGS[loss_name][0])


LOSSES = {
    # The classic's non-saturating game: the generator maximizes log D(G(z)) (Goodfellow et al. 2014).
    "bce": Loss(
        _bce_discriminator,
        lambda fake: tf.reduce_mean(keras.losses.binary_crossentropy(tf.ones_like(fake), fake)),
        head="sigmoid",
        real_above=0.5,
    ),
    # Arjovsky et al. 2017: its weights clipped after each update.
    "wgan": _wasserstein_critic("wgan"),
    # Gulrajani et al. 2017: the same critic, kept 1-Lipschitz by a penalty instead of clipping.
    "wgan-gp": _wasserstein_critic("wgan-gp"),
    # As in SNGAN and BigGAN (Miyato et al. 2018; Brock et al. 2019).
    "hinge": Loss(
        _halves(lambda real, fake: _mean(tf.nn.relu(1.0 - real)) + _mean(tf.nn.relu(1.0 + fake))),
        lambda fake: -_mean(fake),
        head="linear",
        real_above=0.0,
    ),
    # Mao et al. 2017, with targets 1 (real) and 0 (generated).
    "lsgan": Loss(
        _halves(lambda real, fake: 0.5 * _mean(tf.square(real - 1.0)) + 0.5 * _mean(tf.square(fake))),
        lambda fake: 0.5 * _mean(tf.square(fake - 1.0)),
        head="linear",
        real_above=0.5,
    ),
}


def gradient_penalty(score, real, fake, mix):
    """Mean of (|grad score(x)| - 1)^2 at x between each real image and a generated one (Gulrajani et al. 2017).

    `mix` (n, 1, 1, 1) in [0, 1) places each x: mix * real + (1 - mix) * generated. Differentiable,
    so the critic's update follows the penalty's gradient (a second-order gradient).
    """
    between = mix * real + (1.0 - mix) * fake
    with tf.GradientTape() as tape:
        tape.watch(between)
        scores = score(between)
    gradients = tf.cast(tape.gradient(scores, between), tf.float32)
    norms = tf.sqrt(tf.reduce_sum(tf.square(gradients), axis=[1, 2, 3]) + 1e-12)
    return tf.reduce_mean(tf.square(norms - 1.0))
