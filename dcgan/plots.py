"""Pictures of a run from its files: training curves from metrics.csv, and an animated GIF of its sample grids."""
import csv
import math
import re
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from dcgan.errors import UserError
from dcgan.files import write_atomically
from dcgan.images import save_animation

CURVES_FILE = "curves.png"
ANIMATION_FILE = "fakes.gif"
GRID_NAME = re.compile(r"fakes_epoch\d+_step(\d+)\.png")

# (title, [(column, label, colour)], y range or None) for each panel of the curves; a range is widened
# to the values when they leave it.
PANELS = [
    ("losses", [("d_loss", "d_loss", (200, 60, 40)), ("g_loss", "g_loss", (40, 90, 200))], None),
    ("discriminator's mean score (a critic's are unbounded)", [("d_real", "D(x), real", (200, 60, 40)), ("d_fake", "D(G(z)), generated", (40, 90, 200))], (0, 1)),
    ("discriminator's accuracy (0.5: fooled half the time) and augment probability",
     [("d_acc_real", "on real", (200, 60, 40)), ("d_acc_fake", "on generated", (40, 90, 200)),
      ("augment_p", "augment p", (60, 150, 60))], (0, 1)),
]
WIDTH, PANEL_HEIGHT, MARGIN = 900, 230, 60


def read_metrics(path):
    """metrics.csv as {column: float array}."""
    try:
        with open(path, newline="") as file:
            rows = list(csv.DictReader(file))
    except OSError as error:
        raise UserError(f"cannot read {path} ({error.strerror}); pass the --weights-dir of a training run") from None
    except (csv.Error, UnicodeDecodeError) as error:
        raise UserError(f"{path} is damaged ({error}); move it aside, and training writes a new one") from None
    if not rows:
        raise UserError(f"{path} has no steps yet; train for a while first")
    if "step" not in rows[0]:
        raise UserError(f"{path} has no step column, so it is not a dcgan metrics file; pass the --weights-dir of a training run")
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


def plot_curves(metrics_path, output):
    """Draw the losses, scores and accuracies of metrics.csv against the step into the PNG `output`."""
    metrics = read_metrics(metrics_path)
    steps = metrics["step"]
    window = max(1, len(steps) // 50)
    font = _font(14)
    picture = Image.new("RGB", (WIDTH, PANEL_HEIGHT * len(PANELS) + 20), "white")
    draw = ImageDraw.Draw(picture)
    for index, (title, lines, y_range) in enumerate(PANELS):
        top = index * PANEL_HEIGHT + 20
        box = (MARGIN, top + 10, WIDTH - 20, top + PANEL_HEIGHT - 40)
        present = [line for line in lines if line[0] in metrics]
        smoothed = {column: smooth(metrics[column], window) for column, _, _ in present}
        low = min((float(values.min()) for values in smoothed.values()), default=0.0)
        high = max((float(values.max()) for values in smoothed.values()), default=1.0)
        if y_range is None or low < y_range[0] or high > y_range[1]:  # a critic's scores and losses are unbounded
            y_range = (-_nice_ceiling(-low) if low < 0 else 0, _nice_ceiling(high))
        x_range = (0, max(1.0, float(steps[-1])))
        _axes(draw, font, box, x_range, y_range, title)
        for column, label, colour in present:
            faint = tuple(c + (255 - c) * 3 // 4 for c in colour)
            _polyline(draw, box, x_range, y_range, steps, metrics[column], faint, 1)
            _polyline(draw, box, x_range, y_range, steps, smoothed[column], colour, 2)
        legend_x = box[2]
        for _, label, colour in reversed(present):
            legend_x -= draw.textlength(label, font=font) + 30
            draw.line((legend_x, box[1] - 16, legend_x + 18, box[1] - 16), fill=colour, width=3)
            draw.text((legend_x + 22, box[1] - 24), label, fill="black", font=font)
    draw.text((MARGIN, picture.height - 22), f"step (thin: every step; thick: running mean of {window})", fill="black", font=font)
    write_atomically(output, lambda temporary: picture.save(temporary, format="PNG"))


def grid_files(samples_dir):
    """The run's sample grids in `samples_dir`, as (step, path) in step order."""
    found = []
    for path in Path(samples_dir).glob("fakes_epoch*_step*.png"):
        match = GRID_NAME.fullmatch(path.name)
        if match:
            found.append((int(match.group(1)), path))
    return sorted(found)


def animate_grids(samples_dir, output, frame_seconds=0.25, max_frames=120):
    """An animated GIF of the sample grids in `samples_dir`, captioned with their step; holds the last one.

    Returns the number of frames; with more grids than `max_frames`, evenly spaced ones are used.
    """
    grids = grid_files(samples_dir)
    if not grids:
        raise UserError(f"no sample grids (fakes_epoch*_step*.png) in {samples_dir}; pass the --samples-dir of a training run")
    if len(grids) > max_frames:
        grids = [grids[round(i)] for i in np.linspace(0, len(grids) - 1, max_frames)]
    font = _font(14)
    frames = []
    for step, path in grids:
        with Image.open(path) as grid:
            grid = grid.convert("RGB")
        frame = Image.new("RGB", (grid.width, grid.height + 20), "black")
        frame.paste(grid, (0, 0))
        ImageDraw.Draw(frame).text((4, grid.height + 2), f"step {step}", fill="white", font=font)
        frames.append(frame)
    save_animation(frames, output, frame_seconds, hold_last_seconds=2)
    return len(frames)


def _font(size):
    try:
        return ImageFont.load_default(size)
    except (TypeError, OSError):  # a Pillow without FreeType has only its small bitmap font
        return ImageFont.load_default()


def _nice_ceiling(value):
    """The smallest of 1, 2, 2.5, 5 times a power of ten that is at least `value`."""
    if value <= 0:
        return 1.0
    power = 10.0 ** math.floor(math.log10(value))
    return next(power * m for m in (1, 2, 2.5, 5, 10) if power * m >= value)


def _to_pixels(box, x_range, y_range, xs, ys):
    left, top, right, bottom = box
    px = left + (np.asarray(xs) - x_range[0]) / (x_range[1] - x_range[0]) * (right - left)
    py = bottom - (np.clip(ys, *y_range) - y_range[0]) / (y_range[1] - y_range[0]) * (bottom - top)
    return px, py


def _polyline(draw, box, x_range, y_range, xs, ys, colour, width):
    px, py = _to_pixels(box, x_range, y_range, xs, ys)
    points = list(zip(px.tolist(), py.tolist()))
    if len(points) == 1:
        points *= 2
    draw.line(points, fill=colour, width=width)


def _axes(draw, font, box, x_range, y_range, title):
    left, top, right, bottom = box
    draw.rectangle(box, outline=(120, 120, 120))
    draw.text((left, top - 24), title, fill="black", font=font)
    for y_value in np.linspace(*y_range, 5):
        _, y = _to_pixels(box, x_range, y_range, [0], [y_value])
        draw.line((left, y[0], right, y[0]), fill=(230, 230, 230))
        draw.text((left - 6, y[0]), f"{y_value:g}", fill="black", font=font, anchor="rm")
    x_step = _nice_ceiling(x_range[1] / 6)
    for x_value in np.arange(0, x_range[1] + 1e-9, x_step):
        x, _ = _to_pixels(box, x_range, y_range, [x_value], [0])
        draw.text((x[0], bottom + 4), f"{x_value:g}", fill="black", font=font, anchor="ma")
