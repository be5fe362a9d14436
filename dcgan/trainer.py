"""The Trainer: a run's models, their optimizers, and one training step of its GAN game."""
import contextlib

import keras
import tensorflow as tf

from dcgan.augment import DRAWS_PER_AUGMENTATION, augment, augment_chosen
from dcgan.cluster import join, settings_digest, share_of
from dcgan.conditioning import conditioning_of
from dcgan.datasets import IMAGE_SHAPE
from dcgan.devices import batch_norms, pool_batch_statistics
from dcgan.losses import LOSSES, gradient_penalty
from dcgan.models import LATENT_DIM
from dcgan.presets import augmentations
from dcgan.semi_supervised import SEMI_SUPERVISIONS, build_classifier, supervised_loss

# Real images over which adaptive augmentation can take its probability from 0 to 1 (StyleGAN2-ADA:
# 500,000; a 30-minute run here sees about 330,000).
ADAPTATION_IMAGES = 64_000
# Folded into the seed of the random numbers of a step's second and later updates of one player
# (--d-steps, --g-steps); its first update draws as a step always has. Far from the augmentation
# coin's fold (1) and the penalty's (2).
LATER_UPDATE_FOLD = 1000
# The augmentation streams of a semi-supervised step's labelled images: this minus the step, far below the others.
LABELLED_AUGMENTATION_STREAMS = -(2**40)


class Trainer:
    """The generator, the discriminator, their optimizers and one training step, built from a TrainConfig.

    A step is `d_steps` discriminator updates, each on its own real batch, then `g_steps`
    generator updates, in the game of `config.loss` (dcgan.losses). The classic preset's step is
    the classic keras-dcgan's. See TrainConfig for each setting; the ones that shape the step:
    - augmentation (DiffAugment) of every image the discriminator sees, with a probability that
      adapts as in StyleGAN2-ADA when `augment_target` is set;
    - `fake_batch_norm`: the generated images the discriminator learns from are drawn with the
      generator's batch norm in training mode ("batch") or inference mode ("moving", the classic);
    - `feature_matching` adds `feature_distance` with that weight to the generator's loss;
    - with `ema` > 0, `average_generator` keeps a moving average of the generator's weights; it
      draws the samples and is what gets saved as the generator;
    - `devices` splits each batch across them with MirroredStrategy, `workers` across every device of
      several processes with MultiWorkerMirroredStrategy (dcgan.cluster); `mixed_precision` computes in
      float16 with float32 weights, scores and loss, and scales the losses; `xla` compiles the updates;
    - with `conditioning`, both models take the images' labels (`classes` of them; dcgan.conditioning),
      and the images generated in a step take the labels of the step's real images;
    - with `semi_supervised`, the discriminator also learns the `classes` of a labelled batch each
      update, and the generator learns by feature matching alone (dcgan.semi_supervised).
    """

    def __init__(self, config, image_shape=IMAGE_SHAPE, latent_dim=LATENT_DIM, classes=0):
        config.check()
        if bool(config.conditioning or config.semi_supervised) != bool(classes):
            raise ValueError(
                f"{classes} classes for conditioning {config.conditioning}, semi-supervised "
                f"{config.semi_supervised}: a conditional or semi-supervised run needs its classes, no other"
            )
        self.config = config
        self.conditioning = conditioning_of(config.conditioning)
        self.semi_supervision = SEMI_SUPERVISIONS.get(config.semi_supervised)
        # What builds and reads the discriminator: a semi-supervised run's classifies too.
        self.judging = self.semi_supervision or self.conditioning
        self.loss = LOSSES[config.loss]
        # The critic's weight bound (wgan) and the gradient penalty's weight (wgan-gp), for the losses that have them.
        owned = config.loss_settings()
        self.clip, self.gp_weight = owned.get("clip"), owned.get("gp_weight")
        self.seed = config.seed
        self.latent_dim = latent_dim
        self.generator_lr = config.generator_rate
        self.augmentations = augmentations(config.augment)
        self.augment_target = config.augment_target if self.augmentations else None
        keras.utils.set_random_seed(config.seed)
        devices = config.devices.split(",") if config.devices else None
        cluster = config.cluster
        if cluster:
            self.strategy = join(cluster, settings_digest(config))
        else:
            self.strategy = tf.distribute.MirroredStrategy(devices) if devices else tf.distribute.get_strategy()
        with self.strategy.scope(), dtype_policy("mixed_float16" if config.mixed_precision else "float32"):
            models = {"config": config, "image_shape": image_shape, "latent_dim": latent_dim, "classes": classes}
            self.generator = build_model("generator", **models)
            self.discriminator = build_model("discriminator", **models)
            if self.strategy.num_replicas_in_sync > 1:  # each device sees part of the batch
                for model in (self.generator, self.discriminator):
                    pool_batch_statistics(model)
            # With batch norm, the discriminator's update sees the real and the generated images as two batches,
            # each normalized by its own statistics, as PyTorch's DCGAN example does: the generator's update shows
            # it generated images alone, and a discriminator that learned them normalized together with real ones
            # would judge them there by statistics it never learned from, which the generator learns to exploit.
            self.separate_batches = any(batch_norms(self.discriminator))
            self.discriminator_variables = list(self.discriminator.trainable_variables)
            self.generator_variables = list(self.generator.trainable_variables)
            self.d_optimizer = make_optimizer(config, config.lr)
            self.g_optimizer = make_optimizer(config, self.generator_lr)
            self.d_optimizer.build(self.discriminator_variables)
            self.g_optimizer.build(self.generator_variables)
            self.average_generator = None
            if config.ema:
                self.average_generator = build_model("generator", **models)
                self.average_generator.set_weights(self.generator.get_weights())
            always = self.augmentations and self.augment_target is None
            self.augment_probability = tf.Variable(1.0 if always else 0.0, trainable=False, name="augment_probability")
        self.discriminator_step = tf.function(self._discriminator_step)
        self.generator_step = tf.function(self._generator_step)
        self.train_step = tf.function(self._train_step)
        xla = config.xla
        if xla is None:
            xla = bool(tf.config.list_physical_devices("GPU")) and not devices and not cluster
        # XLA draws stateless random numbers differently, so only the updates are compiled with it.
        self._updates = tf.function(self._all_updates, jit_compile=xla)

    def models(self):
        """The models a checkpoint holds, by file name. With an average, it is "generator": the one users load.
        A semi-supervised run's "classifier" is made from the discriminator as it is now."""
        models = {"generator": self.sampling_generator(), "discriminator": self.discriminator}
        if self.average_generator is not None:
            models["training_generator"] = self.generator
        if self.semi_supervision:
            models["classifier"] = build_classifier(self.discriminator)
        return models

    def sampling_generator(self):
        return self.generator if self.average_generator is None else self.average_generator

    def optimizers(self):
        return {"discriminator": self.d_optimizer, "generator": self.g_optimizer}

    def noise(self, count, stream, update=0):
        """Uniform noise in [-1, 1], a pure function of (seed, stream, update): a step's noise never depends on what
        ran before."""
        return self._uniform((count, self.latent_dim), stream, -1.0, update=update)

    def augmentation_draws(self, count, step, update=0, parts=(0, 1, 2)):
        """The random numbers behind the augmentation of a step's real (part 0), generated (1),
        generator-update (2) and, semi-supervised, labelled (3) images, for the `parts` asked for.

        Each row: DRAWS_PER_AUGMENTATION numbers per augmentation, after, when augmentation adapts,
        the coin that decides whether the image is augmented (below the augment probability).
        """
        # Negative streams, so that they never meet the noise's (2 * step and 2 * step + 1). The
        # coins come from the same streams folded with 1: drawing them in the same call would
        # change every augmentation that runs saved before they existed drew.
        shape = (count, DRAWS_PER_AUGMENTATION * len(self.augmentations))
        streams = [-1 - (3 * step + part) if part < 3 else LABELLED_AUGMENTATION_STREAMS - step for part in parts]
        draws = [self._uniform(shape, stream, update=update) for stream in streams]
        if self.augment_target is None:
            return draws
        return [tf.concat([self._uniform((count, 1), stream, fold=1, update=update), d], axis=1)
                for stream, d in zip(streams, draws)]

    def penalty_mix(self, count, step, update=0):
        """Where each image of the gradient penalty lies between its real and its generated image."""
        return self._uniform((count, 1, 1, 1), -1 - 3 * step, fold=2, update=update)

    def _uniform(self, shape, stream, minval=0.0, fold=None, update=0):
        seed = tf.stack([tf.constant(self.seed, tf.int64), tf.cast(stream, tf.int64)])
        if update:
            seed = tf.random.experimental.stateless_fold_in(seed, LATER_UPDATE_FOLD + update)
        if fold is not None:
            seed = tf.random.experimental.stateless_fold_in(seed, fold)
        return tf.random.stateless_uniform(shape, seed, minval=minval, maxval=1.0, alg="philox")

    def _augment(self, images, draws):
        """`images` augmented with the augment probability; `draws` as `augmentation_draws` makes them."""
        if self.augment_target is None:  # every image or none: no coin to toss, no images to choose between
            return augment(images, self.augmentations, draws)
        return augment_chosen(images, self.augmentations, draws[:, 1:], draws[:, 0] < self.augment_probability)

    def _discriminator_step(self, real, noise, real_draws, fake_draws, labels=None, mix=None, labelled=None):
        """One update of the discriminator. Returns its step values and its features of the real images
        as it saw them (augmented), for the generator's feature matching: one pass serves both.
        `labels`: the real images' labels in a conditional run, which the generated images take too.
        `labelled`: a semi-supervised run's (labelled images, their classes, their augmentation draws)."""
        # The classic draws generated images in inference mode (its `predict`): batch norm then uses
        # running averages that lag behind the batch statistics the generator's own step trains with.
        # The discriminator learns from one batch of real then generated images, as the classic's (two with batch norm).
        training = self.config.fake_batch_norm == "batch"
        fake = tf.cast(self.conditioning.generate(self.generator, noise, labels, training), real.dtype)
        batch_size = tf.shape(real)[0]
        images = self._augment(tf.concat([real, fake], axis=0), tf.concat([real_draws, fake_draws], axis=0))
        both_labels = None if labels is None else tf.concat([labels, labels], axis=0)
        with tf.GradientTape() as tape:
            if self.separate_batches:
                features = tf.concat([self.judging.features(self.discriminator, images[:batch_size], labels),
                                      self.judging.features(self.discriminator, images[batch_size:], labels)], axis=0)
            else:
                features = self.judging.features(self.discriminator, images, both_labels)
            scores = self.judging.head(self.discriminator, features, both_labels)
            loss = self.loss.discriminator(scores, batch_size)
            objective = loss
            if mix is not None:
                def score(between):
                    inputs = between if labels is None else [between, labels]
                    return self.discriminator(inputs, training=True)

                loss += self.gp_weight * gradient_penalty(score, images[:batch_size], images[batch_size:], mix)
                objective = loss
            if labelled is not None:
                labelled_images, classes, draws = labelled
                seen = self._augment(tf.cast(labelled_images, real.dtype), draws)
                logits = self.semi_supervision.class_logits(
                    self.discriminator, self.judging.features(self.discriminator, seen)
                )
                classifier_loss = supervised_loss(logits, classes)
                objective += classifier_loss
            scaled = self.d_optimizer.scale_loss(objective / _replicas())
        gradients = tape.gradient(scaled, self.discriminator_variables)
        self.d_optimizer.apply(gradients, self.discriminator_variables)
        if self.clip is not None:
            for variable in self.discriminator_variables:
                variable.assign(tf.clip_by_value(variable, -self.clip, self.clip))
        threshold = self.loss.real_above
        real_scores, fake_scores = scores[:batch_size], scores[batch_size:]
        values = {
            "d_loss": loss,
            "d_real": tf.reduce_mean(real_scores),
            "d_fake": tf.reduce_mean(fake_scores),
            # Right calls: real scored above the loss's threshold, generated below.
            "d_acc_real": tf.reduce_mean(tf.cast(real_scores > threshold, tf.float32)),
            "d_acc_fake": tf.reduce_mean(tf.cast(fake_scores < threshold, tf.float32)),
        }
        if labelled is not None:
            values["c_loss"] = classifier_loss
            values["c_acc"] = tf.reduce_mean(
                tf.cast(tf.argmax(logits, axis=1, output_type=tf.int32) == classes, tf.float32)
            )
        return values, features[:batch_size]

    def _generator_step(self, noise, draws, real_features, labels=None):
        """One update of the generator; `real_features`: the discriminator's features of the real images it last saw;
        `labels`: the classes to draw, in a conditional run.

        The discriminator runs in training mode, so a discriminator with batch norm normalizes the
        generated batch by its own statistics (as PyTorch's DCGAN example does) and updates its
        running averages, which only inference (`generate --nice`) reads; its weights stay.
        """
        with tf.GradientTape() as tape:
            # The generator run the cheap way and the discriminator in two parts, so that feature
            # matching can use its features; it trains the generator's variables only.
            fake = self._augment(self.conditioning.generate(self.generator, noise, labels, training=True), draws)
            features = self.judging.features(self.discriminator, fake, labels)
            if self.semi_supervision:
                # Salimans et al. 2016: feature matching alone makes the generator most useful to the classifier.
                loss = objective = feature_distance(tf.stop_gradient(real_features), features)
            else:
                loss = objective = self.loss.generator(self.judging.head(self.discriminator, features, labels))
                if self.config.feature_matching:
                    objective += self.config.feature_matching * feature_distance(
                        tf.stop_gradient(real_features), features
                    )
            scaled = self.g_optimizer.scale_loss(objective / _replicas())
        gradients = tape.gradient(scaled, self.generator_variables)
        self.g_optimizer.apply(gradients, self.generator_variables)
        return loss

    def _train_step(self, real, step, labels=None, labelled=None):
        """One step on `real`, d_steps batches one after another (with their `labels` in a conditional run,
        and `labelled`, (images, classes) as many, in a semi-supervised one); `step` picks the noise and
        augmentation, so the same seed and step give the same update."""
        d_steps, g_steps = self.config.d_steps, self.config.g_steps
        batch_size = tf.shape(real)[0] // d_steps
        if self.config.halve_generator_lr_at is not None:
            # Set every step from the step alone, so a resumed run learns at the rate it would have.
            rate = tf.where(step >= self.config.halve_generator_lr_at, self.generator_lr / 2, self.generator_lr)
            self.g_optimizer.learning_rate.assign(rate)
        d_draws = [self.augmentation_draws(batch_size, step, update, parts=(0, 1)) for update in range(d_steps)]
        inputs = {
            "real": tf.reshape(real, [d_steps, batch_size, *real.shape[1:]]),
            "d_noise": tf.stack([self.noise(batch_size, 2 * step, update) for update in range(d_steps)]),
            "real_draws": tf.stack([draws[0] for draws in d_draws]),
            "fake_draws": tf.stack([draws[1] for draws in d_draws]),
            "g_noise": tf.stack([self.noise(batch_size, 2 * step + 1, update) for update in range(g_steps)]),
            "g_draws": tf.stack([self.augmentation_draws(batch_size, step, update, parts=(2,))[0]
                                 for update in range(g_steps)]),
        }
        if labels is not None:
            inputs["labels"] = tf.reshape(tf.cast(labels, tf.int32), [d_steps, batch_size])
        if labelled is not None:
            images, classes = labelled
            inputs["labelled"] = tf.reshape(images, [d_steps, batch_size, *images.shape[1:]])
            inputs["classes"] = tf.reshape(tf.cast(classes, tf.int32), [d_steps, batch_size])
            inputs["labelled_draws"] = tf.stack([self.augmentation_draws(batch_size, step, update, parts=(3,))[0]
                                                 for update in range(d_steps)])
        if self.loss.penalized:
            inputs["mix"] = tf.stack([self.penalty_mix(batch_size, step, update) for update in range(d_steps)])
        values = self._updates(inputs)
        values["augment_p"] = self.augment_probability.read_value()
        if self.augment_target is not None:
            # As StyleGAN2-ADA's, but every step: from 0 to 1 in ADAPTATION_IMAGES real images at the fastest.
            change = (
                tf.sign(values["d_acc_real"] - self.augment_target)
                * tf.cast(batch_size, tf.float32)
                / ADAPTATION_IMAGES
            )
            self.augment_probability.assign(tf.clip_by_value(self.augment_probability + change, 0.0, 1.0))
        if self.average_generator is not None:
            # Warmed up as tf.train.ExponentialMovingAverage does, so early averages are not stuck at the start.
            steps = tf.cast(step, tf.float32)
            decay = tf.minimum(self.config.ema, (1.0 + steps) / (10.0 + steps))
            for average, variable in zip(self.average_generator.variables, self.generator.variables, strict=True):
                average.assign(decay * average + (1.0 - decay) * variable)
        return values

    def _all_updates(self, inputs):
        values = self.strategy.run(self._replica_step, args=(inputs,))
        return {name: self.strategy.reduce("MEAN", value, axis=None) for name, value in values.items()}

    def _replica_step(self, inputs):
        """All of a step's updates on this device's share of each batch; the optimizers sum gradients across devices.

        Reports the discriminator's values and the generator's loss, each the mean over its updates.
        """
        context = tf.distribute.get_replica_context()
        rows = share_of(tf.shape(inputs["real"])[1], context.replica_id_in_sync_group, context.num_replicas_in_sync)
        mine = {name: batches[:, rows] for name, batches in inputs.items()}
        labels = mine.get("labels")
        d_values = []
        for update in range(self.config.d_steps):
            labelled = None
            if "labelled" in mine:
                labelled = (mine["labelled"][update], mine["classes"][update], mine["labelled_draws"][update])
            values, real_features = self._discriminator_step(
                mine["real"][update], mine["d_noise"][update], mine["real_draws"][update], mine["fake_draws"][update],
                None if labels is None else labels[update], mine["mix"][update] if "mix" in mine else None, labelled)
            d_values.append(values)
        # Each generator update draws the classes of one of the step's real batches, in turn.
        g_losses = [self._generator_step(mine["g_noise"][update], mine["g_draws"][update], real_features,
                                         None if labels is None else labels[update % self.config.d_steps])
                    for update in range(self.config.g_steps)]
        return {
            **{name: _mean_of([values[name] for values in d_values]) for name in d_values[0]},
            "g_loss": _mean_of(g_losses),
        }


def build_model(role, config, image_shape=IMAGE_SHAPE, latent_dim=LATENT_DIM, classes=0):
    """A run's untrained "generator" or "discriminator" as `config` makes it, for images of `image_shape` and
    `classes` classes: what training builds and what a run folder rebuilds its files into."""
    models = {"classes": classes, "image_shape": image_shape, "activation": config.activation,
              "architecture": config.architecture}
    conditioning = conditioning_of(config.conditioning)
    if role == "generator":
        return conditioning.build_generator(latent_dim=latent_dim, **models)
    judging = SEMI_SUPERVISIONS.get(config.semi_supervised) or conditioning
    return judging.build_discriminator(loss=config.loss, **models)


def _mean_of(tensors):
    return tensors[0] if len(tensors) == 1 else tf.add_n(tensors) / len(tensors)


def _replicas():
    return tf.distribute.get_replica_context().num_replicas_in_sync


def feature_distance(real_features, generated_features):
    """Squared distance between the mean features of real and generated images (feature matching,
    Salimans et al. 2016): it grows when the generator draws some kinds of image too often and others too rarely.

    With the batch split across devices, the means are the whole batch's, as on one device: each
    device's are averaged across them (a differentiable all-reduce)."""
    means = [tf.reduce_mean(tf.cast(features, tf.float32), 0) for features in (real_features, generated_features)]
    context = tf.distribute.get_replica_context()
    if context is not None and context.num_replicas_in_sync > 1:
        means = context.all_reduce("MEAN", means)
    return tf.reduce_sum(tf.square(means[0] - means[1]))


def make_optimizer(config, lr):
    """The optimizer `config.optimizer` at learning rate `lr`, loss-scaled under mixed precision."""
    if config.optimizer == "sgd":
        optimizer = keras.optimizers.SGD(lr, momentum=0.9, nesterov=True)  # the classic's
    elif config.optimizer == "adam":
        optimizer = keras.optimizers.Adam(lr, beta_1=config.beta1, beta_2=config.beta2)
    else:
        optimizer = keras.optimizers.RMSprop(lr, rho=0.99, epsilon=1e-8)  # WGAN's, with PyTorch's defaults as it used
    return keras.optimizers.LossScaleOptimizer(optimizer) if config.mixed_precision else optimizer


@contextlib.contextmanager
def dtype_policy(name):
    """Build layers under the Keras dtype policy `name`, then restore the previous one."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)
