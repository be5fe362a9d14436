"""Drawing images from a trained generator, optionally keeping those the discriminator likes best."""
import numpy as np

from dcgan.weights import load_discriminator, load_generator


def generate(weights_dir="weights", count=128, seed=0, nice_factor=None):
    """`count` images in [-1, 1] from the generator in `weights_dir`, and their discriminator scores.

    With `nice_factor`, draw `count * nice_factor` images and keep the `count`
    the discriminator scores highest, best first; without it the scores are None.
    The noise is a pure function of `seed`, so the same seed gives the same images.
    """
    generator = load_generator(weights_dir)
    discriminator = load_discriminator(weights_dir) if nice_factor else None
    drawn = count * (nice_factor or 1)
    noise = np.random.default_rng(seed).uniform(-1, 1, (drawn, generator.input_shape[-1])).astype(np.float32)
    images = np.concatenate([generator(chunk, training=False).numpy() for chunk in np.split(noise, nice_factor or 1)])
    if discriminator is None:
        return images, None
    scores = np.concatenate([discriminator(chunk, training=False).numpy()[:, 0] for chunk in np.split(images, nice_factor)])
    best = np.argsort(-scores, kind="stable")[:count]
    return images[best], scores[best]
