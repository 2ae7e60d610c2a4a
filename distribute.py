"""Several devices or machines, each through the engine its backend offers: tf.distribute on TensorFlow
(see tf_backend.py), Keras' own distribution API (DataParallel) on JAX. Nothing here is home-made:
this module only picks the engine, says what it supports, and tells train.py how to feed it."""
import contextlib
import importlib.util
import os

from cli import UserError, quiet_start_up

SUPPORTED = {"tensorflow": ("none", "mirrored", "multiworker"), "jax": ("none", "mirrored"), "torch": ("none",)}


def start_keras():
    """Import Keras with the native start-up lines held back (cli.quiet_start_up): Keras loads TensorFlow
    on every backend (for its data tools), and TensorFlow probes for CUDA as it starts; both happen here."""
    with quiet_start_up():
        import keras

        if importlib.util.find_spec("tensorflow") is not None:
            import tf_backend

            tf_backend.has_gpu()
    return keras


class Devices:
    """Where one run computes. `scope()` wraps model and optimizer creation; `pad_to` is the multiple every
    batch is padded to (with zero-weight rows) for engines that need equal shares per device."""

    def __init__(self, backend, name="none"):
        if name not in SUPPORTED[backend]:
            supported = ", ".join(f"{b}: {'/'.join(v)}" for b, v in SUPPORTED.items())
            raise UserError(f"--distribute {name} is not available on the {backend} backend (supported: {supported})")
        self.backend, self.name = backend, name
        self.replicas, self.pad_to, self.chief, self.worker = 1, 1, True, None
        self.strategy, self.gpu = None, False
        if backend == "tensorflow":
            import tf_backend

            self.worker = tf_backend.Worker(os.environ.get("TF_CONFIG") if name == "multiworker" else None)
            self.chief = self.worker.chief
        self.multiworker = name == "multiworker"

    def start(self, deterministic=False):
        """Start the engine (after the backend is chosen, before any model exists); with deterministic,
        ask the backend for ops that repeat bit for bit on any device."""
        if deterministic and self.backend == "jax":  # read when JAX starts
            os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_gpu_deterministic_ops=true").strip()
        if self.backend == "tensorflow":
            import tf_backend

            if self.multiworker:
                print(f"cluster: this process is {self.worker}")
            self.strategy = tf_backend.make_strategy(self.name)
            self.replicas = self.strategy.num_replicas_in_sync
            if deterministic:
                tf_backend.deterministic_ops()
        elif self.backend == "torch" and deterministic:
            import torch

            torch.use_deterministic_algorithms(True)
        elif self.backend == "jax" and self.name == "mirrored":
            import keras

            devices = keras.distribution.list_devices()
            keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices))
            self.replicas = self.pad_to = len(devices)
            print(f"distribute: keras.distribution.DataParallel over {len(devices)} devices")
        self.gpu = has_gpu(self.backend)

    def training_batches(self, images, batch_size, seed, epochs, initial_epoch=0, dynamic_binarization=False,
                         noise_dim=None, labels=None):
        """(the training batches in the form this engine takes fastest, steps per epoch): the same values
        on every backend (data.train_batches; on TensorFlow as a tf.data pipeline, tf_backend.py)."""
        import data

        stream, steps = data.train_batches(images, batch_size, seed, epochs, initial_epoch, dynamic_binarization,
                                           noise_dim, pad_to=self.pad_to, labels=labels)
        if self.backend == "tensorflow":
            import tf_backend

            stream = tf_backend.train_dataset(images, batch_size, seed, epochs, initial_epoch, dynamic_binarization,
                                              noise_dim, labels)
        return stream, steps

    def scope(self):
        return self.strategy.scope() if self.strategy is not None else contextlib.nullcontext()

    @property
    def in_sync(self):
        """True when the replicas' steps are tied together by tf.distribute's collectives."""
        return self.strategy is not None and (self.replicas > 1 or self.multiworker)

    def prepare(self, vae):
        if self.backend == "tensorflow":
            import tf_backend

            tf_backend.prepare_model(vae, self.strategy, self.multiworker)

    def is_lost_worker(self, error):
        if not self.multiworker:
            return False
        import tf_backend

        return tf_backend.is_lost_worker(error)


def has_gpu(backend):
    if backend == "tensorflow":
        import tf_backend

        return tf_backend.has_gpu()
    if backend == "jax":
        import jax

        return jax.default_backend() == "gpu"
    import torch

    return torch.cuda.is_available()
