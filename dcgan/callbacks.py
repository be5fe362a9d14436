"""What happens around each training step: Keras callbacks on dcgan's own loop (dcgan.training.fit).

`dcgan.train(config, callbacks=[...])` takes `keras.callbacks.Callback` objects and drives them through
`keras.callbacks.CallbackList`, as Keras's `fit` does:

- `on_train_begin(logs)`, `on_train_end(logs)`: once around the steps this process trains (a resumed run's own).
- `on_epoch_begin(epoch)`, `on_epoch_end(epoch, logs)`: `epoch` counted from 0, as Keras counts (metrics.csv's
  epoch column is `epoch + 1`); `logs`, the epoch's means of the step values. An epoch also ends where the run
  ends or stops within it, and a resumed run begins within its epoch.
- `on_train_batch_begin(step)`, `on_train_batch_end(step, logs)`: `step` counted from 0 across the whole run, so
  `step + 1` is metrics.csv's step; `logs`, the step's values (`STEP_VALUES`, and a semi-supervised run's
  `CLASSIFIER_VALUES`) and `loss`, d_loss + g_loss, which Keras's `TerminateOnNaN` reads.
- `self.model` is the generator that users load (the weight average, with one). Setting
  `self.model.stop_training = True` ends the run after the step as Ctrl-C does: a grid, a checkpoint, and
  resume continues it bit for bit.

`Callback` below adds dcgan's own moments, `on_grid` and `on_checkpoint`, and `self.trainer` (both models and
their optimizers). A user's callback that raises stops the run after that step as Ctrl-C does, and the run
then ends in one line that names it (`Guarded`). Everything dcgan writes as it trains is a callback here;
`dcgan.training.standard_callbacks` chooses them, the chief of several workers alone getting those that write.
"""
import csv
import math
import os
import tempfile
import time

import keras

from dcgan.errors import UserError, first_line
from dcgan.images import save_grid
from dcgan.monitor import EventLog
from dcgan.plots import draw_run_pictures
from dcgan.previous_run import drop_previous_run
from dcgan.weights import grid_name, open_metrics, save_checkpoint

LOSS = "loss"  # in a step's logs: d_loss + g_loss, the one value Keras's own callbacks look for


class Callback(keras.callbacks.Callback):
    """A Keras callback that also hears dcgan's own moments of a run, and reaches its Trainer."""

    @property
    def trainer(self):
        """The run's Trainer: `generator`, `discriminator`, their optimizers, `sampling_generator()`."""
        return self.params["trainer"]

    def on_grid(self, step, images):
        """A sample grid was drawn from the run's fixed noise after `step` steps (its file name's step):
        `images`, in [-1, 1], as saved."""

    def on_checkpoint(self, step, folder):
        """A checkpoint of the run after `step` steps was saved; `folder`, its snapshot, is a weights folder."""

    def close(self):
        """Release what it holds. Called however the run ends, an error included (which skips on_train_end)."""


class Callbacks(keras.callbacks.CallbackList):
    """Keras's CallbackList, also calling dcgan's own hooks on the callbacks that have them."""

    def __init__(self, callbacks, model, **params):
        super().__init__(callbacks, model=model, **params)
        self.params["callbacks"] = self  # shared by every callback: how a grid or a checkpoint is announced

    def on_grid(self, step, images):
        self._own("on_grid", step, images)

    def on_checkpoint(self, step, folder):
        self._own("on_checkpoint", step, folder)

    def close(self):
        self._own("close")

    def failure(self):
        """What the first user's callback that failed said, or None."""
        return next((callback.failure for callback in self.callbacks if getattr(callback, "failure", None)), None)

    def _own(self, hook, *args):
        for callback in self.callbacks:
            if isinstance(callback, Callback):
                getattr(callback, hook)(*args)


class Guarded(Callback):
    """A user's callback, at `index` of the list given: an exception in one of its hooks is kept as `failure`
    and stops the run after the step, so that the run saves its checkpoint as on Ctrl-C; it hears nothing more."""

    def __init__(self, callback, index):
        super().__init__()
        self.callback, self.index, self.failure = callback, index, None

    def set_model(self, model):
        super().set_model(model)
        self.callback.set_model(model)

    def set_params(self, params):
        super().set_params(params)
        self.callback.set_params(params)

    def _call(self, hook, *args, **keywords):
        if self.failure:
            return
        try:
            getattr(self.callback, hook, lambda *_, **__: None)(*args, **keywords)
        except Exception as error:  # noqa: BLE001 (whatever a user's code raises ends the run cleanly)
            self.failure = (f"callback {self.index} ({type(self.callback).__name__}) failed in {hook}: "
                            f"{type(error).__name__}: {first_line(error)}")
            self.model.stop_training = True


for _hook in ("on_train_begin", "on_train_end", "on_epoch_begin", "on_epoch_end", "on_train_batch_begin",
              "on_train_batch_end", "on_grid", "on_checkpoint", "close"):
    setattr(Guarded, _hook, lambda self, *args, _hook=_hook, **keywords: self._call(_hook, *args, **keywords))


def checked(callbacks):
    """The user's `callbacks`, each Guarded; a UserError for what is not a list of keras.callbacks.Callback."""
    if callbacks is None:
        return []
    if isinstance(callbacks, (keras.callbacks.Callback, str, bytes)) or not hasattr(callbacks, "__iter__"):
        raise UserError(f"callbacks takes a list of keras.callbacks.Callback objects, not {_shown(callbacks)}; "
                        "give callbacks=[...]")
    callbacks = list(callbacks)
    for index, callback in enumerate(callbacks):
        if not isinstance(callback, keras.callbacks.Callback):
            raise UserError(f"callback {index} is {_shown(callback)}, not a keras.callbacks.Callback; subclass "
                            "keras.callbacks.Callback (or dcgan.Callback), or use keras.callbacks.LambdaCallback")
    return [Guarded(callback, index) for index, callback in enumerate(callbacks)]


def _shown(value):
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 40 else text[:37] + '...'}"


class Clock:
    """The run's training time, its earlier minutes included, as metrics.csv keeps it (to the millisecond): the
    time limit reads the same value, so that the last row is the first at or past it, and resume agrees."""

    def __init__(self, before=0.0):
        self.before, self.start, self.now = before, time.perf_counter(), before

    def tick(self):
        self.now = round(self.before + time.perf_counter() - self.start, 3)
        return self.now


def step_epoch(step, steps_per_epoch):
    """The epoch, from 1 as metrics.csv and the grid names count it, of the run's step `step` (from 1)."""
    return (step - 1) // steps_per_epoch + 1


class MetricsFile(Callback):
    """metrics.csv: a row per step, with its epoch, its values under `columns` and the run's training time."""

    def __init__(self, path, columns, clock):
        super().__init__()
        self.path, self.columns, self.clock, self.file = path, columns, clock, None

    def on_train_begin(self, logs=None):
        self.file = open(self.path, "a", newline="")
        self.rows = csv.writer(self.file)

    def on_train_batch_end(self, step, logs=None):
        values = [f"{logs[name]:.6g}" for name in self.columns[2:-1]]
        self.rows.writerow(
            [step + 1, step_epoch(step + 1, self.params["steps_per_epoch"]), *values, f"{self.clock.now:.3f}"]
        )
        self.file.flush()

    def close(self):
        if self.file:
            self.file.close()


def restart_metrics(path, step, fill, columns):
    """Keep the metrics rows up to `step` (a killed run may have logged steps past its checkpoint), under `columns`.

    Columns an earlier dcgan did not write take their value from `fill`, {column: text}: a run
    saved then had a constant augment probability. Returns the elapsed seconds at `step`, so the
    time column carries on.
    """
    rows = []
    if step and os.path.lexists(path):
        try:
            with open_metrics(path) as file:
                rows = [row for row in csv.DictReader(file) if int(row["step"]) <= step]
            elapsed = float(rows[-1]["elapsed_seconds"]) if rows else 0.0
            if not 0 <= elapsed < math.inf:
                raise ValueError(f"elapsed time {elapsed}")
        except (OSError, csv.Error, UnicodeDecodeError, KeyError, TypeError, ValueError):
            raise UserError(f"{path} is damaged; move it aside to resume with new metrics (its curves and "
                            "minutes start again from this step)") from None
    with open(path, "w", newline="") as file:
        csv.writer(file).writerows([columns, *([row.get(name, fill.get(name)) for name in columns] for row in rows)])
    return elapsed if rows else 0.0


class ProgressLine(Callback):
    """The console line (dcgan.monitor.Progress): where the run is, its time left, the epoch's means."""

    def __init__(self, progress):
        super().__init__()
        self.progress = progress

    def on_train_batch_end(self, step, logs=None):
        self.progress.update(logs)

    def on_train_end(self, logs=None):
        self.progress.finish()

    def close(self):
        self.progress.close_line()


class HealthWarnings(Callback):
    """Warnings when training goes wrong (dcgan.monitor.HealthCheck), printed beside the progress line."""

    def __init__(self, health, progress):
        super().__init__()
        self.health, self.progress = health, progress

    def on_train_batch_end(self, step, logs=None):
        self._say(self.health.after_step(step + 1, logs))

    def on_grid(self, step, images):
        self._say(self.health.after_grid(step, images))

    def _say(self, warning):
        if warning:
            self.progress.warn(warning)


class EventFiles(Callback):
    """TensorBoard event files in `logdir`: the step's values and speed, and every sample grid."""

    def __init__(self, logdir, progress):
        super().__init__()
        self.logdir, self.progress, self.log = logdir, progress, None

    def on_train_begin(self, logs=None):
        self.log = EventLog(self.logdir)

    def on_train_batch_end(self, step, logs=None):
        values = {name: value for name, value in logs.items() if name != LOSS}
        self.log.scalars(step + 1, {**values, "images_per_second": self.progress.images_per_second()})

    def on_grid(self, step, images):
        self.log.grid(step, images)

    def close(self):
        if self.log:
            self.log.close()


class EveryAndAtTheEnd(Callback):
    """Something written every `every` steps and where the run ends or stops, once per step (`write(step)`)."""

    def __init__(self, every, done_at=None):
        super().__init__()
        self.every, self.done_at, self.step = every, done_at, None

    def on_train_batch_end(self, step, logs=None):
        self.step = step + 1
        if self.step % self.every == 0:
            self._once(self.step)

    def on_train_end(self, logs=None):
        if self.step is not None:
            self._once(self.step)

    def _once(self, step):
        if self.done_at != step:
            self.write(step)
            self.done_at = step


class Checkpoints(EveryAndAtTheEnd):
    """A checkpoint every `every` steps and where the run ends or stops, into `weights_dir` (dcgan.weights), or
    into a scratch folder on a worker that is not the chief: every worker takes part in a save, as TensorFlow
    asks (reading a variable may need them all), and only the chief's is kept. `saved`: the step of the
    checkpoint the run started from, None for a new run. A step whose losses are not finite is never saved:
    the run stops there, naming the last good checkpoint."""

    def __init__(self, weights_dir, record, keep, every, saved=None, chief=True):
        super().__init__(every, saved)
        self.weights_dir, self.record, self.keep, self.chief = weights_dir, record, keep, chief

    def on_train_batch_end(self, step, logs=None):
        for name in ("d_loss", "g_loss"):
            if not math.isfinite(logs[name]):
                raise UserError(f"{name} became {logs[name]} at step {step + 1}, so training stopped without saving "
                                f"it; {self.last_good()}. Try a lower --lr")
        super().on_train_batch_end(step, logs)

    def write(self, step):
        info = {**self.record, "step": step, "epoch": step_epoch(step, self.params["steps_per_epoch"])}
        if not self.chief:
            with tempfile.TemporaryDirectory(prefix="dcgan-worker-") as scratch:
                save_checkpoint(scratch, self.trainer, info, self.keep)
            return
        folder = save_checkpoint(self.weights_dir, self.trainer, info, self.keep)
        if self.done_at is None:
            drop_previous_run(self.weights_dir)  # a run replaced by --overwrite: this one can stand in for it now
        self.params["callbacks"].on_checkpoint(step, folder)

    def last_good(self):
        if self.done_at is None:
            return "no checkpoint had been saved yet"
        return f"the last good checkpoint (step {self.done_at}) is in {self.weights_dir}"


class SampleGrids(EveryAndAtTheEnd):
    """A grid of the generator's images from the run's fixed `inputs` every `every` steps and where the run ends
    or stops, into `samples_dir` (named by dcgan.weights.grid_name), `columns` wide (None: square)."""

    def __init__(self, samples_dir, inputs, columns, every):
        super().__init__(every)
        self.samples_dir, self.inputs, self.columns = samples_dir, inputs, columns

    def write(self, step):
        grid = self.trainer.sampling_generator()(self.inputs, training=False).numpy()
        save_grid(
            grid, self.samples_dir / grid_name(step, step_epoch(step, self.params["steps_per_epoch"])), self.columns
        )
        self.params["callbacks"].on_grid(step, grid)


class RunPictures(Callback):
    """Where the run ends or stops: its training curves and the animation of its grids (dcgan.plots)."""

    def __init__(self, weights_dir, samples_dir):
        super().__init__()
        self.weights_dir, self.samples_dir = weights_dir, samples_dir

    def on_train_end(self, logs=None):
        draw_run_pictures(self.weights_dir, self.samples_dir)
