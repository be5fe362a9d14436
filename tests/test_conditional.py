"""Class-conditional training and generation: each conditioning trains, reloads in plain Keras with labels and
resumes bit for bit; every kind of labelled data trains; generate draws the classes asked for; evaluate scores
each class; and each kind of bad input is refused in one line."""
import json
import re
from pathlib import Path

import keras
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import dcgan
from cli import main
from dcgan import Trainer
from dcgan.datasets import FASHION_MNIST_CLASSES, MNIST_SAMPLE, load_conditional
from dcgan.evaluation import format_report
from dcgan.images import to_uint8
from dcgan.presets import CONDITIONINGS

from test_datasets import write_idx
from test_family import all_state

DIGITS = [str(digit) for digit in range(10)]
CONDITIONAL = {"batch_size": 4, "save_every": 2, "keep": 0, "sample_every": 100, "sample_count": 20}
# The cheap models, where a test is about the labels' path rather than the models.
SMALL = {"architecture": "dcgan", **CONDITIONAL}


@pytest.fixture(scope="module")
def conditional_run(tiny_config, tmp_path_factory):
    """One tiny conditional run on mnist-sample, shared by the tests that only draw from it."""
    config = tiny_config(tmp_path_factory.mktemp("conditional"), conditioning="projection", steps=3, **CONDITIONAL)
    dcgan.train(config)
    return Path(config.weights_dir)


def noise(count, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, (count, 100)).astype(np.float32)


@pytest.mark.parametrize("conditioning", CONDITIONINGS)
def test_each_conditioning_trains_reloads_in_plain_keras_with_labels_and_resumes_bit_for_bit(
    tiny_config, tmp_path, conditioning
):
    straight = dcgan.train(tiny_config(tmp_path / "straight", conditioning=conditioning, steps=3, **SMALL))
    weights = tmp_path / "straight" / "weights"
    run = json.loads((weights / "run.json").read_text())
    assert run["class_names"] == DIGITS and run["config"]["conditioning"] == conditioning

    # Plain Keras loads both models; they take labels, and the label changes what they compute.
    generator = keras.saving.load_model(weights / "generator.keras")
    discriminator = keras.saving.load_model(weights / "discriminator.keras")
    threes, sevens = np.full(4, 3, np.int32), np.full(4, 7, np.int32)
    images = generator.predict([noise(4), threes], verbose=0)
    np.testing.assert_allclose(images, straight.sampling_generator()([noise(4), threes], training=False), atol=1e-5)
    assert np.abs(images - generator.predict([noise(4), sevens], verbose=0)).max() > 1e-4
    scores = discriminator.predict([images, threes], verbose=0)
    np.testing.assert_allclose(scores, straight.discriminator([images, threes], training=False), atol=1e-5)
    assert np.abs(scores - discriminator.predict([images, sevens], verbose=0)).max() > 0

    # The training grid: one row per class (10 rows of 2 images for a sample count of 20).
    grid = Image.open(sorted((tmp_path / "straight" / "samples").glob("fakes_*.png"))[-1])
    assert grid.height > 4 * grid.width

    dcgan.train(tiny_config(tmp_path / "split", conditioning=conditioning, steps=2, **SMALL))
    resumed = dcgan.train(tiny_config(tmp_path / "split", conditioning=conditioning, steps=3, **SMALL), resume=True)
    for a, b in zip(all_state(straight), all_state(resumed), strict=True):
        np.testing.assert_array_equal(a, b)


def digits(per_class=4):
    """Some digits of every class; the bundled sample holds 500 of each, class after class."""
    pick = [500 * label + index for label in range(10) for index in range(per_class)]
    with np.load(MNIST_SAMPLE) as arrays:
        return arrays["x"][pick], arrays["y"][pick]


def npz_data(folder, monkeypatch):
    images, labels = digits()
    np.savez(folder / "digits.npz", x_train=images, y_train=labels)
    return str(folder / "digits.npz"), labels.tolist(), DIGITS


def idx_data(folder, monkeypatch):
    images, labels = digits()
    (folder / "idx").mkdir()
    write_idx(folder / "idx" / "train-images-idx3-ubyte.gz", images)
    write_idx(folder / "idx" / "train-labels-idx1-ubyte.gz", labels)
    return str(folder / "idx"), labels.tolist(), DIGITS


def fashion_data(folder, monkeypatch):
    images, labels = digits()
    cache = folder / "datasets" / "fashion-mnist"
    cache.mkdir(parents=True)
    write_idx(cache / "train-images-idx3-ubyte.gz", images)
    write_idx(cache / "train-labels-idx1-ubyte.gz", labels)
    monkeypatch.setenv("KERAS_HOME", str(folder))
    return "fashion-mnist", labels.tolist(), list(FASHION_MNIST_CLASSES)


def folder_data(folder, monkeypatch):
    rng = np.random.default_rng(0)
    for name in ("dog", "cat", "bird"):  # read in sorted order: bird 0, cat 1, dog 2
        (folder / "pets" / name).mkdir(parents=True)
        for index in range(3):
            Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(
                folder / "pets" / name / f"{index}.png"
            )
    return str(folder / "pets"), [0, 0, 0, 1, 1, 1, 2, 2, 2], ["bird", "cat", "dog"]


@pytest.mark.parametrize("make", [npz_data, idx_data, fashion_data, folder_data])
def test_each_kind_of_labelled_data_trains_conditionally(tiny_config, tmp_path, monkeypatch, make):
    dataset, labels, names = make(tmp_path, monkeypatch)
    images, loaded_labels, loaded_names = load_conditional(dataset)
    assert loaded_labels.tolist() == labels and loaded_names == names and len(images) == len(labels)
    config = tiny_config(tmp_path, dataset=dataset, conditioning="concat", architecture="mlp", steps=1, batch_size=2,
                         sample_count=6)
    dcgan.train(config)
    assert json.loads(Path(config.weights_dir, "run.json").read_text())["class_names"] == names
    drawn, _ = dcgan.generate(config.weights_dir, count=2, classes=[len(names) - 1])
    assert drawn.shape == (2, *images.shape[1:])


def test_generate_draws_each_class_asked_for_from_the_same_noise(conditional_run):
    generator = dcgan.load_generator(conditional_run)
    images, scores = dcgan.generate(conditional_run, count=3, seed=4, classes=[7, 2])
    expected = generator.predict([np.tile(noise(3, seed=4), (2, 1)), np.array([7, 7, 7, 2, 2, 2])], verbose=0)
    np.testing.assert_allclose(images, expected, atol=1e-6)
    assert scores is None

    # --nice keeps each class's own best, best first.
    pool, _ = dcgan.generate(conditional_run, count=6, seed=5, classes=[1, 5])
    pool_scores = dcgan.load_discriminator(conditional_run).predict([pool, np.repeat([1, 5], 6)], verbose=0)[:, 0]
    best, best_scores = dcgan.generate(conditional_run, count=2, seed=5, nice_factor=3, classes=[1, 5])
    expected_scores = [*np.sort(pool_scores[:6])[::-1][:2], *np.sort(pool_scores[6:])[::-1][:2]]
    np.testing.assert_allclose(best_scores, expected_scores, atol=1e-6)
    assert best.shape == (4, 28, 28, 1)


def test_interpolate_keeps_a_class_or_moves_from_one_to_another(conditional_run):
    generator = dcgan.load_generator(conditional_run)
    kept = dcgan.interpolate(conditional_run, walks=2, points=3, seed=1, classes=[4])
    start = np.random.default_rng(1).uniform(-1, 1, (2, 2, 100))[0].astype(np.float32)
    np.testing.assert_allclose(kept[:, 0], generator.predict([start, np.array([4, 4])], verbose=0), atol=1e-5)
    moving = dcgan.interpolate(conditional_run, walks=2, points=3, seed=1, classes=[4, 9])
    np.testing.assert_allclose(moving[:, 0], generator.predict([start, np.array([4, 4])], verbose=0), atol=1e-5)
    np.testing.assert_allclose(moving[:, -1], generator.predict([start, np.array([9, 9])], verbose=0), atol=1e-5)


def test_count_writes_labelled_npz_and_pngs_named_by_class(conditional_run, tmp_path):
    result = CliRunner().invoke(main, ["generate", "--weights-dir", conditional_run, "--count", "5", "--class", "7",
                                       "--class", "2", "--seed", "3", "--output", tmp_path / "drawn.npz"])
    assert result.exit_code == 0, result.output
    with np.load(tmp_path / "drawn.npz") as drawn:
        assert drawn["y"].tolist() == [7, 2, 7, 2, 7]
        expected = dcgan.load_generator(conditional_run).predict([noise(5, seed=3), drawn["y"]], verbose=0)
        np.testing.assert_array_equal(drawn["x"], to_uint8(expected))
    result = CliRunner().invoke(main, ["generate", "--weights-dir", conditional_run, "--count", "12", "--output",
                                       tmp_path / "pngs"])
    assert result.exit_code == 0, result.output
    names = sorted(path.name for path in (tmp_path / "pngs").iterdir())
    assert names == [f"image_{index:06d}_{index % 10}.png" for index in range(12)]


def test_evaluate_scores_each_class(conditional_run, classifier_cache):
    report = dcgan.evaluate(conditional_run, count=40, cache_dir=classifier_cache, log=lambda line: None)
    generated, real = report["generated"], report["real"]
    assert report["class_names"] == DIGITS
    assert len(generated["class_accuracies"]) == 10 and len(generated["intra_class_frechet_distances"]) == 10
    assert 0 <= generated["class_accuracy"] <= 1 and generated["intra_class_frechet_distance"] > 0
    assert real["class_accuracy"] >= 0.8, "real digits are mostly classified as their own labels"
    text = format_report(report)
    assert "class accuracy" in text and "\n7 " in text
    with pytest.raises(dcgan.UserError, match="fewer than 2 images of each"):
        dcgan.evaluate(conditional_run, count=10, cache_dir=classifier_cache, log=lambda line: None)


def test_a_conditional_trainer_needs_its_classes(tiny_config):
    with pytest.raises(ValueError, match="needs its classes"):
        Trainer(tiny_config("/tmp/unused", conditioning="projection"))


def bad_npz(**arrays):
    def make(folder):
        np.savez(folder / "bad.npz", **arrays)
        return folder / "bad.npz"
    return make


def loose_images(folder):
    for index in range(2):
        Image.fromarray(np.zeros((28, 28), np.uint8)).save(folder / f"{index}.png")
    return folder


def class_folders(*counts):
    def make(folder):
        for name, count in zip(["a", "b", "c"], counts):
            (folder / name).mkdir()
            for index in range(count):
                Image.fromarray(np.zeros((28, 28), np.uint8)).save(folder / name / f"{index}.png")
        return folder
    return make


IMAGES = np.zeros((6, 28, 28), np.uint8)


@pytest.mark.parametrize("make, message", [
    (loose_images, "2 images lie in .* itself .*, outside any class folder"),
    (class_folders(2, 0, 2), "class folder .*b holds no PNG or JPEG images"),
    (class_folders(2), "one class folder only"),
    (bad_npz(x=IMAGES), "holds no labels for its images .*save them as y"),
    (bad_npz(x=IMAGES, y=np.arange(5)), r"holds labels of shape \(5,\) .* it needs 6 integer labels"),
    (bad_npz(x=IMAGES, y=np.array([0, 1, -1, 0, 1, 0])), "holds labels from -1 to 1"),
    (bad_npz(x=IMAGES, y=np.array([0, 1, 0.5, 0, 1, 0])), "holds the label 0.5, which is not a class number"),
    (bad_npz(x=IMAGES, y=np.array([0, 1, 10**9, 0, 1, 0])), "holds labels from 0 to 1000000000"),
    (bad_npz(x=IMAGES, y=np.zeros(6, int)), "every image in .* is labelled 0"),
    (bad_npz(x=IMAGES, y=np.array([0, 2, 0, 2, 0, 2])), "none of its images is in class 1"),
    (lambda folder: write_idx(folder / "images-idx3-ubyte.gz", IMAGES),
     "holds images without labels"),
])
def test_conditional_training_refuses_data_without_usable_labels(tmp_path, make, message):
    data = tmp_path / "data"
    data.mkdir()
    result = CliRunner().invoke(main, ["train", "--conditional", "--dataset", make(data), "--batch-size", "2",
                                       "--weights-dir", tmp_path / "weights", "--samples-dir", tmp_path / "samples"])
    # In process, TensorFlow's threads are set already, which training notes on a line before the error.
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert result.output.splitlines()[-1].startswith("Error: ") and re.search(message, result.output), result.output
    assert not (tmp_path / "weights").exists()


def test_the_command_refuses_unlabelled_data_in_one_line(run_dcgan, tmp_path):
    loose_images(tmp_path)
    result = run_dcgan("train", "--conditional", "--dataset", tmp_path, cwd=tmp_path)
    assert result.returncode == 1 and result.stdout == ""
    assert re.fullmatch(
        r"Error: 2 images lie in \S+ itself \(e.g. 0.png\), outside any class folder; .*\n", result.stderr
    )


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--class", "11"], r"no class '11'; choose from 0, 1, 2, .*, 9, by name or index, or all"),
        (["--class", "seven"], "no class 'seven'"),
        (
            ["--interpolate", "--class", "1", "--class", "2", "--class", "3"],
            "one class to keep or two to move between, not 3",
        ),
    ],
)
def test_generate_refuses_classes_the_run_does_not_have(conditional_run, tmp_path, arguments, message):
    result = CliRunner().invoke(main, ["generate", "--weights-dir", conditional_run, "--output", tmp_path / "g.png",
                                       *arguments])
    assert result.exit_code == 1 and re.search(message, result.output), result.output
    assert not (tmp_path / "g.png").exists()


def test_class_on_an_unconditional_run_and_resume_that_changes_conditioning_are_refused(trained, conditional_run,
                                                                                        tmp_path):
    unconditional = trained[0].weights_dir
    result = CliRunner().invoke(main, ["generate", "--weights-dir", unconditional, "--class", "3", "--output",
                                       tmp_path / "g.png"])
    assert result.exit_code == 1 and "--class works only with a conditional run" in result.output, result.output
    before = (Path(unconditional) / "run.json").read_text()
    result = CliRunner().invoke(main, ["train", "--resume", "--conditional", "--weights-dir", unconditional])
    assert result.exit_code == 1 and "cannot resume with --conditional: the saved run trained without labels" \
        in result.output, result.output
    assert (Path(unconditional) / "run.json").read_text() == before
    result = CliRunner().invoke(main, ["train", "--resume", "--unconditional", "--weights-dir", conditional_run])
    assert result.exit_code == 1 and "cannot resume without --conditional" in result.output, result.output
    result = CliRunner().invoke(main, ["train", "--unconditional", "--conditioning", "concat"])
    assert result.exit_code == 2 and "leave out --unconditional or --conditioning" in result.output


def test_the_readmes_conditional_call_draws_the_class_asked_for(conditional_run):
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    code = next(block for block in re.findall(r"```python\n(.*?)```", readme, re.DOTALL) if "labels =" in block)
    generator = dcgan.load_generator(conditional_run)
    names = {"np": np, "generator": generator, "noise": noise(16)}
    exec(code, names)  # the README's own lines, after its plain example's generator and noise
    expected = generator.predict([noise(16), np.full(16, 7, np.int32)], verbose=0)
    np.testing.assert_allclose(names["images"], expected, atol=1e-6)


def test_generate_nice_on_a_conditional_run_reads_run_json_once(conditional_run, tmp_path, monkeypatch):
    from dcgan import weights

    reads = []
    read_run_info = weights.read_run_info
    monkeypatch.setattr(weights, "read_run_info", lambda folder: reads.append(folder) or read_run_info(folder))
    result = CliRunner().invoke(
        main,
        [
            "generate",
            "--weights-dir",
            str(conditional_run),
            "--nice",
            "--nice-factor",
            "2",
            "--class",
            "all",
            "--batch-size",
            "10",
            "--seed",
            "1",
            "--output",
            str(tmp_path / "nice.png"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "nice.png").exists() and len(reads) == 1
