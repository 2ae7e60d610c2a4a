"""Several devices or machines, each through the engine its backend offers: tf.distribute on TensorFlow
(see tf_engine.py), Keras' own distribution API (DataParallel) on JAX. Nothing here is home-made:
this module only picks the engine, says what it supports, and tells train.py how to feed it."""
import contextlib
import os

from mnist_vae.backends import has_gpu
from mnist_vae.cli import UserError

SUPPORTED = {"tensorflow": ("none", "mirrored", "multiworker"), "jax": ("none", "mirrored"), "torch": ("none",)}


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
            from mnist_vae import tf_engine

            self.worker = tf_engine.Worker(os.environ.get("TF_CONFIG") if name == "multiworker" else None)
            self.chief = self.worker.chief
        self.multiworker = name == "multiworker"

    def start(self, deterministic=False):
        """Start the engine (after the backend is chosen, before any model exists); with deterministic,
        ask the backend for ops that repeat bit for bit on any device."""
        if deterministic and self.backend == "jax":  # read when JAX starts
            os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_gpu_deterministic_ops=true").strip()
        if self.backend == "tensorflow":
            from mnist_vae import tf_engine

            if self.multiworker:
                print(f"cluster: this process is {self.worker}")
            self.strategy = tf_engine.make_strategy(self.name)
            tf_engine.probe_half_precision()  # TensorFlow's first op: after the strategy set up its collectives
            self.replicas = self.strategy.num_replicas_in_sync
            if deterministic:
                tf_engine.deterministic_ops()
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
        on every backend (pipeline.train_batches; on TensorFlow as a tf.data pipeline, tf_engine.py)."""
        from mnist_vae import pipeline

        stream, steps = pipeline.train_batches(images, batch_size, seed, epochs, initial_epoch, dynamic_binarization,
                                           noise_dim, pad_to=self.pad_to, labels=labels)
        if self.backend == "tensorflow":
            from mnist_vae import tf_engine

            stream = tf_engine.train_dataset(images, batch_size, seed, epochs, initial_epoch, dynamic_binarization,
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
            from mnist_vae import tf_engine

            tf_engine.prepare_model(vae, self.strategy, self.multiworker)

    def is_lost_worker(self, error):
        if not self.multiworker:
            return False
        from mnist_vae import tf_engine

        return tf_engine.is_lost_worker(error)


