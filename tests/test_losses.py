"""The GAN family's parts: each loss's math, the critic's clipping and penalty, several updates per step,
the dcgan and mlp models, the published recipes' presets, and settings that cannot work."""
import dataclasses

import numpy as np
import pytest
import tensorflow as tf

import dcgan
from dcgan import TrainConfig, Trainer, UserError
from dcgan.datasets import load_dataset
from dcgan.losses import LOSSES, gradient_penalty
from dcgan.models import build_discriminator, build_generator
from dcgan.training import Batches


REAL = load_dataset("mnist-sample")[:32]

@pytest.mark.parametrize("loss, real, fake, d_loss, g_loss", [
    ("bce", [0.8, 0.6], [0.3, 0.1], -np.mean(np.log([0.8, 0.6, 0.7, 0.9])), -np.mean(np.log([0.3, 0.1]))),
    ("wgan", [2.0, 1.0], [0.5, -1.5], -0.5 - 1.5, 0.5),
    ("wgan-gp", [2.0, 1.0], [0.5, -1.5], -0.5 - 1.5, 0.5),
    ("hinge", [2.0, 0.5], [0.5, -1.5], (0 + 0.5) / 2 + (1.5 + 0) / 2, 0.5),
    ("lsgan", [1.0, 0.5], [0.5, 0.0], 0.5 * (0 + 0.25) / 2 + 0.5 * (0.25 + 0) / 2, 0.5 * (0.25 + 1) / 2),
])
def test_each_loss_is_its_papers_formula(loss, real, fake, d_loss, g_loss):
    scores = tf.constant(np.array(real + fake, np.float32)[:, None])
    assert float(LOSSES[loss].discriminator(scores, len(real))) == pytest.approx(d_loss, rel=1e-5)
    assert float(LOSSES[loss].generator(scores[len(real):])) == pytest.approx(g_loss, rel=1e-5)


def test_the_gradient_penalty_is_the_squared_distance_of_the_gradient_norm_from_one():
    # A linear score w . x has gradient w everywhere: the penalty is (|w| - 1)^2 wherever it is taken.
    w = tf.constant(np.full((1, 2, 2, 1), 0.75, np.float32))  # |w| = 1.5

    def score(images):
        return tf.reduce_sum(images * w, axis=[1, 2, 3])[:, None]

    real, fake = (tf.constant(np.random.default_rng(i).normal(size=(3, 2, 2, 1)).astype(np.float32)) for i in (0, 1))
    mix = tf.constant(np.array([0.0, 0.5, 0.9], np.float32).reshape(3, 1, 1, 1))
    assert float(gradient_penalty(score, real, fake, mix)) == pytest.approx(0.25, rel=1e-5)


def test_the_penalty_steers_the_critics_update_and_is_in_its_loss():
    plain, penalized = (Trainer(TrainConfig.from_preset("wgan-gp", architecture="classic", gp_weight=weight, d_steps=1))
                        for weight in (0.0, 10.0))
    values = [trainer.train_step(REAL[:8], tf.constant(0, tf.int64)) for trainer in (plain, penalized)]
    # The same critic and images: only the penalty differs, and it is positive.
    assert float(values[1]["d_loss"]) > float(values[0]["d_loss"])
    assert float(values[0]["d_loss"]) == pytest.approx(
        float(values[0]["d_fake"]) - float(values[0]["d_real"]), abs=1e-5
    )
    assert any(
        not np.array_equal(a, b)
        for a, b in zip(plain.discriminator.get_weights(), penalized.discriminator.get_weights())
    )


def test_wgan_clips_every_critic_weight_after_each_update():
    trainer = Trainer(TrainConfig.from_preset("wgan", architecture="classic", clip=0.002, d_steps=2))
    for step in range(2):
        trainer.train_step(REAL[:16], tf.constant(step, tf.int64))
        weights = [v.numpy() for v in trainer.discriminator_variables]
        assert max(np.abs(w).max() for w in weights) <= 0.002
        assert any(np.isclose(np.abs(w), 0.002).any() for w in weights), "the bound was reached, so it was applied"
    assert Trainer(TrainConfig.from_preset("wgan")).clip == 0.01, "the loss's default"
    assert Trainer(TrainConfig.from_preset("fast")).clip is None


def test_a_step_makes_d_steps_discriminator_updates_on_their_own_batches_then_g_steps_generator_updates():
    trainer = Trainer(TrainConfig.from_preset("classic", d_steps=3, g_steps=2, batch_size=4))
    trainer.train_step(REAL[:12], tf.constant(0, tf.int64))
    assert int(trainer.d_optimizer.iterations) == 3 and int(trainer.g_optimizer.iterations) == 2
    # The same three batches in another order give another discriminator: each update saw its own batch.
    reordered = Trainer(TrainConfig.from_preset("classic", d_steps=3, g_steps=2, batch_size=4))
    reordered.train_step(np.concatenate([REAL[8:12], REAL[4:8], REAL[:4]]), tf.constant(0, tf.int64))
    assert not np.array_equal(trainer.discriminator.get_weights()[0], reordered.discriminator.get_weights()[0])
    # A step's later updates draw noise of their own; its first draws as a one-update step does.
    assert not np.array_equal(trainer.noise(4, 0, update=1), trainer.noise(4, 0))
    np.testing.assert_array_equal(trainer.noise(4, 0, update=0), trainer.noise(4, 0))


def test_batches_hand_each_step_d_steps_batches_and_an_epoch_whole_steps():
    images = np.arange(20, dtype=np.float32)
    batches = Batches(images, 0, batch_size=3, per_step=2)
    assert batches.steps_per_epoch == 3  # 20 images: 3 steps of 6, 2 left over
    epoch = np.concatenate([batches(step) for step in range(3)])
    assert len(epoch) == 18 and len(set(epoch)) == 18
    assert len(set(np.concatenate([batches(step) for step in range(3, 6)]))) == 18
    assert not np.array_equal(batches(3), batches(0)), "the next epoch takes a new order"
    np.testing.assert_array_equal(Batches(images, 0, 6)(1), batches(1))


@pytest.mark.parametrize("size, channels", [(28, 1), (32, 3), (64, 3)])
def test_the_dcgan_models_are_the_papers_at_each_size(size, channels):
    generator = build_generator(image_shape=(size, size, channels), architecture="dcgan")
    discriminator = build_discriminator((size, size, channels), architecture="dcgan")
    kinds = [type(layer).__name__ for layer in generator.layers]
    assert generator.output_shape == (None, size, size, channels)
    assert kinds[:3] == ["Dense", "BatchNormalization", "ReLU"] and kinds[-2:] == ["Conv2DTranspose", "Activation"]
    assert "UpSampling2D" not in kinds and kinds.count("Dense") == 1
    transposed = [layer for layer in generator.layers if type(layer).__name__ == "Conv2DTranspose"]
    assert all(layer.strides == (2, 2) and layer.kernel_size == (4, 4) for layer in transposed)
    assert [layer.filters for layer in transposed][-2:] == [64, channels]
    d_kinds = [type(layer).__name__ for layer in discriminator.layers]
    assert "MaxPooling2D" not in d_kinds and d_kinds.count("Dense") == 1, "strided convolutions, no hidden dense layer"
    convolutions = [layer for layer in discriminator.layers if type(layer).__name__ == "Conv2D"]
    assert all(layer.strides == (2, 2) for layer in convolutions) and convolutions[0].filters == 64
    assert d_kinds[:2] == ["Conv2D", "LeakyReLU"], "no batch norm on the first layer, as in the paper"
    assert d_kinds.count("BatchNormalization") == len(convolutions) - 1
    penalized = build_discriminator((size, size, channels), architecture="dcgan", loss="wgan-gp")
    assert [type(layer).__name__ for layer in penalized.layers].count("LayerNormalization") == len(convolutions) - 1
    assert penalized.layers[-1].activation.__name__ == "linear"


def test_the_mlp_models_are_fully_connected_at_any_size_in_their_range():
    generator = build_generator(image_shape=(20, 20, 1), architecture="mlp")
    discriminator = build_discriminator((20, 20, 1), architecture="mlp")
    assert generator.output_shape == (None, 20, 20, 1) and discriminator.output_shape == (None, 1)
    for model in (generator, discriminator):
        assert not {"Conv2D", "Conv2DTranspose"} & {type(layer).__name__ for layer in model.layers}
    assert [layer.units for layer in generator.layers if type(layer).__name__ == "Dense"] == [1200, 1200, 400]
    with pytest.raises(
        UserError, match="image size 200 is not supported by --architecture mlp; use a size from 8 to 128"
    ):
        build_generator(image_shape=(200, 200, 1), architecture="mlp")
    with pytest.raises(UserError, match="image size 30 is not supported; use one of 16, 20, 24, 28, 32"):
        build_generator(image_shape=(30, 30, 1), architecture="dcgan")


@pytest.mark.parametrize("preset", ["dcgan-paper", "wgan", "wgan-gp", "lsgan"])
def test_each_papers_preset_is_its_recipe(preset):
    config = TrainConfig.from_preset(preset)
    recipe = {
        "dcgan-paper": ("bce", "adam", 0.0002, 0.5, 128, 1),
        "wgan": ("wgan", "rmsprop", 0.00005, 0.5, 64, 5),
        "wgan-gp": ("wgan-gp", "adam", 0.0001, 0.0, 64, 5),
        "lsgan": ("lsgan", "adam", 0.0002, 0.5, 64, 1),
    }[preset]
    assert (config.loss, config.optimizer, config.lr, config.beta1, config.batch_size, config.d_steps) == recipe
    assert (
        config.architecture == "dcgan" and config.ema == 0 and config.augment == "none" and config.feature_matching == 0
    )


@pytest.mark.parametrize("changes, message", [
    ({"clip": 0.0}, "--clip 0.0 would clip every weight to 0"),
    ({"clip": -1.0}, "--clip -1.0 would clip every weight to 0"),
    ({"loss": "wgan-gp", "gp_weight": -1.0}, "--gp-weight -1.0 is below 0"),
    ({"d_steps": 0}, "--d-steps 0 is below 1"),
    ({"g_steps": 0}, "--g-steps 0 is below 1"),
    ({"loss": "softplus"}, "unknown loss 'softplus'; choose one of bce, wgan, wgan-gp, hinge, lsgan"),
    ({"architecture": "resnet"}, "unknown architecture 'resnet'; choose one of classic, dcgan, mlp"),
    ({"loss": "bce", "clip": 0.01}, "--clip applies only to --loss wgan; leave it out with --loss bce"),
    ({"loss": "wgan", "gp_weight": 10.0}, "--gp-weight applies only to --loss wgan-gp; leave it out with --loss wgan"),
    ({"architecture": "dcgan", "image_size": 30}, "image size 30 is not supported"),
    ({"lr": float("nan")}, "--lr nan is not a number"),
])
def test_settings_that_cannot_work_are_refused_before_any_data_is_read(tiny_config, tmp_path, changes, message):
    config = dataclasses.replace(tiny_config(tmp_path), **changes)
    with pytest.raises(UserError, match=message.replace("(", r"\(")):
        dcgan.train(config)
    assert not (tmp_path / "weights").exists()


def test_a_step_of_d_steps_batches_must_fit_in_the_data(tiny_config, tmp_path):
    with pytest.raises(UserError, match=r"a step takes 6000 images \(batch size 1200 x 5 discriminator updates\)"):
        dcgan.train(tiny_config(tmp_path, preset="wgan", batch_size=1200))


def test_a_critics_run_shows_its_wasserstein_estimate_and_no_winning_warning(tiny_config, tmp_path, capsys):
    dcgan.train(tiny_config(tmp_path, preset="wgan", batch_size=4, steps=2))
    line = [text for text in capsys.readouterr().out.splitlines() if text.startswith("step 2/2  ")][0]
    assert "W estimate" in line and "D(G(z))" not in line
    rows = (tmp_path / "weights" / "metrics.csv").read_text().splitlines()
    assert len(rows) == 3, "one row a step, whatever the critic's updates"
    from dcgan.monitor import HealthCheck

    critic = HealthCheck(REAL, window=5, warmup=0, watch_winning=False)
    assert all(critic.after_step(step, {"d_loss": -3.0, "d_fake": -2.0}) is None for step in range(1, 50))


def test_curves_widen_the_score_panel_to_a_critics_scores(tmp_path):
    from dcgan.monitor import METRICS_COLUMNS
    from dcgan.plots import curves_figure, read_metrics

    def figure(d_real, d_loss):
        rows = [",".join(METRICS_COLUMNS)]
        for step in range(1, 201):
            values = {"step": step, "epoch": 1, "d_loss": d_loss, "g_loss": 0.5, "d_real": d_real(step), "d_fake": 0.4,
                      "d_acc_real": 1.0, "d_acc_fake": 0.0, "augment_p": 0.0, "elapsed_seconds": step}
            rows.append(",".join(str(values[name]) for name in METRICS_COLUMNS))
        (tmp_path / "metrics.csv").write_text("\n".join(rows) + "\n")
        return curves_figure(read_metrics(tmp_path / "metrics.csv"))

    critic = figure(lambda step: 2 + 2 * step / 200, d_loss=-1.0)  # real scores rising from 2 to 4
    assert critic.axes[1].get_ylim()[1] >= 4 and critic.axes[0].get_yscale() == "linear"
    probabilities = figure(lambda step: 0.6, d_loss=0.7)
    assert (
        probabilities.axes[1].get_ylim() == pytest.approx((-0.02, 1.02)) and probabilities.axes[0].get_yscale() == "log"
    )
    assert [text.get_text() for text in probabilities.axes[2].get_legend().get_texts()] == [
        "on real",
        "on generated",
        "augment p",
    ]
