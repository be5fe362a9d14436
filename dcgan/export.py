"""The trained generator in serving and mobile formats: a TensorFlow SavedModel, TensorFlow Lite, ONNX.

Keras's own exporter (`Model.export`) writes each format. The export is then loaded in the runtime
that would serve it and must draw the Keras generator's images from the same noise before it is
moved into place, so a failed or wrong export leaves nothing behind and replaces nothing.
"""
import importlib
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dcgan.errors import UserError, first_line
from dcgan.files import new_partial, partial_path, place_new, remove, writable_folder
from dcgan.conditioning import BODY
from dcgan.generation import all_classes, latent_noise
from dcgan.weights import RunFolder

TOLERANCE = 1e-4  # the largest pixel difference (images in [-1, 1]) an export may have from the Keras generator
CHECK_SEED, CHECK_COUNT = 0, 64  # the noise an export is checked on: a batch of 64, so a batch size other than 1 works
# The exported model's inputs and output, in every format: a conditional run's takes labels too.
INPUT_NAME, LABELS_NAME, OUTPUT_NAME = "noise", "labels", "images"


def _draw_savedmodel(path, inputs):
    import tensorflow as tf

    serve = tf.saved_model.load(str(path)).signatures["serving_default"]
    return serve(**{name: tf.constant(values) for name, values in inputs.items()})[OUTPUT_NAME].numpy()


def _draw_tflite(path, inputs):
    from ai_edge_litert.interpreter import Interpreter

    return Interpreter(model_path=str(path)).get_signature_runner()(**inputs)[OUTPUT_NAME]


def _draw_onnx(path, inputs):
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run([OUTPUT_NAME], inputs)[0]


def _is_savedmodel(path):
    return path.is_dir() and not path.is_symlink() and (path / "saved_model.pb").is_file()


def _file_with(offset, magic):
    """Whether `path` is a regular file holding `magic` at `offset`: what a format's files begin with."""
    def check(path):
        if not path.is_file():  # a device, a FIFO or a folder is never an export
            return False
        with open(path, "rb") as file:
            file.seek(offset)
            return file.read(len(magic)) == magic
    return check


def _builtin_ops_only():
    """TFLite's own kernels only: Keras would let the converter fall back to TensorFlow's ops ("Select TF ops"),
    which LiteRT's interpreter and a phone without TensorFlow's kernels linked in cannot run."""
    import tensorflow as tf

    return {"target_spec": {"supported_ops": [tf.lite.OpsSet.TFLITE_BUILTINS]}}


@dataclass(frozen=True)
class Format:
    keras_name: str  # Model.export's name for the format
    suffix: str  # of the file written; empty for a folder
    modules: tuple  # what writing and checking it need beyond TensorFlow, all in the `export` extra
    draw: object  # (path, {input name: values}) -> images, in the runtime that serves the format
    earlier_export: object  # path -> whether it holds an export in this format, which --overwrite may replace
    options: object = dict  # () -> Model.export's options for the format


FORMATS = {
    "savedmodel": Format("tf_saved_model", "", (), _draw_savedmodel, _is_savedmodel),
    "tflite": Format("litert", ".tflite", ("ai_edge_litert",), _draw_tflite, _file_with(4, b"TFL3"),
                     _builtin_ops_only),
    # An ONNX model is a protocol buffer whose first field is its IR version: tag 0x08.
    "onnx": Format("onnx", ".onnx", ("tf2onnx", "onnxruntime"), _draw_onnx, _file_with(0, b"\x08")),
}


@dataclass(frozen=True)
class Exported:
    path: Path
    size: int  # bytes, a SavedModel's files together
    difference: float  # the largest pixel difference from the Keras generator on the check's images


def export_generator(weights_dir, format, output, overwrite=False, tolerance=TOLERANCE):
    """Write the generator in `weights_dir` to `output` as `format` (a key of FORMATS), checked; returns an Exported.

    The exported model takes `noise` (N, latent_dim) as float32 (and a conditional run's `labels` (N,) as
    int32) and returns `images` (N, H, W, C) in [-1, 1].
    """
    kind = FORMATS.get(format)
    if kind is None:
        raise UserError(f"unknown export format {format!r}; choose one of {', '.join(FORMATS)}")
    output = Path(output)
    _check_output(output, format, kind, overwrite)
    missing = [module for module in kind.modules if not _importable(module)]
    if missing:
        raise UserError(
            f"exporting to {format} needs {' and '.join(missing)}, which pip install 'dcgan[export]' installs"
        )
    run = RunFolder.of(weights_dir)
    generator = run.model("generator")
    inputs = {INPUT_NAME: latent_noise(np.random.default_rng(CHECK_SEED), CHECK_COUNT, generator)}
    classes = all_classes(run)
    if classes:
        inputs[LABELS_NAME] = (np.arange(CHECK_COUNT) % len(classes)).astype(np.int32)
    expected = generator.predict(list(inputs.values()) if classes else inputs[INPUT_NAME], verbose=0)
    partial = new_partial(output)
    try:
        try:
            _write(generator, kind, partial)
            drawn = kind.draw(partial, inputs)
        except (
            Exception
        ) as error:  # a converter's or a runtime's own failure, whatever its type: one line, not its traceback
            raise UserError(
                f"exporting to {format} failed ({type(error).__name__}: {first_line(error)}); nothing was written"
            ) from None
        difference = float(np.max(np.abs(drawn - expected))) if np.shape(drawn) == expected.shape else np.inf
        if not difference <= tolerance:  # NaN fails too
            raise UserError(f"the {format} export draws images up to {difference:.2g} away from the Keras generator's "
                            f"(at most {tolerance:g} allowed); nothing was written")
        _replace(partial, output) if overwrite else place_new(partial, output)
    finally:
        remove(partial)
    return Exported(output, _size(output), difference)


def _importable(module):
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


def _check_output(output, format, kind, overwrite):
    if os.path.lexists(output) and not overwrite:
        raise UserError(f"{output} exists already; choose another --output, or pass --overwrite to replace it")
    if kind.suffix and output.suffix.lower() != kind.suffix:
        raise UserError(f"--output {output}: {format} writes one file; give a name ending in {kind.suffix}")
    if not kind.suffix and output.suffix.lower() in {".tflite", ".onnx", ".keras", ".h5"}:
        raise UserError(f"--output {output}: {format} writes a folder; give a folder name, such as generator-{format}")
    if os.path.lexists(output) and not kind.earlier_export(output):  # --overwrite replaces only an export
        raise UserError(f"{output} is not an earlier {format} export, and --overwrite replaces only one of those; "
                        "choose another --output")
    writable_folder(output.parent, "--output")


def _write(generator, kind, path):
    """The generator in `kind`'s format, with its inputs and output named, as a server or an app refers to them."""
    import keras

    conditional = isinstance(generator.input_shape, list)
    noise = keras.Input((generator.input_shape[0] if conditional else generator.input_shape)[1:], name=INPUT_NAME)
    inputs, images, body = noise, noise, generator
    if conditional:  # the one-hot label after the noise, as the conditional generator's own layers do
        labels = keras.Input((), dtype="int32", name=LABELS_NAME)
        encode = next(layer for layer in generator.layers if isinstance(layer, keras.layers.CategoryEncoding))
        inputs, images, body = (
            [noise, labels],
            keras.layers.Concatenate()([noise, encode(labels)]),
            generator.get_layer(BODY),
        )
    for layer in body.layers:
        images = layer(images)
        if isinstance(layer, keras.layers.UpSampling2D):
            # UpSampling2D repeats rows with tf.repeat, which loses the image's static height in TensorFlow's graph, and
            # TFLite's converter has no kernel for a Conv2D of unknown height; restating the shape (a no-op) keeps it.
            images = keras.layers.Reshape(images.shape[1:])(images)
    named = keras.Model(inputs, {OUTPUT_NAME: images})
    example = np.zeros((1, *noise.shape[1:]), np.float32)
    named(
        [example, np.zeros(1, np.int32)] if conditional else example
    )  # Keras exports only a model that has been called
    with warnings.catch_warnings():  # the converters' deprecation warnings are theirs, not the user's to act on
        warnings.simplefilter("ignore")
        named.export(str(path), format=kind.keras_name, verbose=False, **kind.options())


def _replace(partial, output):
    """Move the checked export to `output`; an old one there goes only once the new one is in place."""
    old = partial_path(output)
    if os.path.lexists(output):
        os.replace(output, old)
    os.replace(partial, output)
    remove(old)


def _size(path):
    return (
        sum(file.stat().st_size for file in path.rglob("*") if file.is_file()) if path.is_dir() else path.stat().st_size
    )
