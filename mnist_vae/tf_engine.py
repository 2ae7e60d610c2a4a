"""TensorFlow's own distribution engine (tf.distribute), and the TensorFlow-only details around it.

train.py's TensorFlow path imports this module: MirroredStrategy over one machine's GPUs,
MultiWorkerMirroredStrategy over the machines that TF_CONFIG names, and two Keras 3 workarounds that
matter only under a tf.distribute strategy, TensorFlow's input pipeline (tf.data) and its op determinism.
"""
import json

from mnist_vae.cli import UserError


class Worker:
    """This process's place in a multi-worker cluster, read from TF_CONFIG (TensorFlow's standard).

    The chief ("chief" task, else worker 0) writes the run folder; every other worker runs the very same
    steps (collective operations need all of them) but writes into a scratch folder it deletes at the end."""

    def __init__(self, tf_config):
        if not tf_config:
            self.type, self.index, self.count, self.chief = "worker", 0, 1, True
            return
        try:
            config = json.loads(tf_config)
            cluster, task = config["cluster"], config["task"]
            self.type, self.index = task["type"], int(task["index"])
            jobs = {name: list(addresses) for name, addresses in cluster.items()}
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise UserError(f"TF_CONFIG is not a valid cluster description ({e.__class__.__name__}: {e}); "
                            'expected {"cluster": {"worker": ["host:port", ...]}, "task": {"type": "worker", '
                            '"index": 0}}') from None
        if set(jobs) - {"chief", "worker"}:
            raise UserError(f"TF_CONFIG has {', '.join(sorted(set(jobs) - {'chief', 'worker'}))} tasks; "
                            "MultiWorkerMirroredStrategy takes only chief and worker tasks")
        if self.type not in jobs or not 0 <= self.index < len(jobs[self.type]):
            raise UserError(f"TF_CONFIG: task {self.type} {self.index} is not in its cluster "
                            f"({', '.join(f'{len(v)} {k}' for k, v in jobs.items())})")
        self.count = sum(len(v) for v in jobs.values())
        self.chief = self.type == "chief" or ("chief" not in jobs and self.index == 0)

    def __str__(self):
        return f"{self.type} {self.index} ({'chief, ' if self.chief else ''}{self.count} processes in all)"


def make_strategy(name):
    """The default strategy (one device), MirroredStrategy or MultiWorkerMirroredStrategy (which must be
    made before TensorFlow runs anything else)."""
    import tensorflow as tf

    if name == "none":
        return tf.distribute.get_strategy()
    kind = {"mirrored": tf.distribute.MirroredStrategy, "multiworker": tf.distribute.MultiWorkerMirroredStrategy}[name]
    strategy = kind()
    print(f"distribute: {kind.__name__} over {strategy.num_replicas_in_sync} replicas")
    return strategy


def prepare_model(vae, strategy, multiworker):
    """Work around two Keras 3 problems that exist only under a tf.distribute strategy.

    - Keras' TensorFlow trainer builds a distributed model by taking one batch and averaging it over the
      replicas (`_maybe_symbolic_build`): that fails for replica batches of unequal size and for
      multi-worker dict batches, and would consume a batch. train.py builds the model and the optimizer
      before fit, so there is nothing left to build.
    - Keras averages a step's logs across workers with reduce(MEAN, axis=0), which needs an axis to reduce
      (keras-team/keras#20585): under multi-worker the step's logs get a length-1 axis. Epoch logs are read
      from the metrics themselves and stay scalars.
    """
    if strategy.num_replicas_in_sync == 1 and not multiworker:
        return
    vae._maybe_symbolic_build = lambda iterator=None, data_batch=None: None
    if multiworker:
        from keras import ops

        compute_metrics = vae.compute_metrics

        def compute_metrics_with_axis(*args, **kwargs):
            return {name: ops.reshape(value, (1,)) for name, value in compute_metrics(*args, **kwargs).items()}

        vae.compute_metrics = compute_metrics_with_axis


def has_gpu():
    import tensorflow as tf

    return bool(tf.config.list_physical_devices("GPU"))


def is_lost_worker(error):
    """True for the error TensorFlow raises when another worker of the cluster stopped or vanished."""
    import tensorflow as tf

    return isinstance(error, tf.errors.OpError)


def deterministic_ops():
    import tensorflow as tf

    tf.config.experimental.enable_op_determinism()


def mirrored(model):
    """Whether a model's weights are copies mirrored over a tf.distribute strategy's replicas."""
    import tensorflow as tf

    return any(isinstance(w.value, tf.distribute.DistributedValues) for w in model.weights[:1])


def op_determinism_enabled():
    """Whether TensorFlow's op determinism is on in this process (Keras then refuses XLA, with a warning)."""
    from tensorflow.python.framework.config import is_op_determinism_enabled  # what Keras itself asks

    return is_op_determinism_enabled()


def train_dataset(images, batch_size, seed, epochs, initial_epoch=0, dynamic_binarization=False, noise_dim=None,
                  labels=None):
    """The batches of pipeline.train_batches as a tf.data pipeline, value for value.

    Keras feeds TensorFlow a Python generator through tf.data's from_generator, which was slower than
    in-memory tensors (docs/performance.md), even when Python is called only once per epoch. So NumPy draws
    each epoch whole (pipeline.epoch_arrays) through a numpy_function, and tf.data cuts, scales and prefetches
    the batches.
    """
    import numpy as np
    import tensorflow as tf

    from mnist_vae import pipeline

    keys = ("image", "weight") + (("eps",) if noise_dim is not None else ())
    keys += ("label",) if labels is not None else ()

    def arrays_of(epoch):
        arrays = pipeline.epoch_arrays(images, batch_size, seed, int(epoch), dynamic_binarization, noise_dim, labels)
        return tuple(arrays[k] for k in keys)

    shapes = {"image": (None,) + images.shape[1:], "eps": (None, *np.atleast_1d(noise_dim)), "weight": (None,),
              "label": (None,)}

    def batches_of(epoch):
        dtypes = [tf.uint8 if k in ("image", "label") else tf.float32 for k in keys]
        arrays = tf.numpy_function(arrays_of, [epoch], dtypes)
        for key, array in zip(keys, arrays):
            array.set_shape(shapes[key])
        return tf.data.Dataset.from_tensor_slices(dict(zip(keys, arrays))).batch(batch_size)

    def scaled(batch):  # the same float32 division as data.as_float
        return ({**batch, "image": tf.cast(batch["image"], tf.float32) / 255.0},)

    ds = tf.data.Dataset.range(initial_epoch, epochs).flat_map(batches_of)
    return ds.map(scaled, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


class _NotRetracing:
    """Drops TensorFlow's "triggered tf.function retracing" warning. It counts calls to Keras' predict step
    across models: the evaluation compiles a few small models, each traced once for one shape, and TensorFlow
    reads that as one function retraced. Every other TensorFlow message passes."""

    def filter(self, record):
        return "triggered tf.function retracing" not in record.getMessage()


def quiet_retracing_warnings():
    import logging

    logger = logging.getLogger("tensorflow")
    if not any(isinstance(f, _NotRetracing) for f in logger.filters):
        logger.addFilter(_NotRetracing())


def probe_half_precision():
    """Run one float16 matmul on a CPU-only machine, while cli.quiet_start_up holds the console: oneDNN says
    once per process, at its first float16 kernel, that a CPU without AVX-512 falls back to Eigen; said here,
    that line is start-up chatter, not a line in the middle of training or evaluation. (Never on a GPU
    machine: a TensorFlow op there would claim the GPU's memory that another backend may need.)"""
    import tensorflow as tf

    if not has_gpu():
        tf.matmul(tf.ones((2, 2), tf.float16), tf.ones((2, 2), tf.float16))
