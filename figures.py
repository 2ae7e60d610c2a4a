"""Turns a trained model and the test images into the arrays that plots.py draws, and saves the figures."""
import os

import numpy as np
from keras import ops

import plots


def _pixels(logits):
    return np.asarray(ops.sigmoid(logits))[..., 0]


def save_all(vae, x_test, y_test, history, run_dir, seed=0):
    """Write every PNG into run_dir; returns {name: path, or a note saying why it was skipped}."""
    written = {}
    path = lambda name: os.path.join(run_dir, name)  # noqa: E731
    if history and "loss" in history:
        written["loss"] = plots.loss_curves(history, path("loss.png"))

    shown = np.asarray(x_test[:10], dtype=np.float32)
    z_mean, _ = vae.encoder(shown)
    written["reconstructions"] = plots.reconstructions(shown[..., 0], _pixels(vae.decoder(z_mean)),
                                                       path("reconstructions.png"))

    latent_dim = vae.decoder.input_shape[-1]
    z = np.random.default_rng(seed).standard_normal((64, latent_dim)).astype(np.float32)
    written["samples"] = plots.samples(_pixels(vae.decoder(z)), path("samples.png"))

    z_mean_all = np.asarray(vae.encoder.predict(np.asarray(x_test, np.float32), batch_size=1000, verbose=0)[0])
    written["latent_scatter"] = plots.latent_scatter(z_mean_all, np.asarray(y_test), path("latent_scatter.png"))

    if latent_dim == 2:
        grid = plots.gaussian_grid(20)
        zz = np.array([[x, y] for y in grid[::-1] for x in grid], dtype=np.float32)
        written["latent_manifold"] = plots.latent_manifold(_pixels(vae.decoder(zz)), grid,
                                                           path("latent_manifold.png"))
    else:
        written["latent_manifold"] = f"skipped: needs a 2-D latent space (this model has {latent_dim})"
    return written
