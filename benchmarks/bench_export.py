"""Each export format's file size and the time it takes to draw 64 images, against the Keras generator, in one run.

    python benchmarks/bench_export.py [--weights-dir weights ...] [--repeats 20]

Exports each run's generator to every format (into a temporary folder), then draws the same 64 images
with each runtime in turn, `--repeats` rounds interleaved so that a busy machine slows every row alike,
and prints a markdown table of the median times. Needs pip install '.[export]'.
"""
import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from dcgan.export import CHECK_COUNT, FORMATS, export_generator
from dcgan.weights import load_generator, read_run_info


def runners(generator, folder):
    """{row name: a function drawing images from noise}, with each runtime's session loaded once, as a server would."""
    import onnxruntime
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter

    serve = tf.saved_model.load(str(folder / "savedmodel")).signatures["serving_default"]
    lite = Interpreter(model_path=str(folder / "tflite.tflite")).get_signature_runner()
    session = onnxruntime.InferenceSession(str(folder / "onnx.onnx"), providers=["CPUExecutionProvider"])
    return {
        "Keras predict": lambda noise: generator.predict(noise, verbose=0),
        "Keras call": lambda noise: generator(noise, training=False).numpy(),
        "savedmodel": lambda noise: serve(noise=tf.constant(noise))["images"].numpy(),
        "tflite": lambda noise: lite(noise=noise)["images"],
        "onnx": lambda noise: session.run(["images"], {"noise": noise})[0],
    }


def bench(weights_dir, repeats):
    run_info = read_run_info(weights_dir)
    generator = load_generator(weights_dir)
    noise = np.random.default_rng(1).uniform(-1, 1, (CHECK_COUNT, generator.input_shape[-1])).astype(np.float32)
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        sizes = {"Keras predict": (Path(weights_dir) / "generator.keras").stat().st_size}
        for name, kind in FORMATS.items():
            sizes[name] = export_generator(weights_dir, name, folder / f"{name}{kind.suffix}").size
        draws = runners(generator, folder)
        times = {name: [] for name in draws}
        for name, draw in draws.items():  # a first call builds and caches; it is not timed
            draw(noise)
        for _ in range(repeats):
            for name, draw in draws.items():
                start = time.perf_counter()
                draw(noise)
                times[name].append(time.perf_counter() - start)
    settings = run_info["config"]
    shape = "x".join(map(str, run_info["image_shape"]))
    reference = statistics.median(times["Keras predict"])
    for name, seconds in times.items():
        size = f"{sizes[name] / 1e6:.1f}" if name in sizes else ""
        print(f"| {settings['architecture']} {shape} | {name} | {size} | {statistics.median(seconds) * 1e3:.1f} | "
              f"{statistics.median(seconds) / reference:.2f}x |")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights-dir", action="append", default=None, help="A run's folder; may be given again.")
    parser.add_argument("--repeats", type=int, default=20)
    arguments = parser.parse_args()
    print(f"| generator | format | size (MB) | ms per {CHECK_COUNT} images | vs Keras predict |")
    print("|---|---|---:|---:|---:|")
    for weights_dir in arguments.weights_dir or ["weights"]:
        bench(weights_dir, arguments.repeats)


if __name__ == "__main__":
    main()
