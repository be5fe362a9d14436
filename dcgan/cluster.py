"""Training across machines: one run on several worker processes, joined by TensorFlow's
MultiWorkerMirroredStrategy, which all-reduces gradients and batch-norm statistics between them over gRPC.

Every worker runs the same `dcgan train` command with `--workers host:port,...` and its own
`--worker-index` (or a TF_CONFIG that says the same); worker 0 is the chief, the only one that
writes the run's files. Each step's batch is the one a single process would train on, split
evenly across every worker's devices.

TensorFlow is imported only where it is used: TrainConfig.check() reads the cluster settings before it starts.
"""
import dataclasses
import functools
import json
import os
import re
import signal
import socket
import time

from dcgan.errors import UserError

# How long a worker waits for all the others to start before it gives up: time to start the command on each machine.
JOIN_SECONDS = 120.0
MEETING_SECONDS, MEETING_BYTES = 5.0, 65_536  # what one caller on the meeting port may take: its settings fit
# Options that --workers cannot take, and why.
UNSUPPORTED = {
    "devices": "each worker uses all of its machine's GPUs (choose them with CUDA_VISIBLE_DEVICES)",
    "xla": "XLA's compiled steps are not tested across workers",
}


@dataclasses.dataclass(frozen=True)
class Cluster:
    """The worker processes of a run, by address ("host:port"), and which of them this process is."""

    workers: tuple[str, ...]
    index: int

    @property
    def chief(self):
        """Whether this process writes the run's files: worker 0."""
        return self.index == 0

    def name(self, index):
        return f"worker {index} ({self.workers[index]})"


def cluster_of(config):
    """The cluster `config` trains in, from its `workers` and `worker_index` or else the environment's TF_CONFIG;
    None for a run in one process. Raises a UserError for a setting that cannot work."""
    from_environment = _tf_config_cluster(os.environ.get("TF_CONFIG"))
    if config.workers is None and config.worker_index is None:
        cluster = from_environment
    else:
        if config.workers is None and from_environment is None:
            raise UserError("--worker-index needs --workers, the list of every worker's host:port")
        workers = _parse_workers(config.workers) if config.workers is not None else from_environment.workers
        index = config.worker_index if config.worker_index is not None else getattr(from_environment, "index", None)
        if index is None:
            raise UserError("--workers needs --worker-index: which of the workers this is, 0 (the chief) to "
                            f"{len(workers) - 1}, a different one on each machine")
        if not 0 <= index < len(workers):
            raise UserError(
                f"--worker-index {index} is out of range for {len(workers)} workers; give 0 (the chief) to "
                f"{len(workers) - 1}"
            )
        cluster = Cluster(workers, index)
        if from_environment is not None and from_environment != cluster:
            raise UserError(f"TF_CONFIG in the environment makes this worker {from_environment.index} of "
                            f"{','.join(from_environment.workers)}, the options worker {index} of {','.join(workers)}; "
                            "give one of them (unset TF_CONFIG, or leave out --workers and --worker-index)")
    if cluster is not None:
        for name, why in UNSUPPORTED.items():
            if getattr(config, name):
                raise UserError(f"--workers does not take --{name}: {why}; leave out --{name}")
    return cluster


def share_of(size, part, parts):
    """The rows of a batch of `size` that `part` of `parts` trains on: a worker's of the workers, a device's of
    every worker's devices (in that order, so a worker's devices share its rows). The one place that says so."""
    each = size // parts
    return slice(part * each, (part + 1) * each)


def check_split(batch_size, parts, where):
    """Refuse a batch that does not split evenly across `parts` (`where`, in words)."""
    if batch_size % parts:
        raise UserError(f"batch size {batch_size} does not split evenly across {where}; use a multiple of {parts}")


def _parse_workers(text):
    workers = tuple(part.strip() for part in text.split(","))
    for address in workers:
        if not re.fullmatch(r"[A-Za-z0-9.\-]+:\d{1,5}", address) or not 0 < int(address.rsplit(":", 1)[1]) < 65536:
            raise UserError(f"--workers {text}: {address!r} is not host:port; give every worker's address, "
                            "comma-separated, such as 10.0.0.1:2222,10.0.0.2:2222")
    if len(set(workers)) < len(workers):
        raise UserError(f"--workers {text} names a worker twice; give each worker's host:port once")
    return workers


def _tf_config_cluster(text):
    """The cluster a TF_CONFIG describes: its "worker" job, after its "chief" if it has one (the chief is worker 0)."""
    if not text:
        return None
    problem = "it is not JSON"
    try:
        spec = json.loads(text)
        jobs, task = spec["cluster"], spec["task"]
        problem = "it has jobs other than chief and worker" if set(jobs) - {"chief", "worker"} else None
        workers = tuple(jobs.get("chief", [])) + tuple(jobs.get("worker", []))
        index = task["index"] + (len(jobs.get("chief", [])) if task["type"] == "worker" else 0)
        if problem is None and (task["type"] not in jobs or not 0 <= task["index"] < len(jobs[task["type"]])):
            problem = "its task is not one of its cluster's"
        if problem is None:
            return Cluster(_parse_workers(",".join(workers)), index)
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
        pass
    raise UserError(f"TF_CONFIG in the environment cannot be read ({problem}); it must be like "
                    '{"cluster": {"worker": ["host:2222", "host2:2222"]}, "task": {"type": "worker", "index": 0}}, '
                    "or unset it and give --workers and --worker-index")


def settings_digest(config):
    """What every worker must run alike, as text: the run's settings and the versions of dcgan's parts."""
    import keras
    import tensorflow as tf

    from dcgan.config import PER_WORKER_SETTINGS  # the others may differ from machine to machine

    settings = {name: value for name, value in dataclasses.asdict(config).items() if name not in PER_WORKER_SETTINGS}
    return json.dumps({**settings, "tensorflow": tf.__version__, "keras": keras.__version__}, sort_keys=True)


@functools.cache
def join(cluster, digest, wait=JOIN_SECONDS):
    """Wait for every worker of `cluster` to start with the same settings (`digest`), then join them:
    the MultiWorkerMirroredStrategy that trains on all of them. Once per process.

    TensorFlow's own wait for the others cannot be bounded or interrupted, so the workers first meet
    on their ports here, in Python, where a missing worker, a port in use and other settings are
    one-line errors.
    """
    _meet(cluster, digest, wait)
    import tensorflow as tf

    resolver = tf.distribute.cluster_resolver.SimpleClusterResolver(
        tf.train.ClusterSpec({"worker": list(cluster.workers)}), task_type="worker", task_id=cluster.index,
        num_accelerators={"GPU": len(tf.config.list_physical_devices("GPU"))}, rpc_layer="grpc")
    strategy = tf.distribute.MultiWorkerMirroredStrategy(cluster_resolver=resolver)
    # TensorFlow takes SIGTERM for its preemption notices; give it back, so that it stops training as Ctrl-C does.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    return strategy


def _meet(cluster, digest, wait):
    """Listen on this worker's port and call every other's until each has heard from all the others."""
    port = int(cluster.workers[cluster.index].rsplit(":", 1)[1])
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind(("", port))
    except OSError as error:
        listener.close()
        raise UserError(f"port {port} of {cluster.name(cluster.index)} is in use ({error.strerror}); "
                        "stop what holds it, or give this worker another port in --workers on every machine") from None
    others = set(range(len(cluster.workers))) - {cluster.index}
    heard, reached = set(), set()
    deadline = time.monotonic() + wait
    with listener:
        listener.listen()
        listener.settimeout(0.2)
        while heard != others or reached != others:
            if time.monotonic() > deadline:
                missing = sorted(others - (heard & reached))
                raise UserError(f"{', '.join(cluster.name(i) for i in missing)} did not answer within {wait:.0f} s; "
                                "start the same dcgan train command on every worker, each with its own --worker-index")
            try:
                connection, _ = listener.accept()
                with connection:
                    index, their_digest = json.loads(_first_line(connection))
                if index in others:
                    _check_same(cluster, index, their_digest, digest)
                    heard.add(index)
            except (OSError, ValueError, TypeError, AttributeError, RecursionError):
                pass  # nobody called yet, a caller that hung up or was too slow, or not a worker
            for index in sorted(others - reached):
                try:
                    with socket.create_connection(_host_port(cluster.workers[index]), timeout=1) as connection:
                        connection.sendall((json.dumps([cluster.index, digest]) + "\n").encode())
                    reached.add(index)
                except OSError:
                    pass  # not started yet


def _first_line(connection):
    """The first line a caller sends, within MEETING_BYTES and MEETING_SECONDS: a caller that trickles bytes or
    sends without end is cut off, so it cannot hold this worker past its wait."""
    deadline, data = time.monotonic() + MEETING_SECONDS, b""
    while b"\n" not in data:
        left = deadline - time.monotonic()
        if left <= 0 or len(data) > MEETING_BYTES:
            raise ValueError("too slow or too long to be a worker")
        connection.settimeout(left)
        chunk = connection.recv(4096)
        if not chunk:
            break
        data += chunk
    return data.split(b"\n")[0].decode()


def _check_same(cluster, index, their_digest, digest):
    if their_digest == digest:
        return
    theirs, ours = json.loads(their_digest), json.loads(digest)
    differ = sorted(name for name in {*theirs, *ours} if theirs.get(name) != ours.get(name))
    raise UserError(f"{cluster.name(index)} runs with other settings than {cluster.name(cluster.index)} "
                    f"({', '.join(differ)}); run the same command, data and versions on every worker")


def _host_port(address):
    host, port = address.rsplit(":", 1)
    return host, int(port)


def local_workers(count):
    """A --workers list of `count` free ports on this machine: to try several workers on one machine."""
    sockets = [socket.socket() for _ in range(count)]
    for each in sockets:
        each.bind(("localhost", 0))
    ports = [each.getsockname()[1] for each in sockets]
    for each in sockets:
        each.close()
    return ",".join(f"localhost:{port}" for port in ports)


def lost_worker(cluster, error):
    """The worker a TensorFlow error of a collective blames, as words: one that stopped answering."""
    task = re.search(r"task:(\d+)", str(error))
    if task:
        return cluster.name(int(task.group(1)))
    if "CoordinationService" in str(error):  # this worker's heartbeats to the chief, which leads, went unanswered
        return cluster.name(0)
    return "another worker"


class Agreement:
    """What the workers of a run decide together, by all-reducing each one's say."""

    def __init__(self, strategy):
        import tensorflow as tf

        self._sum = tf.function(lambda say: strategy.reduce("SUM", strategy.run(tf.identity, args=(say,)), axis=None))
        self._gather = tf.function(lambda say: strategy.gather(strategy.run(tf.identity, args=(say,)), axis=0))

    def __call__(self, ends, signal_number):
        """After a step: whether the run ends there (any worker's time is up), and the signal, if any worker
        got one, that stops them all there (SIGINT before SIGTERM)."""
        import tensorflow as tf

        say = [float(ends), float(signal_number == signal.SIGINT), float(signal_number == signal.SIGTERM)]
        ends, interrupted, terminated = self._sum(tf.constant(say)).numpy() > 0
        return bool(ends), signal.SIGINT if interrupted else signal.SIGTERM if terminated else None

    def on_start(self, step, elapsed, cluster):
        """Refuse to train unless every worker starts from the same step (resuming, all read the chief's folder);
        returns the chief's `elapsed` seconds of training, which every worker counts its --minutes from."""
        import tensorflow as tf

        said = self._gather(tf.constant([[step, elapsed]], tf.float64)).numpy()
        per_worker = len(said) // len(cluster.workers)  # the chief's devices first, then worker 1's, ...
        starts = [int(start) for start in said[::per_worker, 0]]
        if len(set(starts)) > 1:
            raise UserError(
                f"the workers start from different steps "
                f"({', '.join(f'worker {i}: {s}' for i, s in enumerate(starts))}); "
                "to resume, each must read the chief's weights folder: put it where every worker reads it"
            )
        return elapsed if cluster.chief else float(said[0, 1])
