"""One run on several worker processes (MultiWorkerMirroredStrategy): real `dcgan train` processes on localhost
ports."""
import json
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import dcgan
from cli import main
from dcgan import UserError
from dcgan.cluster import Cluster, _meet, local_workers
from dcgan.weights import read_run_info, snapshot_steps


# The default preset (batch norm pooled across workers, adaptive augmentation, feature matching, the weight
# average) with SGD: a small run for the tests of the run's files, resuming and stopping across workers
# (test_two_workers_train_what_one_process_trains_with_adam compares the presets' own Adam with one process).
SETTINGS = {
    "dataset": "mnist-sample",
    "batch_size": 8,
    "optimizer": "sgd",
    "lr": 0.0005,
    "sample_every": 2,
    "save_every": 2,
}
OPTIONS = [part for name, value in SETTINGS.items() for part in ("--" + name.replace("_", "-"), str(value))]


@pytest.fixture
def processes():
    """The worker processes a test starts, every one stopped when it ends, passed or failed."""
    started = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
        process.communicate()


def start_workers(processes, folder, *args, count=2, folders=lambda index: ("weights", "samples"), options=OPTIONS):
    """`dcgan train` with `options` once for each of `count` workers on free localhost ports; `folders(index)`: that
    worker's weights and samples folders. Returns the processes and the --workers list."""
    workers = local_workers(count)
    command = [str(Path(sys.executable).parent / "dcgan"), "train", *options, "--workers", workers, *map(str, args)]
    for index in range(count):
        weights, samples = folders(index)
        processes.append(
            subprocess.Popen(
                [*command, "--worker-index", str(index), "--weights-dir", weights, "--samples-dir", samples],
                cwd=folder,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    return processes[-count:], workers


def finish(workers, timeout=240):
    outputs = [worker.communicate(timeout=timeout) for worker in workers]
    for worker, (out, err) in zip(workers, outputs):
        assert worker.returncode == 0, err
    return outputs


def saved_state(weights_dir):
    """Every array a run's newest snapshot holds: the models' weights and the optimizers' state."""
    snapshot = Path(weights_dir) / "snapshots" / f"step{snapshot_steps(weights_dir)[-1]:07d}"
    models = [w for load in (dcgan.load_generator, dcgan.load_discriminator) for w in load(snapshot).get_weights()]
    with np.load(snapshot / "optimizers.npz") as optimizers:
        return models + [optimizers[name] for name in sorted(optimizers.files)]


def metrics_steps(metrics_rows, weights_dir):
    return [int(row["step"]) for row in metrics_rows(weights_dir)]


def model_weights(snapshot):
    """Every weight of every model file in a snapshot folder, by file and position."""
    import h5py

    weights = {}
    for path in sorted(Path(snapshot).glob("*.weights.h5")):
        with h5py.File(path) as file:
            file.visititems(lambda name, item: weights.__setitem__(f"{path.name}/{name}", item[()])
                            if isinstance(item, h5py.Dataset) else None)
    return weights


# What a change of --threads alone does to one process's weights (1 against 2 threads, mnist-sample, batch 8,
# seed 2; largest difference over every model's weights) after 1 and 3 steps, and the bound the tests hold two
# workers to: 5 times that. Before the workers' batch norm took its variance as one device does, the default preset's
# workers differed by 7.3e-5 after one step and 7.7e-4 after three (Adam turns a variance rounded otherwise into
# updates of its full learning rate).
PRESET_BOUNDS = {  # preset: (threads after 1 step, after 3; bound)
    "fast": (4.5e-6, 2.0e-5, 1e-4),  # the default
    "dcgan-paper": (8.4e-7, 8.5e-7, 5e-6),
    "wgan-gp": (7.9e-6, 7.9e-6, 4e-5),
}


def three_steps(preset):
    return ["--preset", preset, "--dataset", "mnist-sample", "--batch-size", "8", "--seed", "2", "--steps", "3",
            "--save-every", "1", "--keep", "0", "--sample-every", "2", "--threads", "1"]


def start_alone(folder, options):
    """The same run in one process, meanwhile, into folder/alone."""
    return subprocess.Popen([str(Path(sys.executable).parent / "dcgan"), "train", *options, "--weights-dir", "alone",
                             "--samples-dir", "alone-samples"], cwd=folder, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def assert_like_one_process(folder, weights, preset):
    """The chief's models after steps 1 and 3 are the single process's, to 5 times what --threads alone changes."""
    bound = PRESET_BOUNDS[preset][-1]
    for step in (1, 3):
        one, two = (model_weights(folder / run / "snapshots" / f"step{step:07d}") for run in ("alone", weights))
        assert one.keys() == two.keys()
        worst = max(one, key=lambda name: float(np.abs(one[name] - two[name]).max()))
        difference = float(np.abs(one[worst] - two[worst]).max())
        assert difference < bound, f"after step {step}, {worst} differs by {difference:.2g}"


def test_two_workers_train_one_run_only_the_chief_writes_and_resume_continues_exactly(
    metrics_rows, tmp_path, processes
):
    # The default preset, which trains what one process trains (as the other presets below).
    options = three_steps("fast")
    straight, _ = start_workers(
        processes, tmp_path, options=options,
        folders=lambda index: ("weights", "samples") if index == 0 else ("worker-weights", "worker-samples"),
    )
    alone = start_alone(tmp_path, options)
    finish([*straight, alone])
    # Only the chief wrote the run: its grids, metrics and checkpoints; worker 1 nothing of its folders.
    assert len(list((tmp_path / "samples").glob("fakes_*.png"))) == 2 and metrics_steps(
        metrics_rows, tmp_path / "weights"
    ) == [1, 2, 3]
    assert not (tmp_path / "worker-weights").exists() and not (tmp_path / "worker-samples").exists()
    assert_like_one_process(tmp_path, "weights", "fast")

    # Two workers stopped at step 2 and resumed from the chief's folder, which both read: step 3 is the straight run's.
    (tmp_path / "split").mkdir()
    finish(start_workers(processes, tmp_path / "split", "--steps", 2, options=options)[0])
    resumed, _ = start_workers(processes, tmp_path / "split", "--resume", "--steps", 3, options=[])
    out, _ = finish(resumed)[1]
    assert "Resuming at step 2" in out and "worker 1 of 2" in out
    for a, b in zip(saved_state(tmp_path / "split" / "weights"), saved_state(tmp_path / "weights"), strict=True):
        np.testing.assert_array_equal(a, b)
    assert metrics_steps(metrics_rows, tmp_path / "split" / "weights") == [1, 2, 3]


@pytest.mark.parametrize("preset", ["dcgan-paper", "wgan-gp"])
def test_two_workers_train_what_one_process_trains_with_adam(tmp_path, processes, preset):
    workers, _ = start_workers(processes, tmp_path, options=three_steps(preset),
                               folders=lambda index: (f"weights{index}", f"samples{index}"))
    finish([*workers, start_alone(tmp_path, three_steps(preset))])
    assert_like_one_process(tmp_path, "weights0", preset)


def test_a_signal_on_one_worker_stops_both_at_one_step_and_a_lost_worker_stops_the_other(
    logged_steps, wait_for, tmp_path, processes
):
    weights = tmp_path / "weights"

    (chief, worker), workers = start_workers(processes, tmp_path, "--steps", 100000, "--save-every", 100000)
    wait_for(lambda: logged_steps(weights) >= 2, timeout=180)
    worker.send_signal(signal.SIGINT)
    (_, worker_err), (_, chief_err) = worker.communicate(timeout=60), chief.communicate(timeout=60)
    assert worker.returncode == chief.returncode == 128 + signal.SIGINT, chief_err
    step = snapshot_steps(weights)[-1]
    assert f"Stopped by SIGINT at step {step};" in worker_err
    assert f"Stopped by SIGINT on another worker at step {step};" in chief_err
    assert snapshot_steps(weights) == [step] and read_run_info(weights)["step"] == step

    # Resumed, then worker 1 killed: the chief stops within the heartbeat's bound, naming it, and the checkpoint stays.
    (chief, worker), workers = start_workers(processes, tmp_path, "--resume", "--steps", 100000, "--save-every", 100000)
    wait_for(lambda: logged_steps(weights) >= step + 2, timeout=180)
    worker.kill()
    killed = time.monotonic()
    _, chief_err = chief.communicate(timeout=60)
    assert chief.returncode == 1 and time.monotonic() - killed < 30
    lines = chief_err.strip().splitlines()
    assert len(lines) == 1 and f"worker 1 ({workers.split(',')[1]}) stopped answering" in lines[0], chief_err
    assert f"the last good checkpoint (step {step})" in lines[0]
    assert read_run_info(weights)["step"] == step and dcgan.load_generator(weights).output_shape == (None, 28, 28, 1)


def test_workers_that_never_answer_or_run_other_settings_are_named():
    workers = tuple(local_workers(2).split(","))
    ports = [address.split(":")[1] for address in workers]
    started = time.monotonic()
    with pytest.raises(UserError, match=rf"^worker 1 \(localhost:{ports[1]}\) did not answer within 1 s"):
        _meet(Cluster(workers, 0), "{}", wait=1)
    assert time.monotonic() - started < 5

    errors = []

    def meet(index, digest):
        try:
            _meet(Cluster(workers, index), digest, wait=3)
        except UserError as error:
            errors.append(str(error))

    threads = [threading.Thread(target=meet, args=(index, json.dumps({"lr": index}))) for index in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(errors) == 2 and any("runs with other settings than" in error and "(lr)" in error for error in errors), (
        errors
    )


PORTS = [address.split(":")[1] for address in local_workers(3).split(",")]
WORKERS = f"localhost:{PORTS[0]},localhost:{PORTS[1]}"
TRAIN = ["train", "--dataset", "mnist-sample", "--batch-size", "8", "--steps", "1", "--weights-dir", "{tmp}/weights"]
CASES = [
    ("not-host-port", [*TRAIN, "--workers", "localhost", "--worker-index", "0"], "'localhost' is not host:port"),
    ("port-out-of-range", [*TRAIN, "--workers", "a:1,b:70000", "--worker-index", "0"], "'b:70000' is not host:port"),
    ("empty-entry", [*TRAIN, "--workers", f"{WORKERS},", "--worker-index", "0"], "'' is not host:port"),
    ("named-twice", [*TRAIN, "--workers", "a:1,a:1", "--worker-index", "0"], "names a worker twice"),
    (
        "index-out-of-range",
        [*TRAIN, "--workers", WORKERS, "--worker-index", "2"],
        "--worker-index 2 is out of range for 2 workers",
    ),
    ("index-negative", [*TRAIN, "--workers", WORKERS, "--worker-index", "-1"], "--worker-index -1 is out of range"),
    ("index-alone", [*TRAIN, "--worker-index", "1"], "--worker-index needs --workers"),
    ("workers-without-index", [*TRAIN, "--workers", WORKERS], "--workers needs --worker-index"),
    (
        "port-in-use",
        [*TRAIN, "--workers", f"localhost:{PORTS[2]},localhost:{PORTS[1]}", "--worker-index", "0"],
        f"port {PORTS[2]} of worker 0 (localhost:{PORTS[2]}) is in use",
    ),
    (
        "tf-config-disagrees",
        [*TRAIN, "--workers", WORKERS, "--worker-index", "0"],
        "TF_CONFIG in the environment makes this worker 1",
    ),
    ("tf-config-unreadable", TRAIN, "TF_CONFIG in the environment cannot be read (it is not JSON)"),
    (
        "tf-config-parameter-servers",
        TRAIN,
        "TF_CONFIG in the environment cannot be read (it has jobs other than chief and worker)",
    ),
    (
        "batch-does-not-split",
        [*TRAIN[:4], "10", *TRAIN[5:], "--workers", f"{WORKERS},localhost:{PORTS[2]}", "--worker-index", "0"],
        "batch size 10 does not split evenly across the 3 devices of 3 workers; use a multiple of 3",
    ),
    (
        "with-devices",
        [*TRAIN, "--workers", WORKERS, "--worker-index", "0", "--devices", "CPU:0"],
        "--workers does not take --devices",
    ),
    ("with-xla", [*TRAIN, "--workers", WORKERS, "--worker-index", "0", "--xla"], "--workers does not take --xla"),
]
TF_CONFIGS = {
    "tf-config-disagrees": {"cluster": {"worker": WORKERS.split(",")}, "task": {"type": "worker", "index": 1}},
    "tf-config-unreadable": "{not json",
    "tf-config-parameter-servers": {
        "cluster": {"worker": WORKERS.split(","), "ps": ["c:1"]},
        "task": {"type": "worker", "index": 0},
    },
}


@pytest.mark.parametrize("name, command, message", CASES, ids=[case[0] for case in CASES])
def test_bad_cluster_settings_get_one_line_and_exit_1(tmp_path, name, command, message):
    tf_config = TF_CONFIGS.get(name)
    environment = {"TF_CONFIG": tf_config if isinstance(tf_config, str) else json.dumps(tf_config)} if tf_config else {}
    with socket.socket() as holder:
        holder.bind(("", int(PORTS[2])))  # what holds the port that "port-in-use" gives its worker
        holder.listen()
        result = CliRunner().invoke(main, [part.format(tmp=tmp_path) for part in command], env=environment)
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        f"a traceback escaped: {result.exception!r}"
    )
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and message in lines[0], result.stderr
    assert not (tmp_path / "weights").exists()


def test_each_worker_reads_from_disk_only_its_share_of_each_batch(tmp_path):
    from PIL import Image

    from dcgan.image_folders import ImageFolder
    from dcgan.training import Batches

    class CountingFolder(ImageFolder):
        """The real folder reader, remembering which images it decoded."""

        def _read(self, index):
            self.decoded.append(int(index))
            return super()._read(index)

    rng = np.random.default_rng(0)
    files = []
    for index in range(32):
        files.append(tmp_path / f"{index}.png")
        Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8)).save(files[-1])
    whole = Batches(ImageFolder(files, 8, 1, False), seed=3, batch_size=8, per_step=2)(5)
    for part in (0, 1):
        folder = CountingFolder(files, 8, 1, False)
        folder.decoded = []
        batch = Batches(folder, seed=3, batch_size=8, per_step=2, share=(part, 2)).read(5)
        # Each of the step's two batches of 8: this worker's 4 rows read, the other worker's left zero.
        mine = np.array([(row % 8) // 4 == part for row in range(16)])
        np.testing.assert_array_equal(batch[mine], whole[mine])
        assert not batch[~mine].any() and len(folder.decoded) == 8
