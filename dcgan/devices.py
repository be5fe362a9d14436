"""Where TensorFlow computes: its threads, set so that a seed trains the same weights in any process, and the devices
a run names."""
import tensorflow as tf

from dcgan.errors import UserError


def check_devices(setting):
    """Refuse a device name in the comma-separated `setting` that TensorFlow does not have, or one named twice."""
    devices = setting.split(",")
    present = [device.name.removeprefix("/device:") for device in tf.config.list_logical_devices()]
    named = [name.strip().upper().removeprefix("/DEVICE:").removeprefix("/") for name in devices]
    for name, device in zip(devices, named):
        if device not in present:
            raise UserError(f"--devices {setting}: there is no device {name!r} here; choose from {', '.join(present)}")
    if len(set(named)) < len(named):
        raise UserError(f"--devices {setting} names a device twice; name each once")


def use_threads(count=None):
    """Run TensorFlow's ops one at a time, each on `count` threads (None: every core), and trace steps
    without Grappler's constant folding: both keep a seed training the same weights in any process.

    The threads can be set only before TensorFlow has run anything else. After, `count` is refused; without one,
    ops stay side by side, as TensorFlow started them, and training says that another process may
    not train the same weights.
    """
    # Grappler's constant folding may fold the constants of two traces of the same step in a
    # different order, so their float rounding differs: two trainers with the same seed parted
    # at step 96 with it and stayed identical without it.
    tf.config.optimizer.set_experimental_options({"constant_folding": False})
    try:
        if count:
            tf.config.threading.set_intra_op_parallelism_threads(count)
        # Ops side by side made two processes with the same seed train weights that differ in the
        # last bits, and drift apart from there; one at a time, they train the same.
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:
        if count:
            raise UserError(
                f"cannot switch to {count} threads: TensorFlow already started with "
                f"{tf.config.threading.get_intra_op_parallelism_threads() or 'all'}; set threads before anything else "
                "runs"
            ) from None
        print("TensorFlow started before training, running ops side by side: another process with the same seed "
              "may train slightly different weights (train before anything else runs to make them the same)")
