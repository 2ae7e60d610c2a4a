"""The batches training and evaluation steps take: {"image", "eps", "weight", "label"} as NumPy arrays.

Every random draw of a training or test step is made here, in NumPy, from a seed that depends only on
(seed, stream, epoch, step). So the same run draws the same numbers on every Keras backend and device
count, and a run resumed at epoch k (even on another backend) sees exactly the batches it would have.
"""
import math

import numpy as np

from mnist_vae.data import as_float, bernoulli_pixels

SHUFFLE_STREAM, BINARIZE_STREAM, NOISE_STREAM, TEST_NOISE_STREAM = 0, 1, 2, 3


def _rng(seed, stream, epoch=0, step=0):
    return np.random.default_rng([int(seed), stream, int(epoch), int(step)])


def epoch_permutation(n, seed, epoch):
    """The order of the n training images in a given epoch: a function of (seed, epoch) only."""
    return _rng(seed, SHUFFLE_STREAM, epoch).permutation(n)


def _draw(images, seed, epoch, step, stream, dynamic_binarization=False, noise_dim=None):
    """One step's random draws: (uint8 pixels, binarized to 0/255 when dynamic, and eps or None)."""
    if dynamic_binarization:
        grey = as_float(images)
        draw = _rng(seed, BINARIZE_STREAM, epoch, step).random(grey.shape, dtype=np.float32)
        images = bernoulli_pixels(grey, draw)
    eps = None
    if noise_dim is not None:
        shape = (len(images), *np.atleast_1d(noise_dim))
        eps = _rng(seed, stream, epoch, step).standard_normal(shape, dtype=np.float32)
    return images, eps


def make_batch(images, seed, epoch, step, stream, dynamic_binarization=False, noise_dim=None, pad_to=1, labels=None):
    """One step's batch as the model takes it: {"image", "eps", "weight"}, and "label" when labels are given.

    image: float32 (B, 28, 28, 1) in [0, 1] (under dynamic binarization, 0/1 drawn as Bernoulli(grey));
    eps: float32 (B, *noise_dim) ~ N(0, I), the reparameterisation noise (noise_dim: d, or (k, d) for k draws
    per image); label: the images' digits (uint8), for a conditional model; weight: 1/B for each image, so
    the loss is a plain sum of weight * per-image loss however the batch is split over devices. With
    pad_to > 1 the batch is padded with blank rows of weight 0 up to a multiple of pad_to (devices that
    need equal shares); they change neither the loss, nor its gradient, nor the logged means.
    """
    pixels, eps = _draw(images, seed, epoch, step, stream, dynamic_binarization, noise_dim)
    batch = {"image": as_float(pixels), "weight": np.full(len(pixels), 1.0 / len(pixels), np.float32)}
    if eps is not None:
        batch["eps"] = eps
    if labels is not None:
        batch["label"] = np.asarray(labels, np.uint8)
    padding = -len(pixels) % pad_to
    if padding:
        batch = {k: np.concatenate([v, np.zeros((padding,) + v.shape[1:], v.dtype)]) for k, v in batch.items()}
    return batch


def epoch_arrays(images, batch_size, seed, epoch, dynamic_binarization=False, noise_dim=None, labels=None):
    """A whole epoch's batches end to end, drawn exactly as make_batch draws them: {"image": uint8 pixels,
    "eps", "weight", "label"}, for input pipelines that cut batches themselves (tf.data: see tf_engine.py)."""
    order = epoch_permutation(len(images), seed, epoch)
    parts = {"image": [], "eps": [], "weight": [], "label": []}
    for step, start in enumerate(range(0, len(images), batch_size)):
        chosen = order[start:start + batch_size]
        pixels, eps = _draw(images[chosen], seed, epoch, step, NOISE_STREAM, dynamic_binarization, noise_dim)
        parts["image"].append(pixels)
        parts["eps"].append(eps)
        parts["weight"].append(np.full(len(pixels), 1.0 / len(pixels), np.float32))
        parts["label"].append(None if labels is None else np.asarray(labels[chosen], np.uint8))
    return {k: np.concatenate(v) for k, v in parts.items() if v[0] is not None}


def train_batches(images, batch_size, seed, epochs, initial_epoch=0, dynamic_binarization=False, noise_dim=None,
                  pad_to=1, labels=None):
    """(generator over the batches of epochs initial_epoch..epochs-1, steps per epoch) for keras.Model.fit
    with steps_per_epoch: one stream across epochs, each epoch shuffled by (seed, epoch)."""
    steps = math.ceil(len(images) / batch_size)

    def stream():
        for epoch in range(initial_epoch, epochs):
            order = epoch_permutation(len(images), seed, epoch)
            for step in range(steps):
                idx = order[step * batch_size:(step + 1) * batch_size]
                yield (make_batch(images[idx], seed, epoch, step, NOISE_STREAM, dynamic_binarization, noise_dim,
                                  pad_to, None if labels is None else labels[idx]),)  # Keras takes (inputs,) tuples

    return stream(), steps


def held_out_batches(images, batch_size=2000, seed=0, noise_dim=None, pad_to=1, labels=None):
    """The held-out images as a list of batches, in order, each with its own fixed noise: the same at every
    evaluation. Large batches (callbacks.HeldOutLoss evaluates each in one compiled step); the loss terms are
    per-image means, so the batch size changes nothing but the noise drawn."""
    return [make_batch(images[start:start + batch_size], seed, 0, step, TEST_NOISE_STREAM, False, noise_dim, pad_to,
                       None if labels is None else labels[start:start + batch_size])
            for step, start in enumerate(range(0, len(images), batch_size))]
