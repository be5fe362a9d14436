"""Resume, snapshots, and what happens on Ctrl-C, SIGTERM, SIGKILL, a full disk and NaN losses."""
import csv
import json
import random
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import dcgan
from cli import main
from dcgan import TrainConfig, Trainer, UserError, load_discriminator, load_generator
from dcgan.datasets import MNIST_SAMPLE
from dcgan.files import PARTIAL
from dcgan.weights import load_checkpoint, snapshot_steps


def all_state(trainer):
    models = [w for model in trainer.models().values() for w in model.get_weights()]
    optimizers = [v.numpy() for optimizer in trainer.optimizers().values() for v in optimizer.variables]
    return models + optimizers + [trainer.augment_probability.numpy()]


def test_stopping_and_resuming_gives_the_same_run_bit_for_bit(tiny_config, metrics_rows, tmp_path):
    # A low augment target, so that the augment probability moves in these few steps and must be resumed too,
    # and the generator's rate halves after the resume.
    settings = {"save_every": 3, "augment_target": 0.01, "halve_generator_lr_at": 6}
    straight = dcgan.train(tiny_config(tmp_path / "straight", steps=8, **settings))
    assert float(straight.augment_probability) > 0
    assert float(straight.g_optimizer.learning_rate) == np.float32(straight.generator_lr) / 2
    dcgan.train(tiny_config(tmp_path / "split", steps=4, **settings))
    # As if killed after logging steps past its last checkpoint (step 4): those rows must go.
    with open(tmp_path / "split" / "weights" / "metrics.csv", "a") as file:
        file.write("5,1,9,9,0.5,0.5,99\n6,1,9,9,0.5,0.5,99\n")
    resumed = dcgan.train(tiny_config(tmp_path / "split", steps=8, **settings), resume=True)

    for a, b in zip(all_state(straight), all_state(resumed), strict=True):
        np.testing.assert_array_equal(a, b)
    straight_rows, split_rows = (
        metrics_rows(tmp_path / "straight" / "weights"),
        metrics_rows(tmp_path / "split" / "weights"),
    )
    assert [r["step"] for r in split_rows] == [str(s) for s in range(1, 9)]
    for column in ("d_loss", "augment_p"):
        assert [r[column] for r in split_rows] == [r[column] for r in straight_rows]
    elapsed = [float(r["elapsed_seconds"]) for r in split_rows]
    assert elapsed == sorted(elapsed), "elapsed time carries on across the resume"
    grid = "fakes_epoch0001_step0000008.png"
    assert (tmp_path / "split" / "samples" / grid).read_bytes() == (
        tmp_path / "straight" / "samples" / grid
    ).read_bytes()
    run = json.loads((tmp_path / "split" / "weights" / "run.json").read_text())
    assert run["step"] == 8 and run["config"]["steps"] == 8
    assert run["augment_probability"] == float(straight.augment_probability.numpy())


@pytest.mark.parametrize("change, message", [
    ({"batch_size": 4}, "--batch-size 4: the saved run used 8"),
    ({"seed": 9}, "--seed 9: the saved run used 0"),
    ({"lr": 0.001}, "--lr 0.001"),
    ({"generator_lr": 0.001}, "--generator-lr 0.001: the saved run used 0.0005"),
    ({"preset": "classic"}, "--preset classic: the saved run used fast"),
    ({"optimizer": "sgd"}, "--optimizer sgd: the saved run used adam"),
    ({"activation": "tanh"}, "--activation tanh: the saved run used leaky_relu"),
    ({"ema": 0.5}, "--ema 0.5: the saved run used"),
    ({"augment": "none"}, "--augment none: the saved run used"),
    ({"augment_target": None}, "--augment-target none: the saved run used 0.7"),
    ({"fake_batch_norm": "moving"}, "--fake-batch-norm moving: the saved run used batch"),
    ({"feature_matching": 0.5}, "--feature-matching 0.5: the saved run used 1.0"),
    ({"halve_generator_lr_at": 10}, "--halve-generator-lr-at 10: the saved run used 4000"),
    ({"loss": "bce"}, "--loss bce: the saved run used hinge"),
    ({"architecture": "dcgan"}, "--architecture dcgan: the saved run used mlp"),
    ({"d_steps": 2}, "--d-steps 2: the saved run used 1"),
    ({"g_steps": 3}, "--g-steps 3: the saved run used 1"),
    ({"beta2": 0.9}, "--beta2 0.9: the saved run used 0.999"),
    # The same digits under another name: a machine without Fashion-MNIST can still run this.
    ({"dataset": str(MNIST_SAMPLE)}, f"--dataset {MNIST_SAMPLE}: the saved run used mnist-sample"),
])
def test_resume_refuses_settings_that_conflict_with_the_saved_run(tiny_config, trained, tmp_path, change, message):
    config, _ = trained
    weights = shutil.copytree(config.weights_dir, tmp_path / "weights")
    with pytest.raises(UserError, match=message):
        dcgan.train(tiny_config(tmp_path, steps=8, **change), resume=True)
    assert snapshot_steps(weights) == [4, 6]


def test_resume_refuses_changed_data_and_allows_longer_runs(tiny_config, tmp_path):
    with np.load(dcgan.datasets.MNIST_SAMPLE) as arrays:
        digits = arrays["x"]
    dataset = tmp_path / "digits.npz"
    np.savez(dataset, x=digits[:100])
    dcgan.train(tiny_config(tmp_path, dataset=str(dataset), steps=3, save_every=2))
    np.savez(dataset, x=digits[:60])
    with pytest.raises(UserError, match="dataset_size 100, now it is 60"):
        dcgan.train(tiny_config(tmp_path, dataset=str(dataset), steps=8), resume=True)
    np.savez(dataset, x=digits[:100])
    dcgan.train(tiny_config(tmp_path, dataset=str(dataset), steps=5, sample_every=50, save_every=50), resume=True)
    assert snapshot_steps(tmp_path / "weights") == [2, 3, 5]


def test_resume_needs_a_checkpoint(tiny_config, tmp_path):
    (tmp_path / "weights").mkdir()
    with pytest.raises(UserError, match="no checkpoint to resume"):
        dcgan.train(tiny_config(tmp_path), resume=True)


def test_snapshots_keep_the_newest_k_and_each_is_a_weights_folder(tiny_config, tmp_path):
    dcgan.train(tiny_config(tmp_path / "two", steps=5, save_every=1, keep=2))
    assert snapshot_steps(tmp_path / "two" / "weights") == [4, 5]
    dcgan.train(tiny_config(tmp_path / "all", steps=5, save_every=1, keep=0))
    snapshots = tmp_path / "all" / "weights" / "snapshots"
    assert snapshot_steps(tmp_path / "all" / "weights") == [1, 2, 3, 4, 5]
    first, last = load_generator(snapshots / "step0000001"), load_generator(snapshots / "step0000005")
    assert not np.array_equal(first.get_weights()[0], last.get_weights()[0])
    np.testing.assert_array_equal(last.get_weights()[0], load_generator(tmp_path / "all" / "weights").get_weights()[0])
    # Only the newest keeps what resuming needs; the older ones keep the models to look back at, a quarter of the bytes.
    contents = {step: sorted(path.name for path in (snapshots / f"step{step:07d}").iterdir()) for step in (1, 5)}
    assert contents[5] == sorted(["discriminator.weights.h5", "generator.weights.h5", "optimizers.npz", "run.json",
                                  "training_generator.weights.h5"])
    assert contents[1] == ["discriminator.weights.h5", "generator.weights.h5", "run.json"]
    load_discriminator(snapshots / "step0000001")
    sizes = {step: sum(path.stat().st_size for path in (snapshots / f"step{step:07d}").iterdir()) for step in (1, 5)}
    assert sizes[1] < 0.35 * sizes[5]


def test_nan_or_infinite_loss_stops_and_keeps_the_last_good_checkpoint(tiny_config, tmp_path):
    # An absurd learning rate overflows float32 on the second step.
    config = tiny_config(
        tmp_path, steps=10, save_every=1, lr=1e38, preset="classic", architecture="classic"
    )  # SGD: finite for one step
    with pytest.raises(UserError, match=r"d_loss became (inf|nan) at step 2.*last good checkpoint \(step 1\)"):
        dcgan.train(config)
    assert snapshot_steps(tmp_path / "weights") == [1]
    trainer = Trainer(config)
    load_checkpoint(tmp_path / "weights", trainer)
    assert all(np.isfinite(w).all() for w in trainer.generator.get_weights())


def start_training(folder, *args, limit_file_size=None, stderr=subprocess.PIPE):
    command = [
        str(Path(sys.executable).parent / "dcgan"),
        "train",
        "--dataset",
        "mnist-sample",
        "--architecture",
        "mlp",
        "--batch-size",
        "4",
        "--sample-every",
        "1000",
        *map(str, args),
    ]
    limit = (lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit_file_size,) * 2)) if limit_file_size else None
    return subprocess.Popen(command, cwd=folder, stdout=subprocess.PIPE, stderr=stderr, text=True, preexec_fn=limit)


@pytest.mark.parametrize("signal_number", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_stops_after_the_step_saves_and_resume_continues(
    metrics_rows, logged_steps, wait_for, tmp_path, signal_number
):
    process = start_training(tmp_path, "--steps", 100000, "--save-every", 100000)
    wait_for(lambda: logged_steps(tmp_path / "weights") >= 3)
    process.send_signal(signal_number)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 128 + signal_number, err
    name = signal.Signals(signal_number).name
    last_line = err.strip().splitlines()[-1]
    assert last_line.startswith(f"Stopped by {name} at step "), "a stop that was asked for is not an error"
    stopped_at = int(last_line.split(" at step ")[1].split(";")[0])
    assert "dcgan train --resume --weights-dir weights" in err and "Traceback" not in err and "Error" not in err
    assert snapshot_steps(tmp_path / "weights") == [stopped_at]
    assert logged_steps(tmp_path / "weights") == stopped_at
    # Stopped before its first scheduled grid, it draws one where it stopped, and the curves and animation.
    grids = sorted(path.name for path in (tmp_path / "samples").glob("fakes_*.png"))
    assert grids == [f"fakes_epoch0001_step{stopped_at:07d}.png"]
    assert (tmp_path / "samples" / "curves.png").exists() and (tmp_path / "samples" / "fakes.gif").exists()

    if signal_number == signal.SIGINT:  # the checkpoint is the same whichever signal stopped the run
        resumed = start_training(tmp_path, "--resume", "--steps", stopped_at + 2)
        out, err = resumed.communicate(timeout=180)
        assert resumed.returncode == 0, err
        assert f"Resuming at step {stopped_at}" in out
        assert [int(r["step"]) for r in metrics_rows(tmp_path / "weights")] == list(range(1, stopped_at + 3))


def test_a_second_ctrl_c_quits_at_once_and_leaves_a_resumable_folder(wait_for, tmp_path):
    with open(tmp_path / "stderr.txt", "w") as stderr:
        process = start_training(tmp_path, "--steps", 100000, "--save-every", 2, stderr=stderr)
        wait_for(lambda: len(snapshot_steps(tmp_path / "weights")) >= 1)
        process.send_signal(signal.SIGINT)
        wait_for(lambda: "stopping after this step" in (tmp_path / "stderr.txt").read_text())
        process.send_signal(signal.SIGINT)
        process.wait(timeout=60)
    assert process.returncode == 130
    said = (tmp_path / "stderr.txt").read_text()
    assert "Stopped by SIGINT" not in said, "it finished the save instead of quitting"
    assert said.strip().splitlines()[-1].startswith("SIGINT again: quit at once"), said
    trainer = Trainer(TrainConfig(architecture="mlp"))  # the command's defaults but the models
    assert load_checkpoint(tmp_path / "weights", trainer)["step"] == snapshot_steps(tmp_path / "weights")[-1]


def leftovers(folder):
    """The hidden files and folders that saves write before moving them into place."""
    return [*Path(folder).rglob(".tmp-*"), *Path(folder).rglob(f"{PARTIAL}*")]


def test_killed_at_random_moments_while_saving_the_folder_always_resumes(metrics_rows, wait_for, tmp_path):
    rng = random.Random(0)
    for attempt in range(2):
        resume = ["--resume"] if snapshot_steps(tmp_path / "weights") else []
        before = snapshot_steps(tmp_path / "weights")
        # Saving every step at keep 2: most of the run's time is spent writing and pruning snapshots.
        process = start_training(tmp_path, *resume, "--steps", 100000, "--save-every", 1, "--keep", 2)
        wait_for(lambda: snapshot_steps(tmp_path / "weights") not in ([], before))
        time.sleep(rng.uniform(0, 1.0))
        process.kill()
        process.communicate()
        steps = snapshot_steps(tmp_path / "weights")
        trainer = Trainer(TrainConfig(architecture="mlp"))  # the command's defaults but the models
        assert load_checkpoint(tmp_path / "weights", trainer)["step"] == steps[-1], f"attempt {attempt}"
        load_generator(tmp_path / "weights")
    last = snapshot_steps(tmp_path / "weights")[-1]
    finish = start_training(tmp_path, "--resume", "--steps", last + 1, "--save-every", 1, "--keep", 2)
    out, err = finish.communicate(timeout=180)
    assert finish.returncode == 0, err
    assert not leftovers(tmp_path / "weights"), "leftovers of killed saves are cleaned up"
    assert [int(r["step"]) for r in metrics_rows(tmp_path / "weights")] == list(range(1, last + 2))


def test_a_full_disk_while_saving_is_a_clear_error_and_the_previous_checkpoint_survives(tiny_config, tmp_path):
    dcgan.train(tiny_config(tmp_path, batch_size=4, steps=2, save_every=2))
    before = (tmp_path / "weights" / "snapshots" / "step0000002" / "generator.weights.h5").read_bytes()
    # No file may grow past 1 MB: the next generator weights file (27 MB) cannot be written.
    process = start_training(tmp_path, "--resume", "--steps", 4, "--save-every", 1, limit_file_size=1_000_000)
    out, err = process.communicate(timeout=180)
    assert process.returncode == 1
    assert "Error: writing" in err and "failed at step 3" in err and "(step 2)" in err and "Traceback" not in err
    assert snapshot_steps(tmp_path / "weights") == [2]
    assert (tmp_path / "weights" / "snapshots" / "step0000002" / "generator.weights.h5").read_bytes() == before
    assert not leftovers(tmp_path / "weights")


def test_a_run_stopped_during_its_first_save_is_read_from_its_snapshot(run_dcgan, trained, tmp_path):
    config, _ = trained
    weights = tmp_path / "weights"
    (weights / "snapshots").mkdir(parents=True)
    shutil.copytree(Path(config.weights_dir) / "snapshots" / "step0000006", weights / "snapshots" / "step0000006")
    # As if killed after the snapshot was renamed into place, before the latest files beside it.
    assert not (weights / "run.json").exists()
    from dcgan.weights import read_run_info

    assert read_run_info(weights)["step"] == 6
    snapshot_generator = load_generator(Path(config.weights_dir) / "snapshots" / "step0000006")
    for a, b in zip(load_generator(weights).get_weights(), snapshot_generator.get_weights()):
        np.testing.assert_array_equal(a, b)
    # Its own samples and logs folders: the saved settings point into the shared `trained` run.
    resumed = run_dcgan("train", "--resume", "--weights-dir", weights, "--samples-dir", tmp_path / "samples",
                        "--logdir", tmp_path / "logs", "--steps", 7, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert "Resuming at step 6" in resumed.stdout and read_run_info(weights)["step"] == 7


@pytest.mark.parametrize(
    "trained_with, forgotten, kept, refusals",
    [
        # A run.json from before presets has no preset, activation, optimizer, ema, augment or generator_lr:
        # it trained the classic way.
        (
            {"preset": "classic"},
            ("preset", "activation", "optimizer", "ema", "augment", "generator_lr"),
            {"preset": "classic", "optimizer": "sgd"},
            [(["--optimizer", "adam"], "--optimizer adam: the saved run used sgd")],
        ),
        # One from before augmentation trained without it, and its generator at --lr, not at the fast preset's 0.0005
        # (the generator had no rate of its own yet).
        (
            {"augment": "none", "generator_lr": None},
            ("augment", "generator_lr"),
            {"preset": "fast", "augment": "none", "generator_lr": None},
            [
                (["--augment", "cutout"], "--augment cutout: the saved run used none"),
                (["--generator-lr", "0.0005"], "--generator-lr 0.0005: the saved run used none"),
            ],
        ),
        # One from before augmentation adapted augmented every image, and logged no augment probability; from
        # before fake_batch_norm it drew the discriminator's generated images as the classic does; from before
        # feature_matching it trained without it, and from before halve_generator_lr_at it kept the generator's rate.
        (
            {
                "augment_target": None,
                "fake_batch_norm": "moving",
                "feature_matching": 0.0,
                "halve_generator_lr_at": None,
            },
            ("augment_target", "fake_batch_norm", "feature_matching", "halve_generator_lr_at"),
            {
                "preset": "fast",
                "augment": "translation,cutout",
                "augment_target": None,
                "fake_batch_norm": "moving",
                "feature_matching": 0.0,
                "halve_generator_lr_at": None,
            },
            [
                (["--augment-target", "0.7"], "--augment-target 0.7: the saved run used none"),
                (["--fake-batch-norm", "batch"], "--fake-batch-norm batch: the saved run used moving"),
                (["--feature-matching", "1"], "--feature-matching 1.0: the saved run used 0.0"),
                (["--halve-generator-lr-at", "4000"], "--halve-generator-lr-at 4000: the saved run used none"),
            ],
        ),
    ],
)
def test_a_run_saved_before_a_setting_existed_resumes_as_it_trained(
    tiny_config, metrics_rows, tmp_path, trained_with, forgotten, kept, refusals
):
    dcgan.train(tiny_config(tmp_path, steps=4, **trained_with))
    forget_settings(metrics_rows, tmp_path / "weights", *forgotten)
    # The command in this process (the installed one in a child process is tested above): a child's TensorFlow
    # start-up, seven times over, would be most of this test's time.
    resumed = CliRunner().invoke(
        main, ["train", "--resume", "--weights-dir", str(tmp_path / "weights"), "--steps", "6"]
    )
    assert resumed.exit_code == 0, resumed.output
    saved = json.loads((tmp_path / "weights" / "run.json").read_text())
    assert saved["step"] == 6 and {name: saved["config"][name] for name in kept} == kept
    # Its probability never changed: 1 with augmentation, 0 without, in the rows it logged before and after.
    augmented = saved["config"]["augment"] != "none"
    assert saved["augment_probability"] == float(augmented)
    assert [row["augment_p"] for row in metrics_rows(tmp_path / "weights")] == [str(int(augmented))] * 6
    for refused, message in refusals:
        refusal = CliRunner().invoke(
            main, ["train", "--resume", "--weights-dir", str(tmp_path / "weights"), "--steps", "8", *refused]
        )
        assert refusal.exit_code != 0 and message in refusal.output


def forget_settings(metrics_rows, weights_dir, *names):
    """Make the run in `weights_dir` look like one saved before `names` were settings, and before the augment
    probability was saved and logged."""
    for run_file in Path(weights_dir).rglob("run.json"):
        run = json.loads(run_file.read_text())
        for name in names:
            del run["config"][name]
        del run["augment_probability"]
        run_file.write_text(json.dumps(run))
    rows = metrics_rows(weights_dir)
    with open(Path(weights_dir) / "metrics.csv", "w", newline="") as file:
        columns = [name for name in rows[0] if name != "augment_p"]
        writer = csv.DictWriter(file, columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
