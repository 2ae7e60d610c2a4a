"""The VAE's loss terms as pure functions: tensors in, one value per example out.

Everything is computed in float32, whatever the model's compute dtype, so that mixed
precision never changes what the loss means.
"""
import math

from keras import ops

LOG_2PI = math.log(2.0 * math.pi)


def _float32(*tensors):
    return [ops.cast(t, "float32") for t in tensors]


def kl_divergence_per_dim(z_mean, z_log_var):
    """KL(N(z_mean, exp(z_log_var)) || N(0, 1)) for each latent dimension separately, in nats."""
    z_mean, z_log_var = _float32(z_mean, z_log_var)
    return -0.5 * (1.0 + z_log_var - ops.square(z_mean) - ops.exp(z_log_var))


def kl_divergence(z_mean, z_log_var):
    """KL(N(z_mean, exp(z_log_var)) || N(0, I)) per example, in nats.

    Closed form, SUMMED over the latent dimensions: each dimension is an independent
    Gaussian and KL of independent factors adds up. Averaging here instead would divide
    the KL's weight by latent_dim (the classic mistake).
    """
    return ops.sum(kl_divergence_per_dim(z_mean, z_log_var), axis=-1)


def reparameterize(z_mean, z_log_var, eps):
    """z = z_mean + exp(z_log_var / 2) * eps with eps ~ N(0, I): a draw from q(z|x) = N(z_mean, exp(z_log_var))
    written so that the randomness sits in eps and gradients reach z_mean and z_log_var."""
    z_mean, z_log_var = ops.convert_to_tensor(z_mean), ops.convert_to_tensor(z_log_var)
    return z_mean + ops.exp(0.5 * z_log_var) * ops.cast(eps, z_mean.dtype)


LIKELIHOODS = ("bernoulli", "continuous-bernoulli")
# Below this |logit| the continuous Bernoulli's normaliser and mean use their series at 0: the closed forms
# divide zero by zero there, and their float32 differences lose digits close to it.
SERIES_BELOW = 0.1
# The Langevin function's series at 0, L(x) = x (1/3 + x^2 (-1/45 + x^2 2/945)): the continuous Bernoulli's mean
# near l = 0 (pixel_means; explorer.html's decoder reads the same numbers from its page's data).
LANGEVIN_SERIES = (1.0 / 3.0, -1.0 / 45.0, 2.0 / 945.0)


def continuous_bernoulli_log_normalizer(logits):
    """log C(l) per pixel, C the normalising constant of the continuous Bernoulli with logit l
    (Loaiza-Ganem & Cunningham 2019): C(lambda) = 2 artanh(1 - 2 lambda) / (1 - 2 lambda), which with
    lambda = sigmoid(l) is l / tanh(l / 2), an even function with limit 2 at l = 0.

    Computed as log|l| - log(1 - e^-|l|) + log(1 + e^-|l|), finite and exact to float32 for any logit;
    near 0, where that is 0 - 0, as log 2 + x^2/3 - 7 x^4/90 + 62 x^6/2835 (x = l / 2).
    """
    (logits,) = _float32(logits)
    a = ops.abs(logits)
    near_zero = a < SERIES_BELOW
    safe = ops.where(near_zero, 1.0, a)  # keeps the unused branch (and its gradient) finite
    closed = ops.log(safe) - ops.log(-ops.expm1(-safe)) + ops.log1p(ops.exp(-safe))
    x2 = ops.square(0.5 * logits)
    series = math.log(2.0) + x2 * (1.0 / 3.0 + x2 * (-7.0 / 90.0 + x2 * (62.0 / 2835.0)))
    return ops.where(near_zero, series, closed)


def _bernoulli_cross_entropy(x, logits):
    # max(l, 0) - l*x + log(1 + exp(-|l|)): exact and finite for any logit, unlike clipped probabilities.
    return ops.relu(logits) - logits * x + ops.log1p(ops.exp(-ops.abs(logits)))


def reconstruction_loss(x, logits, likelihood="bernoulli", leading=1):
    """-log p(x|z) per example, in nats: summed over every pixel, x in [0, 1], logits from the decoder.

    bernoulli: the binary cross-entropy; a likelihood when x is binary, a cross-entropy against grey
    targets otherwise. continuous-bernoulli: the same cross-entropy minus log C(logit), the negative log
    of a proper density on [0, 1], so grey pixels get a true likelihood.
    """
    if likelihood not in LIKELIHOODS:
        raise ValueError(f"unknown likelihood {likelihood!r}; choose from {LIKELIHOODS}")
    x, logits = (_pixels_in_one_axis(t, leading) for t in _float32(x, logits))
    per_pixel = _bernoulli_cross_entropy(x, logits)
    if likelihood == "continuous-bernoulli":
        per_pixel = per_pixel - continuous_bernoulli_log_normalizer(logits)
    # Summed over the pixels after the leading `leading` axes: (N,) per example, or with leading=2, x (N, 1, ...)
    # broadcast against its k decodings (N, k, ...) -- the image is never copied -- (N, k).
    return ops.sum(per_pixel, axis=-1)


def _pixels_in_one_axis(t, leading):
    # (N, ..., H, W, C) -> (N, ..., H * W * C): XLA on a CPU sums one trailing axis about 70x faster than the
    # three of an image (docs/performance.md). The leading axes after the first are static (1 or k).
    return ops.reshape(t, (-1, *t.shape[1:leading], math.prod(t.shape[leading:])))


def pixel_means(logits, likelihood="bernoulli"):
    """E[x | z] per pixel, what the figures show: sigmoid(l) under the Bernoulli; under the continuous
    Bernoulli (1 + L(l / 2)) / 2, L(x) = coth x - 1/x the Langevin function (its series near 0), which is
    less extreme than sigmoid(l)."""
    (logits,) = _float32(logits)
    if likelihood == "bernoulli":
        return ops.sigmoid(logits)
    x = 0.5 * logits
    near_zero = ops.abs(logits) < SERIES_BELOW
    safe = ops.where(near_zero, 1.0, x)
    closed = 1.0 / ops.tanh(safe) - 1.0 / safe
    x2 = ops.square(x)
    c1, c3, c5 = LANGEVIN_SERIES
    series = x * (c1 + x2 * (c3 + x2 * c5))
    return 0.5 * (1.0 + ops.where(near_zero, series, closed))


def gaussian_log_density(z, mean, log_var):
    """log N(z; mean, exp(log_var)) summed over the last axis (the latent dimensions)."""
    z, mean, log_var = _float32(z, mean, log_var)
    return -0.5 * ops.sum(LOG_2PI + log_var + ops.square(z - mean) * ops.exp(-log_var), axis=-1)


def standard_normal_log_density(z):
    """log N(z; 0, I) summed over the last axis."""
    (z,) = _float32(z)
    return -0.5 * ops.sum(LOG_2PI + ops.square(z), axis=-1)


def log_importance_weights(log_px_given_z, z, z_mean, z_log_var, kl_weight=1.0, log_pz=None):
    """log w = log p(x|z) + log p(z) - log q(z|x) per sample: E_q[w] = p(x), so E_q[log w] is the ELBO.

    Training under a KL weight beta (--beta, the warm-up) weighs the prior ratio alike:
    log p(x|z) + beta * (log p(z) - log q(z|x)), whose k = 1 case is the beta-weighted ELBO's integrand.
    The same function gives evaluate.py's bound (beta = 1) and the IWAE training loss. log_pz: log p(z) under
    a learned prior (the package's VampPrior), where the prior is not N(0, I)."""
    log_pz = standard_normal_log_density(z) if log_pz is None else ops.cast(log_pz, "float32")
    return ops.cast(log_px_given_z, "float32") + kl_weight * (log_pz - gaussian_log_density(z, z_mean, z_log_var))


def iwae_loss(log_w):
    """-(log (1/k) sum_i w_i) per example, over the last axis of log w (k samples): the negative
    importance-weighted bound of Burda et al. (2015), computed stably (logsumexp). k = 1: -log w, the
    single-sample negative ELBO."""
    (log_w,) = _float32(log_w)
    k = ops.shape(log_w)[-1]
    return -(ops.logsumexp(log_w, axis=-1) - ops.log(ops.cast(k, "float32")))


def log_aggregate_posterior(z, z_mean, z_log_var):
    """log q(z) = log (1/N) sum_n q(z | x_n) for each row of z (M, d), the aggregate posterior of N codes
    (z_mean, z_log_var: (N, d)): an (M, N) mixture density, computed stably (logsumexp)."""
    z, z_mean, z_log_var = _float32(z, z_mean, z_log_var)
    log_q = gaussian_log_density(z[:, None, :], z_mean[None], z_log_var[None])  # (M, N)
    return ops.logsumexp(log_q, axis=-1) - ops.log(ops.cast(ops.shape(z_mean)[0], "float32"))


def mutual_information_terms(z, kl, log_q_z):
    """Per image m, with z_m ~ q(z|x_m): KL(q(z|x_m) || p(z)) - [log q(z_m) - log p(z_m)]. Their mean
    estimates I(x; z) = E_x KL(q(z|x) || p(z)) - KL(q(z) || p(z)) under the encoder (Hoffman & Johnson 2016;
    He et al. 2019), log_q_z being log q(z_m) from log_aggregate_posterior."""
    kl, log_q_z = _float32(kl, log_q_z)
    return kl - (log_q_z - standard_normal_log_density(z))


def weighted_elbo_loss(reconstruction, kl, kl_weight=1.0):
    """Per-example loss the model minimises: reconstruction + kl_weight * KL (nats); the negative ELBO at
    kl_weight 1, the beta-VAE's objective at beta (and the warm-up's below it)."""
    return reconstruction + kl_weight * kl
