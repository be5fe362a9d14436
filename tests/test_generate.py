import shutil

import numpy as np
import pytest

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
    with pytest.raises(UserError, match=r"does not fit dcgan's generator \(a layer expects shape") as error:
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
