"""The whole model: a Sampling layer, the encoder, the decoder and the VAE that trains them.

Images are (N, 28, 28, 1) floats in [0, 1]. `vae.encoder(x)` gives (z_mean, z_log_var);
`vae.decoder(z)` gives per-pixel logits shaped like the images: the parameter of a Bernoulli, or of a
continuous Bernoulli (likelihood="continuous-bernoulli"); losses.pixel_means turns them into pixels to see.
A conditional VAE (conditional=True) also feeds both the digit's one-hot label: `vae.encoder([x, y])`,
`vae.decoder([z, y])`; encoder_inputs / decoder_inputs below build either form. Its prior stays N(0, I):
z holds the style, the label the digit, and the bound is on log p(x | y).
"""
import keras
import numpy as np
from keras import layers, ops

import losses

IMAGE_SHAPE = (28, 28, 1)
ARCHITECTURES = ("dense", "conv")
LOSS_TERMS = ("loss", "reconstruction_loss", "kl_loss")  # per image: loss = reconstruction + beta * KL
OBJECTIVES = ("elbo", "iwae")
ACTIVATIONS = ("relu", "tanh", "gated")  # of the dense hidden layers
CLASSES = 10  # digits, for the conditional model


def hidden_sizes(hidden):
    """The dense hidden layers' widths, encoder side: 512 -> (512,), "200,200" or [200, 200] -> (200, 200).
    The decoder mirrors them."""
    if isinstance(hidden, str):
        hidden = hidden.split(",")
    return tuple(int(width) for width in (hidden if isinstance(hidden, (list, tuple)) else [hidden]))


def _dense_stack(x, hidden, activation):
    for i, width in enumerate(hidden):  # hidden, hidden_2, ...: the names saved models carry
        name = "hidden" if i == 0 else f"hidden_{i + 1}"
        if activation == "gated":  # (W x + b) * sigmoid(V x + c): the gated layers of the VampPrior's recipe
            x = layers.Multiply(name=name)([layers.Dense(width, name=f"{name}_linear")(x),
                                            layers.Dense(width, activation="sigmoid", name=f"{name}_gate")(x)])
        else:
            x = layers.Dense(width, activation=activation, name=name)(x)
    return x


def one_hot(labels):
    """Digit labels (N,) -> float32 one-hot rows (N, 10), in NumPy."""
    return np.eye(CLASSES, dtype=np.float32)[np.asarray(labels, dtype=np.int64)]


def encoder_inputs(vae, images, labels=None):
    """What vae.encoder takes: the images, and for a conditional model their one-hot labels too."""
    return [images, one_hot(labels)] if vae.conditional else images


def decoder_inputs(vae, z, labels=None):
    """What vae.decoder takes: z, and for a conditional model the one-hot labels to draw."""
    return [z, one_hot(labels)] if vae.conditional else z


def noise_shape(latent_dim, objective="elbo", k=1):
    """The reparameterisation noise one image needs: (latent_dim,) for the ELBO, (k, latent_dim) for IWAE."""
    return (k, latent_dim) if objective == "iwae" else (latent_dim,)


@keras.saving.register_keras_serializable(package="mnist_vae")
class Clamp(layers.Layer):
    """Clips its input to [low, high] (a hard tanh): the VampPrior recipe bounds z_log_var to [-6, 2] so that,
    while a KL warm-up leaves the variances almost unpenalised, no posterior (nor the learned prior's
    components, which are posteriors too) collapses to a point. Outside the range the gradient is zero."""

    def __init__(self, low, high, **kwargs):
        super().__init__(**kwargs)
        self.low, self.high = float(low), float(high)

    def call(self, x):
        return ops.clip(x, self.low, self.high)

    def get_config(self):
        return {**super().get_config(), "low": self.low, "high": self.high}


@keras.saving.register_keras_serializable(package="mnist_vae")
class Sampling(layers.Layer):
    """Reparameterised draw z = z_mean + exp(0.5 * z_log_var) * eps, eps ~ N(0, I).

    Written this way the randomness sits in eps, so gradients flow to z_mean and z_log_var. Training and
    test batches carry eps drawn by data.py; otherwise (vae(images), a fit on plain arrays) the layer
    draws it from its own seeded generator, whose state is saved with the weights.
    """

    def __init__(self, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.built = True  # nothing to build: Keras never needs a data batch to build it

    def call(self, inputs, eps=None, samples=None):
        """z shaped like z_mean; with eps of shape (N, k, d) or samples=k, k draws per row: (N, k, d)."""
        z_mean, z_log_var = inputs
        if eps is None:
            shape = ops.shape(z_mean) if samples is None else (ops.shape(z_mean)[0], samples, ops.shape(z_mean)[1])
            eps = keras.random.normal(shape, dtype=z_mean.dtype, seed=self.seed_generator)
        if len(eps.shape) == 3:
            z_mean, z_log_var = ops.expand_dims(z_mean, 1), ops.expand_dims(z_log_var, 1)
        return losses.reparameterize(z_mean, z_log_var, eps)

    # Keras saves a layer's weights but not its seed generator's state; without it a reloaded
    # model would repeat draws it already made instead of continuing the stream.
    def save_own_variables(self, store):
        super().save_own_variables(store)
        store["seed_generator_state"] = ops.convert_to_numpy(self.seed_generator.state.value)

    def load_own_variables(self, store):
        if "seed_generator_state" in store.keys():
            self.seed_generator.state.assign(store["seed_generator_state"][...])

    def get_config(self):
        return {**super().get_config(), "seed": self.seed}


def build_encoder(arch="dense", latent_dim=2, hidden=512, conditional=False, activation="relu", log_var_range=None):
    x = image = keras.Input(IMAGE_SHAPE, name="image")
    label = keras.Input((CLASSES,), name="label") if conditional else None
    if arch == "dense":
        x = layers.Flatten()(x)
        if conditional:  # the label joins the pixels before the hidden layer
            x = layers.Concatenate()([x, label])
        x = _dense_stack(x, hidden_sizes(hidden), activation)
    elif arch == "conv":
        x = layers.Conv2D(32, 3, strides=2, padding="same", activation="relu")(x)  # 14x14
        x = layers.Conv2D(64, 3, strides=2, padding="same", activation="relu")(x)  # 7x7
        x = layers.Flatten()(x)
        if conditional:  # ... and the convolutions' features before the heads
            x = layers.Concatenate()([x, label])
    else:
        raise ValueError(f"unknown architecture {arch!r}; choose from {ARCHITECTURES}")
    inputs = [image, label] if conditional else image
    z_mean = layers.Dense(latent_dim, name="z_mean")(x)
    # The Dense heads keep the compute dtype; the losses cast to float32 themselves.
    z_log_var = layers.Dense(latent_dim, name="z_log_var" if log_var_range is None else "z_log_var_unclamped")(x)
    if log_var_range is not None:  # (low, high)
        z_log_var = Clamp(*log_var_range, name="z_log_var")(z_log_var)
    return keras.Model(inputs, [z_mean, z_log_var], name="encoder")


def build_decoder(arch="dense", latent_dim=2, hidden=512, conditional=False, activation="relu"):
    z = keras.Input((latent_dim,), name="z")
    inputs = z
    if conditional:  # the digit to draw joins z
        label = keras.Input((CLASSES,), name="label")
        inputs, z = [z, label], layers.Concatenate()([z, label])
    if arch == "dense":
        x = _dense_stack(z, hidden_sizes(hidden)[::-1], activation)
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


@keras.saving.register_keras_serializable(package="mnist_vae")
class VAE(keras.Model):
    """Variational autoencoder: loss = reconstruction + beta * KL per image, averaged over the batch
    (objective "elbo"), or the negative importance-weighted bound with k samples per image ("iwae").

    Written once for every Keras backend: the forward pass is `call`, the loss is `compute_loss`, and
    Keras' own trainer (TensorFlow, JAX or PyTorch) takes the gradients and applies the optimizer.
    """

    def __init__(self, encoder, decoder, beta=1.0, seed=None, objective="elbo", k=1, conditional=False,
                 likelihood="bernoulli", **kwargs):
        super().__init__(**kwargs)
        if objective not in OBJECTIVES:
            raise ValueError(f"unknown objective {objective!r}; choose from {OBJECTIVES}")
        if likelihood not in losses.LIKELIHOODS:
            raise ValueError(f"unknown likelihood {likelihood!r}; choose from {losses.LIKELIHOODS}")
        self.likelihood = likelihood  # of p(x|z): what the decoder's logits parameterise
        self.encoder = encoder
        self.decoder = decoder
        self.beta = float(beta)
        self.seed = seed
        self.objective, self.k, self.conditional = objective, int(k), bool(conditional)
        self.sampling = Sampling(seed=seed, name="sampling")
        # The KL weight in force; a warm-up schedule may move it from 0 up to beta.
        self.kl_weight = self.add_weight(
            shape=(), initializer=keras.initializers.Constant(self.beta),
            trainable=False, name="kl_weight",
        )
        # Saved with the model for the program that trains it (mnist_vae/build.py records them): training steps
        # taken, and the first at which the loss stopped being finite (-1: never).
        self.steps_taken = self.add_weight(shape=(), dtype="int32", initializer="zeros", trainable=False,
                                           name="steps_taken", aggregation="only_first_replica")
        self.first_nonfinite_step = self.add_weight(shape=(), dtype="int32", initializer="zeros",
                                                    trainable=False, name="first_nonfinite_step",
                                                    aggregation="only_first_replica")
        self.first_nonfinite_step.assign(-1)
        self.trackers = {name: keras.metrics.Mean(name=name) for name in LOSS_TERMS}
        self.built = True  # encoder and decoder are functional models, built already

    @property
    def metrics(self):
        # Listed here so that Keras resets them at the start of every epoch and logs them.
        return list(self.trackers.values())

    def call(self, inputs, training=False):
        """inputs: images (N, 28, 28, 1) in [0, 1], or a batch {"image", "eps", "weight", "label"} from data.py
        whose eps is the noise to draw z with: (N, d) for one z per image, (N, k, d) for k. A conditional
        model needs the batch's "label" (digits). Returns the decoder's logits (one row per z), z, and
        q(z|x)'s parameters."""
        if isinstance(inputs, dict):
            images, eps, labels = inputs["image"], inputs.get("eps"), inputs.get("label")
        else:
            images, eps, labels = inputs, None, None
        y = None
        if self.conditional:
            if labels is None:
                raise ValueError("a conditional VAE needs the digits' labels: call it with "
                                 "{'image': ..., 'label': ...}")
            y = ops.one_hot(ops.cast(labels, "int32"), CLASSES)
        z_mean, z_log_var = self.encoder([images, y] if self.conditional else images, training=training)
        samples = self.k if eps is None and self.objective == "iwae" else None
        z = self.sampling([z_mean, z_log_var], eps=eps, samples=samples)
        z_rows = z
        if len(z.shape) == 3:  # k draws per image, decoded as rows image by image
            k = z.shape[1]
            z_rows = ops.reshape(z, (-1, z.shape[-1]))
            y = ops.repeat(y, k, axis=0) if y is not None else None
        logits = self.decoder([z_rows, y] if self.conditional else z_rows, training=training)
        return {"logits": logits, "z": z, "z_mean": z_mean, "z_log_var": z_log_var}

    def loss_terms(self, inputs, outputs):
        """(reconstruction, kl, loss) per image for the forward pass outputs = self(inputs): the single-sample
        ELBO's terms (with k draws, the mean of their reconstructions) and the objective at the current KL
        weight."""
        images = inputs["image"] if isinstance(inputs, dict) else inputs
        z, z_mean, z_log_var, kl_weight = outputs["z"], outputs["z_mean"], outputs["z_log_var"], self.kl_weight.value
        kl = losses.kl_divergence(z_mean, z_log_var)
        if len(z.shape) == 2:
            reconstruction = losses.reconstruction_loss(images, outputs["logits"], self.likelihood)
            return reconstruction, kl, losses.weighted_elbo_loss(reconstruction, kl, kl_weight)
        k = z.shape[1]
        reconstruction = ops.reshape(losses.reconstruction_loss(ops.repeat(images, k, axis=0), outputs["logits"],
                                                                self.likelihood), (-1, k))
        log_w = losses.log_importance_weights(-reconstruction, z, ops.expand_dims(z_mean, 1),
                                              ops.expand_dims(z_log_var, 1), kl_weight)
        return ops.mean(reconstruction, axis=-1), kl, losses.iwae_loss(log_w)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        reconstruction, kl, per_example = self.loss_terms(x, y_pred)
        # The batch's weights are 1/(global batch) per image (0 for padding), so summing weight * loss
        # gives the single-device batch mean on any number of devices and any split of the batch.
        if isinstance(x, dict) and "weight" in x:
            weight = ops.cast(x["weight"], "float32")
        else:
            weight = ops.ones_like(per_example) / ops.cast(ops.shape(per_example)[0], "float32")
        counted = ops.cast(weight > 0, "float32")
        for name, values in zip(LOSS_TERMS, (per_example, reconstruction, kl)):
            self.trackers[name].update_state(values, sample_weight=counted)
        return ops.sum(per_example * weight)

    def build_optimizer(self):
        """Create the optimizer's slots now (inside the distribution scope, after compile)."""
        self.optimizer.build(self.trainable_variables)

    def get_config(self):
        return {
            **super().get_config(),
            "encoder": keras.saving.serialize_keras_object(self.encoder),
            "decoder": keras.saving.serialize_keras_object(self.decoder),
            "beta": self.beta,
            "seed": self.seed,
            "objective": self.objective,
            "k": self.k,
            "conditional": self.conditional,
            "likelihood": self.likelihood,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["encoder"] = keras.saving.deserialize_keras_object(config["encoder"])
        config["decoder"] = keras.saving.deserialize_keras_object(config["decoder"])
        return cls(**config)


def build_vae(arch="dense", latent_dim=2, hidden=512, beta=1.0, seed=None, objective="elbo", k=1, conditional=False,
              likelihood="bernoulli", activation="relu", log_var_range=None):
    """log_var_range: None, or (low, high) to clamp the encoder's z_log_var to (see Clamp)."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; choose from {ACTIVATIONS}")
    return VAE(
        build_encoder(arch, latent_dim, hidden, conditional, activation, log_var_range),
        build_decoder(arch, latent_dim, hidden, conditional, activation),
        beta=beta, seed=seed, objective=objective, k=k, conditional=conditional, likelihood=likelihood, name="vae",
    )


def output_bias_from_pixel_means(vae, pixel_means):
    """Set the dense decoder's output bias to the logit of the training images' mean pixels (clipped to
    [0.001, 0.999], as Burda et al.'s code does): before any training the decoder then draws the average digit,
    and the first epochs need not learn it (the IWAE recipe). pixel_means: (28, 28, 1) or (784,), in [0, 1]."""
    means = np.clip(np.asarray(pixel_means, np.float64).reshape(-1), 0.001, 0.999)
    layer = vae.decoder.get_layer("pixel_logits")
    layer.bias.assign(np.log(means / (1.0 - means)).astype(np.float32))

