import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import dcgan
from dcgan import Trainer, UserError, load_discriminator, load_generator
from dcgan.monitor import METRICS_COLUMNS


def test_run_writes_weights_config_and_metrics(trained):
    config, _ = trained
    weights = Path(config.weights_dir)
    assert sorted(p.name for p in weights.iterdir()) == [
        "discriminator.keras",
        "discriminator.weights.h5",
        "generator.keras",
        "generator.weights.h5",
        "metrics.csv",
        "run.json",
        "snapshots",
        "train.lock",
        "training_generator.keras",
        "training_generator.weights.h5",  # the default keeps a weight average
    ]
    assert sorted(p.name for p in (weights / "snapshots").iterdir()) == ["step0000004", "step0000006"]
    run = json.loads((weights / "run.json").read_text())
    assert (
        run["config"]["dataset"] == "mnist-sample" and run["config"]["batch_size"] == 8 and run["config"]["seed"] == 0
    )
    assert run["image_shape"] == [28, 28, 1] and run["latent_dim"] == 100
    assert run["step"] == 6 and run["epoch"] == 1 and run["dataset_size"] == 5000
    assert run["versions"]["keras"].startswith("3.") and run["versions"]["tensorflow"]
    with open(weights / "metrics.csv") as file:
        rows = list(csv.DictReader(file))
    assert tuple(rows[0]) == METRICS_COLUMNS
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4, 5, 6]
    # The defaults play hinge: the scores are unbounded and its loss is above 0.
    assert run["config"]["loss"] == "hinge"
    for row in rows:
        assert math.isfinite(float(row["d_real"])) and math.isfinite(float(row["d_fake"])) and float(row["d_loss"]) > 0
    assert len({row["d_real"] for row in rows}) > 1
    elapsed = [float(r["elapsed_seconds"]) for r in rows]
    assert elapsed == sorted(elapsed) and elapsed[0] > 0


def test_sample_grids_come_every_n_steps_and_at_the_end_named_to_sort(trained):
    config, trainer = trained
    grids = sorted(Path(config.samples_dir).glob("fakes_*.png"))
    assert [p.name for p in grids] == ["fakes_epoch0001_step0000004.png", "fakes_epoch0001_step0000006.png"]
    with Image.open(grids[-1]) as png:
        assert png.size == (4 * 28, 3 * 28)  # 10 samples: 3 rows of 4
        last = np.array(png)
    from dcgan.images import tile
    from dcgan.training import sample_noise

    expected = tile(trainer.sampling_generator()(sample_noise(config.seed, 10), training=False).numpy())[..., 0]
    np.testing.assert_array_equal(last, expected)
    assert np.all(last[2 * 28 :, 2 * 28 :] == 0), "unused cells are black"


def test_saved_weights_are_the_trained_ones_and_differ_from_the_start(trained):
    config, trainer = trained
    generator, discriminator = load_generator(config.weights_dir), load_discriminator(config.weights_dir)
    for saved, live in ((generator, trainer.sampling_generator()), (discriminator, trainer.discriminator)):
        for a, b in zip(saved.get_weights(), live.get_weights()):
            np.testing.assert_array_equal(a, b)
    initial = Trainer(config)
    assert any(not np.array_equal(a, b) for a, b in zip(initial.generator.get_weights(), generator.get_weights()))
    assert any(
        not np.array_equal(a, b) for a, b in zip(initial.discriminator.get_weights(), discriminator.get_weights())
    )


def test_same_seed_same_run_other_seed_other_run(tiny_config, trained, tmp_path):
    config, trainer = trained
    again = dcgan.train(tiny_config(tmp_path / "again"))
    for a, b in zip(again.generator.get_weights() + again.discriminator.get_weights(),
                    trainer.generator.get_weights() + trainer.discriminator.get_weights()):
        np.testing.assert_array_equal(a, b)
    grid = "fakes_epoch0001_step0000006.png"
    assert (tmp_path / "again" / "samples" / grid).read_bytes() == (Path(config.samples_dir) / grid).read_bytes()
    other = dcgan.train(tiny_config(tmp_path / "other", seed=1, steps=1))
    assert not np.array_equal(other.generator.get_weights()[0], Trainer(config).generator.get_weights()[0])


def test_same_seed_trains_the_same_weights_in_separate_processes(tmp_path):
    # Two users' runs, side by side so that they compete for the cores: ops that run in whatever order
    # the threads take them would show here, and not within one process.
    command = [str(Path(sys.executable).parent / "dcgan"), "train", "--dataset", "mnist-sample", "--batch-size", "16",
               "--steps", "20", "--sample-every", "100", "--seed", "3"]
    runs = [
        subprocess.Popen(
            [*command, "--weights-dir", f"{name}/weights", "--samples-dir", f"{name}/samples"],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in ("a", "b")
    ]
    for run in runs:
        output, errors = run.communicate(timeout=300)
        assert run.returncode == 0, errors
        # A fresh process sets TensorFlow to run its ops one at a time, and so says nothing about it.
        assert "may train slightly different weights" not in output
    for load in (load_generator, load_discriminator):
        for a, b in zip(
            load(tmp_path / "a" / "weights").get_weights(), load(tmp_path / "b" / "weights").get_weights(), strict=True
        ):
            np.testing.assert_array_equal(a, b)


TWO_TRAINERS = """
import numpy as np, tensorflow as tf
from dcgan import TrainConfig, Trainer
from dcgan.devices import use_threads
from dcgan.training import Batches
from dcgan.datasets import load_dataset
use_threads()
config = TrainConfig(dataset="mnist-sample", batch_size=8)  # the defaults but the batch: the same ops, cheaper
images = load_dataset(config.dataset)
weights = []
for run in range(2):
    trainer, batches = Trainer(config), Batches(images, config.seed, config.batch_size)
    for step in range(105):
        trainer.train_step(batches(step), tf.constant(step, tf.int64))
    weights.append([v.numpy() for v in trainer.generator.variables + trainer.discriminator.variables])
print(max(float(np.abs(a - b).max()) for a, b in zip(*weights)))
"""


def test_two_trainers_of_the_same_seed_in_one_process_stay_identical_past_step_100():
    # With Grappler's constant folding on, two default trainers built one after the other in a fresh
    # process trained identical weights to step 95 and parted at step 96.
    finished = subprocess.run([sys.executable, "-c", TWO_TRAINERS], capture_output=True, text=True, timeout=600)
    assert finished.returncode == 0, finished.stderr
    assert float(finished.stdout.split()[-1]) == 0.0


def test_epochs_shuffle_and_stop_at_the_step_cap(tiny_config, tmp_path):
    dataset = tmp_path / "tiny.npz"
    with np.load(dcgan.datasets.MNIST_SAMPLE) as arrays:
        np.savez(dataset, x=arrays["x"][::250])  # 20 images: 5 steps of 4 per epoch
    config = tiny_config(tmp_path, dataset=str(dataset), batch_size=4, epochs=3, steps=12, sample_every=4)
    dcgan.train(config)
    run = json.loads((tmp_path / "weights" / "run.json").read_text())
    assert (run["step"], run["epoch"], run["steps_per_epoch"]) == (12, 3, 5)
    # A grid every 4 steps however short the epochs, and where the run ends.
    assert sorted(p.name for p in (tmp_path / "samples").glob("fakes_*.png")) == [
        "fakes_epoch0001_step0000004.png", "fakes_epoch0002_step0000008.png", "fakes_epoch0003_step0000012.png",
    ]
    from dcgan.training import epoch_order

    first, second = epoch_order(0, 1, 20), epoch_order(0, 2, 20)
    assert sorted(first) == list(range(20)) and not np.array_equal(first, second)


def test_an_existing_run_is_not_overwritten_without_asking(tiny_config, trained, tmp_path):
    config, _ = trained
    before = (Path(config.weights_dir) / "generator.weights.h5").read_bytes()
    with pytest.raises(UserError, match="--overwrite"):
        dcgan.train(tiny_config(tmp_path, weights_dir=config.weights_dir, steps=1))
    assert (Path(config.weights_dir) / "generator.weights.h5").read_bytes() == before


def test_batch_larger_than_the_dataset_is_refused(tiny_config, tmp_path):
    with pytest.raises(UserError, match="at most 5000"):
        dcgan.train(tiny_config(tmp_path, batch_size=5001))


def test_paths_may_be_given_as_pathlib_paths(tiny_config, tmp_path):
    dcgan.train(tiny_config(tmp_path, steps=1, weights_dir=tmp_path / "w", samples_dir=tmp_path / "s"))
    saved = json.loads((tmp_path / "w" / "run.json").read_text())["config"]
    assert (saved["weights_dir"], saved["samples_dir"]) == (str(tmp_path / "w"), str(tmp_path / "s"))
