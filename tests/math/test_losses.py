"""The loss terms against closed forms, Monte-Carlo estimates, NumPy references and finite differences."""
import math

import numpy as np
import pytest
from conftest import gradients, to_numpy
from keras import ops

import losses

pytestmark = pytest.mark.backend_core  # CI runs these on PyTorch too (pytest.ini)


def test_terms_on_fixed_numbers():
    """Worked by hand, so that every backend is held to the same numbers (run under each one in CI)."""
    # KL per dim = -(1 + log_var - mean^2 - exp(log_var)) / 2: 0.5 and (7 - log 4) / 2, SUMMED (not averaged).
    kl = to_numpy(losses.kl_divergence(np.array([[1.0, 2.0]]), np.array([[0.0, math.log(4.0)]])))
    np.testing.assert_allclose(kl, [0.5 + (7 - math.log(4.0)) / 2], rtol=1e-6)
    # BCE from logits, summed over pixels: x=1, logit 0 costs log 2; x=0, logit 2 costs log(1 + e^2).
    bce = to_numpy(losses.reconstruction_loss(np.array([[1.0, 0.0]]), np.array([[0.0, 2.0]])))
    np.testing.assert_allclose(bce, [math.log(2.0) + math.log1p(math.exp(2.0))], rtol=1e-6)
    z = to_numpy(losses.reparameterize(np.array([[1.0, -1.0]]), np.array([[0.0, math.log(4.0)]]),
                                       np.array([[0.5, 0.5]])))
    np.testing.assert_allclose(z, [[1.5, 0.0]], rtol=1e-6)


def np_kl_monte_carlo(z_mean, z_log_var, n, rng):
    """E_q[log q(z) - log p(z)] estimated from n draws, written independently of losses.py."""
    std = np.exp(0.5 * z_log_var)
    z = z_mean + std * rng.standard_normal((n,) + z_mean.shape)
    log_q = -0.5 * (np.log(2 * np.pi) + z_log_var + ((z - z_mean) / std) ** 2)
    log_p = -0.5 * (np.log(2 * np.pi) + z**2)
    per_draw = (log_q - log_p).sum(axis=-1)
    return per_draw.mean(axis=0), per_draw.std(axis=0) / math.sqrt(n)


def test_kl_matches_hand_computed_values():
    # Dim 1: mu=1, var=1 -> 0.5 * mu^2 = 0.5. Dim 2: mu=0, var=2 -> 0.5 * (2 - 1 - log 2).
    kl = losses.kl_divergence(np.array([[1.0, 0.0]]), np.array([[0.0, math.log(2.0)]]))
    assert kl.shape == (1,)
    np.testing.assert_allclose(np.asarray(kl), [0.5 + 0.5 * (1.0 - math.log(2.0))], rtol=1e-6)


def test_kl_matches_monte_carlo_estimate():
    rng = np.random.default_rng(0)
    z_mean = rng.normal(size=(4, 3))
    z_log_var = rng.normal(scale=0.7, size=(4, 3))
    estimate, stderr = np_kl_monte_carlo(z_mean, z_log_var, 200_000, rng)
    closed = to_numpy(losses.kl_divergence(z_mean, z_log_var))
    assert np.all(np.abs(closed - estimate) < 4 * stderr + 1e-3), (closed, estimate, stderr)


def test_kl_is_summed_over_latent_dimensions():
    rng = np.random.default_rng(1)
    z_mean, z_log_var = rng.normal(size=(5, 4)), rng.normal(size=(5, 4))
    once = to_numpy(losses.kl_divergence(z_mean, z_log_var))
    twice = to_numpy(losses.kl_divergence(np.tile(z_mean, 2), np.tile(z_log_var, 2)))
    np.testing.assert_allclose(twice, 2 * once, rtol=1e-6)


def test_kl_is_zero_at_standard_normal_and_positive_elsewhere():
    np.testing.assert_allclose(to_numpy(losses.kl_divergence(np.zeros((3, 8)), np.zeros((3, 8)))), 0.0, atol=1e-7)
    rng = np.random.default_rng(2)
    kl = to_numpy(losses.kl_divergence(rng.normal(size=(100, 8)), rng.normal(size=(100, 8))))
    assert np.all(kl > 0)


def test_kl_gradients_match_formulas():
    rng = np.random.default_rng(3)
    z_mean, z_log_var = rng.normal(size=(2, 6, 3)).astype(np.float32)
    d_mean, d_log_var = gradients(lambda m, v: ops.sum(losses.kl_divergence(m, v)), z_mean, z_log_var)
    np.testing.assert_allclose(d_mean, z_mean, rtol=1e-5)
    np.testing.assert_allclose(d_log_var, (np.exp(z_log_var) - 1) / 2, rtol=1e-5, atol=1e-6)


def np_bce(x, logits):
    p = 1.0 / (1.0 + np.exp(-logits))
    return -(x * np.log(p) + (1 - x) * np.log(1 - p)).reshape(len(x), -1).sum(axis=1)


def test_reconstruction_loss_equals_numpy_bce_summed_over_pixels():
    rng = np.random.default_rng(4)
    x = rng.uniform(size=(5, 28, 28, 1))
    logits = rng.normal(scale=3.0, size=(5, 28, 28, 1))
    got = to_numpy(losses.reconstruction_loss(x, logits))
    assert got.shape == (5,) and got.dtype == np.float32
    np.testing.assert_allclose(got, np_bce(x, logits), rtol=1e-5)


def test_reconstruction_loss_is_finite_and_exact_for_extreme_logits():
    x = np.array([[0.0, 1.0, 0.0, 1.0, 0.5]])
    logits = np.array([[100.0, -100.0, -100.0, 100.0, 100.0]])
    got = to_numpy(losses.reconstruction_loss(x, logits))
    assert np.all(np.isfinite(got))
    # Confidently wrong on two pixels costs 100 nats each; half-wrong on the last costs 50.
    np.testing.assert_allclose(got, [250.0], rtol=1e-5)


def test_reconstruction_gradient_matches_finite_differences():
    rng = np.random.default_rng(5)
    x = rng.uniform(size=(2, 28, 28, 1)).astype(np.float64)
    logits = rng.normal(size=(2, 28, 28, 1)).astype(np.float32)
    (analytic,) = gradients(lambda logits: ops.sum(losses.reconstruction_loss(x, logits)), logits)
    np.testing.assert_allclose(analytic, 1 / (1 + np.exp(-logits)) - x, atol=1e-5)
    # Central differences on a few pixels, in float64 through the NumPy reference.
    base = logits.astype(np.float64)
    for idx in [(0, 3, 4, 0), (1, 14, 14, 0), (1, 27, 0, 0)]:
        h = 1e-4
        up, down = base.copy(), base.copy()
        up[idx] += h
        down[idx] -= h
        numeric = (np_bce(x, up).sum() - np_bce(x, down).sum()) / (2 * h)
        assert analytic[idx] == pytest.approx(numeric, abs=1e-4)


def test_gaussian_log_densities_match_numpy():
    rng = np.random.default_rng(6)
    z, mean, log_var = rng.normal(size=(3, 4, 5))
    expected = (-0.5 * (np.log(2 * np.pi) + log_var + (z - mean) ** 2 / np.exp(log_var))).sum(-1)
    np.testing.assert_allclose(to_numpy(losses.gaussian_log_density(z, mean, log_var)), expected, rtol=1e-5)
    np.testing.assert_allclose(to_numpy(losses.standard_normal_log_density(z)),
                               (-0.5 * (np.log(2 * np.pi) + z**2)).sum(-1), rtol=1e-5)


def test_losses_are_float32_for_half_precision_inputs():
    z = np.zeros((2, 3), np.float16)
    assert to_numpy(losses.kl_divergence(z, z)).dtype == np.float32
    x = np.zeros((2, 28, 28, 1), np.float16)
    assert to_numpy(losses.reconstruction_loss(x, x)).dtype == np.float32
