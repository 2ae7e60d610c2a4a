"""The VampPrior (Tomczak & Welling 2018, "VAE with a VampPrior"): a learned prior in place of N(0, I),

    p(z) = (1/K) sum_k q(z | u_k),

the mixture of the encoder's own posteriors at K learned pseudo-inputs u_k (images the model learns). The
encoder and decoder are the learner's (model.py); only the prior changes, so the KL term has no closed form:
each image's KL is the single-draw estimate log q(z|x) - log p(z), and the importance-weighted bound uses the
mixture as log p(z). The pseudo-inputs are sigmoid(W) for a learned W (K, 28, 28, 1) drawn from N(-0.05, 0.01)
at the start, so they begin as flat grey images, 0.49 everywhere (the authors' code starts them near black, a hard
tanh of N(0.05, 0.01): docs/quoting-numbers.md lists how the presets differ from it).
"""
import math

import keras
import numpy as np
from keras import ops

import losses
from model import VAE

PSEUDO_INPUTS = 500  # K, the paper's for MNIST
INIT_MEAN, INIT_STD = -0.05, 0.01  # of W, with u = sigmoid(W) (experiment.py's defaults in the authors' code)


def log_mixture_density(z, means, log_vars):
    """log (1/K) sum_k N(z; means_k, exp(log_vars_k)) for z (..., d) and K components (K, d): (...), in float32.

    Written with matrix products, (M, d) x (d, K), so that no (M, K, d) tensor is made: the evaluation scores
    thousands of draws per call against the K components."""
    z, means, log_vars = (ops.cast(t, "float32") for t in (z, means, log_vars))
    d = z.shape[-1]
    flat = ops.reshape(z, (-1, d))
    precision = ops.exp(-log_vars)  # (K, d)
    constant = ops.sum(losses.LOG_2PI + log_vars + ops.square(means) * precision, axis=-1)  # (K,)
    quadratic = ops.matmul(ops.square(flat), ops.transpose(precision)) - 2 * ops.matmul(
        flat, ops.transpose(means * precision))  # (M, K)
    log_q = -0.5 * (constant[None, :] + quadratic)
    log_p = ops.logsumexp(log_q, axis=-1) - math.log(means.shape[0])
    return ops.reshape(log_p, ops.shape(z)[:-1])


class VampPrior:
    """p(z) = (1/K) sum_k q(z | u_k), answering model.StandardNormal's questions for a VAE's pseudo-inputs: no
    closed-form KL, a mixture to draw from and to show in explorer.html, and it changes as the model learns."""
    name, short_name = "p(z), the learned VampPrior", "VampPrior"
    closed_form = False
    learned = depends_on_encoder = True  # the encoder at the pseudo-inputs

    def __init__(self, vae):
        self.vae = vae

    def components(self):
        """(means, log-variances) (K, d) of the prior's components: the encoder at the pseudo-inputs."""
        means, log_vars = self.vae.encoder(self.vae.pseudo_input_images())
        return means, log_vars

    def log_density(self, z):
        """log p(z) for z (..., d): the mixture over the pseudo-inputs (log_mixture_density)."""
        return log_mixture_density(z, *self.components())

    def kl(self, z_mean, z_log_var):
        return None

    def draw(self, n, seed):
        """n draws z ~ p(z) as NumPy (n, d), fixed by the seed: a component k uniformly, then z ~ q(z | u_k)."""
        means, log_vars = self._numpy_components(np.float32)
        rng = np.random.default_rng(seed)
        chosen = rng.integers(0, len(means), n)
        noise = rng.standard_normal((n, means.shape[1]), dtype=np.float32)
        return means[chosen] + np.exp(0.5 * log_vars[chosen]) * noise

    def kl_per_dim(self, z_mean, z_log_var, noise):
        return kl_per_dim_estimate(self._numpy_components(np.float64), z_mean, z_log_var, noise)

    def rows_per_call(self, most):
        return rows_per_call(self.vae.pseudo_inputs, self.vae.latent_dim, most)

    def page_data(self):
        means, log_vars = self._numpy_components(np.float64)
        return {"name": "the learned VampPrior", "means": means, "log_vars": log_vars}

    def _numpy_components(self, dtype):
        return tuple(np.asarray(ops.convert_to_numpy(t), dtype) for t in self.components())


@keras.saving.register_keras_serializable(package="mnist_vae")
class VampPriorVAE(VAE):
    """The VAE of model.py with the VampPrior: the same encoder, decoder, objectives and training step; the prior
    p(z) is the mixture of q(z | u_k) over its K learned pseudo-inputs."""

    def __init__(self, encoder, decoder, pseudo_inputs=PSEUDO_INPUTS, **kwargs):
        super().__init__(encoder, decoder, **kwargs)
        if self.conditional:
            raise ValueError("the VampPrior is a prior of the unconditional model")
        self.pseudo_inputs = int(pseudo_inputs)
        self.pseudo_input_logits = self.add_weight(
            shape=(self.pseudo_inputs, *encoder.inputs[0].shape[1:]), name="pseudo_input_logits",
            initializer=keras.initializers.RandomNormal(INIT_MEAN, INIT_STD, seed=self.seed))
        self.prior = VampPrior(self)

    def pseudo_input_images(self):
        """The K pseudo-inputs u_k as images in [0, 1]."""
        return ops.sigmoid(self.pseudo_input_logits)

    def get_config(self):
        return {**super().get_config(), "pseudo_inputs": self.pseudo_inputs}


# Values of one (rows, K, d) block of the mixture's log-densities that one call computes: the evaluation's calls
# take as many rows as fit (about 0.8 GB in float32), so its memory stays flat as K grows (the preset's K = 500
# fits the bound's 10,000 rows per call whole).
MIXTURE_VALUES_PER_CALL = 200_000_000


def rows_per_call(pseudo_inputs, latent_dim, most):
    """How many z of at most `most` one call scores against the K-component mixture, within MIXTURE_VALUES_PER_CALL."""
    return max(1, min(most, MIXTURE_VALUES_PER_CALL // (pseudo_inputs * latent_dim)))


def kl_per_dim_estimate(components, z_mean, z_log_var, noise, images_per_chunk=500):
    """Per latent dimension j, the mean over images of log q(z_j|x) - log p_j(z_j) at one draw z per image
    (noise), p_j being the learned prior's marginal in dimension j, a mixture of K 1-D Gaussians: what
    kl_per_dim.png shows for a VampPrior. The prior does not factorise over dimensions, so these do not add up to
    the KL term; they say which dimensions the posteriors use. components: the prior's (means, log_vars) (K, d)."""
    means, log_vars = components
    noise = np.asarray(noise).reshape(np.shape(z_mean))
    z_mean, z_log_var = np.asarray(z_mean, np.float64), np.asarray(z_log_var, np.float64)
    z = z_mean + np.exp(0.5 * z_log_var) * noise
    log_q = -0.5 * (losses.LOG_2PI + z_log_var + noise ** 2)  # (N, d), per dimension
    total = np.zeros(z.shape[1])
    images_per_chunk = rows_per_call(len(means), z.shape[1], images_per_chunk) // 2  # float64: twice the bytes
    images_per_chunk = max(1, images_per_chunk)
    for start in range(0, len(z), images_per_chunk):
        part = z[start:start + images_per_chunk, None, :]  # (n, 1, d) against (K, d)
        log_components = -0.5 * (losses.LOG_2PI + log_vars + (part - means) ** 2 * np.exp(-log_vars))
        top = log_components.max(axis=1)
        log_marginal = top + np.log(np.exp(log_components - top[:, None]).mean(axis=1))  # (n, d): logsumexp / K
        total += (log_q[start:start + images_per_chunk] - log_marginal).sum(axis=0)
    return total / len(z)
