"""Turns a trained model and the test images into the arrays that plots.py draws, and saves the figures."""
import os

import keras
import numpy as np
from keras import ops

import explorer
import losses
import plots
from model import CLASSES, decoder_inputs, loss_titles, one_hot

# What a drawn pixel is, under each likelihood: the figures' captions say it.
SHOWN = {"bernoulli": "pixels: the Bernoulli means, sigmoid(logit)",
         "continuous-bernoulli": "pixels: the continuous Bernoulli's means (not its parameter sigmoid(logit))"}


def _pixels(logits, likelihood="bernoulli"):
    return ops.convert_to_numpy(losses.pixel_means(logits, likelihood))[..., 0]


def fixed_latent_draws(latent_dim, seed, n=64):
    """The same z ~ N(0, I) every time for a given seed: samples.png and each progress.gif frame use them."""
    return np.random.default_rng(seed).standard_normal((n, latent_dim)).astype(np.float32)


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


def save_all(vae, x_test, y_test, history, run_dir, posterior, seed=0, frames=None):
    """Write every figure into run_dir; returns {name: path, or a note saying why it was skipped}.

    posterior: the test images' codes and their per-dimension summary (evaluate.encode)."""
    written = {}
    path = lambda name: os.path.join(run_dir, name)  # noqa: E731
    likelihood = getattr(vae, "likelihood", "bernoulli")
    decode = lambda z, labels=None: _pixels(vae.decoder(decoder_inputs(vae, z, labels)), likelihood)  # noqa: E731
    pixel_note = SHOWN[likelihood]
    x_test = np.asarray(x_test, dtype=np.float32)
    y_test = None if y_test is None else np.asarray(y_test)
    if history and "loss" in history:
        suptitle = "Training curves (loss: the objective; the ELBO's terms beside it; averaged over images)"
        written["loss"] = plots.loss_curves(history, loss_titles(vae.objective, likelihood), path("loss.png"),
                                            suptitle=suptitle)

    z_mean = posterior["z_mean"]
    latent_dim = z_mean.shape[1]

    shown = x_test[:10]
    written["reconstructions"] = plots.reconstructions(shown[..., 0], decode(z_mean[:10], None if y_test is None else y_test[:10]),
                                                       path("reconstructions.png"), note=pixel_note)
    if vae.conditional:  # row d: label d; column j: the same z_j
        z = np.tile(fixed_latent_draws(latent_dim, seed, 10), (CLASSES, 1))
        digits = np.repeat(np.arange(CLASSES), 10)
        written["samples"] = plots.samples_by_digit(decode(z, digits).reshape(CLASSES, 10, 28, 28), path("samples.png"),
                                                    note=pixel_note)
    else:
        written["samples"] = plots.samples(decode(fixed_latent_draws(latent_dim, seed)), path("samples.png"), note=pixel_note)
    written["latent_scatter"] = plots.latent_scatter(z_mean, y_test, path("latent_scatter.png"))

    grid = plots.gaussian_grid(8 if vae.conditional else 20)
    if latent_dim == 2:
        zz, axis_names = np.array([[a, b] for b in grid[::-1] for a in grid], dtype=np.float32), ("z[0]", "z[1]")
    elif latent_dim > 2:  # the plane of the two principal directions of the codes, scaled by their spread
        projected, directions, _ = plots.principal_components(z_mean)
        centre, spread = z_mean.mean(axis=0), projected.std(axis=0)
        zz = np.array([centre + a * spread[0] * directions[0] + b * spread[1] * directions[1]
                       for b in grid[::-1] for a in grid], dtype=np.float32)
        axis_names = ("principal direction 1 (in its std)", "principal direction 2 (in its std)")
    if latent_dim >= 2 and vae.conditional:  # one panel per digit label, the same grid of z in each
        images = decode(np.tile(zz, (CLASSES, 1)), np.repeat(np.arange(CLASSES), len(zz)))
        written["latent_manifold"] = plots.latent_manifold_by_digit(images.reshape(CLASSES, len(zz), 28, 28), grid,
                                                                    path("latent_manifold.png"), axis_names, note=pixel_note)
    elif latent_dim >= 2:
        written["latent_manifold"] = plots.latent_manifold(decode(zz), grid, path("latent_manifold.png"), axis_names,
                                                           note=pixel_note)
    else:
        written["latent_manifold"] = "skipped: needs at least 2 latent dimensions"

    pairs = _interpolation_pairs(y_test, n=len(x_test))
    if pairs:
        t = np.linspace(0, 1, 10, dtype=np.float32)[None, :, None]
        starts, ends = z_mean[[a for a, _ in pairs]][:, None], z_mean[[b for _, b in pairs]][:, None]
        line = ((1 - t) * starts + t * ends).reshape(-1, latent_dim)  # (pairs x 10, latent_dim)
        if vae.conditional:  # the label moves from one digit's one-hot to the other's along with z
            y_start, y_end = one_hot(y_test[[a for a, _ in pairs]])[:, None], one_hot(y_test[[b for _, b in pairs]])[:, None]
            decoded = _pixels(vae.decoder([line, ((1 - t) * y_start + t * y_end).reshape(-1, CLASSES)]), likelihood)
        else:
            decoded = decode(line)
        decoded = decoded.reshape(len(pairs), 10, 28, 28)
        written["interpolation"] = plots.interpolation(decoded, path("interpolation.png"), note=pixel_note)

    conv = any(layer.__class__.__name__ == "Conv2DTranspose" for layer in vae.decoder.layers)
    about = (f"{'conv' if conv else 'dense'} decoder, {latent_dim}-D latent space, {likelihood} likelihood"
             + (", conditional on the digit label" if vae.conditional else "") + "; " + pixel_note)
    written["explorer"] = explorer.write(run_dir, vae, z_mean, y_test, x_test, about=about)
    written["kl_per_dim"] = plots.kl_per_dim(posterior["kl_per_dim"], posterior["active"], posterior["threshold"],
                                             path("kl_per_dim.png"))
    if frames and any(f is not None for f in frames):
        written["progress"] = plots.progress_gif(frames, path("progress.gif"),
                                                 means="continuous-Bernoulli means" if likelihood != "bernoulli" else "")
    return written


class SampleFrames(keras.callbacks.Callback):
    """Decodes the same fixed latent draws after every epoch, keeping the frames in memory for progress.gif."""

    def __init__(self, latent_dim, seed, n=36, frames=(), conditional=False, likelihood="bernoulli"):
        super().__init__()
        self.likelihood = likelihood
        self.z = fixed_latent_draws(latent_dim, seed, n)
        self.inputs = [self.z, one_hot(frame_labels(n))] if conditional else self.z  # digits 0-9 in turn
        self.frames = list(frames)  # one per epoch from epoch 1 (earlier sessions' from the checkpoint)

    def on_epoch_end(self, epoch, logs=None):
        # A compiled call: about 2 ms against 8 ms for an eager one (bench.py's whole-epoch time).
        logits = np.asarray(self.model.decoder.predict_on_batch(self.inputs), np.float32)
        self.frames.append(_pixels(logits, self.likelihood))
