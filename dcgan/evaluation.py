"""Scoring a trained generator against real labelled images, in the features of a small classifier.

The classifier is trained once per dataset on its training part and cached. Generated images are
then compared with the held-out part, and so are real training images: the floor that a perfect
generator would reach, to read the generated scores against.

- Fréchet distance between the two sets' features (as FID, in this classifier's 128 features).
- Classes: how many the classifier finds among the images, how evenly, and how confidently.
- Precision and recall (Kynkäänniemi et al., 2019): the share of generated images that fall within
  the real images' k-nearest-neighbour balls, and the share of real images within the generated ones'.
- For a conditional run, drawn evenly over its classes: class accuracy, the share of the images
  drawn for each class that the classifier assigns to that class, and the intra-class Fréchet
  distance, each class's images against the held-out images of that class (as PyTorch-StudioGAN's
  intra-FID), per class and on average.
"""
import hashlib
import json
import math
import os
import re
from pathlib import Path

import keras
import numpy as np

from dcgan.classification import accuracy_and_confusion
from dcgan.datasets import load_labelled
from dcgan.errors import UserError
from dcgan.files import write_atomically
from dcgan.generation import draw_batches, generate
from dcgan.weights import RunFolder

CLASSIFIER_VERSION = 1  # part of the cache key: raise it when the classifier or its training changes
NEIGHBOURS = 3  # k of the k-NN balls, as in Kynkäänniemi et al.
COVERED_SHARE = 0.2  # a class counts as covered with at least this fraction of an even share of the images
CLASSIFIER_STEPS = 1500  # training steps of batch 64, at least 3 epochs
MIN_TRAINING_IMAGES = 100  # labelled images the classifier needs to learn from, and held out to score against
MIN_HELD_OUT_IMAGES = 20
MEANINGFUL_COUNT = 5000  # fewer generated images give scores too noisy to compare runs by


def default_cache_dir():
    """DCGAN_CACHE, else $XDG_CACHE_HOME/dcgan, else ~/.cache/dcgan."""
    if os.environ.get("DCGAN_CACHE"):
        return Path(os.environ["DCGAN_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "dcgan"


def build_classifier(image_shape, classes):
    layers = keras.layers
    return keras.Sequential(
        [
            keras.Input(image_shape),
            layers.Conv2D(32, 3, activation="relu"),
            layers.MaxPooling2D(2),
            layers.Conv2D(64, 3, activation="relu"),
            layers.MaxPooling2D(2),
            layers.Flatten(),
            layers.Dropout(0.25),
            layers.Dense(128, activation="relu", name="features"),
            layers.Dropout(0.5),
            layers.Dense(classes, activation="softmax"),
        ],
        name="classifier",
    )


class Classifier:
    """A trained classifier of one dataset: images in [-1, 1] -> (128 features, class probabilities)."""

    def __init__(self, model, info):
        self.model = model
        self.info = info  # held-out accuracy, image counts, where it is cached
        self.both = keras.Model(model.inputs[0], [model.get_layer("features").output, model.outputs[0]])

    def __call__(self, images):
        features, probabilities = self.both.predict(images, batch_size=500, verbose=0)
        return features.astype(np.float64), probabilities


def scoring_classifier(dataset, data, cache_dir=None, log=print):
    """The classifier of `data` (a datasets.Labelled), from the cache or trained now and cached."""
    cache_dir = Path(cache_dir or default_cache_dir())
    digest = hashlib.sha256(f"v{CLASSIFIER_VERSION}".encode())
    for array in (data.train_images, data.train_labels, data.test_labels):
        digest.update(np.ascontiguousarray(array).tobytes())
    name = re.sub(r"[^A-Za-z0-9_-]+", "-", Path(dataset).name).strip("-") or "dataset"
    path = cache_dir / f"classifier-{name}-{digest.hexdigest()[:16]}.keras"
    info_path = path.with_suffix(".json")
    if path.exists() and info_path.exists():
        try:
            return Classifier(keras.saving.load_model(path), {**json.loads(info_path.read_text()), "path": str(path)})
        except Exception as error:  # any damage to a cache file: it can be made again
            log(f"The cached classifier {path} is damaged ({type(error).__name__}); training it again")

    log(
        f"Training a classifier on {len(data.train_images)} {dataset} images to score with (once; it is cached in "
        f"{cache_dir})"
    )
    keras.utils.set_random_seed(0)
    classes = int(max(data.train_labels.max(), data.test_labels.max())) + 1
    model = build_classifier(data.train_images.shape[1:], classes)
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy")
    epochs = max(
        3, math.ceil(CLASSIFIER_STEPS / math.ceil(len(data.train_images) / 64))
    )  # at most 1,500 steps on small data
    model.fit(data.train_images, data.train_labels, batch_size=64, epochs=epochs, verbose=0)
    classifier = Classifier(model, {})
    _, probabilities = classifier(data.test_images)
    classifier.info = {
        "held_out_accuracy": float(np.mean(probabilities.argmax(1) == data.test_labels)),
        "training_images": len(data.train_images),
        "held_out_images": len(data.test_images),
        "epochs": epochs,
    }
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        write_atomically(path, model.save)
        write_atomically(info_path, lambda temporary: temporary.write_text(json.dumps(classifier.info, indent=2)))
    except OSError as error:
        log(
            f"Could not cache the classifier in {cache_dir} ({error.strerror}); set DCGAN_CACHE or --cache-dir to a "
            "writable folder"
        )
    classifier.info["path"] = str(path)
    return classifier


def frechet_distance(a, b):
    """Fréchet distance between Gaussians fitted to the rows of `a` and of `b`.

    tr(sqrt(Ca Cb)) is computed as the trace of sqrt(Sa Cb Sa) with Sa = sqrt(Ca), which is
    symmetric, so numpy's eigh suffices (no scipy).
    """
    mean_a, mean_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root_a = _psd_sqrt(cov_a)
    cross = np.sqrt(np.clip(np.linalg.eigvalsh(root_a @ cov_b @ root_a), 0, None)).sum()
    return float(np.sum((mean_a - mean_b) ** 2) + np.trace(cov_a) + np.trace(cov_b) - 2 * cross)


def _psd_sqrt(matrix):
    values, vectors = np.linalg.eigh(matrix)
    return (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T


def _distances(a, b):
    squared = np.sum(a**2, 1)[:, None] + np.sum(b**2, 1)[None, :] - 2 * a @ b.T
    return np.sqrt(np.maximum(squared, 0))


def knn_radii(points, k=NEIGHBOURS, chunk=1000):
    """Each point's distance to its k-th nearest other point."""
    radii = []
    for start in range(0, len(points), chunk):
        distances = _distances(points[start : start + chunk], points)
        radii.append(np.partition(distances, k, axis=1)[:, k])  # index 0 is the point itself
    return np.concatenate(radii)


def share_inside(points, centres, radii, chunk=1000):
    """The share of `points` that lie within at least one ball (centre, radius)."""
    inside = [np.any(_distances(points[start : start + chunk], centres) <= radii[None, :], axis=1)
              for start in range(0, len(points), chunk)]
    return float(np.mean(np.concatenate(inside)))


def precision_recall(real, generated, k=NEIGHBOURS):
    """k-NN precision and recall of `generated` features against `real` ones (Kynkäänniemi et al., 2019)."""
    precision = share_inside(generated, real, knn_radii(real, k))
    recall = share_inside(real, generated, knn_radii(generated, k))
    return precision, recall


def score_features(features, probabilities, reference_features, classes):
    """Scores of one set of images, given by its classifier outputs, against the held-out reference."""
    shares = np.bincount(probabilities.argmax(1), minlength=classes) / len(probabilities)
    nonzero = shares[shares > 0]
    pairs = min(len(features), len(reference_features))  # equal sizes, as precision and recall assume
    precision, recall = precision_recall(reference_features[:pairs], features[:pairs])
    return {
        "frechet_distance": frechet_distance(features, reference_features),
        "classes_covered": int(np.sum(shares >= COVERED_SHARE / classes)),
        "effective_classes": float(np.exp(-np.sum(nonzero * np.log(nonzero)))),
        "largest_class_share": float(shares.max()),
        "class_shares": [round(float(share), 4) for share in shares],
        "mean_confidence": float(probabilities.max(1).mean()),
        "precision": precision,
        "recall": recall,
        "images": len(features),
    }


def class_scores(features, probabilities, labels, reference, reference_labels, classes):
    """Class accuracy and intra-class Fréchet distance of images drawn for `labels`, per class and on average.

    A class with fewer than two images on either side has no distance (None).
    """
    predicted = probabilities.argmax(1)
    accuracies, distances = [], []
    for label in range(classes):
        mine, theirs = labels == label, reference_labels == label
        accuracies.append(float(np.mean(predicted[mine] == label)) if mine.any() else None)
        enough = mine.sum() >= 2 and theirs.sum() >= 2
        distances.append(frechet_distance(features[mine], reference[theirs]) if enough else None)
    measured = [distance for distance in distances if distance is not None]
    return {
        "class_accuracy": float(np.mean([a for a in accuracies if a is not None])),
        "class_accuracies": [None if a is None else round(a, 4) for a in accuracies],
        "intra_class_frechet_distance": float(np.mean(measured)) if measured else None,
        "intra_class_frechet_distances": [None if d is None else round(d, 4) for d in distances],
    }


class Scorer:
    """Scores sets of images of one labelled dataset against its held-out images."""

    def __init__(self, dataset, cache_dir=None, log=print, image_size=None, channels=None, center_crop=False):
        self.data = load_labelled(dataset, image_size, channels, center_crop)
        classes = len(np.unique(self.data.train_labels))
        if (
            len(self.data.train_images) < MIN_TRAINING_IMAGES
            or len(self.data.test_images) < MIN_HELD_OUT_IMAGES
            or classes < 2
        ):
            raise UserError(
                f"{dataset} has {len(self.data.train_images)} labelled images to train the scoring classifier on and "
                f"{len(self.data.test_images)} held out, in {classes} classes; scoring needs at least "
                f"{MIN_TRAINING_IMAGES} and {MIN_HELD_OUT_IMAGES}, in 2 classes or more: pass a bigger labelled dataset"
            )
        self.classifier = scoring_classifier(dataset, self.data, cache_dir, log)
        self.classes = self.classifier.model.output_shape[-1]
        self.reference, _ = self.classifier(self.data.test_images)

    def score(self, images, labels=None):
        """The scores of `images`; with `labels`, the classes they were drawn for, the class scores too."""
        if images.shape[1:] != self.data.test_images.shape[1:]:
            raise UserError(
                f"the images are of shape {images.shape[1:]}, the dataset's of shape "
                f"{self.data.test_images.shape[1:]}; score against the dataset the generator was trained on"
            )
        features, probabilities = self.classifier(images)
        scores = score_features(features, probabilities, self.reference, self.classes)
        if labels is not None:
            scores.update(
                class_scores(features, probabilities, labels, self.reference, self.data.test_labels, self.classes)
            )
        return scores

    def floor(self, count, seed=0, labelled=False):
        """The scores of up to `count` real training images: what a generator that matched the data would get
        (with `labelled`, the class scores of their own labels too)."""
        # In random order: precision and recall use the first images, and files are often sorted by class.
        pick = np.random.default_rng(seed).permutation(len(self.data.train_images))[:count]
        return self.score(self.data.train_images[pick], self.data.train_labels[pick] if labelled else None)


def evaluate(weights_dir="weights", dataset=None, count=10_000, seed=0, cache_dir=None, log=print):
    """Score the generator in `weights_dir` on `count` images from noise `seed`, against `dataset`'s held-out images.

    `dataset` defaults to the one the run trained on. Returns a report: the run, the classifier
    and its held-out accuracy, and the scores of the generated images and of real training images.
    """
    run = RunFolder.of(weights_dir)
    config = run.config
    dataset = dataset or config.dataset
    # A folder of images is read as the run read it, so that the real images have the generated ones' shape.
    scorer = Scorer(dataset, cache_dir, log, config.image_size, config.channels, config.center_crop)
    if count < MEANINGFUL_COUNT:
        log(f"Warning: with {count} images the scores vary from seed to seed and the Fréchet distance is biased "
            f"upward; use --count {MEANINGFUL_COUNT} or more to compare runs, and the same count for each")
    class_names = run.class_names if config.conditioning else None
    labels = None
    if class_names:
        if len(class_names) != scorer.classes:
            raise UserError(
                f"the run has {len(class_names)} classes and {dataset} {scorer.classes}; score a conditional "
                "run against the labelled dataset it was trained on"
            )
        if count < 2 * len(class_names):
            raise UserError(
                f"--count {count} draws fewer than 2 images of each of the run's {len(class_names)} classes; "
                f"use --count {max(MEANINGFUL_COUNT, 2 * len(class_names))} or more"
            )
        drawn = list(draw_batches(run, count, seed))  # the classes in turn: evenly
        images, labels = (np.concatenate(parts) for parts in zip(*drawn))
    else:
        images, _ = generate(run, count, seed)
    return {
        "weights_dir": str(weights_dir),
        "step": run.info.get("step"),
        "dataset": dataset,
        "seed": seed,
        **({"class_names": class_names} if class_names else {}),
        **({"semi_supervised": _semi_supervised_scores(run, scorer, dataset)} if config.semi_supervised else {}),
        "classifier": {**scorer.classifier.info},
        "generated": scorer.score(images, labels),
        "real": scorer.floor(count, labelled=labels is not None),
    }


def _semi_supervised_scores(run, scorer, dataset):
    """A semi-supervised run's classifier on the held-out images: its accuracy and confusion matrix."""
    names = run.class_names
    if len(names) != scorer.classes:
        raise UserError(f"the run's classifier has {len(names)} classes and {dataset} {scorer.classes}; score it "
                        "against the labelled dataset it was trained on")
    accuracy, confusion = accuracy_and_confusion(run.model("classifier"), scorer.data.test_images,
                                                 scorer.data.test_labels, len(names))
    return {"class_names": names, "labelled": run.config.labelled, "held_out_images": len(scorer.data.test_labels),
            "held_out_accuracy": accuracy, "confusion_matrix": confusion.tolist()}


ROWS = [
    ("Fréchet distance", "frechet_distance", "{:.2f}", "lower is better; real images give the floor"),
    ("classes covered", "classes_covered", "{}", "classes with at least {covered:.1%} of the images"),
    (
        "effective classes",
        "effective_classes",
        "{:.2f}",
        "exp(entropy) of the class histogram: {classes} is perfectly even",
    ),
    ("largest class share", "largest_class_share", "{:.1%}", "an even spread gives {even:.1%}"),
    ("mean confidence", "mean_confidence", "{:.3f}", "the classifier's top probability"),
    ("precision (k=3)", "precision", "{:.3f}", "generated images that fall among real ones"),
    ("recall (k=3)", "recall", "{:.3f}", "real images that the generated ones reach"),
    ("class accuracy", "class_accuracy", "{:.1%}", "images the classifier puts in the class they were drawn for"),
    ("intra-class distance", "intra_class_frechet_distance", "{:.2f}", "Fréchet distance within each class, averaged"),
]


def format_report(report):
    """The report as a table for the console."""
    classifier = report["classifier"]
    classes = len(report["generated"]["class_shares"])
    notes = {"covered": COVERED_SHARE / classes, "classes": classes, "even": 1 / classes}
    lines = [
        f"{report['weights_dir']} (step {report['step']}) against {report['dataset']}: "
        f"{report['generated']['images']} generated images (seed {report['seed']}), "
        f"{report['real']['images']} real training images",
        f"classifier: held-out accuracy {classifier['held_out_accuracy']:.1%} on {classifier['held_out_images']} "
        "images, "
        f"trained on {classifier['training_images']} ({classifier['path']})",
        "",
        f"{'':22}{'generated':>12}{'real':>12}",
    ]
    for label, key, form, note in ROWS:
        if key not in report["generated"]:  # the class rows, for a conditional run only
            continue
        lines.append(f"{label:22}{_shown(form, report['generated'][key]):>12}{_shown(form, report['real'][key]):>12}"
                     f"   {note.format(**notes)}")
    if "class_accuracies" in report["generated"]:
        generated, real = report["generated"], report["real"]
        lines += ["", f"{'class':22}{'accuracy':>12}{'distance':>12}{'real dist.':>12}"]
        for index, name in enumerate(report.get("class_names") or map(str, range(classes))):
            lines.append(f"{name[:21]:22}{_shown('{:.1%}', generated['class_accuracies'][index]):>12}"
                         f"{_shown('{:.2f}', generated['intra_class_frechet_distances'][index]):>12}"
                         f"{_shown('{:.2f}', real['intra_class_frechet_distances'][index]):>12}")
    if "semi_supervised" in report:
        lines += ["", *_format_classifier(report["semi_supervised"])]
    return "\n".join(lines)


def _format_classifier(scores):
    """The semi-supervised classifier's accuracy, and its confusion matrix: a row per true class."""
    corner = "true class \\ classified as"
    names = [name[:9] for name in scores["class_names"]]
    width = max(6, *(len(name) + 1 for name in names))
    lines = [
        f"the run's classifier, from {scores['labelled']} labels: held-out accuracy {scores['held_out_accuracy']:.1%} "
        f"on {scores['held_out_images']} images",
        "",
        f"{corner} " + "".join(f"{name:>{width}}" for name in names),
    ]
    for name, row in zip(scores["class_names"], scores["confusion_matrix"]):  # the counts under their class's name
        lines.append(f"{name[:len(corner)]:{len(corner) + 1}}" + "".join(f"{count:>{width}}" for count in row))
    return lines


def _shown(form, value):
    return "-" if value is None else form.format(value)
