"""Careless and hostile input: every case is one line on stderr naming the problem, a non-zero exit, no
traceback, and the run already in the folder untouched (its files' checksums).

Each case is a real `dcgan` command, run in this process with click's runner (the same code as the
installed command: the tests of the command in a child process are in test_cli.py and below).
"""
import gzip
import hashlib
import io
import json
import os
import resource
import shutil
import signal
import struct
import subprocess
import sys
import time
import warnings
import zipfile
import zlib
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import dcgan
from cli import main
from dcgan.files import LOCK_FILE
from dcgan.previous_run import PREVIOUS_RUN, set_aside_run, settle_previous_run
from dcgan.weights import OPTIMIZERS_FILE, RUN_FILE


def checksums(*folders):
    """{path: sha256} of every file under `folders`, but the trainer's lock (which holds its process id)."""
    return {
        str(path): hashlib.sha256(path.read_bytes()).hexdigest()
        for folder in folders
        for path in sorted(Path(folder).rglob("*"))
        if path.is_file() and path.name != LOCK_FILE
    }


@pytest.fixture(scope="module")
def run(tiny_config, tmp_path_factory):
    """A trained run that every case aims at (the small fully connected models, so that each case can
    copy and checksum it in a fraction of a second), and a folder of hostile files."""
    folder = tmp_path_factory.mktemp("hostile")
    dcgan.train(tiny_config(folder, architecture="mlp", weights_dir=str(folder / "run")))
    dcgan.train(tiny_config(folder, architecture="mlp", weights_dir=str(folder / "conditional"),
                            conditioning="concat", steps=2))
    make_hostile_files(folder / "files")
    return folder


def npy_header(shape, descr):
    """The header of a .npy file of `shape`: what numpy reads before it allocates."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": descr, "fortran_order": False, "shape": shape})
    return header.getvalue()


def png_header(width, height):
    """A PNG that declares a size and holds no pixels: what a decompression bomb looks like to a header reader."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
        + chunk(b"IEND", b"")
    )


EPS = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 28 28\n(/tmp/owned) (w) file closefile\nshowpage\n"


def with_method(method, data):
    """The zip archive `data` with its members claiming the compression `method` (8, deflate, for stored data: it
    does not inflate; 99: one zipfile does not know)."""
    data = bytearray(data)
    for signature, offset in ((b"PK\x03\x04", 8), (b"PK\x01\x02", 10)):
        start = data.find(signature)
        while start >= 0:
            data[start + offset:start + offset + 2] = struct.pack("<H", method)
            start = data.find(signature, start + 4)
    return bytes(data)


def recompressed_optimizers(method):
    def damage(folder):
        path = newest_snapshot(folder) / OPTIMIZERS_FILE
        path.write_bytes(with_method(method, path.read_bytes()))
    return damage


def h5_claiming(shape):
    """A weights file whose one array claims `shape`: HDF5 allocates it only when written, so the file is small."""
    def damage(folder):
        path = folder / "generator.weights.h5"
        path.unlink()
        with h5py.File(path, "w") as file:
            file.create_dataset("layers/dense/vars/0", shape=shape, dtype="float32")
    return damage


def fifo(relative):
    def damage(folder):
        (folder / relative).unlink()
        os.mkfifo(folder / relative)
    return damage


def previous_run(as_file):
    def damage(folder):
        if as_file:
            (folder / PREVIOUS_RUN).write_text("not a folder")
        else:  # set aside before anything was moved into it, in a run without snapshots
            shutil.rmtree(folder / "snapshots")
            (folder / PREVIOUS_RUN).mkdir()
    return damage


def metrics_as_folder(folder):
    (folder / "metrics.csv").unlink()
    (folder / "metrics.csv").mkdir()


def huge_grid(folder):  # in the case's own folder, which the command takes as its samples folder
    (folder.parent / "fakes_epoch0001_step0000002.png").write_bytes(png_header(9_000, 9_000))


def idx(shape, pixels=b""):
    return b"\0\0\x08" + bytes([len(shape)]) + b"".join(struct.pack(">I", side) for side in shape) + pixels


def make_hostile_files(folder):
    folder.mkdir()
    np.savez(folder / "strings.npz", x=np.full((4, 28, 28), "a"))
    np.savez(folder / "objects.npz", x=np.array([None, 1], dtype=object))
    np.savez(folder / "nan.npz", x=np.full((4, 28, 28), np.nan, np.float32))
    np.savez(folder / "too-bright.npz", x=np.full((4, 28, 28), 1000.0, np.float32))
    np.savez(folder / "oblong.npz", x=np.zeros((4, 28, 20), np.uint8))
    np.savez(folder / "empty.npz", x=np.zeros((0, 28, 28), np.uint8))
    np.savez(folder / "no-images.npz", pictures=np.zeros((4, 28, 28), np.uint8))
    np.savez(folder / "tiny-labelled.npz", x=np.zeros((4, 28, 28), np.uint8), y=np.arange(4))
    np.savez(folder / "huge-labels.npz", x=np.zeros((200, 28, 28), np.uint8), y=np.full(200, 10**9))
    np.savez(folder / "float-labels.npz", x=np.zeros((200, 28, 28), np.uint8), y=np.arange(200) / 2)
    with zipfile.ZipFile(folder / "lying-header.npz", "w") as archive:  # claims 3,000,000 images, holds 100 bytes
        archive.writestr("x.npy", npy_header((3_000_000, 28, 28), "|u1") + bytes(100))
    (folder / "not-a-zip.npz").write_bytes(b"PK\x03\x04 this is no zip file")
    (folder / "short-header-idx3-ubyte").write_bytes(b"\0\0\x08\x03" + struct.pack(">I", 10))
    with gzip.open(folder / "bomb-idx3-ubyte.gz", "wb") as file:  # declares 8 GiB of pixels
        file.write(idx((2048, 1024, 1024), bytes(1000)))
    (folder / "truncated-idx3-ubyte").write_bytes(idx((10, 28, 28), bytes(100)))
    (folder / "too-long-idx3-ubyte").write_bytes(idx((1, 28, 28), bytes(2000)))
    (folder / "floats-idx3-ubyte").write_bytes(b"\0\0\x0d\x03" + bytes(12))
    (folder / "not-gzip-idx3-ubyte.gz").write_bytes(b"this is not gzip")
    for name, content in (("bomb", png_header(30_000, 30_000)), ("big", png_header(8_000, 8_000)), ("text", b"hello")):
        (folder / name).mkdir()
        (folder / name / "only.png").write_bytes(content)
    (folder / "eps").mkdir()  # PostScript under a PNG's name: Pillow would hand it to Ghostscript
    (folder / "eps" / "evil.png").write_bytes(EPS)
    (folder / "tiff").mkdir()  # 32-bit integers, which dcgan once scaled as 16-bit
    Image.fromarray(np.full((28, 28), 2**31 - 1, np.int32)).save(folder / "tiff" / "wide.png", format="TIFF")
    (folder / "empty-folder").mkdir()
    (folder / "oblong-images").mkdir()
    Image.new("L", (40, 28)).save(folder / "oblong-images" / "wide.png")
    (folder / "a-file").write_text("a file, not a folder")
    (folder / "text.tflite").write_text("not a TensorFlow Lite model")


def damaged(run, case, damage):
    """A copy of the run with `damage(weights_folder)` done to it."""
    copy = case / "run"
    shutil.copytree(run / "run", copy)
    damage(copy)
    return copy


def edit_run_json(change):
    def damage(folder):
        info = json.loads((folder / RUN_FILE).read_text())
        change(info)
        (folder / RUN_FILE).write_text(json.dumps(info))
    return damage


def newest_snapshot(folder):
    return sorted((folder / "snapshots").iterdir())[-1]


def npz_bytes(**arrays):
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def write(relative, content):
    def damage(folder):
        path = relative(folder) if callable(relative) else folder / relative
        path.unlink(missing_ok=True)
        if content is not None:
            path.write_bytes(content)
    return damage


TRAIN = ["train", "--dataset", "mnist-sample", "--weights-dir", "{run}", "--samples-dir", "{samples}", "--overwrite",
         "--batch-size", "8", "--steps", "2"]
DATA = [
    "train",
    "--weights-dir",
    "{run}",
    "--samples-dir",
    "{samples}",
    "--overwrite",
    "--batch-size",
    "2",
    "--steps",
    "1",
    "--dataset",
]
GENERATE = ["generate", "--weights-dir", "{run}", "--batch-size", "4", "--output", "{case}/out.png"]
EVALUATE = ["evaluate", "--weights-dir", "{run}", "--count", "20", "--cache-dir", "{case}/cache", "--dataset"]

# (name, command, what stderr's one line says; a damage to a copy of the run, which {run} then names)
CASES = [
    ("lr-nan", [*TRAIN, "--lr", "nan"], "--lr nan is not a number"),
    ("lr-infinite", [*TRAIN, "--lr", "inf"], "--lr inf is not a number"),
    ("lr-negative", [*TRAIN, "--lr", "-1"], "Invalid value for '--lr'"),
    ("generator-lr-nan", [*TRAIN, "--generator-lr", "nan"], "--generator-lr nan is not a number"),
    ("augment-target-nan", [*TRAIN, "--augment-target", "nan"], "--augment-target nan is not a number"),
    ("ema-nan", [*TRAIN, "--ema", "nan"], "--ema nan is not a number"),
    ("beta1-nan", [*TRAIN, "--beta1", "nan"], "--beta1 nan is not a number"),
    ("clip-nan", [*TRAIN, "--loss", "wgan", "--clip", "nan"], "--clip nan is not a number"),
    ("gp-weight-infinite", [*TRAIN, "--loss", "wgan-gp", "--gp-weight", "inf"], "--gp-weight inf is not a number"),
    ("feature-matching-nan", [*TRAIN, "--feature-matching", "nan"], "--feature-matching nan is not a number"),
    ("minutes-nan", [*TRAIN, "--minutes", "nan"], "--minutes nan is not a number"),
    ("seed-negative", [*TRAIN, "--seed", "-1"], "-1 is not in the range 0<=x<=4294967295"),
    ("seed-too-big", [*TRAIN, "--seed", str(2**32)], "4294967296 is not in the range 0<=x<=4294967295"),
    ("seed-not-a-number", [*TRAIN, "--seed", "1e3"], "'1e3' is not a valid integer"),
    ("devices-unknown", [*TRAIN, "--devices", "foo"], "there is no device 'foo' here; choose from CPU:0"),
    ("devices-twice", [*TRAIN, "--devices", "CPU:0,CPU:0"], "names a device twice"),
    ("devices-missing-gpu", [*TRAIN, "--devices", "GPU:7"], "there is no device 'GPU:7' here"),
    ("devices-empty", [*TRAIN, "--devices", ""], "there is no device '' here"),
    ("dataset-empty", [*DATA, ""], "--dataset is empty"),
    ("dataset-missing", [*DATA, "{case}/nothing-here"], "is neither a known name"),
    ("sample-count-huge", [*TRAIN, "--sample-count", "100000"], "--sample-count 100000 is more than a grid can show"),
    ("threads-huge", [*TRAIN, "--threads", "100000"], "--threads 100000 is more than TensorFlow can use"),
    ("batch-bigger-than-data", [*TRAIN, "--batch-size", "100000"], "more than the dataset's 5000"),
    ("logdir-under-a-file", [*TRAIN, "--logdir", "{files}/a-file/logs"], "cannot write to folder"),
    ("samples-dir-under-a-file", [*TRAIN[:5], "--samples-dir", "{files}/a-file/samples", *TRAIN[7:]], "--samples-dir"),
    ("weights-dir-is-a-file", [*TRAIN[:3], "--weights-dir", "{files}/a-file"], "--weights-dir"),
    ("augment-unknown", [*TRAIN, "--augment", "flip"], "unknown augmentation flip"),
    ("clip-with-bce", [*TRAIN, "--clip", "0.1"], "--clip applies only to --loss wgan"),
    ("channels-of-stored-data", [*TRAIN, "--channels", "3"], "used as stored"),
    ("image-size-unsupported", [*TRAIN[:-4], "--image-size", "1000"], "image size 1000 is not supported"),
    ("unknown-option", [*TRAIN, "--learning-rate", "0.1"], "No such option '--learning-rate'"),
    ("no-overwrite", TRAIN[:7], "already holds a training run; pass --resume"),
    (
        "resume-changed-setting",
        ["train", "--resume", "--weights-dir", "{run}", "--lr", "0.1"],
        "cannot resume with --lr 0.1",
    ),
    ("resume-nothing", ["train", "--resume", "--weights-dir", "{case}/none"], "does not exist"),
    ("npz-strings", [*DATA, "{files}/strings.npz"], "holds <U1 values, not numbers"),
    ("npz-objects", [*DATA, "{files}/objects.npz"], "holds object values, not numbers"),
    ("npz-nan", [*DATA, "{files}/nan.npz"], "holds NaN or infinite values"),
    ("npz-out-of-range", [*DATA, "{files}/too-bright.npz"], "holds values from 1000 to 1000"),
    ("npz-oblong", [*DATA, "{files}/oblong.npz"], "shape (4, 28, 20)"),
    ("npz-empty", [*DATA, "{files}/empty.npz"], "with N > 0"),
    ("npz-no-images", [*DATA, "{files}/no-images.npz"], "holds no 'x_train' or 'x' array (found: pictures)"),
    ("npz-header-lies", [*DATA, "{files}/lying-header.npz"], "x's header promises shape (3000000, 28, 28)"),
    ("npz-not-a-zip", [*DATA, "{files}/not-a-zip.npz"], "cannot read"),
    ("idx-short-header", [*DATA, "{files}/short-header-idx3-ubyte"], "is truncated within its header"),
    ("idx-gzip-bomb", [*DATA, "{files}/bomb-idx3-ubyte.gz"], "10.0 GiB read and converted to float32"),
    ("idx-truncated", [*DATA, "{files}/truncated-idx3-ubyte"], "does not match its header"),
    ("idx-too-long", [*DATA, "{files}/too-long-idx3-ubyte"], "does not match its header"),
    ("idx-not-bytes", [*DATA, "{files}/floats-idx3-ubyte"], "is not an IDX file of unsigned bytes"),
    ("idx-not-gzip", [*DATA, "{files}/not-gzip-idx3-ubyte.gz"], "cannot read"),
    ("folder-png-bomb", [*DATA, "{files}/bomb"], "none of the 1 image files"),
    ("folder-too-many-pixels", [*DATA, "{files}/big"], "larger than 50,000,000 pixels"),
    ("folder-text-as-png", [*DATA, "{files}/text"], "none of the 1 image files"),
    ("folder-empty", [*DATA, "{files}/empty-folder"], "no PNG or JPEG images"),
    ("folder-oblong", [*DATA, "{files}/oblong-images"], "not square"),
    (
        "run-json-missing-key",
        GENERATE,
        "is damaged: image_shape is None",
        edit_run_json(lambda info: info.pop("image_shape")),
    ),
    (
        "run-json-wrong-type",
        ["train", "--resume", "--weights-dir", "{run}"],
        "is damaged: setting 'lr' is 'fast'",
        edit_run_json(lambda info: info["config"].update(lr="fast")),
    ),
    (
        "run-json-unknown-setting",
        GENERATE,
        "is damaged: unknown setting 'colour'",
        edit_run_json(lambda info: info["config"].update(colour=1)),
    ),
    ("run-json-not-json", GENERATE, "cannot read", write(RUN_FILE, b"{not json")),
    ("run-json-a-list", GENERATE, "it holds no settings", write(RUN_FILE, b"[1, 2]")),
    (
        "run-json-nan-probability",
        GENERATE,
        "augment_probability is nan",
        edit_run_json(lambda info: info.update(augment_probability=float("nan"))),
    ),
    (
        "optimizers-damaged",
        ["train", "--resume", "--weights-dir", "{run}", "--steps", "9"],
        "cannot read",
        write(lambda folder: newest_snapshot(folder) / OPTIMIZERS_FILE, b"PK\x03\x04 damaged"),
    ),
    (
        "optimizers-missing",
        ["train", "--resume", "--weights-dir", "{run}", "--steps", "9"],
        "optimizers.npz",
        write(lambda folder: newest_snapshot(folder) / OPTIMIZERS_FILE, None),
    ),
    (
        "optimizers-of-another-model",
        ["train", "--resume", "--weights-dir", "{run}", "--steps", "9"],
        "does not hold this run's optimizer state",
        write(lambda folder: newest_snapshot(folder) / OPTIMIZERS_FILE, npz_bytes(generator_0=np.zeros(3))),
    ),
    (
        "metrics-damaged-resume",
        ["train", "--resume", "--weights-dir", "{run}", "--steps", "9"],
        "metrics.csv is damaged",
        write("metrics.csv", b"step,epoch\nthree,1\n"),
    ),
    (
        "metrics-damaged-plot",
        ["plot", "--weights-dir", "{run}", "--samples-dir", "{case}"],
        "line 2 has no number for step",
        write("metrics.csv", b"step,epoch\nthree,1\n"),
    ),
    (
        "generator-weights-damaged",
        GENERATE,
        "does not fit dcgan's generator",
        write("generator.weights.h5", b"\x89HDF\r\n damaged"),
    ),
    (
        "generate-missing-snapshot",
        [*GENERATE, "--snapshot", "123"],
        "has no snapshot at step 123; its snapshots are at steps 4, 6",
    ),
    ("generate-nice-factor-huge", [*GENERATE, "--nice", "--nice-factor", "1000000"], "keep it at most 100,000"),
    (
        "generate-output-gif",
        [*GENERATE[:-2], "--output", "{case}/x.gif", "--interpolate", "--gif"],
        "give a name ending in .png",
    ),
    ("generate-output-exists", [*GENERATE[:-2], "--output", "{files}/a-file.png"], "exists already"),
    ("generate-seed-negative", [*GENERATE, "--seed", "-5"], "-5 is not in the range 0<=x<=4294967295"),
    ("generate-batch-huge", [*GENERATE[:-4], "--batch-size", "100000"], "100000 is not in the range 1<=x<=4096"),
    ("evaluate-seed-negative", [*EVALUATE, "mnist-sample", "--seed", "-1"], "-1 is not in the range 0<=x<=4294967295"),
    (
        "evaluate-count-huge",
        [*EVALUATE, "mnist-sample", "--count", "1000000"],
        "1000000 is not in the range 10<=x<=50000",
    ),
    ("evaluate-too-few-labels", [*EVALUATE, "{files}/tiny-labelled.npz"], "scoring needs at least 100 and 20"),
    ("evaluate-huge-labels", [*EVALUATE, "{files}/huge-labels.npz"], "holds labels from 1000000000 to 1000000000"),
    (
        "evaluate-float-labels",
        [*EVALUATE, "{files}/float-labels.npz"],
        "holds the label 0.5, which is not a class number",
    ),
    ("evaluate-unlabelled-folder", [*EVALUATE, "{files}/text"], "holds images without labels"),
    # Pictures: only PNG and JPEG are decoded, by their content.
    ("folder-eps-named-png", [*DATA, "{files}/eps"], "none of the 1 image files"),
    ("folder-int32-tiff-named-png", [*DATA, "{files}/tiff"], "none of the 1 image files"),
    ("plot-grid-of-9000-pixels", ["plot", "--weights-dir", "{run}", "--samples-dir", "{case}"],
     "larger than any sample grid dcgan draws", huge_grid),
    # Names: a control character is shown escaped, and cannot start a line of its own.
    ("dataset-name-with-newline", [*DATA, "{case}/x\nError: forged"], "x\\nError: forged"),
    # Writes: --overwrite replaces only an earlier export of its kind.
    ("export-over-run-json", ["export", "--weights-dir", "{run}", "--format", "savedmodel", "--output",
                              "{run}/run.json", "--overwrite"], "is not an earlier savedmodel export"),
    ("export-over-metrics", ["export", "--weights-dir", "{run}", "--format", "savedmodel", "--output",
                             "{run}/metrics.csv", "--overwrite"], "is not an earlier savedmodel export"),
    ("export-over-a-device", ["export", "--weights-dir", "{run}", "--format", "savedmodel", "--output", "/dev/null",
                              "--overwrite"], "/dev/null is not an earlier savedmodel export"),
    ("export-over-a-text-file", ["export", "--weights-dir", "{run}", "--format", "tflite", "--output",
                                 "{files}/text.tflite", "--overwrite"], "is not an earlier tflite export"),
    ("previous-run-a-file", ["train", "--resume", "--weights-dir", "{run}"], "is not the folder dcgan sets",
     previous_run(as_file=True)),
    ("previous-run-empty", TRAIN[:7], "already holds a training run", previous_run(as_file=False)),
    # Memory: bounded by what a file holds, not by what its header claims.
    ("weights-claiming-16-gb", GENERATE, "which no layer has", h5_claiming((65_536, 65_536))),
    ("run-json-huge-latent", GENERATE, "latent_dim is 1000000000",
     edit_run_json(lambda info: info.update(latent_dim=10**9))),
    ("run-json-huge-image", GENERATE, "image size 65536 is not supported",
     edit_run_json(lambda info: info.update(image_shape=[65_536, 65_536, 3]))),
    ("run-json-oblong-image", GENERATE, "not square", edit_run_json(lambda info: info.update(image_shape=[8, 16, 1]))),
    ("run-json-large-file", GENERATE, "holds more than 1,000,000 bytes",
     write(RUN_FILE, b"{" + b" " * 2_000_000 + b"}")),
    ("run-json-fifo", GENERATE, "not a regular file", fifo(RUN_FILE)),
    ("run-json-unknown-architecture", GENERATE, "setting 'architecture' is 'resnet', not one of",
     edit_run_json(lambda info: info["config"].update(architecture="resnet"))),
    ("run-json-unknown-loss", GENERATE, "setting 'loss' is 'l1', not one of",
     edit_run_json(lambda info: info["config"].update(loss="l1"))),
    ("run-json-unknown-conditioning", GENERATE, "setting 'conditioning' is 'text', not one of",
     edit_run_json(lambda info: info["config"].update(conditioning="text"))),
    ("interpolate-too-many-images", [*GENERATE[:-2], "--interpolate", "--walks", "256", "--points", "256"],
     "more than a grid can show"),
    (
        "optimizers-bad-deflate",
        ["train", "--resume", "--weights-dir", "{run}", "--steps", "9"],
        "cannot read",
        recompressed_optimizers(8),
    ),
    (
        "optimizers-unknown-compression",
        ["train", "--resume", "--weights-dir", "{run}", "--steps", "9"],
        "cannot read",
        recompressed_optimizers(99),
    ),
    ("npz-unknown-compression", [*DATA, "{case}/run/x.npz"], "cannot read",
     write("x.npz", with_method(99, npz_bytes(x=np.zeros((4, 28, 28), np.uint8))))),
    (
        "metrics-a-folder-resume",
        ["train", "--resume", "--weights-dir", "{run}", "--steps", "9"],
        "metrics.csv is damaged",
        metrics_as_folder,
    ),
    ("metrics-a-folder-plot", ["plot", "--weights-dir", "{run}", "--samples-dir", "{case}"], "cannot read",
     metrics_as_folder),
    (
        "metrics-nan-elapsed",
        ["train", "--resume", "--weights-dir", "{run}", "--steps", "9"],
        "metrics.csv is damaged",
        write("metrics.csv", b"step,epoch,elapsed_seconds\n1,1,nan\n2,1,nan\n3,1,nan\n4,1,nan\n"),
    ),
    ("run-json-class-names-disagree", GENERATE, "class_names and classifier_class_names name different classes",
     edit_run_json(lambda info: info.update(class_names=["a", "b"], classifier_class_names=["c", "d"]))),
    ("dataset-a-fifo", [*DATA, "{case}/fifo"], "is neither a file nor a folder",
     lambda folder: os.mkfifo(folder.parent / "fifo")),
    ("generate-class-superscript-two", ["generate", "--weights-dir", "{conditional}", "--batch-size", "4", "--output",
                                        "{case}/out.png", "--class", "²"], "the run has no class '²'"),
    ("semi-supervised-one-image-a-class", [*DATA[:-1], "--semi-supervised", "--labelled", "10", "--dataset",
                                           "{case}/one.npz"], "leaves no images to train on",
     lambda folder: np.savez(folder.parent / "one.npz", x=np.zeros((10, 28, 28), np.uint8), y=np.arange(10))),
    ("plot-no-run", ["plot", "--weights-dir", "{case}/none"], "does not exist"),
    (
        "plot-samples-dir-under-a-file",
        ["plot", "--weights-dir", "{run}", "--samples-dir", "{files}/a-file/samples"],
        "--samples-dir",
    ),
]


def test_there_are_at_least_sixty_cases():
    assert len(CASES) >= 60 and len({case[0] for case in CASES}) == len(CASES)


@pytest.mark.parametrize(
    "name, command, message, damage", [(*case, None)[:4] for case in CASES], ids=[case[0] for case in CASES]
)
def test_hostile_input_gets_one_line_and_loses_nothing(run, tmp_path, name, command, message, damage):
    (run / "files" / "a-file.png").write_bytes(b"not to be replaced")
    target = damaged(run, tmp_path, damage) if damage else run / "run"
    before = checksums(run / "run", run / "samples", target, run / "files")
    places = {"run": target, "samples": run / "samples", "files": run / "files", "case": tmp_path,
              "conditional": run / "conditional"}
    result = CliRunner().invoke(main, [part.format(**places) for part in command])
    assert result.exit_code in (1, 2), result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        f"a traceback escaped: {result.exception!r}"
    )
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and message in lines[0], result.stderr
    assert checksums(run / "run", run / "samples", target, run / "files") == before


def test_a_failed_overwrite_puts_the_old_run_back(run, tmp_path):
    """--overwrite with settings that fail during training (the losses overflow at step 1) leaves the old run as it
    was."""
    shutil.copytree(run / "run", tmp_path / "run")
    before = checksums(tmp_path / "run")
    result = CliRunner().invoke(main, ["train", "--dataset", "mnist-sample", "--weights-dir", str(tmp_path / "run"),
                                       "--samples-dir", str(tmp_path / "samples"), "--overwrite",
                                       "--lr", "1e30", "--batch-size", "8", "--steps", "20", "--save-every", "100"])
    assert (
        result.exit_code == 1 and "became" in result.stderr and "no checkpoint had been saved yet" in result.stderr
    ), result.output
    assert "put back if this run fails" in result.stdout
    assert checksums(tmp_path / "run") == before and not (tmp_path / "run" / PREVIOUS_RUN).exists()


def test_a_run_set_aside_is_settled_after_a_crash(run, tmp_path):
    """A trainer killed while replacing a run: the next start keeps the new run if it saved a checkpoint, else the old
    one."""
    for new_run_saved in (False, True):
        folder = tmp_path / f"saved-{new_run_saved}"
        shutil.copytree(run / "run", folder)
        (folder / "notes.txt").write_text("the user's own file, not the run's")
        before = checksums(folder)
        set_aside_run(folder)
        assert sorted(path.name for path in folder.iterdir()) == sorted([PREVIOUS_RUN, LOCK_FILE, "notes.txt"])
        (folder / "metrics.csv").write_text("step\n1\n")
        if new_run_saved:
            (folder / "snapshots" / "step0000001").mkdir(parents=True)
        message = settle_previous_run(folder)
        assert not (folder / PREVIOUS_RUN).exists()
        assert (folder / "notes.txt").exists()
        if new_run_saved:
            assert message.startswith("Removed") and (folder / "metrics.csv").read_text() == "step\n1\n"
        else:
            assert message.startswith("Restored") and checksums(folder) == before


def dcgan_process(*args, cwd):
    command = Path(sys.executable).parent / "dcgan"
    return subprocess.Popen(
        [str(command), *map(str, args)], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def test_two_trainers_never_share_a_folder_and_a_killed_one_frees_it(tmp_path):
    weights = tmp_path / "weights"
    first = dcgan_process(
        "train",
        "--dataset",
        "mnist-sample",
        "--weights-dir",
        weights,
        "--samples-dir",
        tmp_path / "samples",
        "--batch-size",
        8,
        "--steps",
        100_000,
        "--save-every",
        2,
        "--sample-count",
        4,
        cwd=tmp_path,
    )
    try:
        deadline = time.monotonic() + 120
        while not (weights / RUN_FILE).exists():
            assert first.poll() is None and time.monotonic() < deadline, first.communicate()
            time.sleep(0.2)
        assert (weights / LOCK_FILE).read_text().strip() == f"process {first.pid}"
        # The second trainers in this process: the lock is the other process's all the same.
        for extra in (["--resume"], ["--overwrite"], []):
            second = CliRunner().invoke(main, ["train", "--dataset", "mnist-sample", "--weights-dir", weights,
                                               "--batch-size", 8, *extra])
            assert second.exit_code == 1 and second.output.splitlines()[-1] == (
                f"Error: {weights} is in use by dcgan train (process {first.pid}); wait for it to end or stop it, "
                "or train in another --weights-dir"), second.output
        reader = CliRunner().invoke(main, ["generate", "--weights-dir", weights, "--batch-size", 4, "--output",
                                           tmp_path / "while.png"])
        assert reader.exit_code == 0 and (tmp_path / "while.png").exists(), "a folder that is training can be read"
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    resumed = dcgan_process("train", "--resume", "--weights-dir", weights, "--steps", 1, cwd=tmp_path)
    stdout, stderr = resumed.communicate(timeout=120)
    assert resumed.returncode == 0 and ("Nothing to do" in stdout or "Resuming" in stdout), stderr


def test_integer_images_of_zeros_and_ones_are_black_and_white(tmp_path):
    from dcgan.datasets import load_dataset

    np.savez(tmp_path / "binary.npz", x=np.eye(28, dtype=np.uint8)[None].repeat(3, 0))
    images = load_dataset(str(tmp_path / "binary.npz"))
    assert set(np.unique(images)) == {-1.0, 1.0}


def test_sixteen_bit_images_keep_their_precision(tmp_path):
    from dcgan.datasets import load_dataset

    levels = (np.arange(28 * 28, dtype=np.uint16) * 80).reshape(28, 28)  # 0 to 62,640: more levels than 8 bits hold
    Image.fromarray(levels).save(tmp_path / "deep.png")
    with Image.open(tmp_path / "deep.png") as png:
        assert png.mode.startswith("I"), "Pillow wrote a 16-bit PNG"
    images = load_dataset(str(tmp_path))
    assert len(np.unique(images)) == 28 * 28, "every 16-bit level stays its own value"
    np.testing.assert_allclose(images[0, ..., 0], levels / 257 / 127.5 - 1, atol=1e-5)


def test_a_truncated_image_is_skipped_when_the_folder_is_read(tmp_path, capsys):
    from dcgan.datasets import load_dataset

    noise = np.random.default_rng(0).integers(0, 256, (3, 28, 28), np.uint8)
    for index in range(3):
        Image.fromarray(noise[index]).save(tmp_path / f"{index}.png")
    whole = (tmp_path / "2.png").read_bytes()
    (tmp_path / "2.png").write_bytes(whole[:-100])  # the header is whole, the pixels are not
    images = load_dataset(str(tmp_path))
    assert images.shape == (2, 28, 28, 1) and "Skipping 1 of 3 image files" in capsys.readouterr().err
    np.testing.assert_array_equal(images, noise[:2, ..., None] / np.float32(127.5) - 1)


def test_a_damaged_cached_classifier_is_trained_again(tmp_path, monkeypatch):
    from dcgan import evaluation
    from dcgan.evaluation import Scorer

    monkeypatch.setattr(evaluation, "CLASSIFIER_STEPS", 30)  # black against white needs no more

    rng = np.random.default_rng(0)
    labels = np.arange(150) % 2
    images = np.where(labels[:, None, None] == 1, 255, 0).astype(np.uint8) + rng.integers(
        0, 20, (150, 28, 28), np.uint8
    )
    np.savez(tmp_path / "two.npz", x=images, y=labels)
    Scorer(str(tmp_path / "two.npz"), cache_dir=tmp_path / "cache", log=lambda line: None)
    [cached] = (tmp_path / "cache").glob("*.keras")
    cached.write_bytes(b"PK\x03\x04 damaged")
    lines = []
    scorer = Scorer(str(tmp_path / "two.npz"), cache_dir=tmp_path / "cache", log=lines.append)
    assert "is damaged (" in lines[0] and "training it again" in lines[0]
    assert scorer.classifier.info["held_out_accuracy"] == 1.0


def test_generate_writes_beside_the_runs_grids_and_never_replaces_a_file(run, tmp_path, monkeypatch):
    shutil.copytree(run / "run", tmp_path / "run")
    info = json.loads((tmp_path / "run" / RUN_FILE).read_text())
    info["config"]["samples_dir"] = str(tmp_path / "run-samples")
    (tmp_path / "run" / RUN_FILE).write_text(json.dumps(info))
    (tmp_path / "run-samples").mkdir()
    monkeypatch.chdir(tmp_path)
    names = []
    for _ in range(2):
        result = CliRunner().invoke(main, ["generate", "--weights-dir", "run", "--batch-size", "4", "--seed", "3"])
        assert result.exit_code == 0, result.output
        names.append(result.stdout.split(" to ")[1].split(" (")[0])
    folder = tmp_path / "run-samples"
    assert names == [str(folder / "generated_seed3.png"), str(folder / "generated_seed3-2.png")]
    assert (folder / "generated_seed3.png").read_bytes() == (folder / "generated_seed3-2.png").read_bytes()
    (tmp_path / "run-samples").rename(tmp_path / "moved")
    result = CliRunner().invoke(main, ["generate", "--weights-dir", "run", "--batch-size", "4", "--seed", "3"])
    assert result.exit_code == 0 and (tmp_path / "samples" / "generated_seed3.png").exists(), "no run folder: ./samples"


def test_no_program_runs_because_of_a_picture(run, tmp_path, monkeypatch):
    # A Ghostscript that leaves a mark if Pillow ever calls it, first on PATH.
    (tmp_path / "bin").mkdir()
    gs = tmp_path / "bin" / "gs"
    gs.write_text(f"#!/bin/sh\ntouch {tmp_path / 'ran'}\n")
    gs.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "evil.png").write_bytes(EPS)
    Image.new("L", (28, 28), 200).save(tmp_path / "data" / "good.png")
    from dcgan.datasets import load_dataset

    images = load_dataset(str(tmp_path / "data"))
    assert images.shape == (1, 28, 28, 1) and np.allclose(images, 200 / 127.5 - 1)
    assert not (tmp_path / "ran").exists(), "Pillow ran Ghostscript on a file named .png"


def test_pruning_never_follows_a_snapshot_that_is_a_symbolic_link(run, tmp_path):
    shutil.copytree(run / "run", tmp_path / "run")
    outside = tmp_path / "outside"
    outside.mkdir()
    for name in ("optimizers.npz", "generator.weights.h5", "training_generator.weights.h5"):
        (outside / name).write_text("the user's own file")
    (tmp_path / "run" / "snapshots" / "step0000001").symlink_to(outside, target_is_directory=True)
    result = CliRunner().invoke(main, ["train", "--resume", "--weights-dir", tmp_path / "run", "--steps", "8",
                                       "--save-every", "1", "--keep", "1", "--samples-dir", tmp_path / "samples"])
    assert result.exit_code == 0, result.output
    assert sorted(path.name for path in outside.iterdir()) == [
        "generator.weights.h5", "optimizers.npz", "training_generator.weights.h5"
    ]
    assert (tmp_path / "run" / "snapshots" / "step0000001").is_symlink()
    assert [path.name for path in (tmp_path / "run" / "snapshots").iterdir() if not path.is_symlink()] == [
        "step0000008"
    ]


def test_resume_trains_the_folder_it_read_not_the_one_its_run_json_names(run, tmp_path, monkeypatch):
    shutil.copytree(run / "run", tmp_path / "weights")
    info = json.loads((tmp_path / "weights" / RUN_FILE).read_text())
    info["config"]["weights_dir"] = str(tmp_path / "elsewhere")  # where the run was trained before it was moved
    (tmp_path / "weights" / RUN_FILE).write_text(json.dumps(info))
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["train", "--resume", "--steps", "7", "--samples-dir", "samples"])
    assert result.exit_code == 0, result.output
    assert not (tmp_path / "elsewhere").exists()
    assert json.loads((tmp_path / "weights" / RUN_FILE).read_text())["step"] == 7


def test_an_output_another_command_creates_meanwhile_is_never_replaced(tmp_path):
    from dcgan.files import place_new, write_atomically

    def racing(temporary):  # the other command wins the name while this one writes
        (tmp_path / "out.csv").write_text("the other command's")
        temporary.write_text("this command's")

    with pytest.raises(dcgan.UserError, match="appeared while this command was writing it"):
        write_atomically(tmp_path / "out.csv", racing, replace=False)
    assert (tmp_path / "out.csv").read_text() == "the other command's"
    (tmp_path / "pngs").mkdir()
    (tmp_path / "pngs" / "image_000000.png").write_text("the other command's")
    (tmp_path / "partial").mkdir()
    with pytest.raises(dcgan.UserError, match="appeared while this command was writing it"):
        place_new(tmp_path / "partial", tmp_path / "pngs")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["out.csv", "partial", "pngs"]


def test_partial_outputs_of_killed_commands_are_removed_and_those_of_running_ones_kept(run, tmp_path):
    from dcgan.files import PARTIAL

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    killed = tmp_path / f"{PARTIAL}{gone.pid}-0123abcd-images.npz"
    killed.write_bytes(bytes(1000))
    (tmp_path / f"{PARTIAL}{gone.pid}-4567abcd-pngs").mkdir()
    running = tmp_path / f"{PARTIAL}{os.getpid()}-89abcdef-images.npz"
    running.write_bytes(bytes(1000))
    for output in ("images.npz", "pngs"):
        result = CliRunner().invoke(main, ["generate", "--weights-dir", run / "run", "--count", "3", "--output",
                                           tmp_path / output])
        assert result.exit_code == 0, result.output
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(["images.npz", "pngs", running.name])


def test_nice_keeps_the_same_images_whether_it_draws_in_one_chunk_or_many(run, monkeypatch):
    from dcgan import generation

    whole = dcgan.generate(run / "run", count=5, seed=4, nice_factor=7)
    monkeypatch.setattr(generation, "NICE_CHUNK", 3)
    chunked = dcgan.generate(run / "run", count=5, seed=4, nice_factor=7)
    np.testing.assert_array_equal(whole[0], chunked[0])
    np.testing.assert_array_equal(whole[1], chunked[1])


def test_a_set_aside_interrupted_while_moving_puts_every_file_back(run, tmp_path):
    shutil.copytree(run / "run", tmp_path / "run")
    before = checksums(tmp_path / "run")
    previous = tmp_path / "run" / PREVIOUS_RUN
    previous.mkdir()  # killed after moving two of the run's entries and before marking the set-aside whole
    for name in ("snapshots", "metrics.csv"):
        (tmp_path / "run" / name).rename(previous / name)
    said = settle_previous_run(tmp_path / "run")
    assert said.startswith("Restored the run") and not previous.exists()
    assert checksums(tmp_path / "run") == before


def test_a_deeply_nested_tf_config_is_one_line_even_with_dry_run():
    result = CliRunner().invoke(main, ["train", "--dry-run"], env={"TF_CONFIG": "[" * 100_000})
    assert result.exit_code == 1 and (result.exception is None or isinstance(result.exception, SystemExit))
    assert result.stderr.startswith("Error: TF_CONFIG in the environment cannot be read (it is not JSON)")
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_caller_trickling_bytes_on_the_meeting_port_cannot_hold_a_worker(monkeypatch):
    import socket
    import threading

    from dcgan import cluster

    with socket.socket() as probe:  # a free port for worker 0; worker 1 never starts
        probe.bind(("", 0))
        port = probe.getsockname()[1]
    stop = threading.Event()

    def trickle():  # one byte every half second, never a newline, until the test ends
        while not stop.is_set():
            try:
                with socket.create_connection(("localhost", port), timeout=1) as connection:
                    while not stop.wait(0.5):
                        connection.sendall(b"[")
            except OSError:
                stop.wait(0.1)

    threading.Thread(target=trickle, daemon=True).start()
    monkeypatch.setattr(cluster, "MEETING_SECONDS", 1.0)
    workers = cluster.Cluster((f"localhost:{port}", "localhost:1"), 0)
    started = time.monotonic()
    try:
        with pytest.raises(dcgan.UserError, match="did not answer within 2 s"):
            cluster._meet(workers, "{}", wait=2)
    finally:
        stop.set()
    assert time.monotonic() - started < 2 + 1 + 1.5, "the trickle held the worker past its wait"


def test_a_full_disk_under_generate_is_one_line_and_leaves_nothing(run, tmp_path):
    limit = lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))  # noqa: E731
    result = subprocess.run(
        [str(Path(sys.executable).parent / "dcgan"), "generate", "--weights-dir", str(run / "run"), "--count", "2000",
         "--output", str(tmp_path / "images.npz")],
        capture_output=True, text=True, preexec_fn=limit, timeout=300,
    )
    assert result.returncode == 1, result.stderr
    assert result.stderr.startswith("Error: File too large") and len(result.stderr.strip().splitlines()) == 1, (
        result.stderr
    )
    assert list(tmp_path.iterdir()) == []


def test_identical_images_train_without_a_raw_warning(tmp_path):
    np.savez(tmp_path / "same.npz", x=np.full((16, 28, 28), 128, np.uint8))
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # dividing by identical images' zero diversity was one
        result = CliRunner().invoke(main, ["train", "--dataset", tmp_path / "same.npz", "--architecture", "mlp",
                                           "--batch-size", "8", "--steps", "3", "--sample-every", "1", "--weights-dir",
                                           tmp_path / "weights", "--samples-dir", tmp_path / "samples"])
    assert result.exit_code == 0, result.output
    assert "warning" not in result.stderr.lower()
