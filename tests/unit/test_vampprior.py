"""mnist_vae/vampprior.py: log p(z) against a direct mixture in NumPy float64, the KL estimate against a
high-sample Monte-Carlo value, the importance-weighted bound under the learned prior (the ELBO at k = 1,
tighter with k). Its run end to end: tests/programs/test_train_families.py. On every backend the suite runs on."""
import math

import keras
import numpy as np
import pytest
from conftest import to_numpy

from mnist_vae import evaluation
from mnist_vae.vampprior import VampPriorVAE, log_mixture_density
from model import build_vae

pytestmark = pytest.mark.backend_core  # CI runs these on PyTorch too (pytest.ini)


def direct_log_mixture(z, means, log_vars):
    """log (1/K) sum_k N(z; means_k, exp(log_vars_k)), in float64, component by component."""
    z, means, log_vars = (np.asarray(a, np.float64) for a in (z, means, log_vars))
    per_component = -0.5 * np.sum(np.log(2 * np.pi) + log_vars[None] + (z[:, None] - means[None]) ** 2
                                  / np.exp(log_vars[None]), axis=-1)
    top = per_component.max(axis=1)
    return top + np.log(np.exp(per_component - top[:, None]).mean(axis=1))


@pytest.fixture(scope="module")
def vae(digits):
    """A small VampPrior VAE (3-D latent, 4 pseudo-inputs) whose pseudo-inputs are four real digits."""
    keras.utils.set_random_seed(0)  # the same weights whatever ran before
    plain = build_vae(latent_dim=3, hidden=16, seed=0)
    # A decoder whose likelihood hangs on z (a fresh one's barely does): the weights' spread tells k apart.
    plain.decoder.set_weights([w * 4 for w in plain.decoder.get_weights()])
    model = VampPriorVAE(plain.encoder, plain.decoder, pseudo_inputs=4, seed=0)
    images = np.clip(digits[0][:4].astype(np.float64) / 255, 0.02, 0.98)  # hand-made: u_k = these digits
    model.pseudo_input_logits.assign(np.log(images / (1 - images)).astype(np.float32))
    return model, digits[0][4:68].astype(np.float32) / 255


def test_log_p_z_is_the_mixture_of_the_posteriors_at_the_pseudo_inputs(vae):
    model, _ = vae
    means, log_vars = (to_numpy(t) for t in model.encoder(to_numpy(model.pseudo_input_images())))
    z = np.random.default_rng(0).normal(0, 2, (50, 3)).astype(np.float32)
    np.testing.assert_allclose(to_numpy(model.prior.log_density(z)), direct_log_mixture(z, means, log_vars), atol=1e-4)
    # any leading axes: (images, draws, d) as the importance-weighted bound passes them
    np.testing.assert_allclose(to_numpy(model.prior.log_density(z.reshape(5, 10, 3))).ravel(),
                               direct_log_mixture(z, means, log_vars), atol=1e-4)


def test_the_mixture_density_holds_for_many_components_and_extreme_variances():
    rng = np.random.default_rng(1)
    means, log_vars = rng.normal(0, 1.5, (500, 40)), rng.uniform(-6, 2, (500, 40))
    z = means[rng.integers(0, 500, 200)] + rng.normal(0, 1, (200, 40))
    got = to_numpy(log_mixture_density(*(a.astype(np.float32) for a in (z, means, log_vars))))
    # float32 matrix products: a few thousandths of a nat on values near -200 (measured 3e-3 at most)
    np.testing.assert_allclose(got, direct_log_mixture(z, means, log_vars), atol=1e-2)


def test_the_kl_estimate_is_unbiased(vae):
    """Each image's KL is one draw of log q(z|x) - log p(z); over many copies of one image their mean meets the
    Monte-Carlo value from 200,000 draws."""
    model, images = vae
    z_mean, z_log_var = (to_numpy(t).astype(np.float64) for t in model.encoder(images[:1]))
    draws = z_mean + np.exp(0.5 * z_log_var) * np.random.default_rng(2).standard_normal((200_000, 3))
    log_q = -0.5 * np.sum(np.log(2 * np.pi) + z_log_var + (draws - z_mean) ** 2 / np.exp(z_log_var), axis=1)
    means, log_vars = (to_numpy(t) for t in model.prior.components())
    reference = np.mean(log_q - direct_log_mixture(draws, means, log_vars))
    copies = 4000
    repeated = (np.repeat(a, copies, 0).astype(np.float32) for a in (images[:1], z_mean, z_log_var))
    estimates = evaluation.kl_term(model, *repeated, {})
    stderr = estimates.std() / math.sqrt(copies)
    assert abs(estimates.mean() - reference) < 4 * stderr + 1e-3, (estimates.mean(), reference, stderr)


def test_the_bound_is_the_elbo_at_k_1_and_tightens_with_k(vae):
    model, images = vae
    z_mean, z_log_var = (to_numpy(t) for t in model.encoder(images))
    def weights():  # compiled anew for each k: one shape of draws per compiled function
        return evaluation.importance_weights(model, len(images))(None)

    one = evaluation.iw_bound(images, z_mean, z_log_var, weights(), 1, seed=(7, 0))
    eps = np.random.default_rng([7, 0]).standard_normal((1, len(images), 3), dtype=np.float32)[0]
    z = z_mean + np.exp(0.5 * z_log_var) * eps
    logits = model.decoder(z)
    import losses

    elbo = -(to_numpy(losses.reconstruction_loss(images, logits)) +
             to_numpy(losses.gaussian_log_density(z, z_mean, z_log_var)) - to_numpy(model.prior.log_density(z)))
    np.testing.assert_allclose(one, elbo, rtol=1e-4, atol=1e-3)  # k = 1: the single-draw ELBO
    bounds = [evaluation.iw_bound(images, z_mean, z_log_var, weights(), k, seed=(8, 0)).mean() for k in (1, 20, 1000)]
    assert bounds[0] + 0.5 < bounds[1] < bounds[2], bounds  # on 64 images: far beyond the draws' noise
