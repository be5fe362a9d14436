"""Watching a run as it trains: the console line, warnings when training goes wrong, TensorBoard events."""
import collections
import io
import math
import shutil
import sys
import time

import numpy as np

from dcgan.images import to_picture

# Per-step values the training step reports, in the order of metrics.csv's columns.
STEP_VALUES = ("d_loss", "g_loss", "d_real", "d_fake", "d_acc_real", "d_acc_fake", "augment_p")
CLASSIFIER_VALUES = ("c_loss", "c_acc")  # and a semi-supervised run's: its labelled batches' cross-entropy and accuracy


def metrics_columns(classifies=False):
    """metrics.csv's columns; `classifies`: a semi-supervised run's, with CLASSIFIER_VALUES before the time."""
    return ("step", "epoch", *STEP_VALUES, *(CLASSIFIER_VALUES if classifies else ()), "elapsed_seconds")


METRICS_COLUMNS = metrics_columns()


class Progress:
    """The console line: where the run is, its elapsed time and time left, and the epoch's running
    means of the step's values.

    Time left is for the whole run, to whichever end comes first: its last step, or its --minutes.
    On a terminal the line is redrawn in place, cut to the terminal's width by dropping the least
    needed parts; in a log it is a plain line every tenth of an epoch. Each epoch ends with its line.
    A Wasserstein critic's scores show as their difference, its estimate of the distance between
    real and generated images.
    """

    def __init__(self, step, total_steps, steps_per_epoch, epochs, images_per_step, elapsed_before=0.0,
                 time_limit=math.inf, wasserstein=False):
        self.step = step
        self.total_steps = total_steps
        self.steps_per_epoch = steps_per_epoch
        self.epochs = epochs
        self.images_per_step = images_per_step
        self.elapsed_before = elapsed_before
        self.time_limit = time_limit
        self.wasserstein = wasserstein
        self.live = sys.stdout.isatty()
        self.every = 1 if self.live else max(1, steps_per_epoch // 10)
        self.start = time.perf_counter()
        self.timed_from = None  # (step, time) after this process's first step, which also builds the step
        self.line_open = False
        self.shown_step = step
        self._new_epoch()

    def _new_epoch(self):
        self.sums = dict.fromkeys(STEP_VALUES, 0.0)
        self.count = 0

    def update(self, values):
        self.step += 1
        self.count += 1
        for name, value in values.items():
            self.sums[name] = self.sums.get(name, 0.0) + value
        if self.timed_from is None:
            self.timed_from = (self.step, time.perf_counter())
        if self.step % self.steps_per_epoch == 0 or self.step == self.total_steps:
            self._show(end="\n")
            self._new_epoch()
        elif self.step % self.every == 0:
            self._show(end="\r" if self.live else "\n")

    def finish(self):
        """The line of the last step, where the run ends or stops within an epoch."""
        if self.shown_step != self.step:
            self._show(end="\n")
        self.close_line()

    def warn(self, text):
        """Print a warning on stderr without tearing the line being redrawn."""
        self.close_line()
        print(text, file=sys.stderr, flush=True)

    def close_line(self):
        """End the line being redrawn in place, so that what is printed next starts a line of its own."""
        if self.line_open:
            print(flush=True)
            self.line_open = False

    def elapsed(self):
        return self.elapsed_before + time.perf_counter() - self.start

    def images_per_second(self):
        if self.timed_from is None or self.step == self.timed_from[0]:
            return 0.0
        return (self.step - self.timed_from[0]) * self.images_per_step / (time.perf_counter() - self.timed_from[1])

    def seconds_left(self):
        """To the run's end, whichever comes first: the last step at this speed, or the time limit. None until
        measured."""
        per_second = self.images_per_second() / self.images_per_step
        by_steps = (self.total_steps - self.step) / per_second if per_second else None
        by_time = self.time_limit - self.elapsed() if math.isfinite(self.time_limit) else None
        known = [seconds for seconds in (by_steps, by_time) if seconds is not None]
        return max(0.0, min(known)) if known else None

    def line(self, width=None):
        """The parts of the line that fit in `width` characters (None: all), most needed first."""
        mean = {name: total / max(1, self.count) for name, total in self.sums.items()}
        left = self.seconds_left()
        epoch = min(self.epochs, (self.step - 1) // self.steps_per_epoch + 1)
        scores = (f"W estimate {mean['d_real'] - mean['d_fake']:.3f}" if self.wasserstein
                  else f"D(x) {mean['d_real']:.2f} D(G(z)) {mean['d_fake']:.2f}")
        parts = [  # (priority: lower stays longer, text)
            (0, f"step {self.step}/{self.total_steps}"),
            (0, f"{clock(self.elapsed())} elapsed, {'?' if left is None else clock(left)} left"),
            (1, f"d_loss {mean['d_loss']:.3f} g_loss {mean['g_loss']:.3f}"),
            (2, scores),
            (3, f"epoch {epoch}/{self.epochs}"),
            *([(1, f"classifier loss {mean['c_loss']:.3f} accuracy {mean['c_acc']:.2f}")] if "c_loss" in mean else []),
            (4, f"D accuracy real {mean['d_acc_real']:.2f} fake {mean['d_acc_fake']:.2f}"),
            (5, f"augment p {mean['augment_p']:.2f}"),
            (6, f"{self.images_per_second():.0f} img/s"),
        ]
        if width is None:
            return "  ".join(text for _, text in parts)
        # The most needed parts first, each that still fits; shown in their own order.
        kept, length = set(), -2
        for index in sorted(range(len(parts)), key=lambda index: parts[index][0]):
            if length + 2 + len(parts[index][1]) <= width:
                kept.add(index)
                length += 2 + len(parts[index][1])
        return "  ".join(text for index, (_, text) in enumerate(parts) if index in kept)[:width]

    def _show(self, end):
        width = shutil.get_terminal_size().columns - 1 if self.live else None
        print(self.line(width), end=end, flush=True)
        self.line_open = end == "\r"
        self.shown_step = self.step


def clock(seconds):
    """3:07 or 1:02:03."""
    minutes, seconds = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"


def diversity(images):
    """Mean Euclidean distance between pairs of distinct images: near 0 when they are near-copies."""
    flat = np.asarray(images, np.float64).reshape(len(images), -1)
    squared = np.sum(flat**2, axis=1)
    distances = np.sqrt(np.maximum(squared[:, None] + squared[None, :] - 2 * flat @ flat.T, 0))
    return distances.sum() / (len(flat) * (len(flat) - 1))


class HealthCheck:
    """Spots the classic design's known failures while a run trains, and says what each means and what to try.

    - The discriminator wins outright: over `window` steps its loss stays near zero and it scores
      generated images low, so the generator learns little from it and its samples stop improving.
    - Collapse: the fixed-noise sample grid's images are near-copies of one another, a small fraction
      as far apart as real images are.
    Neither is checked in the first `warmup` steps: every generator starts by drawing the same gray
    haze, and with Adam the discriminator often wins for a while before the generator catches up.
    Each warning is given once, and again only after the run has recovered from it. The first is
    not checked with `watch_winning` off: a Wasserstein critic is meant to be trained that far.
    """

    DISCRIMINATOR_LOSS = 0.05  # mean d_loss under this, for `window` steps in a row ...
    GENERATED_SCORE = 0.05  # ... with mean D(G(z)) under this
    COLLAPSE = 0.25  # sample grid diversity under this fraction of the real images' diversity

    def __init__(self, real_images, window=100, warmup=200, watch_winning=True):
        self.watch_winning = watch_winning
        self.window = window
        self.warmup = warmup
        self.recent = collections.deque(maxlen=window)
        self.real_diversity = diversity(real_images)
        self.active = set()

    def after_step(self, step, values):
        """A warning for the step just done, or None."""
        if step <= self.warmup or not self.watch_winning:
            return None
        self.recent.append((values["d_loss"], values["d_fake"]))
        d_loss, d_fake = np.mean(self.recent, axis=0)
        winning = len(self.recent) == self.window and d_loss < self.DISCRIMINATOR_LOSS and d_fake < self.GENERATED_SCORE
        if self._newly("discriminator", winning):
            return (
                f"warning: at step {step} the discriminator is winning outright: over the last {self.window} steps "
                f"d_loss averaged {d_loss:.4f} and D(G(z)) {d_fake:.4f}. The generator learns little from a "
                "discriminator "
                "this sure, so its samples stop improving (they often turn gray). Try a lower --lr, "
                "or resume from a snapshot saved before this in a new run"
            )
        return None

    def after_grid(self, step, images):
        """A warning for the sample grid drawn at `step`, or None."""
        # Real images all alike (a test pattern) give no measure of collapse: never warn.
        ratio = diversity(images) / self.real_diversity if self.real_diversity else 1.0
        if self._newly("collapse", step > self.warmup and ratio < self.COLLAPSE):
            return (
                f"warning: at step {step} the sample grid's images are near-copies of one another "
                f"(their diversity is {ratio:.2f} of real images'): the generator is collapsing onto a few outputs. "
                "Look at the latest grid; try a lower --lr or another --seed, and run dcgan evaluate to see which "
                "classes it covers"
            )
        return None

    def _newly(self, name, failing):
        was_failing = name in self.active
        if failing:
            self.active.add(name)
        else:
            self.active.discard(name)
        return failing and not was_failing


class EventLog:
    """TensorBoard event files in `logdir`: the step's values as scalars and the sample grids as images.

    Written with TensorFlow's own summary writer as raw Summary protos, so TensorBoard
    itself need not be installed to train, only to look.
    """

    def __init__(self, logdir):
        # Imported here so that reading metrics.csv (dcgan plot) does not wait for TensorFlow.
        import tensorflow as tf
        from tensorflow.core.framework.summary_pb2 import Summary

        self._tf, self._summary = tf, Summary
        self.writer = tf.summary.create_file_writer(str(logdir))

    def scalars(self, step, values):
        self._write(step, [self._summary.Value(tag=name, simple_value=value) for name, value in values.items()])

    def grid(self, step, images):
        picture = to_picture(images)
        png = io.BytesIO()
        picture.save(png, format="PNG")
        width, height = picture.size
        channels = len(picture.getbands())
        image = self._summary.Image(
            height=height, width=width, colorspace=channels, encoded_image_string=png.getvalue()
        )
        self._write(step, [self._summary.Value(tag="samples/fixed_noise", image=image)])

    def close(self):
        self.writer.close()

    def _write(self, step, values):
        with self.writer.as_default():
            self._tf.summary.experimental.write_raw_pb(self._summary(value=values).SerializeToString(), step=step)
