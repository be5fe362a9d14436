"""The suite's shared fixtures. Its helpers are fixtures too, each returning the function it names (pytest's
"factory as fixture"): a test names them as arguments and never imports them."""
import csv
import fcntl
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import dcgan  # noqa: E402
from dcgan import TrainConfig, Trainer  # noqa: E402

CHECKOUT = Path(__file__).parent.parent
# What a user of this checkout keeps: a test that wrote here would damage their runs (and their cached classifier).
USERS_FOLDERS = (CHECKOUT / "weights", CHECKOUT / "samples", Path.home() / ".cache" / "dcgan")

# The fully connected models, a third of the classic's time to build and train: tests of how a run is
# trained, saved and resumed; the tests of the models themselves name theirs (test_family has every one).
TINY = dict(
    dataset="mnist-sample", architecture="mlp", batch_size=8, steps=6, sample_every=4, save_every=4, sample_count=10
)


def _files(folder):
    """Every file under `folder` with its size and modification time; None without the folder."""
    if not folder.is_dir():
        return None
    files = [path for path in folder.rglob("*") if path.is_file()]
    return sorted((str(path), path.stat().st_size, path.stat().st_mtime_ns) for path in files)


@pytest.fixture(scope="session", autouse=True)
def users_folders_untouched():
    """Every file a test writes goes under its temporary folder: the checkout's weights/ and samples/ and the
    user's dcgan cache are as they were when the suite began (in each of its processes)."""
    before = {folder: _files(folder) for folder in USERS_FOLDERS}
    yield
    touched = [str(folder) for folder in USERS_FOLDERS if _files(folder) != before[folder]]
    assert not touched, f"the suite wrote into {', '.join(touched)}; write under a test's tmp_path instead"


@pytest.fixture(scope="session")
def classic_trainer():
    """classic_trainer(**settings): a Trainer of the classic preset's settings, `settings` over them."""
    return lambda **settings: Trainer(TrainConfig.from_preset("classic", **settings))


@pytest.fixture(scope="session")
def tiny_config():
    """tiny_config(folder, **changes): a run small enough for a test, a few steps on a few images, writing under
    `folder`; `preset` may be changed too."""

    def make(folder, **changes):
        folder = Path(folder)
        options = {**TINY, "weights_dir": str(folder / "weights"), "samples_dir": str(folder / "samples"), **changes}
        return TrainConfig.from_preset(**options)

    return make


@pytest.fixture(scope="session")
def trained(tiny_config, tmp_path_factory):
    """One tiny training run shared by the tests that only read its outputs."""
    folder = tmp_path_factory.mktemp("trained")
    config = tiny_config(folder, logdir=str(folder / "logs"))
    trainer = dcgan.train(config)
    return config, trainer


@pytest.fixture(scope="session")
def run_dcgan():
    """run_dcgan(*args, cwd): the installed `dcgan` command in a child process."""

    def run(*args, cwd):
        command = Path(sys.executable).parent / "dcgan"
        return subprocess.run([str(command), *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=300)

    return run


@pytest.fixture(scope="session")
def classifier_cache(tmp_path_factory):
    """A cache folder that already holds the mnist-sample classifier, trained once for the whole session: under
    pytest-xdist, one folder for all its test processes, the first to need it training it while the others wait."""
    from dcgan import evaluation
    from dcgan.evaluation import Scorer

    base = tmp_path_factory.getbasetemp()
    folder = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "classifier-cache"
    folder.mkdir(exist_ok=True)
    with open(folder / ".lock", "w") as lock, pytest.MonkeyPatch.context() as patch:
        fcntl.flock(lock, fcntl.LOCK_EX)
        # A third of the steps `dcgan evaluate` trains it for: the tests read its scores' order, not their last digit,
        # and the others wait for this one.
        patch.setattr(evaluation, "CLASSIFIER_STEPS", 500)
        Scorer("mnist-sample", cache_dir=folder)
    return folder


@pytest.fixture(scope="session")
def metrics_rows():
    """metrics_rows(weights_dir): the rows of a run's metrics.csv, as dicts."""

    def rows(weights_dir):
        with open(Path(weights_dir) / "metrics.csv", newline="") as file:
            return list(csv.DictReader(file))

    return rows


@pytest.fixture(scope="session")
def logged_steps():
    """logged_steps(weights_dir): how many steps a run, perhaps still training, has written to metrics.csv so far."""

    def steps(weights_dir):
        path = Path(weights_dir) / "metrics.csv"
        return len(path.read_text().splitlines()) - 1 if path.exists() else 0

    return steps


@pytest.fixture(scope="session")
def wait_for():
    """wait_for(condition, timeout=120): wait until `condition()` holds; the test fails after `timeout` seconds."""

    def wait(condition, timeout=120):
        deadline = time.monotonic() + timeout
        while not condition():
            assert time.monotonic() < deadline, "timed out"
            time.sleep(0.05)

    return wait
