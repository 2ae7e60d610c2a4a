"""Sampling statistics and gradients, encoder/decoder shapes, the training loss wiring, save/reload."""
import math
import subprocess
import sys

import keras
import numpy as np
import pytest
from conftest import (
    ROOT,  # noqa: E402  (the repository root)
    gradients,
    per_example_losses,
    to_numpy,
)
from keras import ops

import losses
from mnist_vae import data
from model import Sampling, build_vae

pytestmark = pytest.mark.backend_core  # CI runs these on PyTorch too (pytest.ini)


def test_sampling_shape_mean_and_std():
    n = 200_000
    z_mean = np.tile(np.array([[1.0, -2.0, 0.0]], np.float32), (n, 1))
    z_log_var = np.tile(np.log(np.array([[1.0, 4.0, 0.25]], np.float32)), (n, 1))
    z = to_numpy(Sampling(seed=0)([z_mean, z_log_var]))
    assert z.shape == (n, 3) and z.dtype == np.float32
    # Standard errors are std/sqrt(n) ~ 0.004 at most: 5 of them is a generous, still failing bound.
    np.testing.assert_allclose(z.mean(axis=0), [1.0, -2.0, 0.0], atol=0.02)
    np.testing.assert_allclose(z.std(axis=0), [1.0, 2.0, 0.5], rtol=0.01)


def test_sampling_is_seeded_and_gradients_reach_both_inputs():
    zeros = np.zeros((4, 2), np.float32)
    eps = to_numpy(Sampling(seed=7)([zeros, zeros]))  # at mean 0, log-variance 0, z is eps itself
    d_mean, d_log_var = gradients(lambda m, v: ops.sum(Sampling(seed=7)([m, v])), zeros, zeros)
    np.testing.assert_allclose(d_mean, 1.0)
    np.testing.assert_allclose(d_log_var, 0.5 * eps, rtol=1e-6)
    assert np.any(d_log_var != 0)
    np.testing.assert_array_equal(to_numpy(Sampling(seed=7)([zeros, zeros])), eps)


@pytest.mark.parametrize("arch", ["dense", "conv"])
@pytest.mark.parametrize("latent_dim", [1, 2, 5])
def test_encoder_and_decoder_shapes(arch, latent_dim):
    vae = build_vae(arch, latent_dim, hidden=32, seed=0)
    x = np.random.default_rng(0).uniform(size=(3, 28, 28, 1)).astype(np.float32)
    z_mean, z_log_var = vae.encoder(x)
    assert z_mean.shape == (3, latent_dim) and z_log_var.shape == (3, latent_dim)
    logits = vae.decoder(z_mean)
    assert tuple(logits.shape) == (3, 28, 28, 1) and to_numpy(logits).dtype == np.float32
    outputs = vae(x)
    assert tuple(outputs["logits"].shape) == (3, 28, 28, 1) and tuple(outputs["z_log_var"].shape) == (3, latent_dim)


def test_training_loss_is_batch_mean_of_reconstruction_plus_beta_kl():
    """One train step's reported numbers against the loss functions applied by hand."""
    x = np.random.default_rng(1).uniform(size=(16, 28, 28, 1)).astype(np.float32)
    vae = build_vae("dense", 3, hidden=16, beta=0.25, seed=3)
    vae.compile(optimizer=keras.optimizers.SGD(0.0))  # lr 0: the step must not move the weights
    eps = np.random.default_rng(2).standard_normal((16, 3)).astype(np.float32)  # as the pipeline supplies it
    batch = {"image": x, "eps": eps, "weight": np.full(16, 1 / 16, np.float32)}
    reconstruction, kl = (to_numpy(t) for t in per_example_losses(vae, batch))
    logs = vae.train_on_batch(batch, return_dict=True)
    assert logs["reconstruction_loss"] == pytest.approx(reconstruction.mean(), rel=1e-5)
    assert logs["kl_loss"] == pytest.approx(kl.mean(), rel=1e-5)
    assert logs["loss"] == pytest.approx(reconstruction.mean() + 0.25 * kl.mean(), rel=1e-5)


def test_gradient_step_follows_the_mean_loss():
    """The applied update equals -lr * grad of mean(rec + beta*kl) for the same draw of z, where the
    gradient is taken here by the backend's own autodiff through stateless_call (not through fit)."""
    x = np.random.default_rng(2).uniform(size=(8, 28, 28, 1)).astype(np.float32)
    vae = build_vae("dense", 2, hidden=8, beta=1.0, seed=4)
    vae.compile(optimizer=keras.optimizers.SGD(0.1))
    eps = np.random.default_rng(3).standard_normal((8, 2)).astype(np.float32)
    batch = {"image": x, "eps": eps, "weight": np.full(8, 1 / 8, np.float32)}
    before = [to_numpy(w) for w in vae.trainable_variables]
    non_trainable = [v.value for v in vae.non_trainable_variables]

    def mean_loss(*trainable):
        outputs, _ = vae.stateless_call(list(trainable), non_trainable, batch)
        return ops.mean(losses.weighted_elbo_loss(losses.reconstruction_loss(x, outputs["logits"]),
                                             losses.kl_divergence(outputs["z_mean"], outputs["z_log_var"]), 1.0))

    grads = gradients(mean_loss, *before)
    vae.train_on_batch(batch)
    for b, g, w in zip(before, grads, vae.trainable_variables):
        np.testing.assert_allclose(to_numpy(w), b - 0.1 * g, rtol=1e-4, atol=1e-6)


@pytest.mark.slow
@pytest.mark.multiprocess
@pytest.mark.backend_independent  # test_across_backends.py reloads each backend's models under every other
@pytest.mark.parametrize("arch", ["dense", "conv", "dense-gated-clamped"])
def test_save_and_reload_in_a_fresh_process(tmp_path, arch):
    x = np.random.default_rng(5).uniform(size=(6, 28, 28, 1)).astype(np.float32)
    if arch == "dense-gated-clamped":  # the VampPrior recipe's layers: gated, z_log_var clamped
        vae = build_vae("dense", 2, hidden=16, seed=5, activation="gated", log_var_range=(-0.01, 0.01))
    else:
        vae = build_vae(arch, 2, hidden=16, seed=5)
    vae.compile(optimizer=keras.optimizers.Adam(1e-3))
    vae.fit(x, epochs=1, batch_size=3, verbose=0)  # plain images: the layer draws its own noise
    path = str(tmp_path / "model.keras")
    vae.save(path)
    np.save(tmp_path / "x.npy", x)
    script = f"""
import sys, numpy as np, keras
sys.path.insert(0, {ROOT!r})
import model  # registers the custom classes
vae = keras.saving.load_model({path!r})  # safe mode (the default)
x = np.load({str(tmp_path / 'x.npy')!r})
z_mean, z_log_var = vae.encoder(x)
c = keras.ops.convert_to_numpy
np.savez({str(tmp_path / 'out.npz')!r}, z_mean=c(z_mean), z_log_var=c(z_log_var),
         decoded=c(vae.decoder(z_mean)), sampled=c(vae(x)["logits"]), beta=vae.beta)
"""
    subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, timeout=120)
    out = np.load(tmp_path / "out.npz")
    z_mean, z_log_var = vae.encoder(x)
    np.testing.assert_array_equal(out["z_mean"], to_numpy(z_mean))
    np.testing.assert_array_equal(out["z_log_var"], to_numpy(z_log_var))
    np.testing.assert_array_equal(out["decoded"], to_numpy(vae.decoder(z_mean)))
    # The seed generator's state is saved too, so even the next random draw is the same.
    np.testing.assert_array_equal(out["sampled"], to_numpy(vae(x)["logits"]))
    assert float(out["beta"]) == 1.0


def test_a_clamped_log_variance_stays_in_its_range_and_passes_gradients_only_inside_it():
    from model import Clamp

    x = np.array([[-9.0, -6.0, -1.5, 0.0, 2.0, 7.5]], np.float32)
    np.testing.assert_array_equal(to_numpy(Clamp(-6, 2)(x)), [[-6.0, -6.0, -1.5, 0.0, 2.0, 2.0]])
    # d/dx of sum(clamp(x) * w): w strictly inside the range, 0 outside it
    w = np.array([[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]], np.float32)
    (grad,) = gradients(lambda t: ops.sum(Clamp(-6, 2)(t) * ops.convert_to_tensor(w)), x)
    np.testing.assert_array_equal(grad[0, [0, 2, 3, 5]], [0.0, 3.0, 4.0, 0.0])
    # Built into the encoder: whatever the input, z_log_var stays within the bounds, z_mean is untouched.
    images = np.random.default_rng(0).uniform(size=(64, 28, 28, 1)).astype(np.float32) * 50
    free = build_vae("dense", 8, hidden=16, seed=1)
    clamped = build_vae("dense", 8, hidden=16, seed=1, log_var_range=(-0.5, 0.25))
    for name in ("hidden", "z_mean", "z_log_var"):  # the same weights, layer by layer (the head's name differs)
        clamped.encoder.get_layer(name if name != "z_log_var" else "z_log_var_unclamped").set_weights(
            free.encoder.get_layer(name).get_weights())
    (mean_free, log_var_free), (mean, log_var) = (
        [to_numpy(t) for t in vae.encoder(images)] for vae in (free, clamped))
    assert log_var_free.min() < -0.5 and log_var_free.max() > 0.25  # the bounds bite on these inputs
    np.testing.assert_array_equal(log_var, np.clip(log_var_free, -0.5, 0.25))
    np.testing.assert_array_equal(mean, mean_free)


def test_the_output_bias_is_the_logit_of_the_clipped_pixel_means():
    from model import build_vae, output_bias_from_pixel_means

    images = np.zeros((4, 28, 28, 1), np.uint8)
    images[:2, 10:20, 10:20] = 255  # pixels with mean 0 (clipped), 0.5 and, below, 1 (clipped)
    images[:, 0, 0] = 255
    means = data.mean_pixels(images)
    vae = build_vae("dense", 2, hidden=8, seed=0)
    output_bias_from_pixel_means(vae, means)
    bias = vae.decoder.get_layer("pixel_logits").bias.numpy().reshape(28, 28)
    assert bias[0, 0] == pytest.approx(math.log(0.999 / 0.001), rel=1e-6)
    assert bias[15, 15] == pytest.approx(0.0, abs=1e-7)
    assert bias[27, 27] == pytest.approx(math.log(0.001 / 0.999), rel=1e-6)
