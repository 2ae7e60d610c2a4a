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


def dense_stack(x, widths, activation, names):
    """Dense hidden layers of these widths applied to x, named by `names` (one per layer: the names saved models
    carry). gated: (W x + b) * sigmoid(V x + c), the gated layers of the VampPrior's recipe, as two Dense layers
    (name_linear, name_gate) and their product (name)."""
    for width, name in zip(widths, names):
        if activation == "gated":
            x = layers.Multiply(name=name)([layers.Dense(width, name=f"{name}_linear")(x),
                                            layers.Dense(width, activation="sigmoid", name=f"{name}_gate")(x)])
        else:
            x = layers.Dense(width, activation=activation, name=name)(x)
    return x


def hidden_names(count, prefix=""):
    """hidden, hidden_2, ...: the dense stack's layer names (with a prefix: prefix_hidden_1, prefix_hidden_2, ...)."""
    return [f"{prefix}_hidden_{i + 1}" if prefix else ("hidden" if i == 0 else f"hidden_{i + 1}") for i in range(count)]


def gaussian_head(x, dim, mean_name, log_var_name, log_var_range=None):
    """(mean, log-variance) of a diagonal Gaussian from x: two Dense layers, the log-variance clamped to
    log_var_range = (low, high) when given (see Clamp). The Dense heads keep the compute dtype; the losses cast
    to float32 themselves."""
    mean = layers.Dense(dim, name=mean_name)(x)
    log_var = layers.Dense(dim, name=log_var_name if log_var_range is None else f"{log_var_name}_unclamped")(x)
    if log_var_range is not None:
        log_var = Clamp(*log_var_range, name=log_var_name)(log_var)
    return mean, log_var


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
    test batches carry eps drawn by mnist_vae/pipeline.py; otherwise (vae(images), a fit on plain arrays) the layer
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
        widths = hidden_sizes(hidden)
        x = dense_stack(x, widths, activation, hidden_names(len(widths)))
    elif arch == "conv":
        x = layers.Conv2D(32, 3, strides=2, padding="same", activation="relu")(x)  # 14x14
        x = layers.Conv2D(64, 3, strides=2, padding="same", activation="relu")(x)  # 7x7
        x = layers.Flatten()(x)
        if conditional:  # ... and the convolutions' features before the heads
            x = layers.Concatenate()([x, label])
    else:
        raise ValueError(f"unknown architecture {arch!r}; choose from {ARCHITECTURES}")
    inputs = [image, label] if conditional else image
    return keras.Model(inputs, gaussian_head(x, latent_dim, "z_mean", "z_log_var", log_var_range), name="encoder")


def build_decoder(arch="dense", latent_dim=2, hidden=512, conditional=False, activation="relu"):
    z = keras.Input((latent_dim,), name="z")
    inputs = z
    if conditional:  # the digit to draw joins z
        label = keras.Input((CLASSES,), name="label")
        inputs, z = [z, label], layers.Concatenate()([z, label])
    if arch == "dense":
        widths = hidden_sizes(hidden)[::-1]
        x = dense_stack(z, widths, activation, hidden_names(len(widths)))
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


class StandardNormal:
    """The learner's prior p(z) = N(0, I). Every family's prior answers the same questions (a learned prior,
    mnist_vae/vampprior.py's, answers them for its mixture; mnist_vae/families.py lists the families):

    - log_density(z): log p(z), summed over z's last axis;
    - closed_form and kl(z_mean, z_log_var): whether KL(q(z|x) || p(z)) has a closed form, and that form
      (summed over the latent dimensions: averaging would divide its weight by latent_dim);
    - draw(n, seed): n draws z ~ p(z) as NumPy, fixed by the seed (samples, progress.gif, sample quality);
    - learned: whether it changes as the model trains (its draws are then made again each epoch), and
      depends_on_encoder: whether log p(z) moves with the encoder's weights (DReG's gradient assumes not);
    - kl_per_dim(z_mean, z_log_var, noise): the mean KL per latent dimension (kl_per_dim.png);
    - rows_per_call(most): how many z one call may score against it (a mixture's memory grows with its size);
    - page_data(): what explorer.html needs to draw from it (None: the page's own N(0, I));
    - name and short_name: what the figures and pages call it.
    """
    name = short_name = "N(0, I)"
    closed_form = True
    learned = depends_on_encoder = False

    def __init__(self, latent_dim):
        self.latent_dim = int(latent_dim)

    def log_density(self, z):
        return losses.standard_normal_log_density(z)

    def kl(self, z_mean, z_log_var):
        return losses.kl_divergence(z_mean, z_log_var)

    def draw(self, n, seed):
        return np.random.default_rng(seed).standard_normal((n, self.latent_dim), dtype=np.float32)

    def kl_per_dim(self, z_mean, z_log_var, noise=None):
        return ops.convert_to_numpy(losses.kl_divergence_per_dim(z_mean, z_log_var)).mean(axis=0)

    def rows_per_call(self, most):
        return most

    def page_data(self):
        return None


@keras.saving.register_keras_serializable(package="mnist_vae")
class VAE(keras.Model):
    """Variational autoencoder: loss = reconstruction + beta * KL per image, averaged over the batch
    (objective "elbo"), or the negative importance-weighted bound with k samples per image ("iwae").

    Written once for every Keras backend: the forward pass is `call`, the loss is `compute_loss`, and
    Keras' own trainer (TensorFlow, JAX or PyTorch) takes the gradients and applies the optimizer.

    Every model family (mnist_vae/families.py) answers the same small protocol, which the objectives, the
    evaluation, the figures and the explorer read and never look past: `prior` (see StandardNormal),
    `noise_dim` (noise per draw), `stochastic_layers`, and `log_weight_terms`, the per-draw
    log p(x|z) and log p(z) - log q(z|x) from which `loss_terms` makes both objectives.
    gradient_estimator: None for the objective's own gradient, or a function (vae, inputs, outputs, loss) -> loss
    with the same value and another gradient (mnist_vae/dreg.py's); a training choice, not saved with the model.
    """
    stochastic_layers = 1

    def __init__(self, encoder, decoder, beta=1.0, seed=None, objective="elbo", k=1, conditional=False,
                 likelihood="bernoulli", gradient_estimator=None, **kwargs):
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
        self.gradient_estimator = gradient_estimator
        self.prior = StandardNormal(self.latent_dim)
        self.sampling = Sampling(seed=seed, name="sampling")
        # The KL weight in force; a warm-up schedule may move it from 0 up to beta.
        self.kl_weight = self.add_weight(
            shape=(), initializer=keras.initializers.Constant(self.beta),
            trainable=False, name="kl_weight",
        )
        # Counted by every training step and saved with the model: the steps taken (evaluate.py reads a model's
        # epoch from it), and the first at which the loss stopped being finite (-1: never). Counted inside the
        # compiled step, where several steps run per call and a callback could not name the step that diverged.
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

    @property
    def latent_dim(self):
        """z's dimensions: what the decoder takes, what the figures and the explorer show."""
        return int(self.decoder.inputs[0].shape[-1])

    @property
    def noise_dim(self):
        """Numbers of reparameterisation noise one draw takes."""
        return self.latent_dim

    def batch_parts(self, inputs):
        """(images, eps or None, one-hot labels or None) of images (N, 28, 28, 1) in [0, 1], or of a batch
        {"image", "eps", "weight", "label"} from mnist_vae/pipeline.py. A conditional model needs the labels."""
        if not isinstance(inputs, dict):
            inputs = {"image": inputs}
        y = None
        if self.conditional:
            if inputs.get("label") is None:
                raise ValueError("a conditional VAE needs the digits' labels: call it with "
                                 "{'image': ..., 'label': ...}")
            y = ops.one_hot(ops.cast(inputs["label"], "int32"), CLASSES)
        return inputs["image"], inputs.get("eps"), y

    def call(self, inputs, training=False):
        """The forward pass: q(z|x), the draws z (the batch's eps: (N, d) for one per image, (N, k, d) for k;
        without eps the Sampling layer draws them) and their terms (log_weight_terms)."""
        images, eps, y = self.batch_parts(inputs)
        return self.log_weight_terms(images, eps, y, training=training)

    def decode(self, z, y=None, training=False):
        """The decoder's logits for z (N, d), or for k draws per image z (N, k, d) as N k rows, image by image;
        y: the images' one-hot labels (a conditional model's)."""
        if len(z.shape) == 3:
            k = z.shape[1]
            z = ops.reshape(z, (-1, z.shape[-1]))
            y = None if y is None else ops.repeat(y, k, axis=0)
        return self.decoder([z, y] if self.conditional else z, training=training)

    def draw_terms(self, images, z, z_mean, z_log_var, y=None, training=False):
        """(log p(x|z), log p(z) - log q(z|x), logits) at the draws z: (N, d) gives (N,) terms, (N, k, d) (with
        z_mean and z_log_var (N, 1, d)) gives (N, k), each image broadcast against its k decodings, never copied."""
        logits = self.decode(z, y, training)
        if len(z.shape) == 2:
            log_px = -losses.reconstruction_loss(images, logits, self.likelihood)
        else:
            per_image = ops.reshape(logits, (ops.shape(z)[0], z.shape[1], *logits.shape[1:]))
            log_px = -losses.reconstruction_loss(ops.expand_dims(images, 1), per_image, self.likelihood, leading=2)
        log_ratio = self.prior.log_density(z) - losses.gaussian_log_density(z, z_mean, z_log_var)
        return log_px, log_ratio, logits

    def log_weight_terms(self, images, eps=None, y=None, posterior=None, training=False):
        """The per-draw terms every objective, the evaluation and DReG read, for noise eps (N, d) (one draw per
        image) or (N, k, d): {"log_px": log p(x|z), "log_ratio": log p(z) - log q(z|x)} ((N,) or (N, k)), with
        "kl", the KL in closed form (None where the prior has none), the draws "z", q(z|x)'s "z_mean" and
        "z_log_var", and the decoder's "logits" (one row per draw). posterior: (z_mean, z_log_var) when already
        computed. log w = log_px + log_ratio is the importance weight, whose mean over draws bounds log p(x)."""
        if posterior is None:
            posterior = self.encoder([images, y] if self.conditional else images, training=training)
        z_mean, z_log_var = posterior
        samples = self.k if eps is None and self.objective == "iwae" else None
        z = self.sampling([z_mean, z_log_var], eps=eps, samples=samples)
        mean, log_var = (z_mean, z_log_var) if len(z.shape) == 2 else (ops.expand_dims(z_mean, 1),
                                                                       ops.expand_dims(z_log_var, 1))
        log_px, log_ratio, logits = self.draw_terms(images, z, mean, log_var, y, training)
        kl = self.prior.kl(z_mean, z_log_var) if self.prior.closed_form else None
        return {"log_px": log_px, "log_ratio": log_ratio, "kl": kl, "z": z, "z_mean": z_mean,
                "z_log_var": z_log_var, "logits": logits}

    @property
    def kl_has_closed_form(self):
        """Whether the KL term is exact (else its value is the one-draw estimate log q - log p)."""
        return self.prior.closed_form

    # How the figures, the explorer and eval.json name what this model's numbers and pictures are of.
    @property
    def kl_label(self):
        if self.kl_has_closed_form:
            return f"KL(q(z|x) ‖ {self.prior.short_name})"
        return f"KL(q(z|x) ‖ p(z)), one-draw ESTIMATE ({self.prior.short_name})"

    @property
    def latent_label(self):
        return f"{self.latent_dim}-D latent space"

    @property
    def sampled_from(self):
        return self.prior.name

    def loss_terms(self, inputs, outputs):
        """(reconstruction, kl, loss) per image for the forward pass outputs = self(inputs), from the per-draw
        terms: with one draw the ELBO's terms and reconstruction + KL weight * KL; with k draws the mean
        reconstruction and KL over the draws and the negative importance-weighted bound, whose log-weights
        are log p(x|z) + KL weight * (log p(z) - log q(z|x)). The KL is the closed form where there is one."""
        log_px, log_ratio, kl_weight = outputs["log_px"], outputs["log_ratio"], self.kl_weight.value
        if len(log_px.shape) == 1:
            reconstruction = -log_px
            kl = -log_ratio if outputs["kl"] is None else outputs["kl"]
            loss = losses.weighted_elbo_loss(reconstruction, kl, kl_weight)
        else:
            reconstruction = -ops.mean(log_px, axis=-1)
            kl = -ops.mean(log_ratio, axis=-1) if outputs["kl"] is None else outputs["kl"]
            loss = losses.iwae_loss(log_px + kl_weight * log_ratio)
        if self.gradient_estimator is not None:
            loss = self.gradient_estimator(self, inputs, outputs, loss)
        return reconstruction, kl, loss

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
        loss = ops.sum(per_example * weight)
        if training:
            step, first = self.steps_taken.value, self.first_nonfinite_step.value
            first_bad = ops.logical_and(ops.logical_not(ops.isfinite(loss)), first < 0)
            self.first_nonfinite_step.assign(ops.where(first_bad, step, first))
            self.steps_taken.assign(step + 1)
        return loss

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
              likelihood="bernoulli", activation="relu", log_var_range=None, gradient_estimator=None):
    """log_var_range: None, or (low, high) to clamp the encoder's z_log_var to (see Clamp); gradient_estimator: see
    VAE."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; choose from {ACTIVATIONS}")
    return VAE(
        build_encoder(arch, latent_dim, hidden, conditional, activation, log_var_range),
        build_decoder(arch, latent_dim, hidden, conditional, activation),
        beta=beta, seed=seed, objective=objective, k=k, conditional=conditional, likelihood=likelihood,
        gradient_estimator=gradient_estimator, name="vae",
    )


def output_bias_from_pixel_means(vae, pixel_means):
    """Set the dense decoder's output bias to the logit of the training images' mean pixels (clipped to
    [0.001, 0.999], as Burda et al.'s code does): before any training the decoder then draws the average digit,
    and the first epochs need not learn it (the IWAE recipe). pixel_means: (28, 28, 1) or (784,), in [0, 1]."""
    means = np.clip(np.asarray(pixel_means, np.float64).reshape(-1), 0.001, 0.999)
    layer = vae.decoder.get_layer("pixel_logits")
    layer.bias.assign(np.log(means / (1.0 - means)).astype(np.float32))

