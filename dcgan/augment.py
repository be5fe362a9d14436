"""Differentiable augmentation (DiffAugment, Zhao et al. 2020) of the images the discriminator sees.

On a few thousand images the discriminator learns the training set by heart and the generator's
samples get worse the longer it trains. Shifting and blanking each image at random, real and
generated alike and in both players' steps, keeps the discriminator from memorising while the
generator, whose gradient flows through the same operations, still learns the unaugmented images.
The Trainer decides how often an image is augmented: always, or as often as adaptive
augmentation finds necessary (`augment_chosen`).
"""
import tensorflow as tf

DRAWS_PER_AUGMENTATION = 2  # uniform numbers in [0, 1) each augmentation uses per image
TRANSLATION = 1 / 8  # largest shift, as a fraction of the side
CUTOUT = 1 / 2  # side of the blanked square, as a fraction of the image's


def augment(images, augmentations, draws):
    """`images` (n, height, width, channels) with each of `augmentations` applied in turn.

    `draws` holds n rows of DRAWS_PER_AUGMENTATION uniform numbers in [0, 1) per augmentation:
    all the randomness, so the caller decides how it is seeded.
    """
    for index, name in enumerate(augmentations):
        uniforms = draws[:, index * DRAWS_PER_AUGMENTATION : (index + 1) * DRAWS_PER_AUGMENTATION]
        images = {"translation": translate, "cutout": cut_out}[name](images, uniforms)
    return images


def augment_chosen(images, augmentations, draws, chosen):
    """`images` augmented as `augment` does where `chosen` (n booleans) is true, and as they are elsewhere."""
    return tf.where(tf.reshape(chosen, (-1, 1, 1, 1)), augment(images, augmentations, draws), images)


def translate(images, uniforms):
    """Shift each image by up to TRANSLATION of its side in each direction, mirroring the edges into the gap."""
    height, width = images.shape[1], images.shape[2]
    most = max(1, round(TRANSLATION * min(height, width)))
    shifts = tf.cast(tf.floor(uniforms * (2 * most + 1)), tf.int32) - most
    padded = tf.pad(images, [[0, 0], [most, most], [most, most], [0, 0]], mode="REFLECT")
    rows = tf.range(height)[None, :] + most - shifts[:, :1]
    columns = tf.range(width)[None, :] + most - shifts[:, 1:]
    return tf.gather(tf.gather(padded, rows, axis=1, batch_dims=1), columns, axis=2, batch_dims=1)


def cut_out(images, uniforms):
    """Set a square of about CUTOUT of each image's side to 0 (mid-gray), centred anywhere in the image.

    The square is centred on a pixel, so its side is odd: 15 pixels at 28. Near an edge it is cut off.
    """
    height, width = images.shape[1], images.shape[2]
    half_height, half_width = round(CUTOUT * height) // 2, round(CUTOUT * width) // 2
    centres = tf.cast(tf.floor(uniforms * [height, width]), tf.int32)
    rows = tf.range(height)[None, :, None] - centres[:, :1, None]
    columns = tf.range(width)[None, None, :] - centres[:, 1:, None]
    inside = (tf.abs(rows) <= half_height) & (tf.abs(columns) <= half_width)
    return tf.where(inside[..., None], tf.zeros_like(images), images)
