"""Classifying images with a semi-supervised run's classifier (`dcgan classify`)."""
import csv
from pathlib import Path

import numpy as np

from dcgan.datasets import load_dataset
from dcgan.errors import UserError
from dcgan.files import write_atomically
from dcgan.image_folders import IMAGE_SUFFIXES, read_images_of_shape
from dcgan.weights import RunFolder

BATCH = 256


def classify(inputs, weights_dir="weights"):
    """Each image's (name, class name, confidence) by the classifier of the semi-supervised run in `weights_dir`.

    `inputs`: a PNG or JPEG file, a folder of them (subfolders included; each image named by its path),
    or a .npz of images under x_train or x (each named by its index), of the classifier's image shape.
    """
    run = RunFolder.of(weights_dir)
    classifier, class_names = run.model("classifier"), run.class_names
    names, images = _read(Path(inputs), tuple(classifier.input_shape[1:]))
    probabilities = classifier.predict(images, batch_size=BATCH, verbose=0)
    return [(name, class_names[row.argmax()], float(row.max())) for name, row in zip(names, probabilities)]


def _read(path, image_shape):
    if not (path.is_file() or path.is_dir()):  # a FIFO would block the read, a device never end it
        raise UserError(f"{path} is neither a file nor a folder; give an image, a folder of images or a .npz to "
                        "classify")
    if path.suffix == ".npz":
        images = load_dataset(str(path))
        if images.shape[1:] != image_shape:
            raise UserError(
                f"{path} holds images of shape {'x'.join(map(str, images.shape[1:]))}; the classifier takes "
                f"{'x'.join(map(str, image_shape))}: convert them to that first"
            )
        return [str(index) for index in range(len(images))], images
    if path.is_file() and path.suffix.lower() not in IMAGE_SUFFIXES:
        raise UserError(f"{path} is neither a PNG or JPEG image, a folder of them, nor a .npz; give one of those")
    images, files = read_images_of_shape(path, image_shape)
    return [str(file) for file in files], images


def write_csv(rows, path):
    """`classify`'s rows as a new CSV file with the columns image, class, confidence."""
    def write(temporary):
        with open(temporary, "w", newline="") as file:
            writer = csv.writer(file)
            writer.writerow(["image", "class", "confidence"])
            writer.writerows([name, label, f"{confidence:.4f}"] for name, label, confidence in rows)

    write_atomically(path, write, replace=False)


def accuracy_and_confusion(classifier, images, labels, classes):
    """The share of `images` that `classifier` puts in their `labels`, and the confusion matrix: row i, column j
    counts the images of class i it put in class j."""
    predicted = classifier.predict(images, batch_size=BATCH, verbose=0).argmax(axis=1)
    confusion = np.zeros((classes, classes), np.int64)
    np.add.at(confusion, (labels, predicted), 1)
    return float(np.mean(predicted == labels)), confusion
