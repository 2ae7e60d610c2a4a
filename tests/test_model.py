"""Sampling statistics and gradients, encoder/decoder shapes, the training loss wiring, save/reload."""
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

import losses
from model import Sampling, build_vae

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_sampling_shape_mean_and_std():
    n = 200_000
    z_mean = np.tile(np.array([[1.0, -2.0, 0.0]], np.float32), (n, 1))
    z_log_var = np.tile(np.log(np.array([[1.0, 4.0, 0.25]], np.float32)), (n, 1))
    z = np.asarray(Sampling(seed=0)([z_mean, z_log_var]))
    assert z.shape == (n, 3) and z.dtype == np.float32
    # Standard errors are std/sqrt(n) ~ 0.004 at most: 5 of them is a generous, still failing bound.
    np.testing.assert_allclose(z.mean(axis=0), [1.0, -2.0, 0.0], atol=0.02)
    np.testing.assert_allclose(z.std(axis=0), [1.0, 2.0, 0.5], rtol=0.01)


def test_sampling_is_seeded_and_gradients_reach_both_inputs():
    z_mean = tf.Variable(np.zeros((4, 2), np.float32))
    z_log_var = tf.Variable(np.zeros((4, 2), np.float32))
    layer = Sampling(seed=7)
    with tf.GradientTape() as tape:
        z = layer([z_mean, z_log_var])
        total = tf.reduce_sum(z)
    d_mean, d_log_var = tape.gradient(total, [z_mean, z_log_var])
    eps = z.numpy()  # at mean 0, log-variance 0, z is eps itself
    np.testing.assert_allclose(d_mean.numpy(), 1.0)
    np.testing.assert_allclose(d_log_var.numpy(), 0.5 * eps, rtol=1e-6)
    assert np.any(d_log_var.numpy() != 0)
    np.testing.assert_array_equal(Sampling(seed=7)([z_mean, z_log_var]).numpy(), eps)


@pytest.mark.parametrize("arch", ["dense", "conv"])
@pytest.mark.parametrize("latent_dim", [1, 2, 5])
def test_encoder_and_decoder_shapes(arch, latent_dim):
    vae = build_vae(arch, latent_dim, hidden=32, seed=0)
    x = np.random.default_rng(0).uniform(size=(3, 28, 28, 1)).astype(np.float32)
    z_mean, z_log_var = vae.encoder(x)
    assert z_mean.shape == (3, latent_dim) and z_log_var.shape == (3, latent_dim)
    logits = vae.decoder(z_mean)
    assert logits.shape == (3, 28, 28, 1) and logits.dtype == tf.float32
    assert vae(x).shape == (3, 28, 28, 1)


def test_training_loss_is_batch_mean_of_reconstruction_plus_beta_kl():
    """One train step's reported numbers against the loss functions applied by hand."""
    x = np.random.default_rng(1).uniform(size=(16, 28, 28, 1)).astype(np.float32)
    vae = build_vae("dense", 3, hidden=16, beta=0.25, seed=3)
    vae.compile(optimizer=keras.optimizers.SGD(0.0))  # lr 0: the step must not move the weights
    eps = np.random.default_rng(2).standard_normal((16, 3)).astype(np.float32)  # as the pipeline supplies it
    reconstruction, kl = (np.asarray(t) for t in vae.per_example_losses(x, eps=eps))
    logs = vae.train_on_batch(x, eps, return_dict=True)
    assert logs["reconstruction_loss"] == pytest.approx(reconstruction.mean(), rel=1e-5)
    assert logs["kl_loss"] == pytest.approx(kl.mean(), rel=1e-5)
    assert logs["loss"] == pytest.approx(reconstruction.mean() + 0.25 * kl.mean(), rel=1e-5)


def test_gradient_step_follows_the_mean_loss():
    """The applied update equals -lr * grad of mean(rec + beta*kl) for the same draw of z."""
    x = np.random.default_rng(2).uniform(size=(8, 28, 28, 1)).astype(np.float32)
    vae = build_vae("dense", 2, hidden=8, beta=1.0, seed=4)
    vae.compile(optimizer=keras.optimizers.SGD(0.1))
    eps = np.random.default_rng(3).standard_normal((8, 2)).astype(np.float32)
    with tf.GradientTape() as tape:
        rec, kl = vae.per_example_losses(x, training=True, eps=eps)
        mean_loss = tf.reduce_mean(losses.negative_elbo(rec, kl, 1.0))
    grads = tape.gradient(mean_loss, vae.trainable_weights)
    before = [w.numpy() for w in vae.trainable_weights]
    vae.train_on_batch(x, eps)
    for b, g, w in zip(before, grads, vae.trainable_weights):
        np.testing.assert_allclose(w.numpy(), b - 0.1 * g.numpy(), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("arch", ["dense", "conv"])
def test_save_and_reload_in_a_fresh_process(tmp_path, arch):
    x = np.random.default_rng(5).uniform(size=(6, 28, 28, 1)).astype(np.float32)
    vae = build_vae(arch, 2, hidden=16, seed=5)
    vae.compile(optimizer=keras.optimizers.Adam(1e-3))
    vae.fit(x, epochs=1, batch_size=3, verbose=0)
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
np.savez({str(tmp_path / 'out.npz')!r}, z_mean=z_mean, z_log_var=z_log_var,
         decoded=vae.decoder(z_mean), sampled=vae(x), beta=vae.beta)
"""
    subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, timeout=120)
    out = np.load(tmp_path / "out.npz")
    z_mean, z_log_var = vae.encoder(x)
    np.testing.assert_array_equal(out["z_mean"], z_mean)
    np.testing.assert_array_equal(out["z_log_var"], z_log_var)
    np.testing.assert_array_equal(out["decoded"], vae.decoder(z_mean))
    # The seed generator's state is saved too, so even the next random draw is the same.
    np.testing.assert_array_equal(out["sampled"], vae(x))
    assert float(out["beta"]) == 1.0
