"""A saved generator.keras under Keras's other backends, in plain Keras with no dcgan: each architecture's generator
must draw the images it draws under TensorFlow. Runs where `pip install '.[backends]'` installed JAX and PyTorch."""
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import dcgan
from dcgan.presets import ARCHITECTURE_NAMES


# A child process per backend, since Keras reads KERAS_BACKEND once: loads each generator given and draws from the
# noise.
DRAW = """
import sys
import keras
import numpy as np

noise = np.load(sys.argv[1])
for path in sys.argv[2:]:
    np.save(path + ".npy", keras.ops.convert_to_numpy(keras.saving.load_model(path).predict(noise, verbose=0)))
"""


def backend(name):
    return pytest.param(name, marks=pytest.mark.skipif(importlib.util.find_spec(name) is None,
                                                       reason=f"{name} is not installed: pip install '.[backends]'"))


@pytest.fixture(scope="module")
def generators(tiny_config, tmp_path_factory):
    """{architecture: a trained run's generator.keras}, one tiny run of each."""
    folder = tmp_path_factory.mktemp("backends")
    paths = {}
    for architecture in ARCHITECTURE_NAMES:
        config = tiny_config(folder / architecture, architecture=architecture, steps=2)
        dcgan.train(config)
        paths[architecture] = Path(config.weights_dir) / "generator.keras"
    return paths


@pytest.mark.parametrize("name", [backend("jax"), backend("torch")])
def test_generators_draw_tensorflows_images(generators, tmp_path, name):
    noise_path = tmp_path / "noise.npy"
    noise = np.random.default_rng(0).uniform(-1, 1, (16, 100)).astype(np.float32)
    np.save(noise_path, noise)
    copies = {architecture: tmp_path / f"{architecture}.keras" for architecture in generators}
    for architecture, copy in copies.items():
        copy.write_bytes(generators[architecture].read_bytes())
    drawn = subprocess.run(
        [sys.executable, "-c", DRAW, noise_path, *copies.values()],
        env={**os.environ, "KERAS_BACKEND": name},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert drawn.returncode == 0, drawn.stderr[-3000:]
    for architecture, copy in copies.items():
        expected = dcgan.load_generator(generators[architecture].parent).predict(noise, verbose=0)
        assert np.abs(expected).max() > 0.01
        np.testing.assert_allclose(np.load(f"{copy}.npy"), expected, atol=1e-5, err_msg=architecture)
