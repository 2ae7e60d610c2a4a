"""mnist_vae/dreg.py: DReG's loss has the IWAE bound's value; its decoder gradient is the plain one, draw by draw;
its encoder gradient has the plain one's expectation (Monte-Carlo averages over draws, within their standard
errors) and a smaller variance. On every backend the suite runs on."""

import keras
import numpy as np
import pytest
from conftest import gradients, to_numpy

from mnist_vae import dreg as dreg_gradient
from model import build_vae

pytestmark = pytest.mark.backend_core  # CI runs these on PyTorch too (pytest.ini)

K, DRAWS = 5, 120


@pytest.fixture(scope="module")
def models(digits):
    """The same small IWAE (k = 5) twice, one trained with DReG, on two real digits."""
    images = digits[0][:2].astype(np.float32) / 255.0
    plain = build_vae(latent_dim=2, hidden=8, objective="iwae", k=K, seed=0)
    dreg = build_vae(latent_dim=2, hidden=8, objective="iwae", k=K, seed=0,
                     gradient_estimator=dreg_gradient.estimator)
    dreg.set_weights(plain.get_weights())
    return plain, dreg, images


def batch(images, draw):
    eps = np.random.default_rng(draw).standard_normal((len(images), K, 2)).astype(np.float32)
    return {"image": images, "eps": eps}


def mean_loss(vae, inputs):
    return keras.ops.mean(vae.loss_terms(inputs, vae(inputs, training=True))[2])


def variable_gradients(vae, inputs):
    """d(mean loss)/d(each trainable variable), through the backend's autodiff, with the variables' values swapped
    in by Keras' StatelessScope (so that every read inside the loss, the second decoding included, is traced)."""
    variables = vae.trainable_variables

    def loss(*values):
        with keras.StatelessScope(state_mapping=list(zip(variables, values))):
            return mean_loss(vae, inputs)

    return [g.ravel() for g in gradients(loss, *[to_numpy(v) for v in variables])]


def test_the_loss_is_the_iwae_bound_and_the_decoder_gradient_is_unchanged(models):
    plain, dreg, images = models
    inputs = batch(images, 0)
    np.testing.assert_allclose(to_numpy(dreg.loss_terms(inputs, dreg(inputs, training=True))[2]),
                               to_numpy(plain.loss_terms(inputs, plain(inputs, training=True))[2]), rtol=1e-6)
    encoder = len(plain.encoder.trainable_variables)
    for a, b in zip(variable_gradients(plain, inputs)[encoder:], variable_gradients(dreg, inputs)[encoder:]):
        # The decoder's: w~ grad log w, both ways, up to float32 rounding. Log-weights near -550 hold about 3e-5
        # absolutely, and PyTorch's logsumexp differentiates as exp(log w - logsumexp): weights off by up to
        # 2e-5 of the largest gradient there (measured), 1e-7 on TensorFlow and JAX.
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-4 * np.abs(a).max())


@pytest.mark.slow  # 240 gradients, one by one (seconds)
def test_the_encoder_gradient_is_unbiased_with_a_smaller_variance(models):
    plain, dreg, images = models
    encoder = len(plain.encoder.trainable_variables)
    samples = {"plain": [], "dreg": []}
    for draw in range(DRAWS):  # the same draws for both: paired differences
        inputs = batch(images, draw)
        for name, vae in (("plain", plain), ("dreg", dreg)):
            samples[name].append(np.concatenate(variable_gradients(vae, inputs)[:encoder]))
    plain_g, dreg_g = np.array(samples["plain"]), np.array(samples["dreg"])
    difference = dreg_g - plain_g
    stderr = difference.std(axis=0, ddof=1) / np.sqrt(DRAWS)
    moving = stderr > 1e-7  # parameters the gradient reaches (ReLU units that are off for both digits do not)
    z_scores = difference.mean(axis=0)[moving] / stderr[moving]
    # Unbiased: every parameter's mean difference within a few standard errors of 0 (a bias would grow its
    # z-score like the square root of the draws; with 800 draws the largest measured 2.9).
    assert np.abs(z_scores).max() < 5, np.sort(np.abs(z_scores))[-5:]
    # A smaller variance for the encoder, summed over its parameters: the score-function term is gone (measured
    # here: about 7% of the plain gradient's).
    assert dreg_g.var(axis=0).sum() < 0.5 * plain_g.var(axis=0).sum()
