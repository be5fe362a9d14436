"""Training on folders of your own images: grayscale and colour, two sizes, streamed or in memory."""
import dataclasses
import functools
import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import dcgan
from cli import main
from dcgan import UserError, generate, load_discriminator, load_generator
from dcgan.datasets import load_dataset
from dcgan.image_folders import ImageFolder
from dcgan.models import build_discriminator, build_generator
from dcgan.sizes import supported_sizes
from dcgan.training import Batches


def make_folder(folder, count=12, size=40, colour=True, nested=True, seed=0):
    """`count` random PNG and JPEG pictures under `folder`, half of them in a subfolder."""
    rng = np.random.default_rng(seed)
    for index in range(count):
        shape = (size, size, 3) if colour else (size, size)
        picture = Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8))
        where = folder / "more" if nested and index % 2 else folder
        where.mkdir(parents=True, exist_ok=True)
        picture.save(where / f"image{index:02d}.{'jpg' if index % 3 == 0 else 'png'}")
    return folder


def test_folder_images_are_found_in_subfolders_resized_and_scaled(tmp_path):
    make_folder(tmp_path, colour=True)
    images = load_dataset(str(tmp_path), image_size=32)
    assert images.shape == (12, 32, 32, 3) and images.dtype == np.float32
    assert images.min() >= -1 and images.max() <= 1
    with Image.open(tmp_path / "image02.png") as original:
        expected = np.asarray(original.resize((32, 32), Image.Resampling.LANCZOS), np.float32) / 127.5 - 1
    # Files in path order: image00, image02, ... at the top, then more/image01, ...
    np.testing.assert_allclose(images[1], expected, atol=1e-6)


def test_channels_are_detected_and_can_be_forced(tmp_path):
    gray = make_folder(tmp_path / "gray", colour=False)
    colour = make_folder(tmp_path / "colour", colour=True)
    assert load_dataset(str(gray)).shape == (12, 28, 28, 1)
    assert load_dataset(str(colour)).shape == (12, 28, 28, 3)
    assert load_dataset(str(colour), channels=1).shape == (12, 28, 28, 1)
    as_colour = load_dataset(str(gray), channels=3)
    np.testing.assert_array_equal(as_colour[..., 0], as_colour[..., 2])


def test_center_crop_keeps_the_middle_square(tmp_path):
    picture = np.zeros((40, 60), np.uint8)
    picture[:, 10:50] = 255  # the centre 40x40 square is all white
    Image.fromarray(picture).save(tmp_path / "wide.png")
    with pytest.raises(
        UserError, match=r"1 of 1 images are not square \(e\.g\. .*wide\.png is 60x40\); pass --center-crop"
    ):
        load_dataset(str(tmp_path))
    images = load_dataset(str(tmp_path), image_size=20, center_crop=True)
    assert images.shape == (1, 20, 20, 1) and np.all(images == 1)


def test_bad_folders_get_one_clear_line(tiny_config, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no PNG or JPEG images"):
        load_dataset(str(tmp_path / "empty"))
    broken = make_folder(tmp_path / "broken", count=4)
    (broken / "truncated.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (broken / "notes.jpg").write_text("not a picture")
    assert load_dataset(str(broken)).shape[0] == 4
    assert "Skipping 2 of 6 image files" in capsys.readouterr().err
    only_broken = tmp_path / "only-broken"
    only_broken.mkdir()
    (only_broken / "a.png").write_text("no")
    with pytest.raises(UserError, match="none of the 1 image files"):
        load_dataset(str(only_broken))
    small = make_folder(tmp_path / "small", count=3, size=24)
    with pytest.raises(UserError, match=r"3 of 3 images are smaller than --image-size 32 \(e\.g\. .* is 24x24\)"):
        load_dataset(str(small), image_size=32)
    mixed = make_folder(tmp_path / "mixed", count=2, size=64)
    make_folder(mixed / "big", count=2, size=100, seed=1)
    assert load_dataset(str(mixed), image_size=64).shape == (4, 64, 64, 3), "mixed sizes are each resized"
    with pytest.raises(UserError, match="image size 30 is not supported; use one of 16, 20, 24, 28, 32"):
        dcgan.train(tiny_config(tmp_path / "run", dataset=str(mixed), image_size=30, architecture="classic"))
    with pytest.raises(UserError, match="apply to folders of PNG or JPEG images"):
        load_dataset("mnist-sample", image_size=32)


def test_a_big_folder_is_read_from_disk_a_batch_at_a_time_with_the_same_pixels(tmp_path, capsys):
    make_folder(tmp_path, count=10)
    in_memory = load_dataset(str(tmp_path), image_size=32)
    streamed = load_dataset(str(tmp_path), image_size=32, memory_limit=10_000)
    assert isinstance(streamed, ImageFolder) and streamed.shape == in_memory.shape and len(streamed) == 10
    assert "reading them from disk a batch at a time" in capsys.readouterr().err
    np.testing.assert_array_equal(streamed[[3, 1, 4]], in_memory[[3, 1, 4]])
    # The step's batches, read a step ahead on another thread, are the same as from memory.
    memory_batches, disk_batches = Batches(in_memory, 0, 3), Batches(streamed, 0, 3)
    for step in [0, 1, 2, 3, 4, 7, 6]:
        np.testing.assert_array_equal(disk_batches(step), memory_batches(step))


@pytest.mark.parametrize("size, channels", [(32, 1), (64, 3)])
def test_models_scale_to_the_image_shape(size, channels):
    generator, discriminator = (
        build_generator(image_shape=(size, size, channels)),
        build_discriminator((size, size, channels)),
    )
    assert generator.output_shape == (None, size, size, channels)
    assert discriminator.output_shape == (None, 1)
    upsamplings = sum(type(layer).__name__ == "UpSampling2D" for layer in generator.layers)
    poolings = sum(type(layer).__name__ == "MaxPooling2D" for layer in discriminator.layers)
    assert upsamplings == poolings == {32: 2, 64: 3}[size]
    assert generator.layers[5].output.shape[1:] == (8, 8, 128)  # the dense layer stays the classic's size or less


def test_supported_sizes_cover_the_common_ones():
    assert {16, 28, 32, 48, 64, 96, 128, 256} <= set(supported_sizes())
    assert 30 not in supported_sizes() and 512 not in supported_sizes()


@pytest.mark.parametrize("size, colour", [(32, False), (32, True), (64, True)])
def test_training_on_a_folder_writes_grids_weights_and_reloads(tiny_config, tmp_path, size, colour):
    data = make_folder(tmp_path / "pictures", count=8, size=size + 8, colour=colour)
    # No weight average: one model fewer to save, and the folder is what is under test here.
    config = tiny_config(
        tmp_path, dataset=str(data), image_size=size, batch_size=4, steps=3, sample_every=2, save_every=2, ema=0.0
    )
    dcgan.train(config)
    channels = 3 if colour else 1
    run = json.loads((tmp_path / "weights" / "run.json").read_text())
    assert run["image_shape"] == [size, size, channels] and run["config"]["image_size"] == size
    with Image.open(tmp_path / "samples" / "fakes_epoch0002_step0000003.png") as grid:
        assert grid.mode == ("RGB" if colour else "L") and grid.size == (4 * size, 3 * size)
    generator = load_generator(tmp_path / "weights")
    assert generator.output_shape == (None, size, size, channels)
    assert load_discriminator(tmp_path / "weights").input_shape == (None, size, size, channels)
    images, scores = generate(tmp_path / "weights", count=3, seed=0, nice_factor=2)
    assert images.shape == (3, size, size, channels) and np.all(np.diff(scores) <= 0)
    # Resume carries on from the folder; another size is refused.
    dcgan.train(dataclasses.replace(config, steps=4), resume=True)
    assert json.loads((tmp_path / "weights" / "run.json").read_text())["step"] == 4
    with pytest.raises(UserError, match="cannot resume with --image-size 16"):
        dcgan.train(dataclasses.replace(config, image_size=16, steps=5), resume=True)


def test_train_command_on_a_colour_folder(run_dcgan, tmp_path):
    make_folder(tmp_path / "pictures", count=6, size=32)
    result = run_dcgan(
        "train",
        "--dataset",
        "pictures",
        "--image-size",
        32,
        "--batch-size",
        3,
        "--steps",
        2,
        "--ema",
        0,
        "--weights-dir",
        "w",
        "--samples-dir",
        "s",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert "Training on 6 images (32x32x3) from pictures" in result.stdout
    nice = CliRunner().invoke(main, ["generate", "--weights-dir", tmp_path / "w", "--nice", "--batch-size", 4,
                                     "--nice-factor", 2, "--seed", 0, "--output", tmp_path / "nice.png"])
    assert nice.exit_code == 0, nice.output
    with Image.open(tmp_path / "nice.png") as png:
        assert png.mode == "RGB" and png.size == (2 * 32, 2 * 32)
    bad = run_dcgan("train", "--dataset", "pictures", "--channels", 2, cwd=tmp_path)
    assert bad.returncode == 2 and "'2' is not one of '1', '3'" in bad.stderr


def test_training_from_disk_gives_the_same_weights_as_from_memory(tiny_config, tmp_path, monkeypatch):
    data = make_folder(tmp_path / "pictures", count=8, size=32)
    # The classic preset: it ends bit-identical given identical batches, where the fast one's Adam
    # steps were seen to differ by 1e-7 between the two runs' input buffers.
    settings = dict(dataset=str(data), image_size=32, batch_size=4, steps=3, preset="classic")
    in_memory = dcgan.train(tiny_config(tmp_path / "memory", **settings))
    reading = functools.partial(load_dataset, memory_limit=1)  # as if the folder were too big for memory
    monkeypatch.setattr(dcgan.datasets, "load_dataset", reading)
    from_disk = dcgan.train(tiny_config(tmp_path / "disk", **settings))
    for a, b in zip(in_memory.generator.get_weights(), from_disk.generator.get_weights()):
        np.testing.assert_array_equal(a, b)
