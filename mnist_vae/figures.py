"""Turns a trained model and the test images into the arrays that plots.py draws, and saves the figures."""
import os

import numpy as np
from keras import ops

import losses
from mnist_vae import plots
from model import CLASSES, LOSS_TERMS, decoder_inputs, one_hot

LOSS_TITLES = dict(zip(LOSS_TERMS, ("loss = reconstruction + β·KL", "reconstruction (BCE)", "KL(q(z|x) ‖ N(0, I))")))


def loss_titles(objective="elbo", likelihood="bernoulli", kl_label=None):
    """Plot titles of the loss terms; under IWAE the loss is the importance-weighted bound. kl_label: the model's
    name for its KL term (VAE.kl_label), N(0, I)'s closed form when None."""
    titles = dict(LOSS_TITLES)
    if kl_label:
        titles["kl_loss"] = kl_label
    if objective == "iwae":
        titles["loss"] = "loss = −IWAE bound (k samples)"
    if likelihood == "continuous-bernoulli":
        titles["reconstruction_loss"] = "reconstruction (−log continuous Bernoulli)"
    return titles


# What a drawn pixel is, under each likelihood: the figures' captions say it.
SHOWN = {"bernoulli": "pixels: the Bernoulli means, sigmoid(logit)",
         "continuous-bernoulli": "pixels: the continuous Bernoulli's means (not its parameter sigmoid(logit))"}


def pixels_of(logits, likelihood="bernoulli"):
    """The pixels a figure draws: the decoder's means (losses.pixel_means) as (N, 28, 28) NumPy."""
    return ops.convert_to_numpy(losses.pixel_means(logits, likelihood))[..., 0]


def _interpolation_pairs(labels, pairs=6, n=None):
    """Index pairs of test digits with different labels: first 0 with first 5, first 1 with first 6, ...
    (without labels: images 0 and 1, 2 and 3, ... of the n)."""
    if labels is None:
        return [(i, i + 1) for i in range(0, n - 1, 2)][:pairs]
    first = {int(d): int(np.argmax(labels == d)) for d in np.unique(labels)}
    chosen = [(first[a], first[(a + 5) % 10]) for a in range(10) if a in first and (a + 5) % 10 in first]
    chosen += [(i, i + 1) for i in range(0, len(labels) - 1, 2)]  # fallback for tiny label sets
    return chosen[:pairs]


def frame_labels(n):
    """The digit each of n fixed draws is decoded as, for a conditional model: 0, 1, ..., 9, 0, 1, ..."""
    return np.arange(n) % CLASSES


class _Decoding:
    """What every figure of one model shares: its decoder, the pixels it draws and where they go."""

    def __init__(self, vae, run_dir):
        self.vae, self.run_dir = vae, run_dir
        self.likelihood = vae.likelihood
        self.note = SHOWN[self.likelihood]

    def path(self, name):
        return os.path.join(self.run_dir, name)

    def __call__(self, z, labels=None):
        """Pixels decoded at z (with these digit labels, for a conditional model); labels may be one-hot rows."""
        if self.vae.conditional and labels is not None and np.ndim(labels) == 2:
            return pixels_of(self.vae.decoder([z, labels]), self.likelihood)
        return pixels_of(self.vae.decoder(decoder_inputs(self.vae, z, labels)), self.likelihood)


class Skipped(str):
    """Why a figure was not drawn (in place of its path)."""


def save_all(vae, x_test, y_test, history, run_dir, posterior, seed=0, frames=None):
    """Write every PNG figure (and progress.gif) into run_dir; returns ({name: path written}, {name: why it was
    skipped}).

    posterior: the test images' codes and their per-dimension summary (evaluation.encode)."""
    decode, written = _Decoding(vae, run_dir), {}
    x_test = np.asarray(x_test, dtype=np.float32)
    y_test = None if y_test is None else np.asarray(y_test)
    z_mean = posterior["z_mean"]
    if history and "loss" in history:
        suptitle = "Training curves (loss: the objective; the ELBO's terms beside it; averaged over images)"
        written["loss"] = plots.loss_curves(history, loss_titles(vae.objective, decode.likelihood, vae.kl_label),
                                            decode.path("loss.png"), suptitle=suptitle)
    written["reconstructions"] = plots.reconstructions(
        x_test[:10, ..., 0], decode(z_mean[:10], None if y_test is None else y_test[:10]),
        decode.path("reconstructions.png"), note=decode.note)
    written["samples"] = _samples(decode, seed)
    written["latent_scatter"] = plots.latent_scatter(z_mean, y_test, decode.path("latent_scatter.png"))
    written["latent_manifold"] = _manifold(decode, z_mean)
    pairs = _interpolation_pairs(y_test, n=len(x_test))
    written["interpolation"] = (_interpolation(decode, z_mean, y_test, pairs) if pairs
                                else Skipped("needs at least two test images"))
    written["kl_per_dim"] = plots.kl_per_dim(posterior["kl_per_dim"], posterior["active"], posterior["threshold"],
                                             decode.path("kl_per_dim.png"), estimate=not vae.prior.closed_form,
                                             top_layer=vae.stochastic_layers > 1)
    if history and "test_nll_iw" in history:
        written["nll_by_stage"] = nll_by_stage(history, decode.path("nll_by_stage.png"))
    skipped = {name: note for name, note in written.items() if isinstance(note, Skipped)}
    written = {name: path for name, path in written.items() if name not in skipped}
    if frames and any(f is not None for f in frames):
        written["progress"] = plots.progress_gif(
            frames, decode.path("progress.gif"),
            means="continuous-Bernoulli means" if decode.likelihood != "bernoulli" else "")
    return written, skipped


def nll_by_stage(history, path):
    return plots.nll_against_passes({"this run": plots.stage_points(history)}, path,
                                    "Test NLL at the end of each stage (k = 1000, the first 2,000 test images)")


def _samples(decode, seed):
    if decode.vae.conditional:  # row d: label d; column j: the same z_j
        z = np.tile(decode.vae.prior.draw(10, seed), (CLASSES, 1))
        images = decode(z, np.repeat(np.arange(CLASSES), 10)).reshape(CLASSES, 10, 28, 28)
        return plots.samples_by_digit(images, decode.path("samples.png"), note=decode.note)
    return plots.samples(decode(decode.vae.prior.draw(64, seed)), decode.path("samples.png"),
                         title=f"Samples: decoded draws z ~ {decode.vae.sampled_from}", note=decode.note)


def _manifold(decode, z_mean):
    latent_dim = z_mean.shape[1]
    if latent_dim < 2:
        return Skipped("needs at least 2 latent dimensions")
    grid = plots.gaussian_grid(8 if decode.vae.conditional else 20)
    if latent_dim == 2:
        zz, axis_names = np.array([[a, b] for b in grid[::-1] for a in grid], dtype=np.float32), ("z[0]", "z[1]")
    else:  # the plane of the two principal directions of the codes, scaled by their spread
        projected, directions, _ = plots.principal_components(z_mean)
        centre, spread = z_mean.mean(axis=0), projected.std(axis=0)
        zz = np.array([centre + a * spread[0] * directions[0] + b * spread[1] * directions[1]
                       for b in grid[::-1] for a in grid], dtype=np.float32)
        axis_names = ("principal direction 1 (in its std)", "principal direction 2 (in its std)")
    path = decode.path("latent_manifold.png")
    if decode.vae.conditional:  # one panel per digit label, the same grid of z in each
        images = decode(np.tile(zz, (CLASSES, 1)), np.repeat(np.arange(CLASSES), len(zz)))
        return plots.latent_manifold_by_digit(images.reshape(CLASSES, len(zz), 28, 28), grid, path, axis_names,
                                              note=decode.note)
    return plots.latent_manifold(decode(zz), grid, path, axis_names, note=decode.note)


def _interpolation(decode, z_mean, y_test, pairs):
    t = np.linspace(0, 1, 10, dtype=np.float32)[None, :, None]
    first, second = [a for a, _ in pairs], [b for _, b in pairs]
    line = ((1 - t) * z_mean[first][:, None] + t * z_mean[second][:, None]).reshape(-1, z_mean.shape[1])
    labels = None
    if decode.vae.conditional:  # the label moves from one digit's one-hot to the other's along with z
        labels = ((1 - t) * one_hot(y_test[first])[:, None] + t * one_hot(y_test[second])[:, None]).reshape(-1, CLASSES)
    decoded = decode(line, labels).reshape(len(pairs), 10, 28, 28)
    return plots.interpolation(decoded, decode.path("interpolation.png"), note=decode.note)


def describe(vae):
    """The model in a line, for explorer.html's heading: its decoder, latent size, likelihood, and what its
    pixels show."""
    conv = any(layer.__class__.__name__ == "Conv2DTranspose" for layer in vae.decoder.layers)
    likelihood = vae.likelihood
    return (f"{'conv' if conv else 'dense'} decoder, {vae.latent_label}, {likelihood} likelihood"
            + (", conditional on the digit label" if vae.conditional else "") + "; " + SHOWN[likelihood])
