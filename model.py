"""The whole model: a Sampling layer, the encoder, the decoder and the VAE that trains them.

Images are (N, 28, 28, 1) floats in [0, 1]. `vae.encoder(x)` gives (z_mean, z_log_var);
`vae.decoder(z)` gives Bernoulli logits shaped like the images (sigmoid them to see pixels).
"""
import keras
import numpy as np
import tensorflow as tf
from keras import layers, ops

import losses

IMAGE_SHAPE = (28, 28, 1)
ARCHITECTURES = ("dense", "conv")


@keras.saving.register_keras_serializable(package="mnist_vae")
class Sampling(layers.Layer):
    """Reparameterised draw z = z_mean + exp(0.5 * z_log_var) * eps, eps ~ N(0, I).

    Written this way the randomness sits in eps, so gradients flow to z_mean and z_log_var. Training and
    test steps pass eps drawn by the input pipeline (data.py); otherwise (vae(x), a fit on plain arrays)
    the layer draws it from its own seeded generator, whose state is saved with the weights.
    """

    def __init__(self, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs, eps=None):
        z_mean, z_log_var = inputs
        if eps is None:
            eps = keras.random.normal(ops.shape(z_mean), dtype=z_mean.dtype, seed=self.seed_generator)
        return z_mean + ops.exp(0.5 * z_log_var) * ops.cast(eps, z_mean.dtype)

    # Keras saves a layer's weights but not its seed generator's state; without it a reloaded
    # model would repeat draws it already made instead of continuing the stream.
    def save_own_variables(self, store):
        super().save_own_variables(store)
        store["seed_generator_state"] = np.asarray(self.seed_generator.state.value)

    def load_own_variables(self, store):
        if "seed_generator_state" in store.keys():
            self.seed_generator.state.assign(store["seed_generator_state"][...])

    def get_config(self):
        return {**super().get_config(), "seed": self.seed}


def build_encoder(arch="dense", latent_dim=2, hidden=512):
    x = inputs = keras.Input(IMAGE_SHAPE, name="image")
    if arch == "dense":
        x = layers.Flatten()(x)
        x = layers.Dense(hidden, activation="relu", name="hidden")(x)
    elif arch == "conv":
        x = layers.Conv2D(32, 3, strides=2, padding="same", activation="relu")(x)  # 14x14
        x = layers.Conv2D(64, 3, strides=2, padding="same", activation="relu")(x)  # 7x7
        x = layers.Flatten()(x)
    else:
        raise ValueError(f"unknown architecture {arch!r}; choose from {ARCHITECTURES}")
    z_mean = layers.Dense(latent_dim, name="z_mean")(x)
    # The Dense heads keep the compute dtype; the losses cast to float32 themselves.
    z_log_var = layers.Dense(latent_dim, name="z_log_var")(x)
    return keras.Model(inputs, [z_mean, z_log_var], name="encoder")


def build_decoder(arch="dense", latent_dim=2, hidden=512):
    z = inputs = keras.Input((latent_dim,), name="z")
    if arch == "dense":
        x = layers.Dense(hidden, activation="relu", name="hidden")(z)
        x = layers.Dense(28 * 28, name="pixel_logits")(x)
        logits = layers.Reshape(IMAGE_SHAPE)(x)
    elif arch == "conv":
        x = layers.Dense(7 * 7 * 64, activation="relu")(z)
        x = layers.Reshape((7, 7, 64))(x)
        x = layers.Conv2DTranspose(64, 3, strides=2, padding="same", activation="relu")(x)  # 14x14
        x = layers.Conv2DTranspose(32, 3, strides=2, padding="same", activation="relu")(x)  # 28x28
        logits = layers.Conv2DTranspose(1, 3, padding="same", name="pixel_logits")(x)
    else:
        raise ValueError(f"unknown architecture {arch!r}; choose from {ARCHITECTURES}")
    # Logits, not probabilities: the loss is computed stably from them.
    logits = layers.Activation("linear", dtype="float32", name="logits")(logits)
    return keras.Model(inputs, logits, name="decoder")


def _global_batch_size(local_batch_size):
    """Examples in this step across all replicas (just the local count on one device)."""
    ctx = tf.distribute.get_replica_context()
    if ctx is None or ctx.num_replicas_in_sync == 1:
        return local_batch_size
    return ctx.all_reduce(tf.distribute.ReduceOp.SUM, local_batch_size)


def _spans_several_workers():
    """True under a tf.distribute strategy whose replicas live in more than one process (multi-worker)."""
    if not tf.distribute.has_strategy():
        return False
    strategy = tf.distribute.get_strategy()
    return strategy.num_replicas_in_sync > len(strategy.extended.worker_devices)


def _images_and_noise(data):
    """A batch is images, or (images, eps): eps drawn by the input pipeline (see data.py) is split over
    replicas exactly like the images, so any number of devices draws what one device would."""
    if isinstance(data, (tuple, list)):
        return data[0], (data[1] if len(data) > 1 else None)
    return data, None


@keras.saving.register_keras_serializable(package="mnist_vae")
class VAE(keras.Model):
    """Variational autoencoder: loss = mean over the batch of reconstruction + beta * KL."""

    def __init__(self, encoder, decoder, beta=1.0, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.encoder = encoder
        self.decoder = decoder
        self.beta = float(beta)
        self.seed = seed
        self.sampling = Sampling(seed=seed, name="sampling")
        # The KL weight in force; a warm-up schedule may move it from 0 up to beta.
        self.kl_weight = self.add_weight(
            shape=(), initializer=keras.initializers.Constant(self.beta),
            trainable=False, name="kl_weight",
        )
        # Global step at which the loss first stopped being finite (-1: never), so a divergence can be
        # named to the batch even when several steps run per call into TensorFlow.
        self.first_nonfinite_step = self.add_weight(
            shape=(), dtype="int64", initializer="zeros", trainable=False, name="first_nonfinite_step",
            aggregation="only_first_replica",
        )
        self.first_nonfinite_step.assign(-1)
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.reconstruction_tracker = keras.metrics.Mean(name="reconstruction_loss")
        self.kl_tracker = keras.metrics.Mean(name="kl_loss")
        self.built = True  # encoder and decoder are functional models, built already

    @property
    def metrics(self):
        # Listed here so that Keras resets them at the start of every epoch.
        return [self.loss_tracker, self.reconstruction_tracker, self.kl_tracker]

    def call(self, x, training=False):
        z_mean, z_log_var = self.encoder(x, training=training)
        z = self.sampling([z_mean, z_log_var])
        return self.decoder(z, training=training)

    def per_example_losses(self, x, training=False, eps=None):
        """(reconstruction, kl) per image for one z drawn from q(z|x): the single-sample ELBO."""
        z_mean, z_log_var = self.encoder(x, training=training)
        z = self.sampling([z_mean, z_log_var], eps=eps)
        logits = self.decoder(z, training=training)
        return losses.reconstruction_loss(x, logits), losses.kl_divergence(z_mean, z_log_var)

    def _update_metrics(self, reconstruction, kl):
        self.loss_tracker.update_state(losses.negative_elbo(reconstruction, kl, self.kl_weight))
        self.reconstruction_tracker.update_state(reconstruction)
        self.kl_tracker.update_state(kl)
        logs = {m.name: m.result() for m in self.metrics}
        if _spans_several_workers():
            # Keras 3 averages a step's logs across workers with reduce(MEAN, axis=0), which needs an axis
            # to reduce (keras-team/keras#20585). Epoch logs are read from the metrics themselves.
            logs = {name: ops.reshape(value, (1,)) for name, value in logs.items()}
        return logs

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # Under a strategy, Keras 3 builds a model by averaging its first batch over the replicas, which
        # fails for multi-worker (images, eps) batches and for replica batches of unequal size. Encoder and
        # decoder are built in __init__ and build_optimizer() builds the optimizer, so there is nothing to
        # build; otherwise fall back to Keras.
        if self.optimizer is None or not self.optimizer.built:
            super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)

    def build_optimizer(self):
        """Create the optimizer's slots now (call inside the strategy scope, after compile)."""
        self.optimizer.build(self.trainable_variables)

    def train_step(self, data):
        x, eps = _images_and_noise(data)
        with tf.GradientTape() as tape:
            reconstruction, kl = self.per_example_losses(x, training=True, eps=eps)
            per_example = losses.negative_elbo(reconstruction, kl, self.kl_weight)
            # Divide by the GLOBAL batch: replicas' gradients are summed, so every device count
            # (and an uneven split of the batch) gives exactly the single-device mean.
            batch = ops.cast(_global_batch_size(ops.shape(x)[0]), "float32")
            loss = ops.sum(per_example) / batch
            scaled_loss = self.optimizer.scale_loss(loss)  # loss scaling under float16
        grads = tape.gradient(scaled_loss, self.trainable_weights)
        first_bad = ops.logical_and(ops.logical_not(ops.isfinite(loss)), self.first_nonfinite_step < 0)
        self.first_nonfinite_step.assign(
            ops.where(first_bad, ops.cast(self.optimizer.iterations, "int64"), self.first_nonfinite_step))
        self.optimizer.apply(grads, self.trainable_weights)
        return self._update_metrics(reconstruction, kl)

    def test_step(self, data):
        x, eps = _images_and_noise(data)
        # Same single-sample estimate as in training, so train and test numbers compare.
        return self._update_metrics(*self.per_example_losses(x, eps=eps))

    def get_config(self):
        return {
            **super().get_config(),
            "encoder": keras.saving.serialize_keras_object(self.encoder),
            "decoder": keras.saving.serialize_keras_object(self.decoder),
            "beta": self.beta,
            "seed": self.seed,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["encoder"] = keras.saving.deserialize_keras_object(config["encoder"])
        config["decoder"] = keras.saving.deserialize_keras_object(config["decoder"])
        return cls(**config)


def build_vae(arch="dense", latent_dim=2, hidden=512, beta=1.0, seed=None):
    return VAE(
        build_encoder(arch, latent_dim, hidden),
        build_decoder(arch, latent_dim, hidden),
        beta=beta, seed=seed, name="vae",
    )


def kl_weight_at(epoch, beta, warmup_epochs):
    """KL weight for a 0-based epoch: rises linearly from 0 (epoch 0) to beta (epoch warmup_epochs)."""
    return beta if warmup_epochs <= 0 else beta * min(1.0, epoch / warmup_epochs)


class KLWarmup(keras.callbacks.Callback):
    """Sets vae.kl_weight at the start of every epoch from the schedule (a function of the epoch only,
    so resumed runs follow it exactly)."""

    def __init__(self, beta, warmup_epochs):
        super().__init__()
        self.beta, self.warmup_epochs = beta, warmup_epochs

    def on_epoch_begin(self, epoch, logs=None):
        self.model.kl_weight.assign(kl_weight_at(epoch, self.beta, self.warmup_epochs))
