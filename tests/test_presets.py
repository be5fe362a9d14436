"""Presets and the settings they bundle: activation, optimizer, weight average; and a time limit."""
import dataclasses
import json
from pathlib import Path

import keras
import numpy as np
import pytest

import dcgan
from dcgan import TrainConfig, Trainer, UserError
from dcgan.datasets import load_dataset
from dcgan.models import build_discriminator, build_generator
from dcgan.presets import PRESETS
from dcgan.training import Batches


def classic_keras_loop(initial, images, steps, batch_size):
    """The classic keras-dcgan loop, written with Keras' own compile and train_on_batch.

    It starts from `initial`'s weights and draws the same real images and noise that dcgan's
    trainer does at each step, so that only the algorithm can tell the two apart.
    """
    generator, discriminator = build_generator(), build_discriminator()
    generator.set_weights(initial.generator.get_weights())
    discriminator.set_weights(initial.discriminator.get_weights())
    discriminator.trainable = False  # keras-dcgan's combined model: the generator, then the frozen discriminator
    d_on_g = keras.Sequential([generator, discriminator])
    d_on_g.compile(loss="binary_crossentropy", optimizer=keras.optimizers.SGD(0.0005, momentum=0.9, nesterov=True))
    discriminator.trainable = True
    discriminator.compile(
        loss="binary_crossentropy", optimizer=keras.optimizers.SGD(0.0005, momentum=0.9, nesterov=True)
    )
    batches = Batches(images, initial.seed, batch_size)
    for step in range(steps):
        real = batches(step)
        generated = generator.predict(initial.noise(batch_size, 2 * step).numpy(), verbose=0)
        discriminator.train_on_batch(np.concatenate([real, generated]), np.array([1] * batch_size + [0] * batch_size))
        discriminator.trainable = False
        d_on_g.train_on_batch(initial.noise(batch_size, 2 * step + 1).numpy(), np.ones(batch_size))
        discriminator.trainable = True
    return generator.get_weights() + discriminator.get_weights()


def largest_difference(weights, other):
    return max(float(np.abs(a - b).max()) for a, b in zip(weights, other, strict=True))


def test_the_classic_preset_trains_exactly_as_the_classic_keras_loop(tiny_config, tmp_path):
    steps = 3

    def config_for(preset):
        return tiny_config(tmp_path / preset, preset=preset, architecture="classic", steps=steps)

    config = config_for("classic")
    reference = classic_keras_loop(Trainer(config), load_dataset("mnist-sample"), steps, config.batch_size)
    classic, fast = dcgan.train(config), dcgan.train(config_for("fast"))
    classic_weights = classic.generator.get_weights() + classic.discriminator.get_weights()
    fast_weights = fast.generator.get_weights() + fast.discriminator.get_weights()
    # dcgan computes the same step with fused upsampling, so float32 rounding differs a little.
    assert largest_difference(classic_weights, reference) < 1e-5
    assert largest_difference(fast_weights, reference) > 1e-4, "the comparison could not tell another algorithm apart"


@pytest.mark.parametrize("fake_batch_norm, batch_statistics", [("moving", False), ("batch", True)])
def test_the_discriminator_learns_real_images_as_one_and_generated_as_zero(
    classic_trainer, fake_batch_norm, batch_statistics
):
    # A new generator's running averages (mean 0, variance 1) are far from its batches' statistics,
    # so the two ways of drawing the generated images give different losses.
    trainer = classic_trainer(fake_batch_norm=fake_batch_norm)
    real, noise = load_dataset("mnist-sample")[:8], trainer.noise(8, 0)
    generated = trainer.generator(noise, training=batch_statistics)
    scores = trainer.discriminator(np.concatenate([real, generated]), training=False).numpy().ravel().astype(np.float64)
    targets = np.array([1] * 8 + [0] * 8)
    expected = np.mean(-(targets * np.log(scores) + (1 - targets) * np.log(1 - scores)))
    loss = float(trainer.discriminator_step(real, noise, *trainer.augmentation_draws(8, 0)[:2])[0]["d_loss"])
    assert loss == pytest.approx(expected, rel=1e-5)


def test_the_optimizer_choice_builds_adam_or_sgd_for_both_players(classic_trainer):
    adam, sgd = classic_trainer(lr=0.0002, optimizer="adam"), classic_trainer(optimizer="sgd")
    for optimizer in adam.optimizers().values():
        assert isinstance(optimizer, keras.optimizers.Adam)
        assert optimizer.beta_1 == 0.5 and float(optimizer.learning_rate) == pytest.approx(0.0002)
    for optimizer in sgd.optimizers().values():
        assert isinstance(optimizer, keras.optimizers.SGD) and optimizer.nesterov
        assert optimizer.momentum == 0.9 and float(optimizer.learning_rate) == pytest.approx(0.0005)
    faster_generator = Trainer(TrainConfig(lr=0.0002, generator_lr=0.0005))
    assert float(faster_generator.d_optimizer.learning_rate) == pytest.approx(0.0002)
    assert float(faster_generator.g_optimizer.learning_rate) == pytest.approx(0.0005)
    rmsprop = classic_trainer(lr=0.00005, optimizer="rmsprop")
    for optimizer in rmsprop.optimizers().values():
        assert isinstance(optimizer, keras.optimizers.RMSprop) and optimizer.rho == 0.99
    wgan_gp = Trainer(TrainConfig.from_preset("wgan-gp"))
    for optimizer in wgan_gp.optimizers().values():
        assert (optimizer.beta_1, optimizer.beta_2, float(optimizer.learning_rate)) == (0.0, 0.9, pytest.approx(0.0001))
    with pytest.raises(UserError, match="unknown optimizer 'adagrad'; choose one of adam, sgd, rmsprop"):
        classic_trainer(optimizer="adagrad")


def test_the_generator_learns_at_half_its_rate_from_the_halving_step(classic_trainer):
    real = load_dataset("mnist-sample")[:8]
    halving, steady = (classic_trainer(lr=0.0002, optimizer="adam", generator_lr=0.0005, halve_generator_lr_at=at)
                       for at in (1, None))
    rates = []
    for step in range(3):
        weights = trained_values(halving.generator)
        assert largest_difference(weights, trained_values(steady.generator)) == 0
        halving.train_step(real, np.int64(step))
        steady.train_step(real, np.int64(step))
        rates.append(float(halving.g_optimizer.learning_rate))
        # From the same weights and optimizer state, Adam's step is proportional to the rate.
        moved = (largest_difference(trained_values(halving.generator), weights)
                 / largest_difference(trained_values(steady.generator), weights))
        assert moved == pytest.approx(1.0 if step < 1 else 0.5, rel=0.05)
        steady.generator.set_weights(halving.generator.get_weights())
        steady.discriminator.set_weights(halving.discriminator.get_weights())
    assert rates == [np.float32(0.0005), np.float32(0.00025), np.float32(0.00025)]
    assert float(halving.d_optimizer.learning_rate) == np.float32(0.0002)
    # The rate comes from the step alone, so a run resumed past the halving step learns at half at once.
    resumed = classic_trainer(lr=0.0002, optimizer="adam", generator_lr=0.0005, halve_generator_lr_at=1)
    resumed.train_step(real, np.int64(5))
    assert float(resumed.g_optimizer.learning_rate) == np.float32(0.00025)


def test_presets_fill_the_settings_that_are_not_given(tiny_config, tmp_path):
    assert TrainConfig().optimizer == PRESETS["fast"]["optimizer"] == TrainConfig.from_preset().optimizer
    classic = TrainConfig.from_preset("classic", lr=0.001, batch_size=64)
    assert (classic.preset, classic.activation, classic.optimizer, classic.lr, classic.ema, classic.batch_size) == (
        "classic", "tanh", "sgd", 0.001, 0.0, 64)
    with pytest.raises(
        UserError, match="unknown preset 'best'; choose one of fast, classic, dcgan-paper, wgan, wgan-gp, lsgan"
    ):
        TrainConfig.from_preset("best")
    with pytest.raises(UserError, match=r"EMA decay 1.5 is outside \[0, 1\)"):
        dcgan.train(tiny_config(tmp_path, ema=1.5))
    with pytest.raises(UserError, match="unknown activation 'relu'; choose one of leaky_relu, tanh"):
        dcgan.train(tiny_config(tmp_path, activation="relu"))
    with pytest.raises(UserError, match="unknown fake batch norm 'frozen'; choose one of batch, moving"):
        dcgan.train(tiny_config(tmp_path, fake_batch_norm="frozen"))


def values(model):
    return [v.numpy() for v in model.variables]


def trained_values(model):
    return [v.numpy() for v in model.trainable_variables]


def test_the_average_generator_is_the_warmed_up_moving_average_of_the_trained_weights(classic_trainer):
    trainer, plain = classic_trainer(lr=0.0002, optimizer="adam", ema=0.9), classic_trainer(lr=0.0002, optimizer="adam")
    assert plain.average_generator is None and plain.sampling_generator() is plain.generator
    assert trainer.sampling_generator() is trainer.average_generator
    real = load_dataset("mnist-sample")[:8]
    expected = values(trainer.generator)
    for step in range(4):
        trainer.train_step(real, np.int64(step))
        decay = min(0.9, (1 + step) / (10 + step))
        expected = [decay * e + (1 - decay) * w for e, w in zip(expected, values(trainer.generator))]
    for average, wanted in zip(values(trainer.average_generator), expected, strict=True):
        np.testing.assert_allclose(average, wanted, rtol=1e-5, atol=1e-7)
    assert largest_difference(values(trainer.average_generator), values(trainer.generator)) > 1e-5


def test_with_an_average_the_saved_generator_is_the_average_and_the_trained_one_is_kept_to_resume(
    tiny_config, tmp_path
):
    config = tiny_config(tmp_path, ema=0.9, steps=4)
    trainer = dcgan.train(config)
    weights = Path(config.weights_dir)
    assert {p.name for p in (weights / "snapshots" / "step0000004").glob("*.weights.h5")} == {
        "generator.weights.h5", "discriminator.weights.h5", "training_generator.weights.h5"}
    for saved, live in zip(
        dcgan.load_generator(weights).get_weights(), trainer.average_generator.get_weights(), strict=True
    ):
        np.testing.assert_array_equal(saved, live)
    resumed = dcgan.train(dataclasses.replace(config, steps=5), resume=True)
    straight = dcgan.train(dataclasses.replace(config, steps=5, weights_dir=str(tmp_path / "straight")))
    for model in ("generator", "training_generator"):
        for a, b in zip(resumed.models()[model].get_weights(), straight.models()[model].get_weights(), strict=True):
            np.testing.assert_array_equal(a, b)


def elapsed_seconds(metrics_rows, config):
    return [float(row["elapsed_seconds"]) for row in metrics_rows(config.weights_dir)]


def ends_at_the_first_step_past(limit, elapsed):
    # On a loaded machine the first step (tracing) alone may pass the limit: then it is the only one.
    return elapsed and all(seconds < limit for seconds in elapsed[:-1]) and elapsed[-1] >= limit


def test_a_time_limit_ends_the_run_at_the_first_step_past_it_and_resume_counts_earlier_time(
    tiny_config, metrics_rows, tmp_path, capsys
):
    config = tiny_config(tmp_path, steps=100_000, minutes=0.15, sample_every=100_000, save_every=100_000)
    dcgan.train(config)
    elapsed = elapsed_seconds(metrics_rows, config)
    assert ends_at_the_first_step_past(9, elapsed)
    run = json.loads((Path(config.weights_dir) / "run.json").read_text())
    assert run["step"] == len(elapsed), "the last step is saved"
    assert (Path(config.samples_dir) / f"fakes_epoch{run['epoch']:04d}_step{len(elapsed):07d}.png").exists()

    dcgan.train(config, resume=True)
    assert "Nothing to do" in capsys.readouterr().out
    longer = dataclasses.replace(config, minutes=0.25)
    dcgan.train(longer, resume=True)
    resumed = elapsed_seconds(metrics_rows, longer)
    assert resumed[: len(elapsed)] == elapsed and ends_at_the_first_step_past(15, resumed[len(elapsed):])
