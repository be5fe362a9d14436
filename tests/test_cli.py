import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from cli import main
from dcgan import TrainConfig, UserError, load_generator
from dcgan.presets import PRESETS, preset_defaults


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def assert_one_line_error(result, message):
    assert result.exit_code != 0
    assert result.exception is None or isinstance(result.exception, SystemExit), "a traceback escaped"
    error_lines = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert len(error_lines) == 1 and message in error_lines[0], result.output


@pytest.mark.parametrize(
    "args, message",
    [
        (["--dataset", "no-such-set"], "neither a known name"),
        (["--dataset", "/no/such/file.npz"], "neither a known name"),
        (["--batch-size", "0"], "0 is not in the range x>=1"),
        (["--batch-size", "-3"], "-3 is not in the range x>=1"),
        (["--dataset", "mnist-sample", "--batch-size", "6000"], "more than the dataset's 5000"),
        (["--epochs", "0"], "not in the range"),
        (["--lr", "0"], "not in the range"),
        (["--preset", "best"], "'best' is not one of 'fast', 'classic'"),
        (["--optimizer", "adagrad"], "'adagrad' is not one of 'adam', 'sgd', 'rmsprop'"),
        (["--minutes", "0"], "not in the range x>0"),
        (["--ema", "1"], "not in the range 0<=x<1"),
        (
            ["--augment", "translation,flip"],
            "unknown augmentation flip; give a comma-separated list of translation and cutout, or none",
        ),
        (["--augment-target", "1"], "1.0 is not in the range 0<x<1"),
        (["--augment-target", "often"], "'often' is neither a number nor none"),
        (["--generator-lr", "0"], "0.0 is not in the range x>0"),
        (["--fake-batch-norm", "frozen"], "'frozen' is not one of 'batch', 'moving'"),
        (["--feature-matching", "-1"], "-1.0 is not in the range x>=0"),
        (["--halve-generator-lr-at", "-1"], "-1 is not in the range x>=0"),
        (["--halve-generator-lr-at", "late"], "'late' is neither a number nor none"),
        (["--clip", "0"], "0.0 is not in the range x>0"),
        (["--clip", "-0.01"], "-0.01 is not in the range x>0"),
        (["--gp-weight", "-1"], "-1.0 is not in the range x>=0"),
        (["--d-steps", "0"], "0 is not in the range x>=1"),
        (["--g-steps", "0"], "0 is not in the range x>=1"),
        (["--loss", "softplus"], "'softplus' is not one of 'bce', 'wgan', 'wgan-gp', 'hinge', 'lsgan'"),
        (["--architecture", "resnet"], "'resnet' is not one of 'classic', 'dcgan', 'mlp'"),
        (["--clip", "0.01"], "--clip applies only to --loss wgan; leave it out with --loss hinge"),
        (
            ["--preset", "wgan", "--gp-weight", "10"],
            "--gp-weight applies only to --loss wgan-gp; leave it out with --loss wgan",
        ),
        (
            ["--architecture", "dcgan", "--image-size", "30"],
            "image size 30 is not supported; use one of 16, 20, 24, 28, 32",
        ),
        (["--architecture", "mlp", "--image-size", "256"], "use a size from 8 to 128"),
        (["--lr", "nan"], "--lr nan is not a number"),
        (["--beta1", "1"], "1.0 is not in the range 0<=x<1"),
    ],
)
def test_train_rejects_bad_options_in_one_line(args, message, tmp_path):
    result = invoke("train", "--weights-dir", tmp_path / "w", "--samples-dir", tmp_path / "s", *args)
    assert_one_line_error(result, message)


def test_train_rejects_wrong_shapes_and_unreadable_files(tmp_path):
    np.savez(tmp_path / "oblong.npz", x_train=np.zeros((5, 32, 30, 3), np.uint8))
    (tmp_path / "broken-idx3-ubyte.gz").write_bytes(b"this is not gzip")
    for dataset, message in (
        (tmp_path / "oblong.npz", "shape (5, 32, 30, 3)"),
        (tmp_path / "broken-idx3-ubyte.gz", "cannot read"),
    ):
        assert_one_line_error(invoke("train", "--dataset", dataset, "--weights-dir", tmp_path / "w"), message)


def test_train_rejects_output_folders_it_cannot_write(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    args = ("train", "--dataset", "mnist-sample", "--batch-size", "4", "--steps", "1")
    result = invoke(*args, "--weights-dir", blocker / "weights", "--samples-dir", tmp_path / "s")
    assert_one_line_error(result, "--weights-dir")
    result = invoke(*args, "--weights-dir", tmp_path / "w", "--samples-dir", blocker / "samples")
    assert_one_line_error(result, "--samples-dir")


def dry_run(*args):
    result = invoke("train", "--dry-run", *([] if "--dataset" in args else ["--dataset", "mnist-sample"]), *args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_dry_run_prints_the_settings_as_used_and_the_steps(tmp_path):
    config = dry_run("--batch-size", "32", "--weights-dir", tmp_path / "w", "--epochs", "3")
    assert (
        config["batch_size"] == 32
        and config["dataset"] == "mnist-sample"
        and config["weights_dir"] == str(tmp_path / "w")
    )
    assert config["plan"] == {
        "images": 5000,
        "image_shape": [28, 28, 1],
        "steps_per_epoch": 156,
        "from_step": 0,
        "to_step": 468,
    }
    assert (config["image_size"], config["channels"], config["generator_lr"]) == (28, 1, 0.0005)
    assert dry_run("--steps", "100")["plan"]["to_step"] == 100
    assert (
        dry_run("--preset", "wgan-gp")["gp_weight"] == 10
        and dry_run("--preset", "wgan-gp", "--d-steps", "2")["plan"]["steps_per_epoch"] == 39
    )
    assert not (tmp_path / "w").exists()


def test_a_dry_run_of_mnist_not_yet_here_prints_only_its_plan_and_downloads_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    result = invoke("train", "--dry-run")
    assert result.exit_code == 0 and result.stderr == "", result.stderr
    plan = json.loads(result.stdout)["plan"]
    assert (plan["images"], plan["image_shape"], plan["steps_per_epoch"]) == (60_000, [28, 28, 1], 937)
    assert not (tmp_path / "keras").exists()


def test_a_dataset_path_that_is_not_there_is_refused_before_tensorflow_loads(tmp_path):
    script = ("import sys, cli\ntry:\n    cli.main(['train', '--dataset', sys.argv[1], '--weights-dir', sys.argv[2]])\n"
              "except SystemExit as exit:\n    print('tensorflow' in sys.modules, exit.code)")
    result = subprocess.run([sys.executable, "-c", script, str(tmp_path / "nothing"), str(tmp_path / "w")],
                            capture_output=True, text=True, timeout=120, cwd=Path(__file__).parent.parent)
    assert result.stdout.split() == ["False", "1"], result.stderr
    assert result.stderr.startswith("Error: dataset") and "is neither a known name" in result.stderr


def test_a_preset_sets_the_training_settings_and_options_override_it():
    settings = (
        "activation",
        "optimizer",
        "lr",
        "generator_lr",
        "halve_generator_lr_at",
        "ema",
        "batch_size",
        "augment",
        "augment_target",
        "fake_batch_norm",
        "feature_matching",
    )
    for preset in ("fast", "classic"):
        used = TrainConfig.from_preset(preset).resolved((28, 28, 1))
        assert [dry_run("--preset", preset)[name] for name in settings] == [used[name] for name in settings]
    assert (
        dry_run()["preset"] == "fast"
        and dry_run()["optimizer"] == "adam"
        and dry_run("--preset", "classic")["ema"] == 0
    )
    overridden = dry_run("--preset", "classic", "--optimizer", "adam", "--ema", "0.99", "--batch-size", "32")
    assert [overridden[name] for name in ("preset", *settings)] == [
        "classic", "tanh", "adam", 0.0005, 0.0005, None, 0.99, 32, "none", None, "moving", 0.0]
    assert dry_run("--lr", "0.001")["lr"] == 0.001 and dry_run("--minutes", "2.5")["minutes"] == 2.5
    assert dry_run()["generator_lr"] == 0.0005 and dry_run("--generator-lr", "0.001")["generator_lr"] == 0.001
    assert dry_run("--generator-lr", "none")["generator_lr"] == dry_run()["lr"] == 0.0002, (
        "none: the discriminator's rate"
    )
    assert (
        dry_run()["halve_generator_lr_at"] == 4000
        and dry_run("--halve-generator-lr-at", "none")["halve_generator_lr_at"] is None
    )
    assert dry_run("--preset", "classic", "--halve-generator-lr-at", "100")["halve_generator_lr_at"] == 100
    # "none" turns off a setting the preset has, rather than falling back to the preset's value.
    assert dry_run()["augment_target"] == 0.7 and dry_run("--augment-target", "none")["augment_target"] is None
    assert dry_run("--preset", "classic", "--augment-target", "0.6")["augment_target"] == 0.6
    assert dry_run("--fake-batch-norm", "moving")["fake_batch_norm"] == "moving"
    assert dry_run()["feature_matching"] == 1.0 and dry_run("--feature-matching", "0")["feature_matching"] == 0.0
    for preset in ("dcgan-paper", "wgan", "wgan-gp", "lsgan"):
        used = TrainConfig.from_preset(preset).resolved((28, 28, 1))
        assert {name: dry_run("--preset", preset)[name] for name in PRESETS[preset]} == {
            name: used[name] for name in PRESETS[preset]
        }
    wgan = dry_run("--preset", "wgan", "--clip", "0.05", "--d-steps", "3", "--architecture", "mlp")
    assert (wgan["loss"], wgan["clip"], wgan["d_steps"], wgan["architecture"], wgan["optimizer"]) == (
        "wgan",
        0.05,
        3,
        "mlp",
        "rmsprop",
    )


def test_the_defaults_play_hinge_and_a_semi_supervised_run_bce_unless_told():
    assert [dry_run(*preset)["loss"] for preset in ([], ["--preset", "classic"], ["--preset", "wgan"])] == [
        "hinge",
        "bce",
        "wgan",
    ]
    assert (
        dry_run("--semi-supervised")["loss"] == "bce"
        and TrainConfig.from_preset(semi_supervised="derived").loss == "bce"
    )
    result = invoke("train", "--dry-run", "--dataset", "mnist-sample", "--semi-supervised", "--loss", "lsgan")
    assert_one_line_error(result, "--semi-supervised plays the bce game")
    with pytest.raises(
        UserError, match="leave out --loss hinge \\(in Python: TrainConfig.from_preset, or loss='bce'\\)"
    ):
        TrainConfig(dataset="mnist-sample", semi_supervised="derived").check()


def test_help_explains_every_option():
    for command, options in (
        (
            "train",
            [
                "--dataset",
                "--conditional",
                "--conditioning",
                "--preset",
                "--architecture",
                "--loss",
                "--clip",
                "--gp-weight",
                "--d-steps",
                "--g-steps",
                "--beta1",
                "--beta2",
                "--optimizer",
                "--lr",
                "--generator-lr",
                "--halve-generator-lr-at",
                "--activation",
                "--ema",
                "--batch-size",
                "--augment",
                "--augment-target",
                "--fake-batch-norm",
                "--feature-matching",
                "--epochs",
                "--steps",
                "--minutes",
                "--seed",
                "--weights-dir",
                "--samples-dir",
                "--sample-every",
                "--save-every",
            ],
        ),
        (
            "generate",
            [
                "--weights-dir",
                "--class",
                "--batch-size",
                "--nice",
                "--nice-factor",
                "--output",
                "--seed",
                "--interpolate",
                "--walks",
                "--points",
                "--spherical",
                "--gif",
            ],
        ),
        ("evaluate", ["--weights-dir", "--snapshot", "--dataset", "--count", "--cache-dir", "--json"]),
        ("plot", ["--weights-dir", "--samples-dir"]),
    ):
        text = invoke(command, "--help").output
        for option in options:
            assert option in text
    train_help = " ".join(CliRunner().invoke(main, ["train", "--help"], terminal_width=1000).output.split())
    assert "[default: fast]" in train_help
    for setting in (
        "batch_size",
        "activation",
        "optimizer",
        "lr",
        "ema",
        "augment",
        "augment_target",
        "fake_batch_norm",
        "feature_matching",
    ):
        assert f"[default: {preset_defaults(setting)}]" in train_help
    assert "[default: 10000" in invoke("evaluate", "--help").output
    # The command line names the losses' own defaults, without loading TensorFlow, as training resolves them.
    clip, gp_weight = (TrainConfig.from_preset(name).loss_settings() for name in ("wgan", "wgan-gp"))
    assert (
        f"--loss wgan: clip the critic's weights to [-CLIP, CLIP] after each update. [default: {clip['clip']:g}]"
        in train_help
    )
    assert f"--loss wgan-gp: weight of the gradient penalty. [default: {gp_weight['gp_weight']:g}]" in train_help


def test_generate_same_seed_gives_a_byte_identical_png(trained, tmp_path):
    config, _ = trained
    for name in ("a.png", "b.png"):
        result = invoke(
            "generate", "--weights-dir", config.weights_dir, "--batch-size", 5, "--seed", 7, "--output", tmp_path / name
        )
        assert result.exit_code == 0, result.output
        assert "seed 7" in result.output
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()
    invoke(
        "generate", "--weights-dir", config.weights_dir, "--batch-size", 5, "--seed", 8, "--output", tmp_path / "c.png"
    )
    assert (tmp_path / "c.png").read_bytes() != (tmp_path / "a.png").read_bytes()
    with Image.open(tmp_path / "a.png") as png:
        assert png.size == (3 * 28, 2 * 28)


def test_generate_errors(trained, tmp_path):
    config, _ = trained
    assert_one_line_error(invoke("generate", "--weights-dir", tmp_path / "none"), "does not exist")
    (tmp_path / "partial").mkdir()
    (tmp_path / "partial" / "run.json").write_text((Path(config.weights_dir) / "run.json").read_text())
    (tmp_path / "partial" / "generator.weights.h5").write_bytes(
        (Path(config.weights_dir) / "generator.weights.h5").read_bytes()
    )
    assert_one_line_error(
        invoke("generate", "--weights-dir", tmp_path / "partial", "--nice"), "discriminator.weights.h5 is missing"
    )
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    assert_one_line_error(
        invoke("generate", "--weights-dir", config.weights_dir, "--output", blocker / "out.png"), "--output"
    )


def test_generate_from_a_snapshot(trained, tmp_path):
    config, _ = trained
    result = invoke("generate", "--weights-dir", config.weights_dir, "--snapshot", 4, "--seed", 1, "--batch-size", 4,
                    "--output", tmp_path / "old.png")
    assert result.exit_code == 0, result.output
    invoke(
        "generate",
        "--weights-dir",
        config.weights_dir,
        "--seed",
        1,
        "--batch-size",
        4,
        "--output",
        tmp_path / "new.png",
    )
    assert (tmp_path / "old.png").read_bytes() != (tmp_path / "new.png").read_bytes()
    assert_one_line_error(
        invoke("generate", "--weights-dir", config.weights_dir, "--snapshot", 5),
        "has no snapshot at step 5; its snapshots are at steps 4, 6",
    )


def test_resume_from_the_command_line_keeps_saved_settings_and_names_conflicts(trained, tmp_path):
    config, _ = trained
    shutil.copytree(config.weights_dir, tmp_path / "w")
    result = invoke("train", "--resume", "--weights-dir", tmp_path / "w", "--steps", 7, "--dry-run")
    saved = json.loads(result.stdout)
    assert saved["batch_size"] == 8 and saved["dataset"] == "mnist-sample" and saved["steps"] == 7
    assert (saved["plan"]["from_step"], saved["plan"]["to_step"]) == (6, 7)
    result = invoke("train", "--resume", "--weights-dir", tmp_path / "w", "--batch-size", 16)
    assert_one_line_error(result, "cannot resume with --batch-size 16: the saved run used 8")
    for option, value, saved in (("--loss", "wgan", "hinge"), ("--architecture", "classic", "mlp"), ("--d-steps", 5, 1),
                                 ("--g-steps", 2, 1)):
        result = invoke("train", "--resume", "--weights-dir", tmp_path / "w", option, value)
        assert_one_line_error(result, f"cannot resume with {option} {value}: the saved run used {saved}")
    # A run of the defaults before they played hinge goes on with bce.
    run_file = tmp_path / "w" / "run.json"
    run_info = json.loads(run_file.read_text())
    run_info["config"]["loss"] = "bce"
    run_file.write_text(json.dumps(run_info))
    assert json.loads(invoke("train", "--resume", "--weights-dir", tmp_path / "w", "--dry-run").stdout)["loss"] == "bce"


def test_installed_command_trains_and_generates_end_to_end(run_dcgan, tmp_path):
    train = run_dcgan("train", "--dataset", "mnist-sample", "--batch-size", 8, "--steps", 3, "--sample-every", 2,
                      "--weights-dir", "w", "--samples-dir", "s", "--threads", 1, cwd=tmp_path)
    assert train.returncode == 0, train.stderr
    assert json.loads((tmp_path / "w" / "run.json").read_text())["config"]["threads"] == 1
    assert "step 3/3  " in train.stdout and "0:00 left" in train.stdout and "img/s" in train.stdout
    assert (tmp_path / "w" / "generator.keras").exists()
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == [
        "curves.png", "fakes.gif", "fakes_epoch0001_step0000002.png", "fakes_epoch0001_step0000003.png"]

    nice = run_dcgan(
        "generate", "--nice", "--batch-size", 6, "--nice-factor", 3, "--weights-dir", "w", "--seed", 1, cwd=tmp_path
    )
    assert nice.returncode == 0, nice.stderr
    with Image.open(tmp_path / "s" / "nice_seed1.png") as png:  # beside the run's own grids
        assert png.size == (3 * 28, 2 * 28)

    again = run_dcgan("train", "--dataset", "mnist-sample", "--weights-dir", "w", cwd=tmp_path)
    assert again.returncode == 1
    assert again.stderr.strip().splitlines() == [again.stderr.strip()] and again.stderr.startswith("Error: "), (
        "one line: no TensorFlow start-up lines"
    )


def test_saved_generator_loads_in_a_script_that_never_imports_dcgan(trained, tmp_path):
    config, _ = trained
    script = textwrap.dedent(f"""
        import os, sys
        os.environ["KERAS_BACKEND"] = "tensorflow"
        import keras, numpy as np
        generator = keras.saving.load_model({str(Path(config.weights_dir) / "generator.keras")!r})
        noise = np.random.default_rng(0).uniform(-1, 1, (5, 100)).astype("float32")
        np.save({str(tmp_path / "images.npy")!r}, generator.predict(noise, verbose=0))
        assert not any(name == "dcgan" or name.startswith("dcgan.") for name in sys.modules)
    """)
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    images = np.load(tmp_path / "images.npy")
    assert images.shape == (5, 28, 28, 1) and images.min() >= -1 and images.max() <= 1
    noise = np.random.default_rng(0).uniform(-1, 1, (5, 100)).astype("float32")
    np.testing.assert_allclose(images, load_generator(config.weights_dir)(noise, training=False).numpy(), atol=1e-5)


def test_generate_interpolate_writes_a_grid_of_walks_and_a_gif(trained, tmp_path):
    config, _ = trained
    output = tmp_path / "walks.png"
    result = invoke("generate", "--weights-dir", config.weights_dir, "--interpolate", "--walks", 3, "--points", 6,
                    "--spherical", "--gif", "--seed", 5, "--output", output)
    assert result.exit_code == 0, result.output
    assert "Wrote 18 images" in result.output
    with Image.open(output) as png:
        assert png.size == (6 * 28, 3 * 28)
        grid = np.array(png)
    with Image.open(output.with_suffix(".gif")) as gif:
        assert gif.n_frames == 2 * 6 - 2  # there and back, the ends not repeated
        # The 3 walks side by side, as square as it gets, each pixel repeated 5 times: at least 256 pixels a side.
        assert gif.size == (5 * 2 * 28, 5 * 2 * 28)
        first = np.array(gif.convert("L"))[::5, ::5]
    # The first frame shows each walk's first image: the grid's first column.
    np.testing.assert_allclose(first[:28, :28], grid[:28, :28], atol=8)
    np.testing.assert_allclose(first[:28, 28:], grid[28:56, :28], atol=8)


def test_generate_interpolate_options_need_each_other():
    result = invoke("generate", "--interpolate", "--nice")
    assert result.exit_code == 2 and "--nice and --interpolate" in result.output
    result = invoke("generate", "--walks", 3)
    assert result.exit_code == 2 and "--walks works only with --interpolate" in result.output
