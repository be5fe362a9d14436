"""dcgan evaluate: the scores separate real-looking digits from bad ones, on real MNIST digits."""
import json

import numpy as np
import pytest
from PIL import Image, ImageFilter

from dcgan import UserError, evaluate
from dcgan.datasets import load_labelled
from dcgan.evaluation import Scorer, frechet_distance, precision_recall


@pytest.fixture(scope="module")
def scorer(classifier_cache):
    lines = []
    scorer = Scorer("mnist-sample", cache_dir=classifier_cache, log=lines.append)
    assert lines == [], "the session's classifier should come from the cache"
    return scorer


@pytest.fixture(scope="module")
def floor(scorer):
    return scorer.floor(2000)


def test_classifier_is_accurate_on_held_out_digits(scorer):
    info = scorer.classifier.info
    assert info["held_out_images"] == 1000 and info["training_images"] == 4000
    assert info["held_out_accuracy"] > 0.95
    _, probabilities = scorer.classifier(scorer.data.test_images)
    assert np.mean(probabilities.argmax(1) == scorer.data.test_labels) == pytest.approx(info["held_out_accuracy"])


def test_held_out_split_is_disjoint_balanced_and_fixed():
    first, second = load_labelled("mnist-sample"), load_labelled("mnist-sample")
    np.testing.assert_array_equal(first.test_images, second.test_images)
    assert np.bincount(first.test_labels).tolist() == [100] * 10
    train = {image.tobytes() for image in first.train_images}
    assert not any(image.tobytes() in train for image in first.test_images[:200])


def test_real_training_images_score_near_the_floor(scorer, floor):
    # Real digits the floor did not use: they should look just as real.
    unused = scorer.data.train_images[np.random.default_rng(0).permutation(4000)[2000:]]
    real = scorer.score(unused)
    assert floor["frechet_distance"] < 10
    assert real["frechet_distance"] < 2 * floor["frechet_distance"]
    assert real["classes_covered"] == 10 and real["effective_classes"] > 9.8
    assert real["recall"] > 0.75 and real["precision"] > 0.75 and real["mean_confidence"] > 0.95


def test_noise_scores_far_worse(scorer, floor):
    noise = np.random.default_rng(1).uniform(-1, 1, (2000, 28, 28, 1)).astype(np.float32)
    scores = scorer.score(noise)
    assert scores["frechet_distance"] > 20 * floor["frechet_distance"]
    assert scores["recall"] < 0.05 and scores["classes_covered"] < 10 and scores["mean_confidence"] < 0.9
    # Precision alone is fooled here: noise lands in one tight clump inside the ball of a real outlier.


def test_blurred_digits_score_far_worse(scorer, floor):
    def blur(image):
        picture = Image.fromarray(((image[..., 0] + 1) * 127.5).astype(np.uint8)).filter(ImageFilter.GaussianBlur(2))
        return np.asarray(picture, np.float32)[..., None] / 127.5 - 1

    blurred = np.stack([blur(image) for image in scorer.data.train_images[:2000]])
    scores = scorer.score(blurred)
    assert scores["frechet_distance"] > 5 * floor["frechet_distance"]
    assert scores["recall"] < floor["recall"] - 0.3


def test_one_repeated_class_covers_one_class_and_recalls_little(scorer, floor):
    sevens = scorer.data.train_images[scorer.data.train_labels == 7]
    scores = scorer.score(np.concatenate([sevens] * 5)[:2000])
    assert scores["classes_covered"] == 1 and scores["largest_class_share"] > 0.95 and scores["effective_classes"] < 1.5
    assert scores["frechet_distance"] > 10 * floor["frechet_distance"]
    assert scores["recall"] < 0.2
    assert scores["precision"] > 0.7, "sevens are real digits: precise, with no variety"


def test_frechet_distance_of_gaussians_matches_the_formula():
    rng = np.random.default_rng(0)
    a = rng.normal(0, 1, (20000, 3))
    b = rng.normal(0, 2, (20000, 3)) + [1, 0, 0]
    # |mu_a - mu_b|^2 + tr(Ca + Cb - 2 sqrt(Ca Cb)) = 1 + 3 * (1 + 4 - 2 * 2) = 4
    assert frechet_distance(a, b) == pytest.approx(4, rel=0.05)
    assert frechet_distance(a, a) == pytest.approx(0, abs=1e-6)


def test_precision_and_recall_tell_a_narrow_generator_from_a_wide_one():
    rng = np.random.default_rng(0)
    real = rng.normal(0, 1, (500, 2))
    narrow = rng.normal(0, 0.2, (500, 2))  # inside the real cloud, covering its middle only
    precision, recall = precision_recall(real, narrow)
    assert precision > 0.95 and recall < 0.5
    far = rng.normal(10, 1, (500, 2))
    assert precision_recall(real, far) == (0.0, 0.0)


def test_evaluate_a_run_and_any_snapshot(trained, classifier_cache):
    config, _ = trained
    report = evaluate(config.weights_dir, count=300, cache_dir=classifier_cache, log=lambda line: None)
    assert report["dataset"] == "mnist-sample" and report["step"] == 6
    assert report["generated"]["images"] == 300 and report["real"]["images"] == 300
    # Six steps of training: nothing like digits yet.
    assert report["generated"]["frechet_distance"] > 10 * report["real"]["frechet_distance"]
    assert len(report["generated"]["class_shares"]) == 10
    again = evaluate(config.weights_dir, count=300, cache_dir=classifier_cache, log=lambda line: None)
    assert again == report, "the same seed gives the same scores"
    older = evaluate(
        f"{config.weights_dir}/snapshots/step0000004", count=300, cache_dir=classifier_cache, log=lambda line: None
    )
    assert older["step"] == 4 and older["generated"] != report["generated"]


def test_evaluate_command_prints_a_table_and_json(run_dcgan, trained, classifier_cache, tmp_path):
    config, _ = trained
    common = ["evaluate", "--weights-dir", config.weights_dir, "--count", 200, "--cache-dir", classifier_cache]
    table = run_dcgan(*common, "--snapshot", 4, cwd=tmp_path)
    assert table.returncode == 0, table.stderr
    for row in ("Fréchet distance", "classes covered", "precision (k=3)", "recall (k=3)", "held-out accuracy"):
        assert row in table.stdout
    assert "(step 4)" in table.stdout
    assert "Warning: with 200 images the scores vary from seed to seed" in table.stderr
    as_json = run_dcgan(*common, "--json", cwd=tmp_path)
    report = json.loads(as_json.stdout)
    assert report["step"] == 6 and set(report["generated"]) == set(report["real"])


def test_evaluate_errors_are_one_line(run_dcgan, trained, tmp_path, classifier_cache):
    config, _ = trained
    (tmp_path / "images.npz").write_bytes(b"")
    np.savez(tmp_path / "unlabelled.npz", x=np.zeros((20, 28, 28), np.uint8))
    for args, message in (
        (["--weights-dir", tmp_path / "none"], "does not exist"),
        (["--weights-dir", config.weights_dir, "--dataset", tmp_path / "unlabelled.npz"], "holds no labelled images"),
        (
            ["--weights-dir", config.weights_dir, "--snapshot", 5],
            "has no snapshot at step 5; its snapshots are at steps 4, 6",
        ),
        (["--weights-dir", config.weights_dir, "--count", 3], "not in the range 10<=x<=50000"),
    ):
        result = run_dcgan("evaluate", *args, "--cache-dir", classifier_cache, cwd=tmp_path)
        assert result.returncode in (1, 2), result.stderr
        assert "Traceback" not in result.stderr and message in result.stderr.strip().splitlines()[-1], result.stderr


def test_a_folder_of_class_subfolders_is_labelled_by_subfolder_at_the_size_asked(tmp_path):
    for name, shade, count in (("cats", 0, 10), ("dogs", 255, 5)):
        (tmp_path / name).mkdir()
        for index in range(count):
            Image.new("RGB", (40, 40), (shade,) * 3).save(tmp_path / name / f"{index}.png")
    data = load_labelled(str(tmp_path), image_size=16, channels=3)
    assert data.train_images.shape == (12, 16, 16, 3) and data.test_images.shape == (3, 16, 16, 3)
    assert sorted(data.test_labels.tolist()) == [0, 0, 1], "a fifth of each class is held out"
    for images, labels in ((data.train_images, data.train_labels), (data.test_images, data.test_labels)):
        np.testing.assert_array_equal(
            images.mean(axis=(1, 2, 3)), np.where(labels == 0, -1, 1)
        )  # cats black, dogs white
    image_bytes = 16 * 16 * 3 * 4
    shared = load_labelled(str(tmp_path), image_size=16, channels=3, memory_limit=10 * image_bytes)
    assert len(shared.train_labels) + len(shared.test_labels) == 10, "a folder too big for memory is scored on a share"
    np.testing.assert_array_equal(shared.train_images.mean(axis=(1, 2, 3)), np.where(shared.train_labels == 0, -1, 1))


def test_unlabelled_data_is_refused_with_a_way_out(tmp_path):
    path = tmp_path / "images-idx3-ubyte"
    path.write_bytes(b"\0\0\x08\x03" + (1).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2 + bytes(784))
    with pytest.raises(UserError, match="without labels"):
        load_labelled(str(path))
    (tmp_path / "pictures").mkdir()
    Image.new("L", (28, 28)).save(tmp_path / "pictures" / "a.png")
    with pytest.raises(UserError, match="without labels; scoring needs labels"):
        load_labelled(str(tmp_path / "pictures"))
