"""Watching a run: the per-step values, warnings, TensorBoard events, curves and the grid animation."""
import io
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import dcgan
from dcgan.datasets import load_dataset
from dcgan.monitor import STEP_VALUES, HealthCheck, Progress, clock, diversity
from dcgan.plots import animate_grids, plot_curves, smooth


REAL = load_dataset("mnist-sample")[:64]


def test_metrics_hold_the_discriminators_accuracy_on_both_halves(metrics_rows, trained):
    config, _ = trained
    rows = metrics_rows(config.weights_dir)
    for row in rows:
        for name in ("d_acc_real", "d_acc_fake"):
            # A fraction of a batch of 8: a multiple of 1/8 in [0, 1].
            assert 0 <= float(row[name]) <= 1 and float(row[name]) * 8 == round(float(row[name]) * 8)
    assert any(float(r["d_acc_real"]) != float(r["d_acc_fake"]) for r in rows)


def test_accuracy_is_the_share_of_right_calls(classic_trainer, tmp_path):
    trainer = classic_trainer(seed=0)
    real = load_dataset("mnist-sample")[:16]
    before = trainer.discriminator.get_weights()
    noise = trainer.noise(16, 0)
    fake = trainer.generator(noise, training=False)
    real_scores = trainer.discriminator(real, training=True).numpy()[:, 0]
    fake_scores = trainer.discriminator(fake, training=True).numpy()[:, 0]
    values, _ = trainer.discriminator_step(real, noise, *trainer.augmentation_draws(16, 0)[:2])
    assert float(values["d_acc_real"]) == pytest.approx(np.mean(real_scores > 0.5))
    assert float(values["d_acc_fake"]) == pytest.approx(np.mean(fake_scores < 0.5))
    assert any(not np.array_equal(a, b) for a, b in zip(before, trainer.discriminator.get_weights()))


def test_progress_line_reports_time_left_accuracy_and_speed(tiny_config, tmp_path, capsys):
    dcgan.train(tiny_config(tmp_path, steps=3))
    line = [text for text in capsys.readouterr().out.splitlines() if text.startswith("step 3/3  ")][0]
    for part in (
        " elapsed, 0:00 left",
        "d_loss",
        "g_loss",
        "D(x)",
        "D(G(z))",
        "epoch 1/30",
        "D accuracy real",
        "fake",
        "img/s",
    ):
        assert part in line


def test_time_left_is_to_the_first_end_and_the_line_fits_the_terminal(monkeypatch):
    now = [100.0]
    monkeypatch.setattr(time, "perf_counter", lambda: now[0])
    values = dict.fromkeys(STEP_VALUES, 0.5)
    # Resumed at step 100 of 1,000 after 60 s; a step takes 0.5 s once the first (which builds the step) is done.
    progress = Progress(100, 1000, 50, 20, 64, elapsed_before=60.0)
    for _ in range(11):
        now[0] += 0.5
        progress.update(values)
    assert progress.seconds_left() == pytest.approx((1000 - 111) * 0.5)
    assert progress.elapsed() == pytest.approx(65.5) and progress.images_per_second() == pytest.approx(128)
    limited = Progress(100, 1000, 50, 20, 64, elapsed_before=60.0, time_limit=120.0)
    for _ in range(11):
        now[0] += 0.5
        limited.update(values)
    assert limited.seconds_left() == pytest.approx(120 - 65.5), "the minutes end the run before its steps"
    assert "1:06 elapsed, 0:54 left" in limited.line()
    for width in (60, 79, 120):
        assert len(limited.line(width)) <= width and limited.line(width).startswith(
            "step 111/1000  1:06 elapsed, 0:54 left"
        )
    assert "img/s" not in limited.line(79) and "img/s" in limited.line(None)
    # What fits of the rest: the epoch's 10 characters do after the losses, the scores' 22 do not.
    assert limited.line(79) == "step 111/1000  1:06 elapsed, 0:54 left  d_loss 0.500 g_loss 0.500  epoch 3/20"
    assert clock(3723) == "1:02:03" and clock(59.6) == "1:00"


def test_diversity_is_zero_for_copies_and_large_for_real_digits():
    assert diversity(np.repeat(REAL[:1], 10, axis=0)) == pytest.approx(0, abs=1e-5)
    assert diversity(REAL) > 10
    two = np.stack([np.zeros((2, 2, 1)), np.ones((2, 2, 1))])
    assert diversity(two) == pytest.approx(2.0)  # sqrt(4 pixels x 1^2)


def healthy(step):
    return {"d_loss": 0.6, "d_fake": 0.4}


def winning(step):
    return {"d_loss": 0.001, "d_fake": 0.0005}


def test_a_discriminator_that_wins_for_a_sustained_stretch_is_reported_once():
    check = HealthCheck(REAL, window=20, warmup=0)
    assert all(check.after_step(step, healthy(step)) is None for step in range(1, 101))
    # A short spell is not enough: the window's mean must fall that low.
    assert all(check.after_step(step, winning(step)) is None for step in range(101, 111))
    warnings = [check.after_step(step, winning(step)) for step in range(111, 200)]
    reported = [w for w in warnings if w]
    assert len(reported) == 1 and "discriminator is winning outright" in reported[0] and "--lr" in reported[0]
    for step in range(200, 240):
        assert check.after_step(step, healthy(step)) is None
    again = [check.after_step(step, winning(step)) for step in range(240, 300)]
    assert sum(w is not None for w in again) == 1, "after recovering, a relapse is reported again"


def test_a_discriminator_that_wins_only_during_the_warmup_is_not_reported():
    check = HealthCheck(REAL, window=20, warmup=200)
    assert all(check.after_step(step, winning(step)) is None for step in range(1, 201)), "early wins pass by themselves"
    assert all(check.after_step(step, healthy(step)) is None for step in range(201, 300))
    warnings = [check.after_step(step, winning(step)) for step in range(300, 400)]
    assert sum(w is not None for w in warnings) == 1, "after the warmup, a sustained win is reported"


def test_a_collapsed_sample_grid_is_reported_after_the_warmup():
    check = HealthCheck(REAL, warmup=200)
    copies = np.repeat(REAL[:1], 64, axis=0) + np.random.default_rng(0).normal(0, 0.01, (64, 28, 28, 1))
    assert check.after_grid(100, copies) is None, "early grids are all haze; not a collapse yet"
    assert check.after_grid(200, REAL[::-1]) is None
    warning = check.after_grid(400, copies)
    assert "near-copies" in warning and "dcgan evaluate" in warning
    assert check.after_grid(600, copies) is None, "told once"
    assert check.after_grid(800, REAL) is None
    assert check.after_grid(1000, copies) is not None


def test_tensorboard_reads_the_scalars_and_sample_grids(metrics_rows, trained):
    config, _ = trained
    events = EventAccumulator(config.logdir, size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    tags = events.Tags()
    assert set(tags["scalars"]) == {*STEP_VALUES, "images_per_second"}
    rows = metrics_rows(config.weights_dir)
    d_loss = events.Scalars("d_loss")
    assert [e.step for e in d_loss] == [1, 2, 3, 4, 5, 6]
    np.testing.assert_allclose([e.value for e in d_loss], [float(r["d_loss"]) for r in rows], rtol=1e-5)
    grids = events.Images("samples/fixed_noise")
    assert [g.step for g in grids] == [4, 6]
    assert (grids[-1].width, grids[-1].height) == (4 * 28, 3 * 28)
    with Image.open(Path(config.samples_dir) / "fakes_epoch0001_step0000006.png") as png:
        expected = np.array(png)
    np.testing.assert_array_equal(np.array(Image.open(io.BytesIO(grids[-1].encoded_image_string))), expected)


def test_a_run_ends_with_curves_and_an_animation_of_its_grids(trained):
    config, _ = trained
    samples = Path(config.samples_dir)
    with Image.open(samples / "curves.png") as png:
        assert png.size == (900, 750)
        pixels = np.array(png.convert("RGB"))
    # The d_loss curve's red and the g_loss curve's blue are drawn.
    assert np.any((pixels[..., 0] > 150) & (pixels[..., 2] < 80)) and np.any(
        (pixels[..., 2] > 150) & (pixels[..., 0] < 80)
    )
    with Image.open(samples / "fakes.gif") as gif:
        assert gif.n_frames == 2 and gif.size == (4 * 28, 3 * 28 + 20)
        gif.seek(1)
        last = np.array(gif.convert("L"))[: 3 * 28]
    with Image.open(samples / "fakes_epoch0001_step0000006.png") as png:
        assert np.abs(last.astype(int) - np.array(png)).max() <= 8  # GIF palettes round gray levels a little


def test_smooth_is_a_running_mean_that_starts_at_the_first_value():
    np.testing.assert_allclose(smooth(np.array([1.0, 3.0, 5.0, 7.0]), 2), [1, 2, 4, 6])


def test_curves_and_animation_refuse_what_is_not_a_run(tmp_path):
    with pytest.raises(dcgan.UserError, match="cannot read"):
        plot_curves(tmp_path / "metrics.csv", tmp_path / "curves.png")
    (tmp_path / "metrics.csv").write_text("step,epoch,d_loss\n")
    with pytest.raises(dcgan.UserError, match="no steps yet"):
        plot_curves(tmp_path / "metrics.csv", tmp_path / "curves.png")
    with pytest.raises(dcgan.UserError, match="no sample grids"):
        animate_grids(tmp_path, tmp_path / "fakes.gif")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.csv"]


def test_plot_command_redraws_a_runs_pictures_without_tensorflow(run_dcgan, trained, tmp_path):
    config, _ = trained
    samples = Path(config.samples_dir)
    for name in ("curves.png", "fakes.gif"):
        (samples / name).unlink()
    result = run_dcgan("plot", "--weights-dir", config.weights_dir, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "fakes.gif (2 frames)" in result.stdout
    assert (samples / "curves.png").exists() and (samples / "fakes.gif").exists()
    assert "oneDNN" not in result.stderr, "plot should not load TensorFlow"
    missing = run_dcgan("plot", "--weights-dir", tmp_path / "none", cwd=tmp_path)
    assert missing.returncode == 1 and missing.stderr.startswith("Error: ") and "does not exist" in missing.stderr
