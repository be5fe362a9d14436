import gzip
import struct

import numpy as np
import pytest

from dcgan import UserError
from dcgan import datasets
from dcgan.datasets import MNIST_SAMPLE, load_dataset, read_idx


@pytest.fixture(scope="module")
def digits():
    with np.load(MNIST_SAMPLE) as arrays:
        return arrays["x"], arrays["y"]


def write_idx(path, array):
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


def truncated_idx(path):
    write_idx(path, np.zeros((4, 28, 28)))
    path.write_bytes(path.read_bytes()[:-5])
    return str(path)


def test_bundled_sample_holds_500_real_digits_per_class(digits):
    images, labels = digits
    assert images.shape == (5000, 28, 28) and images.dtype == np.uint8
    assert np.bincount(labels).tolist() == [500] * 10
    assert MNIST_SAMPLE.stat().st_size < 1_000_000
    # Real digits: dark background, a bright stroke in the middle.
    assert images[:, 0, :].mean() < 1 and images[:, 10:18, 10:18].mean() > 60


def test_sample_is_scaled_to_unit_range(digits):
    images = load_dataset("mnist-sample")
    assert images.shape == (5000, 28, 28, 1) and images.dtype == np.float32
    assert images.min() == -1 and images.max() == 1
    np.testing.assert_allclose(images[..., 0], digits[0] / 127.5 - 1, atol=1e-6)


def test_npz_paths_with_x_train_or_x_and_float_pixels(tmp_path, digits):
    np.savez(tmp_path / "keras.npz", x_train=digits[0][:30], y_train=digits[1][:30])
    np.savez(tmp_path / "plain.npz", x=(digits[0][:20] / 255.0).astype(np.float32))
    assert load_dataset(str(tmp_path / "keras.npz")).shape == (30, 28, 28, 1)
    plain = load_dataset(str(tmp_path / "plain.npz"))
    np.testing.assert_allclose(plain, load_dataset(str(tmp_path / "keras.npz"))[:20], atol=1e-5)


@pytest.mark.parametrize("name", ["images-idx3-ubyte", "images-idx3-ubyte.gz"])
def test_idx_files_raw_and_gzipped(tmp_path, digits, name):
    path = write_idx(tmp_path / name, digits[0][:50])
    np.testing.assert_array_equal(read_idx(path), digits[0][:50])
    assert load_dataset(str(path)).shape == (50, 28, 28, 1)


def test_folder_of_idx_files_uses_the_training_split(tmp_path, digits):
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", digits[0][:40])
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", digits[0][40:50])
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", digits[1][:40])
    images = load_dataset(str(tmp_path))
    np.testing.assert_allclose(images[..., 0], digits[0][:40] / 127.5 - 1, atol=1e-6)


def test_mnist_reads_the_keras_cache(tmp_path, monkeypatch, digits):
    (tmp_path / "datasets").mkdir()
    np.savez(tmp_path / "datasets" / "mnist.npz", x_train=digits[0][:100], x_test=digits[0][100:110])
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    assert load_dataset("mnist").shape == (100, 28, 28, 1)


def test_mnist_falls_back_to_the_sample_offline_and_says_how_to_get_the_full_set(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    images = load_dataset("mnist")
    assert images.shape == (5000, 28, 28, 1)
    said = capsys.readouterr()
    assert said.out == "", "Keras's download lines go to stderr: stdout is for results"
    message = said.err.strip().splitlines()[-1]  # after Keras's "Downloading data from ..."
    assert (
        "Training on mnist-sample, the bundled 5,000 digits, instead" in message
        and str(tmp_path / "datasets" / "mnist.npz") in message
    )


def test_fashion_mnist_from_the_keras_cache(tmp_path, monkeypatch, digits):
    folder = tmp_path / "datasets" / "fashion-mnist"
    folder.mkdir(parents=True)
    write_idx(folder / "train-images-idx3-ubyte.gz", digits[0][:60])
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    assert load_dataset("fashion-mnist").shape == (60, 28, 28, 1)


def test_fashion_mnist_missing_names_both_places(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setattr(datasets, "DEBIAN_FASHION_MNIST", tmp_path / "nowhere")
    with pytest.raises(UserError, match="dataset-fashion-mnist") as error:
        load_dataset("fashion-mnist")
    assert str(tmp_path / "datasets" / "fashion-mnist") in str(error.value)


@pytest.mark.skipif(not (datasets.DEBIAN_FASHION_MNIST / "train-images-idx3-ubyte.gz").exists(),
                    reason="Debian's dataset-fashion-mnist is not installed")
def test_fashion_mnist_from_debian(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    images = load_dataset("fashion-mnist")
    assert images.shape == (60000, 28, 28, 1) and images.min() == -1 and images.max() == 1


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda d: "no-such-dataset", "neither a known name"),
        (lambda d: str(d / "missing.npz"), "neither a known name"),
        (
            lambda d: np.savez(d / "oblong.npz", x=np.zeros((3, 32, 30, 3), np.uint8)) or str(d / "oblong.npz"),
            r"shape \(3, 32, 30, 3\)",
        ),
        (
            lambda d: np.savez(d / "rgba.npz", x=np.zeros((3, 32, 32, 4), np.uint8)) or str(d / "rgba.npz"),
            r"shape \(3, 32, 32, 4\)",
        ),
        (
            lambda d: np.savez(d / "keys.npz", images=np.zeros((3, 28, 28))) or str(d / "keys.npz"),
            "no 'x_train' or 'x' array",
        ),
        (lambda d: (d / "bad.npz").write_text("not a zip") and str(d / "bad.npz"), "cannot read"),
        (lambda d: (d / "bad-idx3-ubyte").write_bytes(b"\x89PNG....") and str(d / "bad-idx3-ubyte"), "not an IDX file"),
        (lambda d: (d / "bad.gz").write_bytes(b"not gzip") and str(d / "bad.gz"), "cannot read"),
        (lambda d: truncated_idx(d / "cut-idx3-ubyte"), "does not match its header"),
        (lambda d: (d / "empty").mkdir() or str(d / "empty"), "no PNG or JPEG images nor IDX files in folder"),
        (lambda d: np.savez(d / "range.npz", x=np.full((2, 28, 28), 300.0)) or str(d / "range.npz"), "values from 300"),
    ],
)
def test_bad_datasets_get_one_clear_line(tmp_path, make, message):
    with pytest.raises(UserError, match=message) as error:
        load_dataset(make(tmp_path))
    assert "\n" not in str(error.value)
