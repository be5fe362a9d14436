import keras
import numpy as np
import pytest
import tensorflow as tf

from dcgan import UserError
from dcgan.models import (LATENT_DIM, build_discriminator, build_generator, discriminator_features,
                          discriminator_head, run_generator, upsampled_conv)
from dcgan.trainer import feature_distance


def layer_summary(model):
    return [(type(layer).__name__, tuple(layer.output.shape[1:])) for layer in model.layers]


def test_generator_is_the_classic_design():
    generator = build_generator()
    assert layer_summary(generator) == [
        ("Dense", (1024,)),
        ("Activation", (1024,)),
        ("Dense", (128 * 7 * 7,)),
        ("BatchNormalization", (128 * 7 * 7,)),
        ("Activation", (128 * 7 * 7,)),
        ("Reshape", (7, 7, 128)),
        ("UpSampling2D", (14, 14, 128)),
        ("Conv2D", (14, 14, 64)),
        ("Activation", (14, 14, 64)),
        ("UpSampling2D", (28, 28, 64)),
        ("Conv2D", (28, 28, 1)),
        ("Activation", (28, 28, 1)),
    ]
    assert [layer.activation.__name__ for layer in generator.layers if type(layer).__name__ == "Activation"] == [
        "tanh"
    ] * 4
    assert generator.input_shape == (None, LATENT_DIM)
    dense = (100 * 1024 + 1024) + (1024 * 6272 + 6272)
    batch_norm = 4 * 6272
    convolutions = (5 * 5 * 128 * 64 + 64) + (5 * 5 * 64 * 1 + 1)
    assert generator.count_params() == dense + batch_norm + convolutions


def test_discriminator_is_the_classic_design():
    discriminator = build_discriminator()
    assert layer_summary(discriminator) == [
        ("Conv2D", (28, 28, 64)),
        ("Activation", (28, 28, 64)),
        ("MaxPooling2D", (14, 14, 64)),
        ("Conv2D", (10, 10, 128)),
        ("Activation", (10, 10, 128)),
        ("MaxPooling2D", (5, 5, 128)),
        ("Flatten", (3200,)),
        ("Dense", (1024,)),
        ("Activation", (1024,)),
        ("Dense", (1,)),
        ("Activation", (1,)),
    ]
    activations = [layer.activation.__name__ for layer in discriminator.layers if type(layer).__name__ == "Activation"]
    assert activations == ["tanh", "tanh", "tanh", "sigmoid"]
    convolutions = (5 * 5 * 1 * 64 + 64) + (5 * 5 * 64 * 128 + 128)
    dense = (3200 * 1024 + 1024) + (1024 + 1)
    assert discriminator.count_params() == convolutions + dense


def test_discriminator_in_two_parts_is_its_last_hidden_layer_then_its_score():
    discriminator = build_discriminator(activation="leaky_relu")
    images = np.random.default_rng(0).uniform(-1, 1, (4, 28, 28, 1)).astype(np.float32)
    features = discriminator_features(discriminator, images)
    last_hidden = keras.Model(
        discriminator.layers[0].input, discriminator.layers[-3].output
    )  # the activation after Dense 1024
    np.testing.assert_allclose(features, last_hidden(images, training=True), atol=1e-6)
    np.testing.assert_allclose(
        discriminator_head(discriminator, features), discriminator(images, training=True), atol=1e-6
    )


def test_feature_distance_is_the_squared_distance_between_mean_features():
    real = np.array([[0.0, 2.0, 1.0], [2.0, 2.0, 1.0]], np.float32)
    assert float(feature_distance(real, np.array([[1.0, 0.0, 1.0], [1.0, 0.0, 1.0]], np.float32))) == pytest.approx(4.0)
    assert float(feature_distance(real, real[::-1])) == 0.0  # the same features in another order: the same mean


def test_feature_matching_makes_the_generator_step_depend_on_the_real_batch(classic_trainer):
    first, second = np.random.default_rng(2).uniform(-1, 1, (2, 4, 28, 28, 1)).astype(np.float32)
    for weight, depends in ((0.0, False), (1.0, True)):
        trained = []
        for real in (first, second):
            trainer = classic_trainer(seed=3, feature_matching=weight)
            generator_draws = trainer.augmentation_draws(4, 0)[2]
            real_features = discriminator_features(trainer.discriminator, real)  # no augmentation: seen as they are
            trainer.generator_step(trainer.noise(4, 1), generator_draws, real_features)
            trained.append(trainer.generator.get_weights())
        assert any(not np.array_equal(a, b) for a, b in zip(*trained)) == depends, f"feature matching {weight}"
    with pytest.raises(UserError, match="--feature-matching -1 is below 0"):
        classic_trainer(seed=3, feature_matching=-1)


def test_leaky_relu_replaces_only_the_hidden_tanh_layers():
    for build in (build_generator, build_discriminator):
        classic, leaky = build(), build(activation="leaky_relu")
        kinds = [type(layer).__name__ for layer in leaky.layers]
        classic_kinds = [type(layer).__name__ for layer in classic.layers]
        assert kinds == ["LeakyReLU" if kind == "Activation" else kind for kind in classic_kinds[:-1]] + [
            classic_kinds[-1]
        ]
        assert {layer.negative_slope for layer in leaky.layers if type(layer).__name__ == "LeakyReLU"} == {0.2}
        assert leaky.layers[-1].activation.__name__ == classic.layers[-1].activation.__name__
        assert leaky.count_params() == classic.count_params()


def snapshot(model):
    return [v.numpy() for v in model.variables]


def changed(before, after):
    return [not np.array_equal(b, a) for b, a in zip(before, after)]


@pytest.mark.parametrize("feature_matching", [0.0, 1.0])
def test_each_step_trains_only_its_own_model_over_alternating_steps(classic_trainer, feature_matching):
    trainer = classic_trainer(seed=3, feature_matching=feature_matching)
    generator, discriminator = trainer.generator, trainer.discriminator
    generator_trainable = [i for i, v in enumerate(generator.variables) if v.trainable]
    rng = np.random.default_rng(0)
    for step in range(3):
        real = rng.uniform(-1, 1, (4, 28, 28, 1)).astype(np.float32)
        g_before, d_before = snapshot(generator), snapshot(discriminator)
        real_draws, fake_draws, generator_draws = trainer.augmentation_draws(4, step)
        _, real_features = trainer.discriminator_step(real, trainer.noise(4, 2 * step), real_draws, fake_draws)
        assert not any(changed(g_before, snapshot(generator))), f"step {step}: discriminator step changed the generator"
        assert all(changed(d_before, snapshot(discriminator))), f"step {step}: a discriminator variable did not learn"

        g_before, d_before = snapshot(generator), snapshot(discriminator)
        trainer.generator_step(trainer.noise(4, 2 * step + 1), generator_draws, real_features)
        assert not any(changed(d_before, snapshot(discriminator))), (
            f"step {step}: generator step changed the discriminator"
        )
        g_changed = changed(g_before, snapshot(generator))
        assert all(g_changed[i] for i in generator_trainable), f"step {step}: a generator variable did not learn"


def test_full_step_changes_both_models_and_reports_scores(classic_trainer):
    trainer = classic_trainer(seed=3)
    real = np.random.default_rng(1).uniform(-1, 1, (4, 28, 28, 1)).astype(np.float32)
    g_before, d_before = snapshot(trainer.generator), snapshot(trainer.discriminator)
    values = {k: float(v) for k, v in trainer.train_step(real, np.int64(0)).items()}
    assert any(changed(g_before, snapshot(trainer.generator)))
    assert all(changed(d_before, snapshot(trainer.discriminator)))
    assert 0 < values["d_real"] < 1 and 0 < values["d_fake"] < 1
    assert values["d_loss"] > 0 and values["g_loss"] > 0


@pytest.mark.parametrize("stream", [0, 7])
def test_noise_is_uniform_in_unit_range_and_a_pure_function_of_seed_and_stream(classic_trainer, stream):
    trainer = classic_trainer(seed=5)
    noise = trainer.noise(256, stream).numpy()
    assert noise.shape == (256, LATENT_DIM)
    assert noise.min() >= -1 and noise.max() <= 1 and noise.min() < -0.9 and noise.max() > 0.9
    np.testing.assert_array_equal(noise, trainer.noise(256, stream).numpy())
    assert not np.array_equal(noise, trainer.noise(256, stream + 1).numpy())


@pytest.mark.parametrize("height, inputs, outputs", [(7, 128, 64), (14, 64, 1)])
def test_upsampled_conv_equals_upsampling_then_conv_in_values_and_gradients(height, inputs, outputs):
    rng = np.random.default_rng(height)
    images = tf.constant(rng.normal(size=(3, height, height, inputs)).astype(np.float32))
    upsampling, convolution = keras.layers.UpSampling2D(2), keras.layers.Conv2D(outputs, 5, padding="same")
    convolution.build((None, 2 * height, 2 * height, inputs))
    convolution.bias.assign(rng.normal(size=outputs))
    weights = [convolution.kernel, convolution.bias]
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(images)
        expected = convolution(upsampling(images))
        fast = upsampled_conv(images, *weights)
        expected_loss, fast_loss = tf.reduce_sum(tf.sin(expected)), tf.reduce_sum(tf.sin(fast))
    np.testing.assert_allclose(fast.numpy(), expected.numpy(), rtol=1e-4, atol=1e-4)
    for fast_gradient, expected_gradient in zip(
        tape.gradient(fast_loss, [images, *weights]), tape.gradient(expected_loss, [images, *weights])
    ):
        scale = np.abs(expected_gradient.numpy()).max()
        np.testing.assert_allclose(fast_gradient.numpy(), expected_gradient.numpy(), atol=1e-5 * scale)


@pytest.mark.parametrize("training", [False, True])
def test_run_generator_equals_the_keras_generator_and_updates_batch_norm_alike(training):
    keras.utils.set_random_seed(0)
    generator = build_generator()
    twin = build_generator()
    twin.set_weights(generator.get_weights())
    noise = tf.constant(np.random.default_rng(0).uniform(-1, 1, (8, LATENT_DIM)).astype(np.float32))
    np.testing.assert_allclose(
        run_generator(twin, noise, training).numpy(), generator(noise, training=training).numpy(), atol=1e-5
    )
    for fast, expected in zip(twin.non_trainable_weights, generator.non_trainable_weights):
        np.testing.assert_allclose(fast.numpy(), expected.numpy(), atol=1e-6)
    assert not training or not np.array_equal(generator.non_trainable_weights[0].numpy(), np.zeros(6272))
