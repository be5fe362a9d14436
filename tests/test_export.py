"""dcgan export: each format written by the installed command as the README says, then used with the
README's own code in its own runtime, drawing the Keras generator's images; and its bad input."""
import hashlib
import re
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import dcgan
from cli import main
from dcgan.export import FORMATS, export_generator
from dcgan.weights import snapshot_folder


README = Path(__file__).parents[1] / "README.md"
SECTION = README.read_text().split("### Exporting")[1].split("\n## ")[0]


def readme_export(export_format):
    """The README's command that exports `export_format`, and its Python code that draws from the export."""
    command = (
        re.search(rf"^    dcgan export --format {export_format} .*?(?=\s*(#|$))", SECTION, re.MULTILINE)
        .group(0)
        .split()
    )
    output = command[command.index("--output") + 1]
    blocks = re.findall(r"```python\n(.*?)```", SECTION, re.DOTALL)
    code = next(block for block in blocks if f'"{output}"' in block)
    return command[1:], output, code


@pytest.fixture(scope="module")
def run_folder(trained, tmp_path_factory):
    """A folder holding the trained run as `weights`, where the README's commands run as written."""
    folder = tmp_path_factory.mktemp("export")
    (folder / "weights").symlink_to(Path(trained[0].weights_dir).resolve())
    return folder


@pytest.mark.parametrize("export_format", list(FORMATS))
def test_readme_export_draws_the_generators_images(run_dcgan, run_folder, monkeypatch, export_format):
    command, output, code = readme_export(export_format)
    result = run_dcgan(*command, cwd=run_folder)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # the converters' and runtimes' own log lines are hidden
    assert re.fullmatch(
        rf"Wrote {output} \(\d+\.\d MB\); it draws the generator's images to within \S+\n", result.stdout
    )
    assert not [path.name for path in run_folder.iterdir() if ".partial-" in path.name]

    monkeypatch.chdir(run_folder)
    names = {}
    exec(code, names)  # the README's own lines, as a user would paste them
    assert names["images"].shape == (16, 28, 28, 1)
    expected = dcgan.load_generator("weights").predict(names["noise"], verbose=0)
    np.testing.assert_allclose(names["images"], expected, atol=1e-4)
    assert np.abs(expected).max() > 0.1  # a trained generator, not a blank one


def test_a_conditional_generator_on_the_dcgan_models_exports_to_every_format_taking_labels(tiny_config, tmp_path):
    config = tiny_config(tmp_path, architecture="dcgan", conditioning="concat", steps=2)
    dcgan.train(config)
    generator = dcgan.load_generator(config.weights_dir)
    noise = np.random.default_rng(1).uniform(-1, 1, (2, 100)).astype(np.float32)
    for name, kind in FORMATS.items():
        output = tmp_path / f"generator{kind.suffix or '-' + name}"
        exported = export_generator(config.weights_dir, name, output)
        assert exported.difference <= 1e-4 and exported.size > 100_000
        for labels in ([3, 3], [8, 1]):
            labels = np.array(labels, np.int32)
            drawn = kind.draw(output, {"noise": noise, "labels": labels})
            np.testing.assert_allclose(drawn, generator.predict([noise, labels], verbose=0), atol=1e-4)


def test_snapshot_export_is_that_snapshots_generator(trained, tmp_path):
    weights_dir = Path(trained[0].weights_dir)
    output = tmp_path / "early.onnx"
    result = CliRunner().invoke(main, ["export", "--weights-dir", weights_dir, "--snapshot", "4", "--format", "onnx",
                                       "--output", output])
    assert result.exit_code == 0, result.output
    noise = np.random.default_rng(1).uniform(-1, 1, (3, 100)).astype(np.float32)
    drawn = FORMATS["onnx"].draw(output, {"noise": noise})
    np.testing.assert_allclose(drawn, dcgan.load_generator(snapshot_folder(weights_dir, 4)).predict(noise, verbose=0),
                               atol=1e-4)
    assert np.abs(drawn - dcgan.load_generator(weights_dir).predict(noise, verbose=0)).max() > 1e-3


def checksum(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_overwrite_replaces_only_with_a_checked_export(trained, tmp_path):
    weights_dir = trained[0].weights_dir
    output = tmp_path / "generator.onnx"
    output.write_bytes(b"a file of the user's, not an export")
    refused = CliRunner().invoke(main, ["export", "--weights-dir", weights_dir, "--format", "onnx", "--output", output,
                                        "--overwrite"])
    assert refused.exit_code == 1
    assert refused.output == (f"Error: {output} is not an earlier onnx export, and --overwrite replaces only one of "
                              "those; choose another --output\n")
    output.unlink()
    export_generator(weights_dir, "onnx", output)
    earlier = output.read_bytes()
    refused = CliRunner().invoke(main, ["export", "--weights-dir", weights_dir, "--format", "onnx", "--output", output])
    assert refused.exit_code == 1
    assert (
        refused.output
        == f"Error: {output} exists already; choose another --output, or pass --overwrite to replace it\n"
    )

    with pytest.raises(
        dcgan.UserError,
        match=r"^the onnx export draws images up to \S+ away from the Keras generator's "
        r"\(at most 0 allowed\); nothing was written$",
    ):
        export_generator(weights_dir, "onnx", output, overwrite=True, tolerance=0)
    assert output.read_bytes() == earlier
    assert sorted(path.name for path in tmp_path.iterdir()) == ["generator.onnx"]

    exported = export_generator(weights_dir, "onnx", output, overwrite=True)
    assert exported.size == output.stat().st_size > 1000
    assert 0 <= exported.difference <= 1e-4
    assert sorted(path.name for path in tmp_path.iterdir()) == ["generator.onnx"]


def test_savedmodel_overwrite_replaces_an_export_and_no_other_folder(trained, tmp_path):
    weights_dir = Path(trained[0].weights_dir)
    output = tmp_path / "served"
    export_generator(weights_dir, "savedmodel", output)
    (output / "stale.txt").write_text("from before")
    result = CliRunner().invoke(
        main, ["export", "--weights-dir", weights_dir, "--format", "savedmodel", "--output", output, "--overwrite"]
    )
    assert result.exit_code == 0, result.output
    assert (output / "saved_model.pb").is_file()
    assert not (output / "stale.txt").exists()

    before = {path: checksum(path) for path in weights_dir.rglob("*") if path.is_file()}
    result = CliRunner().invoke(
        main, ["export", "--weights-dir", weights_dir, "--format", "savedmodel", "--output", weights_dir, "--overwrite"]
    )
    assert result.exit_code == 1
    assert result.output == (f"Error: {weights_dir} is not an earlier savedmodel export, and --overwrite replaces only "
                             "one of those; choose another --output\n")
    assert {path: checksum(path) for path in weights_dir.rglob("*") if path.is_file()} == before


@pytest.mark.parametrize(
    "arguments, message",
    [
        (
            ["--format", "pdf", "--output", "g.pdf"],
            "Error: Invalid value for '--format': 'pdf' is not one of 'savedmodel', 'tflite', 'onnx'.",
        ),
        (
            ["--format", "onnx", "--output", "g.tflite"],
            "Error: --output g.tflite: onnx writes one file; give a name ending in .onnx",
        ),
        (
            ["--format", "savedmodel", "--output", "g.onnx"],
            "Error: --output g.onnx: savedmodel writes a folder; give a folder name, such as generator-savedmodel",
        ),
        (["--format", "onnx"], "Error: Missing option '--output'."),
    ],
)
def test_malformed_export_options(trained, tmp_path, monkeypatch, arguments, message):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["export", "--weights-dir", trained[0].weights_dir, *arguments])
    assert result.exit_code == (1 if "--output g." in message else 2)
    assert result.output.splitlines()[0].startswith(message)
    assert len(result.output.splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def test_unwritable_output_and_empty_weights_folder(trained, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    result = CliRunner().invoke(main, ["export", "--weights-dir", trained[0].weights_dir, "--format", "onnx",
                                       "--output", blocker / "g.onnx"])
    assert result.exit_code == 1
    assert result.output.startswith(f"Error: cannot write to folder {blocker} (")
    assert result.output.count("\n") == 1

    empty = tmp_path / "empty"
    empty.mkdir()
    result = CliRunner().invoke(
        main, ["export", "--weights-dir", empty, "--format", "onnx", "--output", tmp_path / "g.onnx"]
    )
    assert result.exit_code == 1
    assert result.output.startswith(f"Error: {empty}") and result.output.count("\n") == 1
    assert not (tmp_path / "g.onnx").exists()


@pytest.mark.parametrize("export_format, blocked, named", [
    ("onnx", "onnxruntime", "onnxruntime"), ("tflite", "ai_edge_litert", "ai_edge_litert")])
def test_a_missing_converter_names_the_extra(trained, tmp_path, monkeypatch, export_format, blocked, named):
    monkeypatch.setitem(sys.modules, blocked, None)  # how Python itself makes an import fail
    output = tmp_path / f"g{FORMATS[export_format].suffix}"
    result = CliRunner().invoke(main, ["export", "--weights-dir", trained[0].weights_dir, "--format", export_format,
                                       "--output", output])
    assert result.exit_code == 1
    assert (
        result.output
        == f"Error: exporting to {export_format} needs {named}, which pip install 'dcgan[export]' installs\n"
    )
    assert not output.exists()
