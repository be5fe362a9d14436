"""The open loop: Keras callbacks on dcgan's training loop, heard in Keras's order, able to stop a run as Ctrl-C
does."""
import csv
import re
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

import dcgan
from dcgan import UserError
from dcgan.callbacks import Callback
from dcgan.datasets import MNIST_SAMPLE
from dcgan.monitor import STEP_VALUES
from dcgan.weights import read_run_info, snapshot_steps


@pytest.fixture(scope="module")
def twenty_digits(tmp_path_factory):
    """20 digits: 5 steps of 4 an epoch, so that a few steps cross epochs."""
    path = tmp_path_factory.mktemp("data") / "twenty.npz"
    with np.load(MNIST_SAMPLE) as arrays:
        np.savez(path, x=arrays["x"][::250])
    return str(path)


class Recorder(Callback):
    """Every moment it hears, in order, with what it was told."""

    def __init__(self):
        super().__init__()
        self.heard, self.batch_logs, self.epoch_logs = [], [], []

    def on_train_begin(self, logs=None):
        self.heard.append(("train_begin",))

    def on_epoch_begin(self, epoch, logs=None):
        self.heard.append(("epoch_begin", epoch))

    def on_train_batch_begin(self, step, logs=None):
        self.heard.append(("batch_begin", step))

    def on_train_batch_end(self, step, logs=None):
        self.heard.append(("batch_end", step))
        self.batch_logs.append(dict(logs))

    def on_epoch_end(self, epoch, logs=None):
        self.heard.append(("epoch_end", epoch))
        self.epoch_logs.append(dict(logs))

    def on_grid(self, step, images):
        self.heard.append(("grid", step, images.shape))

    def on_checkpoint(self, step, folder):
        self.heard.append(("checkpoint", step, Path(folder).name, (Path(folder) / "run.json").exists()))

    def on_train_end(self, logs=None):
        self.heard.append(("train_end",))


def test_callbacks_hear_every_moment_in_keras_order_with_the_steps_values(
    tiny_config, metrics_rows, tmp_path, twenty_digits
):
    recorder = Recorder()
    config = tiny_config(tmp_path, dataset=twenty_digits, batch_size=4, steps=7, sample_every=3, save_every=3)
    trainer = dcgan.train(config, callbacks=[recorder])
    steps = lambda first, last: [
        event for step in range(first, last) for event in (("batch_begin", step), ("batch_end", step))
    ]
    grid = (10, 28, 28, 1)
    assert recorder.heard == [
        ("train_begin",), ("epoch_begin", 0), *steps(0, 3), ("checkpoint", 3, "step0000003", True), ("grid", 3, grid),
        *steps(3, 5), ("epoch_end", 0), ("epoch_begin", 1), ("batch_begin", 5), ("batch_end", 5),
        ("checkpoint", 6, "step0000006", True), ("grid", 6, grid), ("batch_begin", 6), ("batch_end", 6),
        ("epoch_end", 1),  # the run ends within its second epoch
        # The last checkpoint and grid follow the user's on_train_end, which may still change what is saved (as
        # EarlyStopping's restore_best_weights does).
        ("train_end",), ("checkpoint", 7, "step0000007", True), ("grid", 7, grid),
    ]
    # A step's logs are the values metrics.csv holds, and loss their d_loss + g_loss; an epoch's, their means.
    rows = metrics_rows(config.weights_dir)
    assert all(set(logs) == {*STEP_VALUES, "loss"} for logs in recorder.batch_logs)
    for logs, row in zip(recorder.batch_logs, rows, strict=True):
        for name in STEP_VALUES:
            assert f"{logs[name]:.6g}" == row[name]
        assert logs["loss"] == logs["d_loss"] + logs["g_loss"]
    assert recorder.epoch_logs[0]["g_loss"] == pytest.approx(
        np.mean([logs["g_loss"] for logs in recorder.batch_logs[:5]])
    )
    assert recorder.epoch_logs[1]["d_loss"] == pytest.approx(
        np.mean([logs["d_loss"] for logs in recorder.batch_logs[5:]])
    )
    # The model a callback holds is the generator users load; the trainer reaches the rest.
    assert recorder.model is trainer.sampling_generator() and recorder.trainer is trainer


def test_a_callback_that_stops_the_run_ends_it_as_ctrl_c_does_and_resume_is_bit_for_bit(
    tiny_config, metrics_rows, tmp_path
):
    class StopAfterFourSteps(keras.callbacks.Callback):
        def on_train_batch_end(self, step, logs=None):
            if step + 1 == 4:
                self.model.stop_training = True

    straight = dcgan.train(tiny_config(tmp_path / "straight", steps=6, save_every=100, sample_every=100))
    stopped = tiny_config(tmp_path / "split", steps=6, save_every=100, sample_every=100)
    dcgan.train(stopped, callbacks=[StopAfterFourSteps()])
    # A checkpoint, a grid and the run's pictures where it stopped, as after Ctrl-C.
    weights, samples = Path(stopped.weights_dir), Path(stopped.samples_dir)
    assert snapshot_steps(weights) == [4] and read_run_info(weights)["step"] == 4
    assert [row["step"] for row in metrics_rows(weights)] == ["1", "2", "3", "4"]
    assert sorted(path.name for path in samples.iterdir()) == [
        "curves.png",
        "fakes.gif",
        "fakes_epoch0001_step0000004.png",
    ]
    resumed = dcgan.train(stopped, resume=True)
    for a, b in zip(straight.generator.get_weights() + straight.discriminator.get_weights(),
                    resumed.generator.get_weights() + resumed.discriminator.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_kerass_own_callbacks_work_unchanged(tiny_config, metrics_rows, tmp_path, twenty_digits):
    # LambdaCallback hears each step; EarlyStopping, on a logged value at each epoch's end, stops the run.
    d_losses = []
    seen = keras.callbacks.LambdaCallback(on_train_batch_end=lambda step, logs: d_losses.append(logs["d_loss"]))
    # No epoch's d_loss is 100 below the first's: the second epoch ends the run.
    early = keras.callbacks.EarlyStopping(monitor="d_loss", mode="min", min_delta=100, patience=1)
    log = tmp_path / "epochs.csv"
    config = tiny_config(tmp_path, dataset=twenty_digits, batch_size=4, steps=40, sample_every=100, save_every=100)
    dcgan.train(config, callbacks=[seen, early, keras.callbacks.CSVLogger(str(log))])
    assert early.stopped_epoch == 1 and snapshot_steps(config.weights_dir) == [10]
    rows = metrics_rows(config.weights_dir)
    assert [f"{loss:.6g}" for loss in d_losses] == [row["d_loss"] for row in rows]
    with open(log, newline="") as file:
        epochs = list(csv.DictReader(file))
    assert [row["epoch"] for row in epochs] == ["0", "1"]
    assert float(epochs[1]["d_loss"]) == pytest.approx(np.mean(d_losses[5:10]), rel=1e-6)


def test_terminate_on_nan_hears_a_non_finite_loss_and_the_step_is_not_saved(tiny_config, tmp_path, capsys):
    # An absurd learning rate overflows float32 on the second step (as in test_resume).
    config = tiny_config(tmp_path, steps=10, save_every=1, lr=1e38, preset="classic", architecture="classic")
    terminate = keras.callbacks.TerminateOnNaN()
    with pytest.raises(UserError, match=r"d_loss became (inf|nan) at step 2.*last good checkpoint \(step 1\)"):
        dcgan.train(config, callbacks=[terminate])
    assert "Batch 1: Invalid loss, terminating training" in capsys.readouterr().out
    assert terminate.model.stop_training
    assert snapshot_steps(config.weights_dir) == [1]


@pytest.mark.parametrize(
    "callbacks, message",
    [
        (
            keras.callbacks.TerminateOnNaN(),
            "callbacks takes a list of keras.callbacks.Callback objects, not TerminateOnNaN",
        ),
        (
            [keras.callbacks.TerminateOnNaN(), print],
            "callback 1 is builtin_function_or_method <built-in function print>, not a keras.callbacks.Callback",
        ),
        ("CSVLogger", "callbacks takes a list of keras.callbacks.Callback objects, not str 'CSVLogger'"),
    ],
)
def test_what_is_not_a_list_of_callbacks_is_refused_before_anything_is_written(
    tiny_config, tmp_path, callbacks, message
):
    with pytest.raises(UserError, match=re.escape(message)):
        dcgan.train(tiny_config(tmp_path), callbacks=callbacks)
    assert not (tmp_path / "weights").exists()


class Raises(keras.callbacks.Callback):
    def __init__(self, hook, at_step=None):
        super().__init__()
        self.hook, self.at_step = hook, at_step

    def on_train_begin(self, logs=None):
        if self.hook == "on_train_begin":
            raise RuntimeError("no tracker server")

    def on_train_batch_end(self, step, logs=None):
        if self.hook == "on_train_batch_end" and step + 1 == self.at_step:
            raise ValueError("my rule broke\nsecond line")


def test_a_callback_that_raises_gets_one_line_and_leaves_a_resumable_run(tiny_config, metrics_rows, tmp_path):
    config = tiny_config(tmp_path, steps=6, save_every=100, sample_every=100)
    expected = ("callback 1 (Raises) failed in on_train_batch_end: ValueError: my rule broke; the run stopped after "
                f"step 3, and the last good checkpoint (step 3) is in {config.weights_dir}: fix the callback")
    with pytest.raises(UserError, match=re.escape(expected)) as raised:
        dcgan.train(config, callbacks=[keras.callbacks.TerminateOnNaN(), Raises("on_train_batch_end", at_step=3)])
    assert "\n" not in str(raised.value)
    assert snapshot_steps(config.weights_dir) == [3] and len(metrics_rows(config.weights_dir)) == 3
    assert (Path(config.samples_dir) / "fakes_epoch0001_step0000003.png").exists()
    dcgan.train(config, resume=True)
    assert snapshot_steps(config.weights_dir)[-1] == 6


def test_a_callback_that_fails_to_begin_trains_nothing_and_the_command_line_says_one_line(tiny_config, tmp_path):
    config = tiny_config(tmp_path)
    with pytest.raises(UserError, match=r"^callback 0 \(Raises\) failed in on_train_begin: RuntimeError: no tracker "
                                        r"server, before the first step; nothing was trained$"):
        dcgan.train(config, callbacks=[Raises("on_train_begin")])
    assert snapshot_steps(config.weights_dir) == [] and not (Path(config.weights_dir) / "run.json").exists()


def test_the_readmes_callback_example_runs_as_written(tmp_path):
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    example = next(block for block in re.findall(r"```python\n(.*?)```", readme, re.S) if "callbacks=[" in block)
    (tmp_path / "STOP").touch()  # the user's rule: here at once, so that the 30-minute run stops after one step
    finished = subprocess.run(
        [sys.executable, "-c", example], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert finished.returncode == 0, finished.stderr
    assert "STOP found after step 1, d_loss " in finished.stdout
    assert "Stopped by a callback at step 1" in finished.stdout
    assert (
        snapshot_steps(tmp_path / "weights") == [1]
        and (tmp_path / "samples" / "fakes_epoch0001_step0000001.png").exists()
    )
    with open(tmp_path / "epochs.csv", newline="") as file:
        epochs = list(csv.DictReader(file))
    assert len(epochs) == 1 and epochs[0]["epoch"] == "0" and float(epochs[0]["d_loss"]) > 0


def test_help_and_dir_list_the_public_api():
    import pydoc

    assert set(dcgan.__all__) <= set(dir(dcgan))
    text = pydoc.render_doc(dcgan, renderer=pydoc.plaintext)
    for shown in ("train(config, resume=False, callbacks=None)", "class TrainConfig", "class RunFolder",
                  "generate(weights_dir=", "evaluate(", "export_generator(", "load_generator("):
        assert shown in text, shown
