"""Threads, multi-device data parallelism and mixed precision."""
import json
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

import dcgan
from dcgan import UserError
from dcgan.devices import use_threads


def test_threads_can_only_be_set_before_tensorflow_starts():
    tf.constant(1.0) + 1  # TensorFlow has started
    with pytest.raises(UserError, match="cannot switch to 3 threads"):
        use_threads(3)


def test_training_after_tensorflow_started_runs_ops_side_by_side_and_says_so(tmp_path):
    # A fresh process: whether TensorFlow has started is the point, and an earlier test may have started it.
    # (A fresh process that sets them one at a time says nothing: test_train's two processes check that.)
    script = textwrap.dedent("""
        import os, sys
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
        import tensorflow as tf
        tf.constant(1.0) + 1
        import dcgan
        dcgan.train(dcgan.TrainConfig.from_preset(dataset="mnist-sample", batch_size=8, steps=1, weights_dir="weights"))
        print("inter-op threads", tf.config.threading.get_inter_op_parallelism_threads())
    """)
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "inter-op threads 0" in result.stdout
    assert "another process with the same seed may train slightly different weights" in result.stdout


@pytest.mark.parametrize("settings, bound", [
    ({"preset": "classic"}, 1e-5),
    # A critic of the paper's models: batch norm in the generator, layer norm in the critic, a gradient
    # penalty, two updates a step, conditional.
    ({"preset": "wgan-gp", "d_steps": 2, "optimizer": "sgd", "lr": 0.0005, "conditioning": "projection"}, 1e-5),
    # With Adam, which turns float32's other summing order into larger steps, to 5 times what a change of --threads
    # alone does (test_cluster.PRESET_BOUNDS). The default preset's two devices were 1.6e-3 apart after these 4 steps
    # while batch norm took its variance as E[x²] - E[x]²; now 1.2e-5 (dcgan-paper's 1.0e-6).
    ({"preset": "fast"}, 1e-4),
    ({"preset": "dcgan-paper"}, 5e-6),
])
def test_two_devices_train_like_one(settings, bound):
    # The CPU split into two logical devices must be set up before TensorFlow starts: a fresh process for
    # each setting (two trainers of other models under MirroredStrategy in one process mix up their collectives).
    script = textwrap.dedent("""
        import json, os, sys
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
        import numpy as np, tensorflow as tf
        tf.config.set_logical_device_configuration(
            tf.config.list_physical_devices("CPU")[0], [tf.config.LogicalDeviceConfiguration()] * 2)
        import dcgan
        from dcgan.datasets import load_conditional
        images, labels, _ = load_conditional("mnist-sample")
        pick = np.random.default_rng(0).permutation(len(images))[:128]  # the sample is sorted by class
        images, labels = images[pick], labels[pick]
        def weights_after_steps(devices):
            # The average and augmentation too.
            config = dcgan.TrainConfig.from_preset(
                devices=devices, ema=0.9, augment="translation,cutout", **json.loads(sys.argv[1])
            )
            trainer = dcgan.Trainer(config, classes=10 if config.conditioning else 0)
            for step in range(4):
                window = slice(step * 16 * config.d_steps, (step + 1) * 16 * config.d_steps)
                values = trainer.train_step(images[window], tf.constant(step, tf.int64),
                                            labels[window] if config.conditioning else None)
            assert trainer.strategy.num_replicas_in_sync == (len(devices.split(",")) if devices else 1)
            return [w for model in trainer.models().values() for w in model.get_weights()], float(values["d_loss"])
        one, one_loss = weights_after_steps(None)
        two, two_loss = weights_after_steps("/cpu:0,/cpu:1")
        print(max(float(np.abs(a - b).max()) for a, b in zip(one, two)), abs(one_loss - two_loss))
    """)
    result = subprocess.run(
        [sys.executable, "-c", script, json.dumps(settings)], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    weight_difference, loss_difference = map(float, result.stdout.split())
    # Float32 sums in another order: after 4 steps with SGD the weights agree to 1e-5 (seen: about 1e-7).
    assert weight_difference < bound and loss_difference < 1e-5


def test_the_xla_step_matches_the_plain_one(classic_trainer):
    real = np.random.default_rng(0).uniform(-1, 1, (8, 28, 28, 1)).astype(np.float32)
    plain, compiled = (classic_trainer(xla=xla, augment="translation,cutout") for xla in (False, True))
    for step in range(2):
        plain_values = plain.train_step(real, np.int64(step))
        compiled_values = compiled.train_step(real, np.int64(step))
    for name in plain_values:
        assert abs(float(plain_values[name]) - float(compiled_values[name])) < 1e-4
    for a, b in zip(plain.generator.get_weights(), compiled.generator.get_weights()):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_batch_must_split_evenly_across_devices(tiny_config, tmp_path):
    with pytest.raises(UserError, match="does not split evenly across 3 devices"):
        dcgan.train(tiny_config(tmp_path, devices="CPU:0,CPU:1,CPU:2"))


def test_mixed_precision_computes_in_float16_with_float32_weights_output_and_loss_scaling(classic_trainer):
    trainer = classic_trainer(mixed_precision=True)
    assert keras.config.dtype_policy().name == "float32", "the global policy is restored"
    assert trainer.generator.layers[0].compute_dtype == "float16"
    assert trainer.discriminator.layers[-1].compute_dtype == "float32"
    assert all(v.dtype == "float32" for v in trainer.generator.trainable_variables)
    assert isinstance(trainer.d_optimizer, keras.optimizers.LossScaleOptimizer)
    before = trainer.generator.get_weights()[0]
    real = np.random.default_rng(0).uniform(-1, 1, (8, 28, 28, 1)).astype(np.float32)
    values = {k: float(v) for k, v in trainer.train_step(real, np.int64(0)).items()}
    assert all(np.isfinite(list(values.values())))
    assert not np.array_equal(before, trainer.generator.get_weights()[0])


def test_mixed_precision_is_refused_without_a_gpu(tiny_config, tmp_path):
    if tf.config.list_physical_devices("GPU"):
        pytest.skip("this machine has a GPU")
    with pytest.raises(UserError, match="needs a GPU"):
        dcgan.train(tiny_config(tmp_path, mixed_precision=True))
