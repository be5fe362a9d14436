import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from dcgan import UserError, generate, load_discriminator, load_generator


def test_plain_generate_draws_count_images_in_range(trained):
    config, _ = trained
    images, scores = generate(config.weights_dir, count=9, seed=4)
    assert images.shape == (9, 28, 28, 1) and scores is None
    assert images.min() >= -1 and images.max() <= 1 and images.std() > 0


def test_same_seed_same_images_other_seed_other_images(trained):
    config, _ = trained
    first, _ = generate(config.weights_dir, count=4, seed=11)
    np.testing.assert_array_equal(first, generate(config.weights_dir, count=4, seed=11)[0])
    assert not np.array_equal(first, generate(config.weights_dir, count=4, seed=12)[0])


def test_nice_keeps_exactly_the_top_scored_images_best_first(trained):
    config, _ = trained
    # --nice draws the same pool as a plain draw of count x factor images with the same seed.
    pool, _ = generate(config.weights_dir, count=24, seed=2)
    pool_scores = load_discriminator(config.weights_dir)(pool, training=False).numpy()[:, 0]
    best, scores = generate(config.weights_dir, count=6, seed=2, nice_factor=4)
    expected = np.argsort(-pool_scores)[:6]
    assert len(set(np.round(pool_scores[expected], 6))) == 6, "scores tie; the test would not tell ranks apart"
    np.testing.assert_allclose(best, pool[expected], atol=1e-5)
    np.testing.assert_allclose(scores, pool_scores[expected], atol=1e-5)
    assert np.all(np.diff(scores) <= 0)
    assert scores[-1] >= np.delete(pool_scores, expected).max()


def test_nice_without_discriminator_weights_says_so(trained, tmp_path):
    config, _ = trained
    weights = shutil.copytree(config.weights_dir, tmp_path / "weights")
    (weights / "discriminator.weights.h5").unlink()
    assert generate(weights, count=2, seed=0)[0].shape == (2, 28, 28, 1)
    with pytest.raises(UserError, match="discriminator"):
        generate(weights, count=2, seed=0, nice_factor=2)


def test_weights_of_another_architecture_are_refused(trained, tmp_path):
    config, _ = trained
    weights = shutil.copytree(config.weights_dir, tmp_path / "weights")
    shutil.copy(weights / "discriminator.weights.h5", weights / "generator.weights.h5")
    refusal = r"does not fit dcgan's generator \(it holds \S+ of shape \(\d+, \d+\), which no layer has\)"
    with pytest.raises(UserError, match=refusal) as error:
        load_generator(weights)
    assert "\n" not in str(error.value)


def test_missing_or_foreign_weights_folder(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_generator(tmp_path / "nothing")
    with pytest.raises(UserError, match="not a dcgan weights folder"):
        load_generator(tmp_path)


def test_interpolation_walks_from_one_random_point_to_another(trained):
    config, _ = trained
    from dcgan import interpolate

    walks = interpolate(config.weights_dir, walks=3, points=5, seed=2)
    assert walks.shape == (3, 5, 28, 28, 1)
    generator = load_generator(config.weights_dir)
    start, end = np.random.default_rng(2).uniform(-1, 1, (2, 3, 100)).astype(np.float32)
    np.testing.assert_allclose(walks[:, 0], generator(start, training=False).numpy(), atol=1e-5)
    np.testing.assert_allclose(walks[:, -1], generator(end, training=False).numpy(), atol=1e-5)
    middle = generator((start + end) / 2, training=False).numpy()
    np.testing.assert_allclose(walks[:, 2], middle, atol=1e-5)

    spherical = interpolate(config.weights_dir, walks=3, points=5, seed=2, spherical=True)
    np.testing.assert_allclose(spherical[:, 0], walks[:, 0], atol=1e-5)
    np.testing.assert_allclose(spherical[:, -1], walks[:, -1], atol=1e-5)
    assert np.abs(spherical[:, 2] - walks[:, 2]).max() > 1e-3, "the great circle leaves the straight line in between"


def test_count_writes_single_images_a_batch_at_a_time_from_the_grids_noise(trained, tmp_path):
    from PIL import Image

    from cli import main
    from dcgan.datasets import load_dataset
    from dcgan.generation import BATCH, draw_batches
    from dcgan.images import to_uint8

    weights_dir = trained[0].weights_dir
    batches, labels = zip(*draw_batches(weights_dir, BATCH * 2 + 3, seed=5))
    assert [len(images) for images in batches] == [BATCH, BATCH, 3] and labels == (None, None, None)
    np.testing.assert_array_equal(np.concatenate(batches), generate(weights_dir, count=BATCH * 2 + 3, seed=5)[0])

    for output in (tmp_path / "pngs", tmp_path / "images.npz"):
        result = CliRunner().invoke(main, ["generate", "--weights-dir", weights_dir, "--count", "12", "--seed", "5",
                                           "--output", str(output)])
        assert result.exit_code == 0, result.output
        assert result.output == f"Wrote 12 images to {output} (seed 5)\n"
    expected = to_uint8(batches[0][:12])
    assert sorted(path.name for path in (tmp_path / "pngs").iterdir()) == [f"image_{i:06d}.png" for i in range(12)]
    pngs = np.stack([np.asarray(Image.open(tmp_path / "pngs" / f"image_{i:06d}.png")) for i in range(12)])
    np.testing.assert_array_equal(pngs, expected[..., 0])
    with np.load(tmp_path / "images.npz") as arrays:
        assert arrays.files == ["x"] and arrays["x"].dtype == np.uint8
        np.testing.assert_array_equal(arrays["x"], expected)
    # What --count wrote trains: it reads back as a dataset.
    images = load_dataset(str(tmp_path / "images.npz"))
    np.testing.assert_allclose(images, expected / 127.5 - 1, atol=1e-6)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["images.npz", "pngs"]


@pytest.mark.parametrize(
    "arguments, status, message",
    [
        (
            ["--count", "3", "--output", "{tmp}/pngs", "--nice"],
            2,
            "Error: --count writes single images, not a grid; leave out --nice",
        ),
        (
            ["--count", "3", "--output", "{tmp}/pngs", "--batch-size", "4"],
            2,
            "Error: --count writes single images, not a grid; leave out --batch-size",
        ),
        (
            ["--count", "3"],
            2,
            "Error: --count writes into --output: give a new folder for the PNGs, or a name ending in .npz",
        ),
        (["--count", "3", "--output", "{tmp}/a.png"], 2, "Error: --count writes into --output: give a new folder"),
        (
            ["--count", "0", "--output", "{tmp}/pngs"],
            2,
            "Error: Invalid value for '--count': 0 is not in the range 1<=x<=1000000.",
        ),
        (
            ["--count", "3", "--output", "{tmp}/taken"],
            1,
            "Error: {tmp}/taken exists already; choose another --output, or remove it first",
        ),
    ],
)
def test_count_refusals(trained, tmp_path, arguments, status, message):
    from cli import main

    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "mine.txt").write_text("kept")
    arguments = [argument.replace("{tmp}", str(tmp_path)) for argument in arguments]
    result = CliRunner().invoke(main, ["generate", "--weights-dir", trained[0].weights_dir, *arguments])
    assert result.exit_code == status
    assert result.output.startswith(message.replace("{tmp}", str(tmp_path))) and result.output.count("\n") == 1
    assert sorted(path.name for path in tmp_path.iterdir()) == ["taken"]
    assert (tmp_path / "taken" / "mine.txt").read_text() == "kept"
