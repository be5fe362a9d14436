"""Semi-supervised training: each head trains, its classifier learns the labelled images, the models reload in
plain Keras and resume bit for bit; classify sorts a folder; evaluate scores the classifier; bad input is refused
in one line."""
import csv
import json
import re
import shutil
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from click.testing import CliRunner
from PIL import Image

import dcgan
from cli import main
from dcgan import Trainer
from dcgan.classification import classify
from dcgan.datasets import MNIST_SAMPLE, load_labelled
from dcgan.evaluation import format_report
from dcgan.presets import SEMI_SUPERVISIONS
from dcgan.semi_supervised import SEMI_SUPERVISIONS as HEADS
from dcgan.semi_supervised import build_classifier, choose_labelled
from dcgan.weights import RunFolder

from test_family import all_state

DIGITS = [str(digit) for digit in range(10)]
# The DCGAN paper's models are the cheap ones at 28x28; a test is about the classifier's path.
SEMI = {"architecture": "dcgan", "batch_size": 4, "save_every": 2, "keep": 0, "sample_every": 100, "labelled": 20}


@pytest.fixture(scope="module")
def semi_run(tiny_config, tmp_path_factory):
    """One tiny semi-supervised run on mnist-sample, shared by the tests that only read it."""
    config = tiny_config(tmp_path_factory.mktemp("semi"), semi_supervised="derived", steps=3, **SEMI)
    dcgan.train(config)
    return Path(config.weights_dir)


def test_the_command_line_names_every_head_the_library_has():
    assert SEMI_SUPERVISIONS == tuple(HEADS)


def test_a_semi_supervised_run_reloads_in_plain_keras_and_resumes_bit_for_bit(tiny_config, tmp_path):
    straight = dcgan.train(tiny_config(tmp_path / "straight", semi_supervised="derived", steps=3, **SEMI))
    weights = tmp_path / "straight" / "weights"
    run = json.loads((weights / "run.json").read_text())
    # One key for a run's classes, whatever the run: a conditional run's too.
    assert run["class_names"] == DIGITS and "classifier_class_names" not in run and run["dataset_size"] == 4000
    with open(weights / "metrics.csv") as file:
        rows = list(csv.DictReader(file))
    assert len(rows) == 3 and all(0 <= float(row["c_acc"]) <= 1 and float(row["c_loss"]) > 0 for row in rows)

    # Plain Keras loads the classifier: the probabilities of the 10 classes, as the trainer's discriminator gives them.
    images = load_labelled("mnist-sample").test_images[:6]
    classifier = keras.saving.load_model(weights / "classifier.keras")
    probabilities = classifier.predict(images, verbose=0)
    assert probabilities.shape == (6, 10)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1, rtol=1e-5)
    np.testing.assert_allclose(
        probabilities, build_classifier(straight.discriminator)(images, training=False), atol=1e-5
    )

    dcgan.train(tiny_config(tmp_path / "split", semi_supervised="derived", steps=2, **SEMI))
    resumed = dcgan.train(tiny_config(tmp_path / "split", semi_supervised="derived", steps=3, **SEMI), resume=True)
    for a, b in zip(all_state(straight), all_state(resumed), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("head", SEMI_SUPERVISIONS)
def test_each_heads_saved_discriminator_gives_the_probability_of_real_it_trains_on(tiny_config, tmp_path, head):
    config = tiny_config(tmp_path, semi_supervised=head, **SEMI)
    trainer = Trainer(config, classes=10)
    data = load_labelled("mnist-sample")
    before = [variable.numpy() for variable in trainer.discriminator_variables]
    trainer.train_step(
        data.train_images[:4], tf.constant(0, tf.int64), None, (data.train_images[4:8], data.train_labels[4:8])
    )
    assert all(not np.array_equal(a, b.numpy()) for a, b in zip(before, trainer.discriminator_variables))
    trainer.discriminator.save(tmp_path / "discriminator.keras")
    discriminator = keras.saving.load_model(tmp_path / "discriminator.keras")
    images = data.test_images[:6]
    logits = keras.Model(discriminator.inputs, discriminator.get_layer("class_logits").output).predict(
        images, verbose=0
    )
    assert logits.shape == (6, 10 + (head == "extra"))
    # Z / (Z + 1) with Z the sum of the class logits' exponentials; with an extra class, 1 minus its softmax share.
    fake = np.exp(logits[:, 10]) if head == "extra" else 1.0
    expected = 1 - fake / (np.exp(logits[:, :10]).sum(axis=1) + fake)
    np.testing.assert_allclose(discriminator.predict(images, verbose=0)[:, 0], expected, rtol=1e-4)
    features = trainer.judging.features(trainer.discriminator, images)  # the trainer's own path, batch norm aside
    assert trainer.judging.head(trainer.discriminator, features).shape == (6, 1)


def test_the_classifier_learns_the_labelled_images(tiny_config, tmp_path):
    # The fully connected models: no batch norm, whose running averages would still be near their start after 40 steps.
    config = tiny_config(
        tmp_path, semi_supervised="derived", steps=40, **{**SEMI, "batch_size": 8, "architecture": "mlp"}
    )
    data = load_labelled("mnist-sample")
    chosen = choose_labelled(data.train_labels, 20, config.seed, DIGITS)
    assert np.bincount(data.train_labels[chosen]).tolist() == [2] * 10, "two labelled images of each class"
    images, labels = data.train_images[chosen], data.train_labels[chosen]

    def cross_entropy(trainer):
        probabilities = build_classifier(trainer.discriminator)(images, training=False).numpy()
        return -np.mean(np.log(probabilities[np.arange(len(labels)), labels]))

    before = cross_entropy(
        Trainer(config, images.shape[1:], classes=10)
    )  # the same seed: the weights training starts from
    after = cross_entropy(dcgan.train(config))
    assert after < 0.6 * before, (before, after)


def digit_folder(folder, count=6):
    folder.mkdir()
    with np.load(MNIST_SAMPLE) as arrays:
        for index in range(count):
            Image.fromarray(arrays["x"][500 * index]).save(folder / f"digit_{index}.png")
    (folder / "broken.png").write_bytes(b"not a picture")
    return folder


def test_classify_sorts_a_folder_skipping_unreadable_images_and_writes_a_csv(semi_run, tmp_path):
    folder = digit_folder(tmp_path / "digits")
    result = CliRunner().invoke(main, ["classify", str(folder), "--weights-dir", semi_run])
    assert result.exit_code == 0, result.output
    assert "Skipping 1 of 7 image files" in result.output
    lines = [line.split("\t") for line in result.output.splitlines() if "\t" in line]
    assert [Path(name).name for name, _, _ in lines] == [f"digit_{index}.png" for index in range(6)]
    images = np.stack([np.asarray(Image.open(folder / f"digit_{index}.png")) for index in range(6)])[..., None]
    probabilities = dcgan.load_classifier(semi_run).predict(images.astype(np.float32) / 127.5 - 1, verbose=0)
    assert [label for _, label, _ in lines] == [DIGITS[row.argmax()] for row in probabilities]
    np.testing.assert_allclose([float(confidence) for _, _, confidence in lines], probabilities.max(axis=1), atol=1e-3)

    result = CliRunner().invoke(main, ["classify", str(folder / "digit_3.png"), "--weights-dir", semi_run, "--output",
                                       tmp_path / "classes.csv"])
    assert result.exit_code == 0, result.output
    with open(tmp_path / "classes.csv") as file:
        rows = list(csv.DictReader(file))
    assert len(rows) == 1 and rows[0]["class"] == DIGITS[probabilities[3].argmax()]


def test_evaluate_reports_the_classifiers_held_out_accuracy_and_confusion(semi_run, classifier_cache):
    report = dcgan.evaluate(semi_run, count=20, cache_dir=classifier_cache, log=lambda line: None)
    scores = report["semi_supervised"]
    confusion = np.array(scores["confusion_matrix"])
    assert confusion.shape == (10, 10) and confusion.sum() == scores["held_out_images"] == 1000
    assert np.trace(confusion) / 1000 == pytest.approx(scores["held_out_accuracy"])
    assert confusion.sum(axis=1).tolist() == np.bincount(load_labelled("mnist-sample").test_labels).tolist()
    assert scores["labelled"] == 20 and "held-out accuracy" in format_report(report)
    # Each count ends where its column's class name ends.
    lines = format_report(report).splitlines()
    header = next(index for index, line in enumerate(lines) if line.startswith("true class"))
    ends = [match.end() for match in re.finditer(r"\S+", lines[header])][-10:]
    for row in lines[header + 1:header + 11]:
        assert [match.end() for match in re.finditer(r"\S+", row)][-10:] == ends, row


@pytest.mark.parametrize("arguments, message", [
    (["--semi-supervised", "--labelled", "0"], "--labelled 0 labels no image; give at least one image per class"),
    (["--semi-supervised", "--labelled", "5"], "--labelled 5 is fewer than one image per class (10 classes)"),
    (["--semi-supervised", "--labelled", "4001"], "--labelled 4001 is more than the 4000 training images"),
    (["--semi-supervised", "--loss", "hinge"], "--semi-supervised plays the bce game"),
    (["--semi-supervised", "--conditional"], "--semi-supervised and --conditional do not combine"),
    (["--labelled", "100"], "add --semi-supervised"),
])
def test_semi_supervised_training_refuses_what_cannot_work(tmp_path, arguments, message):
    result = CliRunner().invoke(main, ["train", "--dataset", "mnist-sample", *arguments, "--weights-dir",
                                       tmp_path / "weights", "--samples-dir", tmp_path / "samples"])
    assert result.exit_code in (1, 2) and message in result.output and "Traceback" not in result.output, result.output
    assert not (tmp_path / "weights" / "run.json").exists()


def test_unlabelled_data_and_a_changed_label_count_are_refused(semi_run, tmp_path):
    (tmp_path / "loose").mkdir()
    Image.new("L", (28, 28)).save(tmp_path / "loose" / "a.png")
    result = CliRunner().invoke(main, ["train", "--semi-supervised", "--dataset", tmp_path / "loose", "--weights-dir",
                                       tmp_path / "weights"])
    assert result.exit_code == 1 and "holds images without labels; --semi-supervised needs labels" in result.output
    before = (semi_run / "run.json").read_text()
    result = CliRunner().invoke(main, ["train", "--resume", "--weights-dir", semi_run, "--labelled", "50"])
    assert result.exit_code == 1 and "cannot resume with --labelled 50: the saved run used 20" in result.output
    assert (semi_run / "run.json").read_text() == before


def test_classify_refuses_images_of_another_shape_and_a_run_without_classifier(semi_run, trained, tmp_path):
    Image.new("RGB", (28, 28)).save(tmp_path / "colour.png")
    Image.new("L", (32, 32)).save(tmp_path / "big.png")
    for name, message in (("colour.png", "is a 28x28 colour image; the classifier takes 28x28 grayscale images"),
                          ("big.png", "is a 32x32 grayscale image; the classifier takes 28x28 grayscale images")):
        result = CliRunner().invoke(main, ["classify", str(tmp_path / name), "--weights-dir", semi_run])
        assert result.exit_code == 1 and message in result.output, result.output
    np.savez(tmp_path / "wide.npz", x=np.zeros((2, 32, 32), np.uint8))
    result = CliRunner().invoke(main, ["classify", str(tmp_path / "wide.npz"), "--weights-dir", semi_run])
    assert result.exit_code == 1 and re.search(r"of shape 32x32x1; the classifier takes 28x28x1", result.output)
    result = CliRunner().invoke(main, ["classify", str(tmp_path / "big.png"), "--weights-dir", trained[0].weights_dir])
    assert result.exit_code == 1 and "holds no classifier: the run trained without --semi-supervised" in result.output
    result = CliRunner().invoke(main, ["classify", str(tmp_path / "big.png"), "--weights-dir", semi_run,
                                       "--output", tmp_path / "colour.png"])
    assert result.exit_code == 1 and "exists already" in result.output


def test_a_folder_of_class_subfolders_trains_semi_supervised(tiny_config, tmp_path):
    with np.load(MNIST_SAMPLE) as arrays:
        for label, name in ((0, "zero"), (1, "one")):
            (tmp_path / "data" / name).mkdir(parents=True)
            for index in range(10):
                Image.fromarray(arrays["x"][500 * label + index]).save(tmp_path / "data" / name / f"{index}.png")
    config = tiny_config(tmp_path, dataset=str(tmp_path / "data"), semi_supervised="derived", steps=2,
                         **{**SEMI, "labelled": 4})
    dcgan.train(config)
    run = json.loads((Path(config.weights_dir) / "run.json").read_text())
    assert run["class_names"] == ["one", "zero"] and run["dataset_size"] == 16  # a fifth of each held out


def test_overwriting_a_semi_supervised_run_leaves_none_of_its_files(tiny_config, semi_run, tmp_path):
    weights = tmp_path / "weights"
    shutil.copytree(semi_run, weights)
    assert (weights / "classifier.keras").exists() and (weights / "classifier.weights.h5").exists()
    dcgan.train(tiny_config(tmp_path, steps=1, overwrite=True))
    # The new run's files alone: the old run's classifier went with its other files once the new run had saved.
    assert sorted(path.name for path in weights.iterdir()) == [
        "discriminator.keras", "discriminator.weights.h5", "generator.keras", "generator.weights.h5", "metrics.csv",
        "run.json", "snapshots", "train.lock", "training_generator.keras", "training_generator.weights.h5",
    ]
    assert [path.name for path in (weights / "snapshots").iterdir()] == ["step0000001"]


def test_a_run_saved_with_the_older_key_for_its_classes_still_classifies(semi_run, tmp_path):
    # Runs saved before this version kept a semi-supervised run's classes under classifier_class_names.
    old = tmp_path / "old"
    shutil.copytree(semi_run, old)
    run = json.loads((old / "run.json").read_text())
    run["classifier_class_names"] = run.pop("class_names")
    (old / "run.json").write_text(json.dumps(run))
    np.savez(tmp_path / "two.npz", x=np.load(MNIST_SAMPLE)["x"][:2])
    rows = classify(tmp_path / "two.npz", old)
    assert [label in DIGITS for _, label, _ in rows] == [True, True]
    assert RunFolder(old).class_names == DIGITS


def test_classify_reads_run_json_once(semi_run, tmp_path, monkeypatch):
    from dcgan import weights

    reads = []
    read_run_info = weights.read_run_info
    monkeypatch.setattr(weights, "read_run_info", lambda folder: reads.append(folder) or read_run_info(folder))
    np.savez(tmp_path / "two.npz", x=np.load(MNIST_SAMPLE)["x"][:2])
    result = CliRunner().invoke(main, ["classify", str(tmp_path / "two.npz"), "--weights-dir", str(semi_run)])
    assert result.exit_code == 0, result.output
    assert len(result.output.splitlines()) == 2 and len(reads) == 1
