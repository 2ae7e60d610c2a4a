"""Two stochastic layers (Burda et al. 2015, Table 1's second architecture, `--stochastic-layers 2`).

    generative:  z2 ~ N(0, I),  z1 ~ p(z1 | z2) = N(mu_p(z2), exp(log_var_p(z2))),  x ~ p(x | z1)
    inference:   z1 ~ q(z1 | x),  z2 ~ q(z2 | z1),  both diagonal Gaussians

With --latent-dim d the top layer z2 has d dimensions and z1 has 2d: the paper's x - 200 - 200 - z1 (100) -
100 - 100 - z2 (50) is `--hidden 200,200 --latent-dim 50`: between z1 and z2 as many hidden layers as
--hidden has, each 2d wide.
Neither KL has a closed form here; each image's bound is the single-draw estimate of

    log w = log p(x | z1) + [log p(z1 | z2) + log N(z2; 0, I) - log q(z1 | x) - log q(z2 | z1)],

whose bracket is reported as minus the KL term (an estimate, as under the VampPrior), and the importance-weighted
bound (training with --objective iwae, and the NLL at the end) averages w over k draws of both layers. A draw
takes 3d numbers of noise: z1's 2d, then z2's d.

The figures and the explorer look at the top layer, the model's latent space: `vae.encoder` maps x to q(z2 | z1)
at z1 = the mean of q(z1 | x), and `vae.decoder` maps z2 through the mean of p(z1 | z2) to p(x | z1)'s logits, so
samples draw z2 from its prior N(0, I). Both are views made of the four networks' own layers (never saved
twice); the model saves the four.
"""
import keras
from keras import layers, ops

import losses
from model import IMAGE_SHAPE, VAE, dense_stack, gaussian_head, hidden_names, hidden_sizes


def z1_dim(latent_dim):
    return 2 * latent_dim


def build_networks(latent_dim=50, hidden="200,200", activation="tanh", log_var_range=None):
    """The four networks: q(z1|x), q(z2|z1), p(z1|z2) and p(x|z1) (its logits), as functional models."""
    d1, widths = z1_dim(latent_dim), hidden_sizes(hidden)
    middle = (d1,) * len(widths)
    image = keras.Input(IMAGE_SHAPE, name="image")
    def stack(x, widths, prefix):
        return dense_stack(x, widths, activation, hidden_names(len(widths), prefix))

    def head(x, dim, name):
        return gaussian_head(x, dim, f"{name}_mean", f"{name}_log_var", log_var_range)

    q_z1 = keras.Model(image, head(stack(layers.Flatten()(image), widths, "q_z1"), d1, "z1"), name="q_z1")
    z1 = keras.Input((d1,), name="z1")
    q_z2 = keras.Model(z1, head(stack(z1, middle, "q_z2"), latent_dim, "z"), name="q_z2")
    z2 = keras.Input((latent_dim,), name="z")
    p_z1 = keras.Model(z2, head(stack(z2, middle[::-1], "p_z1"), d1, "prior_z1"), name="p_z1")
    z1_again = keras.Input((d1,), name="z1")
    x = layers.Dense(28 * 28, name="pixel_logits")(stack(z1_again, widths[::-1], "p_x"))
    logits = layers.Activation("linear", dtype="float32", name="logits")(layers.Reshape(IMAGE_SHAPE)(x))
    return q_z1, q_z2, p_z1, keras.Model(z1_again, logits, name="p_x")


@keras.saving.register_keras_serializable(package="mnist_vae")
class TwoLayerVAE(VAE):
    """The VAE with two stochastic layers (see the module's docstring): the same trainer, objectives and
    outputs as model.py's VAE, whose log_weight_terms it overrides to draw both layers."""

    def __init__(self, q_z1, q_z2, p_z1, p_x, **kwargs):
        if kwargs.get("conditional"):
            raise ValueError("the two-layer model is unconditional")
        for view in ("encoder", "decoder"):
            kwargs.pop(view, None)
        image = keras.Input(IMAGE_SHAPE, name="image")
        encoder = keras.Model(image, q_z2(q_z1(image)[0]), name="encoder")
        z2 = keras.Input(p_z1.inputs[0].shape[1:], name="z")
        prior_mean = keras.Model(p_z1.inputs, p_z1.outputs[0], name="p_z1_mean")  # p(z1|z2)'s mean path alone
        logits = layers.Activation("linear", dtype="float32", name="logits")(p_x(prior_mean(z2)))  # as every decoder
        decoder = keras.Model(z2, logits, name="decoder")
        super().__init__(encoder, decoder, **kwargs)
        self.q_z1, self.q_z2, self.p_z1, self.p_x = q_z1, q_z2, p_z1, p_x
        self.z1_dim, self.z2_dim = int(q_z1.outputs[0].shape[-1]), int(q_z2.outputs[0].shape[-1])

    stochastic_layers = 2

    @property
    def noise_dim(self):
        return self.z1_dim + self.z2_dim

    @property
    def kl_has_closed_form(self):
        return False  # neither layer's KL has one

    @property
    def kl_label(self):
        return "KL of both layers, one-draw ESTIMATE: log q(z1, z2|x) − log p(z1, z2)"

    @property
    def latent_label(self):
        return (f"two stochastic layers: the top layer z2 ({self.latent_dim}-D) decoded through the mean of "
                "p(z1 | z2)")

    @property
    def sampled_from(self):
        return "N(0, I) (z2; z1 the mean of p(z1 | z2))"

    def log_weight_terms(self, images, eps=None, y=None, posterior=None, training=False):
        """VAE.log_weight_terms for both layers: log p(x | z1) and log p(z1 | z2) + log p(z2) - log q(z1 | x) -
        log q(z2 | z1) per draw, made with noise eps (N, 3d) (one draw per image) or (N, k, 3d); "z" holds the top
        layer's draws z2, "kl" is None (no closed form). y and posterior are not read: both layers are drawn here."""
        if eps is None:
            shape = (ops.shape(images)[0], *((self.k,) if self.objective == "iwae" else ()), self.noise_dim)
            eps = keras.random.normal(shape, seed=self.sampling.seed_generator)
        single = len(eps.shape) == 2
        eps = ops.expand_dims(eps, 1) if single else eps
        n, k = ops.shape(eps)[0], eps.shape[1]
        mean_1, log_var_1 = (ops.expand_dims(t, 1) for t in self.q_z1(images, training=training))
        z1 = losses.reparameterize(mean_1, log_var_1, eps[..., :self.z1_dim])  # (N, k, d1)
        log_q1 = losses.gaussian_log_density(z1, mean_1, log_var_1)
        z1_rows = ops.reshape(z1, (-1, self.z1_dim))
        mean_2, log_var_2 = self.q_z2(z1_rows, training=training)
        z2_rows = losses.reparameterize(mean_2, log_var_2, ops.reshape(eps[..., self.z1_dim:], (-1, self.z2_dim)))
        prior_mean, prior_log_var = self.p_z1(z2_rows, training=training)
        logits = self.p_x(z1_rows, training=training)
        log_px = -losses.reconstruction_loss(ops.repeat(images, k, axis=0), logits, self.likelihood)
        log_ratio = (losses.gaussian_log_density(z1_rows, prior_mean, prior_log_var)
                     + self.prior.log_density(z2_rows)
                     - losses.gaussian_log_density(z2_rows, mean_2, log_var_2))
        log_px, log_ratio = ops.reshape(log_px, (n, k)), ops.reshape(log_ratio, (n, k)) - log_q1
        z = ops.reshape(z2_rows, (n, k, self.z2_dim))
        if single:
            log_px, log_ratio, z = log_px[:, 0], log_ratio[:, 0], z[:, 0]
        return {"log_px": log_px, "log_ratio": log_ratio, "kl": None, "z": z, "logits": logits}

    def get_config(self):
        config = {**super().get_config(), **{name: keras.saving.serialize_keras_object(getattr(self, name))
                                             for name in ("q_z1", "q_z2", "p_z1", "p_x")}}
        for view in ("encoder", "decoder"):  # views of the four networks, remade from them
            config.pop(view)
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for name in ("q_z1", "q_z2", "p_z1", "p_x"):
            config[name] = keras.saving.deserialize_keras_object(config[name])
        return cls(**config)


def build_two_layer_vae(latent_dim=50, hidden="200,200", activation="tanh", log_var_range=None, **kwargs):
    """A TwoLayerVAE with fresh networks (build_networks); kwargs as model.VAE's (beta, seed, objective, k, ...)."""
    return TwoLayerVAE(*build_networks(latent_dim, hidden, activation, log_var_range), name="vae", **kwargs)
