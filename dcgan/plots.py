"""Pictures of a run from its files: training curves from metrics.csv, and an animated GIF of its sample grids."""
import csv
import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from dcgan.config import MAX_SAMPLE_COUNT
from dcgan.errors import UserError, first_line
from dcgan.files import write_atomically
from dcgan.image_folders import DECODE_ERRORS, open_image
from dcgan.images import grid_shape, save_animation
from dcgan.sizes import supported_sizes
from dcgan.weights import GRID_PREFIX, METRICS_FILE, grid_files, open_metrics

CURVES_FILE = "curves.png"
ANIMATION_FILE = "fakes.gif"
ANIMATION_SIDE = 1024  # larger grids are shrunk to this many pixels a side in the animation
MAX_GRID_PIXELS = math.prod(grid_shape(MAX_SAMPLE_COUNT)) * max(supported_sizes()) ** 2  # the largest grid a run draws

# (title, [(column, label, colour)], the usual y range or None) for each panel of the curves; a panel
# leaves its usual range for the values' own when they fall outside it (a critic's scores). Columns a
# run does not have (a semi-supervised run's classifier values) are left out.
PANELS = [
    (
        "losses",
        [("d_loss", "d_loss", "#c83c28"), ("g_loss", "g_loss", "#285ac8"), ("c_loss", "classifier", "#8c3cb4")],
        None,
    ),
    (
        "discriminator's mean score",
        [("d_real", "D(x), real", "#c83c28"), ("d_fake", "D(G(z)), generated", "#285ac8")],
        (0, 1),
    ),
    (
        "discriminator's accuracy (0.5: fooled half the time) and augment probability",
        [
            ("d_acc_real", "on real", "#c83c28"),
            ("d_acc_fake", "on generated", "#285ac8"),
            ("augment_p", "augment p", "#3c963c"),
            ("c_acc", "classifier, labelled", "#8c3cb4"),
        ],
        (0, 1),
    ),
]
FIGURE_INCHES, DPI = (9, 7.5), 100  # 900 x 750 pixels


def read_metrics(path):
    """metrics.csv as {column: float array}."""
    try:
        with open_metrics(path) as file:
            rows = list(csv.DictReader(file))
    except OSError as error:
        raise UserError(f"cannot read {path} ({error.strerror}); pass the --weights-dir of a training run") from None
    except (csv.Error, UnicodeDecodeError, ValueError) as error:
        raise UserError(f"{path} is damaged ({error}); move it aside, and training writes a new one") from None
    if not rows:
        raise UserError(f"{path} has no steps yet; train for a while first")
    if "step" not in rows[0]:
        raise UserError(
            f"{path} has no step column, so it is not a dcgan metrics file; pass the --weights-dir of a training run"
        )
    columns = {}
    for name in rows[0]:
        try:
            columns[name] = np.array([float(row[name]) for row in rows])
        except (TypeError, ValueError):
            line = next(number for number, row in enumerate(rows, 2) if not _is_number(row[name]))
            raise UserError(f"{path} is damaged: line {line} has no number for {name}; "
                            "delete that line, or move the file aside and training writes a new one") from None
    return columns


def _is_number(text):
    try:
        float(text)
        return True
    except (TypeError, ValueError):
        return False


def smooth(values, window):
    """Running mean over `window` steps, shorter at the start so the curve begins at the first step."""
    sums = np.cumsum(np.insert(values, 0, 0.0))
    ends = np.arange(1, len(values) + 1)
    starts = np.maximum(ends - window, 0)
    return (sums[ends] - sums[starts]) / (ends - starts)


def curves_figure(metrics):
    """A matplotlib Figure of `read_metrics`' columns against the step: each value thin, its running mean thick.

    Losses that stay above 0 are on a log scale, where the early fall and the later drift both show.
    """
    from matplotlib.figure import (
        Figure,
    )  # a Figure of its own, drawn without pyplot: no window, no display, no global state

    steps = metrics["step"]
    window = max(1, len(steps) // 50)
    figure = Figure(figsize=FIGURE_INCHES, dpi=DPI, layout="constrained")
    axes = figure.subplots(len(PANELS), 1, sharex=True)
    for ax, (title, lines, usual) in zip(axes, PANELS):
        present = [line for line in lines if line[0] in metrics]
        for column, label, colour in present:
            ax.plot(steps, metrics[column], color=colour, alpha=0.25, linewidth=0.8)
            ax.plot(steps, smooth(metrics[column], window), color=colour, linewidth=2, label=label)
        values = np.concatenate([metrics[column] for column, _, _ in present]) if present else np.zeros(1)
        if usual and usual[0] <= values.min() and values.max() <= usual[1]:
            ax.set_ylim(usual[0] - 0.02, usual[1] + 0.02)
        elif usual is None and values.min() > 0:
            ax.set_yscale("log")
        ax.set_title(title, loc="left", fontsize=10)
        ax.grid(alpha=0.3)
        if present:
            ax.legend(loc="upper right", fontsize=9)
    axes[-1].set_xlabel(f"step (thin: every step; thick: running mean of {window})")
    return figure


def plot_curves(metrics_path, output):
    """Draw the losses, scores and accuracies of metrics.csv against the step into the PNG `output`."""
    figure = curves_figure(read_metrics(metrics_path))
    write_atomically(output, lambda temporary: figure.savefig(temporary, format="png"))


def animate_grids(samples_dir, output, frame_seconds=0.25, max_frames=120):
    """An animated GIF of the sample grids in `samples_dir`, captioned with their step; holds the last one.

    Returns the number of frames; with more grids than `max_frames`, evenly spaced ones are used.
    """
    grids = grid_files(samples_dir)
    if not grids:
        raise UserError(
            f"no sample grids ({GRID_PREFIX}_epoch*_step*.png) in {samples_dir}; pass the --samples-dir of a training "
            "run"
        )
    if len(grids) > max_frames:
        grids = [grids[round(i)] for i in np.linspace(0, len(grids) - 1, max_frames)]
    font = _font(14)
    frames = []
    for step, path in grids:
        grid = _read_grid(path)
        frame = Image.new("RGB", (grid.width, grid.height + 20), "black")
        frame.paste(grid, (0, 0))
        ImageDraw.Draw(frame).text((4, grid.height + 2), f"step {step}", fill="white", font=font)
        frames.append(frame)
    save_animation(frames, output, frame_seconds, hold_last_seconds=2)
    return len(frames)


def _read_grid(path):
    """A sample grid as an RGB frame of the animation, at most ANIMATION_SIDE pixels a side; refused when its header
    claims more pixels than any run's grid has (what a forged grid would cost to decode)."""
    try:
        with open_image(path) as grid:
            if grid.width * grid.height > MAX_GRID_PIXELS:
                raise UserError(f"{path} is a {grid.width}x{grid.height} picture, larger than any sample grid dcgan "
                                "draws; move it out of the samples folder")
            grid = grid.convert("RGB")
    except DECODE_ERRORS as error:
        raise UserError(f"cannot read the sample grid {path} ({first_line(error)}); move it out of the samples "
                        "folder") from None
    grid.thumbnail((ANIMATION_SIDE, ANIMATION_SIDE))
    return grid


def draw_run_pictures(weights_dir, samples_dir):
    """The training curves and, once there are sample grids, their animation, as they stand."""
    plot_curves(Path(weights_dir) / METRICS_FILE, Path(samples_dir) / CURVES_FILE)
    if grid_files(samples_dir):
        animate_grids(samples_dir, Path(samples_dir) / ANIMATION_FILE)


def _font(size):
    try:
        return ImageFont.load_default(size)
    except (TypeError, OSError):  # a Pillow without FreeType has only its small bitmap font
        return ImageFont.load_default()
