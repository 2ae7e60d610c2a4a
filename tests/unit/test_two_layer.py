"""mnist_vae/two_layer.py: the two-stochastic-layer model's log-weights against a hand computation (NumPy,
float64), its bound at k = 1 against its ELBO and tightening with k, its views (encoder, decoder) against its
networks and save/reload (its run end to end: tests/programs/test_train_families.py). On every backend the suite
runs on."""

import keras
import numpy as np
import pytest
from conftest import to_numpy

from mnist_vae import evaluation, families
from mnist_vae.config import from_saved
from mnist_vae.two_layer import TwoLayerVAE, build_two_layer_vae

pytestmark = pytest.mark.backend_core  # CI runs these on PyTorch too (pytest.ini)


@pytest.fixture(scope="module")
def vae(digits):
    """A small two-layer model (z1: 4-D, z2: 2-D, tanh) with weights far from zero, on 32 binarized digits."""
    model = build_two_layer_vae(2, "12", "tanh", seed=0)
    rng = np.random.default_rng(1)
    for weight in model.trainable_weights:  # (the KL weight, not trainable, stays 1)
        weight.assign(to_numpy(weight) + rng.normal(0, 0.3, weight.shape).astype(np.float32))
    images = (digits[0][:32] > 127).astype(np.float32)
    return model, images


def _dense(model, name, x):
    kernel, bias = (np.asarray(w, np.float64) for w in model.get_layer(name).get_weights())
    return x @ kernel + bias


def _log_normal(z, mean, log_var):
    return -0.5 * np.sum(np.log(2 * np.pi) + log_var + (z - mean) ** 2 / np.exp(log_var), axis=-1)


def hand_log_weights(vae, images, eps):
    """log w per draw, written out from the layers' weights in float64: log p(x|z1) + log p(z1|z2) + log N(z2)
    - log q(z1|x) - log q(z2|z1), z1 = mu1 + sigma1 eps[:d1], z2 = mu2(z1) + sigma2(z1) eps[d1:]."""
    x = images.reshape(len(images), -1).astype(np.float64)
    h = np.tanh(_dense(vae.q_z1, "q_z1_hidden_1", x))
    mean_1, log_var_1 = _dense(vae.q_z1, "z1_mean", h)[:, None], _dense(vae.q_z1, "z1_log_var", h)[:, None]
    d1 = mean_1.shape[-1]
    z1 = mean_1 + np.exp(0.5 * log_var_1) * eps[..., :d1]
    g = np.tanh(_dense(vae.q_z2, "q_z2_hidden_1", z1))
    mean_2, log_var_2 = _dense(vae.q_z2, "z_mean", g), _dense(vae.q_z2, "z_log_var", g)
    z2 = mean_2 + np.exp(0.5 * log_var_2) * eps[..., d1:]
    p = np.tanh(_dense(vae.p_z1, "p_z1_hidden_1", z2))
    logits = _dense(vae.p_x, "pixel_logits", np.tanh(_dense(vae.p_x, "p_x_hidden_1", z1)))
    log_px = np.sum(x[:, None] * logits - np.logaddexp(0, logits), axis=-1)
    return (log_px + _log_normal(z1, _dense(vae.p_z1, "prior_z1_mean", p), _dense(vae.p_z1, "prior_z1_log_var", p))
            + _log_normal(z2, 0, 0) - _log_normal(z1, mean_1, log_var_1) - _log_normal(z2, mean_2, log_var_2))


def test_the_log_weights_are_the_two_layers_densities_worked_by_hand(vae):
    model, images = vae
    eps = np.random.default_rng(2).standard_normal((len(images), 3, model.noise_dim)).astype(np.float32)
    terms = model.log_weight_terms(images, eps)
    log_px, log_ratio = (to_numpy(terms[name]) for name in ("log_px", "log_ratio"))
    np.testing.assert_allclose(log_px + log_ratio, hand_log_weights(model, images, eps.astype(np.float64)),
                               rtol=1e-5, atol=1e-2)
    # the forward pass and the training loss: one draw per image is the ELBO's integrand, the KL its estimate
    out = model({"image": images, "eps": eps[:, 0]})
    reconstruction, kl, loss = (to_numpy(t) for t in model.loss_terms(images, out))
    np.testing.assert_allclose(reconstruction, -log_px[:, 0], rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(kl, -log_ratio[:, 0], rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(loss, reconstruction + kl, rtol=1e-6, atol=1e-3)


def test_the_iwae_loss_is_the_negative_bound_and_equals_the_elbo_at_k_1(vae):
    model, images = vae
    iwae = build_two_layer_vae(2, "12", "tanh", seed=0, objective="iwae", k=4)
    iwae.set_weights(model.get_weights())
    eps = np.random.default_rng(3).standard_normal((len(images), 4, model.noise_dim)).astype(np.float32)
    log_w = hand_log_weights(model, images, eps.astype(np.float64))
    bound = np.log(np.mean(np.exp(log_w - log_w.max(1, keepdims=True)), axis=1)) + log_w.max(1)
    loss = to_numpy(iwae.loss_terms(images, iwae({"image": images, "eps": eps}))[2])
    np.testing.assert_allclose(loss, -bound, rtol=1e-5, atol=1e-2)
    one = to_numpy(iwae.loss_terms(images, iwae({"image": images, "eps": eps[:, :1]}))[2])
    elbo = to_numpy(model.loss_terms(images, model({"image": images, "eps": eps[:, 0]}))[2])
    np.testing.assert_allclose(one, elbo, rtol=1e-6, atol=1e-3)


def test_the_evaluated_bound_is_the_elbo_at_k_1_and_tightens_with_k(vae):
    model, images = vae
    q1 = [to_numpy(t) for t in model.encoder(images)]  # the top layer's: the bound draws both layers itself

    def weights():  # compiled anew for each k: one shape of draws per compiled function
        return evaluation.importance_weights(model, len(images))(None)

    one = evaluation.iw_bound(images, *q1, weights(), 1, seed=(7, 0), noise_dim=model.noise_dim)
    eps = np.random.default_rng([7, 0]).standard_normal((1, len(images), model.noise_dim), dtype=np.float32)[0]
    np.testing.assert_allclose(one, hand_log_weights(model, images, eps[:, None])[:, 0], rtol=1e-5, atol=1e-2)
    bounds = [evaluation.iw_bound(images, *q1, weights(), k, seed=(8, 0), noise_dim=model.noise_dim).mean()
              for k in (1, 20, 500)]
    assert bounds[0] + 0.5 < bounds[1] < bounds[2], bounds  # on 32 images: far beyond the draws' noise
    # the held-out numbers: the ELBO's terms at one draw, the NLL tighter than the ELBO
    results, posterior = evaluation.evaluate_model(model, images, k=50)
    assert results["kl_is_estimate"] and results["stochastic_layers"] == 2
    assert results["nll_iw"] < results["negative_elbo"]
    assert posterior["z_mean"].shape == (len(images), 2)  # the top layer's


def test_the_views_are_the_networks_mean_paths(vae):
    model, images = vae
    mean_1 = model.q_z1(images)[0]
    np.testing.assert_allclose(to_numpy(model.encoder(images)[0]), to_numpy(model.q_z2(mean_1)[0]), rtol=1e-6)
    z2 = np.random.default_rng(4).standard_normal((5, 2)).astype(np.float32)
    np.testing.assert_allclose(to_numpy(model.decoder(z2)), to_numpy(model.p_x(model.p_z1(z2)[0])), rtol=1e-6,
                               atol=1e-5)
    weights = sum(int(np.prod(w.shape)) for w in model.trainable_weights)  # each shared layer counted once
    settings = from_saved({"latent_dim": 2, "hidden": "12", "activation": "tanh", "stochastic_layers": 2})
    assert weights == families.of(settings).parameters(settings)


def test_it_saves_and_reloads_with_its_views_sharing_the_networks_weights(tmp_path, vae):
    model, images = vae
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    assert isinstance(loaded, TwoLayerVAE)
    eps = np.random.default_rng(5).standard_normal((len(images), 2, loaded.noise_dim)).astype(np.float32)
    for name in ("log_px", "log_ratio"):
        np.testing.assert_array_equal(to_numpy(model.log_weight_terms(images, eps)[name]),
                                      to_numpy(loaded.log_weight_terms(images, eps)[name]))
    assert loaded.decoder.get_layer("p_x") is loaded.p_x  # the view is made of the network, not a copy
