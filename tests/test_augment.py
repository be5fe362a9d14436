import numpy as np
import pytest
import tensorflow as tf

from dcgan import UserError
from dcgan.augment import augment, augment_chosen, cut_out, translate
from dcgan.datasets import load_dataset
from dcgan.presets import augmentations
from dcgan.trainer import ADAPTATION_IMAGES


IMAGES = np.random.default_rng(0).uniform(-1, 1, (3, 28, 28, 2)).astype(np.float32)
MOST = 4  # an eighth of 28, rounded


def draws_for_shifts(shifts):
    """The uniform numbers that make translate shift by `shifts` (rows, columns) per image."""
    return (np.asarray(shifts, np.float32) + MOST + 0.5) / (2 * MOST + 1)


def test_translation_shifts_each_image_by_its_own_amount_and_mirrors_the_edges():
    shifts = [(2, -1), (-4, 4), (0, 0)]
    shifted = translate(tf.constant(IMAGES), draws_for_shifts(shifts)).numpy()
    padded = np.pad(IMAGES, [(0, 0), (MOST, MOST), (MOST, MOST), (0, 0)], mode="reflect")
    for image, original, (rows, columns) in zip(shifted, padded, shifts):
        np.testing.assert_array_equal(
            image, original[MOST - rows : MOST - rows + 28, MOST - columns : MOST - columns + 28]
        )
    np.testing.assert_array_equal(shifted[2], IMAGES[2])
    assert np.array_equal(shifted[0, 2:, :27], IMAGES[0, :26, 1:]), "2 rows down, 1 column left"


def test_translation_never_shifts_by_more_than_an_eighth():
    extremes = translate(tf.constant(IMAGES[:2]), np.array([[0.0, 0.0], [0.9999, 0.9999]], np.float32)).numpy()
    np.testing.assert_array_equal(extremes[0, :24, :24], IMAGES[0, 4:, 4:])
    np.testing.assert_array_equal(extremes[1, 4:, 4:], IMAGES[1, :24, :24])


def test_cutout_blanks_one_square_half_the_side_and_keeps_the_rest():
    centres = np.array([[14, 14], [0, 27], [20, 5]], np.float32)
    cut = cut_out(tf.constant(IMAGES), (centres + 0.5) / 28).numpy()
    for image, original, (row, column) in zip(cut, IMAGES, centres.astype(int)):
        inside = np.zeros((28, 28), bool)
        inside[max(row - 7, 0) : row + 8, max(column - 7, 0) : column + 8] = True
        assert np.all(image[inside] == 0)
        np.testing.assert_array_equal(image[~inside], original[~inside])
    assert (cut[0] == 0).all(axis=-1).sum() == 15 * 15, "a 15-pixel square in the middle"


def test_gradients_flow_through_the_augmentations_to_every_kept_pixel():
    images = tf.Variable(IMAGES)
    draws = np.full((3, 4), 0.5, np.float32)  # no shift; a square cut out of the middle
    with tf.GradientTape() as tape:
        total = tf.reduce_sum(augment(images, ("translation", "cutout"), draws))
    gradient = tape.gradient(total, images).numpy()
    assert gradient.sum() == 3 * 2 * (28 * 28 - 15 * 15)
    np.testing.assert_array_equal(augment(IMAGES, (), draws[:, :0]), IMAGES)


def test_only_the_chosen_images_are_augmented():
    draws = np.full((3, 4), 0.5, np.float32)
    everything = augment(IMAGES, ("translation", "cutout"), draws).numpy()
    some = augment_chosen(IMAGES, ("translation", "cutout"), draws, tf.constant([True, False, True])).numpy()
    np.testing.assert_array_equal(some[[0, 2]], everything[[0, 2]])
    np.testing.assert_array_equal(some[1], IMAGES[1])
    assert not np.array_equal(everything[1], IMAGES[1])


def test_augmentation_names_are_checked():
    assert augmentations("translation, cutout") == ("translation", "cutout")
    assert augmentations("none") == ()
    for bad, message in (
        ("flip", "unknown augmentation flip"),
        ("", "unknown augmentation ''"),
        ("none,cutout", "none"),
    ):
        with pytest.raises(UserError, match=message):
            augmentations(bad)


def test_augmentation_changes_training_and_the_same_seed_repeats_it(classic_trainer):
    real = load_dataset("mnist-sample")[:8]

    def generator_after_two_steps(augment):
        trainer = classic_trainer(lr=0.0002, optimizer="adam", activation="leaky_relu", augment=augment)
        for step in range(2):
            trainer.train_step(real, tf.constant(step, tf.int64))
        return trainer.generator.get_weights()

    plain, augmented, again = (
        generator_after_two_steps(a) for a in ("none", "translation,cutout", "translation,cutout")
    )
    assert max(np.abs(a - b).max() for a, b in zip(plain, augmented)) > 1e-5
    for a, b in zip(augmented, again):
        np.testing.assert_array_equal(a, b)


def test_adaptive_augmentation_starts_at_none_and_follows_the_discriminator(classic_trainer):
    real = load_dataset("mnist-sample")[:8]

    def trainer(augment, augment_target=None, probability=None):
        made = classic_trainer(lr=0.0002, optimizer="adam", activation="leaky_relu", augment=augment,
                               augment_target=augment_target)
        if probability is not None:
            made.augment_probability.assign(probability)
        return made

    def weights_after_one_step(trainer):
        trainer.train_step(real, tf.constant(0, tf.int64))
        return trainer.generator.get_weights() + trainer.discriminator.get_weights()

    # It starts at probability 0, where the discriminator sees every image as it is; at 1 it augments them all.
    adaptive = trainer("translation,cutout", 0.8)
    assert float(adaptive.augment_probability) == 0
    for start, equivalent in (
        (adaptive, trainer("none")),
        (trainer("translation,cutout", 0.8, 1.0), trainer("translation,cutout")),
    ):
        for a, b in zip(weights_after_one_step(start), weights_after_one_step(equivalent), strict=True):
            np.testing.assert_array_equal(a, b)

    # Each step moves it by a batch's share of ADAPTATION_IMAGES: up while the discriminator calls more
    # than the target fraction of real images real, down while it calls fewer.
    adaptive = trainer("translation,cutout", 0.5, 0.5)
    expected, moves = 0.5, set()
    for step in range(6):
        values = adaptive.train_step(real, tf.constant(step, tf.int64))
        assert float(values["augment_p"]) == pytest.approx(expected, abs=1e-6), (
            "the step reports the probability it used"
        )
        move = np.sign(float(values["d_acc_real"]) - 0.5)
        expected += move * len(real) / ADAPTATION_IMAGES
        moves.add(move)
    assert float(adaptive.augment_probability) == pytest.approx(expected, abs=1e-6)
    assert moves - {0}, "the discriminator's accuracy moved the probability at least once"
