"""Where TensorFlow computes: its threads, set so that a seed trains the same weights in any process, the devices
a run names, and batch norm's statistics over a batch split across them."""
import functools

import keras
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


def batch_norms(model):
    """The batch norm layers of `model` and of the models inside it (a conditional or semi-supervised
    discriminator's body)."""
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            yield layer
        elif isinstance(layer, keras.Model):
            yield from batch_norms(layer)


def pool_batch_statistics(model):
    """Make each batch norm of `model` normalize by the statistics of the whole batch when it is split across
    devices or workers, computed as one device computes them.

    Keras's own `synchronized=True` pools them but takes the variance as E[x²] - E[x]², whose float
    rounding differs from one device's mean of squared distances; Adam turns that into weights 5e-4
    apart after three steps, where one device at another thread count differs by 2e-5. The layers
    stay plain `BatchNormalization` (what a saved model holds, loadable anywhere); only their
    statistics in training are replaced, in this process."""
    for layer in batch_norms(model):
        layer._moments = functools.partial(_whole_batch_moments, layer)


def _whole_batch_moments(layer, inputs, mask):
    """tf.nn.moments over the whole batch across the replicas: the mean, then the mean squared distance from it."""
    if mask is not None:
        raise ValueError("dcgan's batch norm takes no mask")
    context = tf.distribute.get_replica_context()
    axes = layer._reduction_axes
    values = tf.cast(inputs, tf.float32)  # float16's range is too narrow for statistics, as Keras's own moments say

    def whole_batch_mean(tensor):
        total, count = context.all_reduce("SUM", [tf.reduce_sum(tensor, axes), _count(tensor, axes)])
        return total / count

    mean = whole_batch_mean(values)
    variance = whole_batch_mean(tf.math.squared_difference(values, tf.stop_gradient(mean)))
    return tf.cast(mean, inputs.dtype), tf.cast(variance, inputs.dtype)


def _count(tensor, axes):
    return tf.cast(tf.reduce_prod(tf.gather(tf.shape(tensor), axes)), tf.float32)
