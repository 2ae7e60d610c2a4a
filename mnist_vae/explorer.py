"""explorer.html: a page per run to move through the latent space and watch the decoder draw.

The page is one file that works offline from file://: the decoder's float32 weights sit inside it
(base64), and its forward pass is plain JavaScript for every decoder model.py builds (dense, conv with
transposed convolutions, conditional), so nothing is fetched and no server is needed. It shows the
held-out images' z_mean on a plane (the two principal directions of those codes when z has more than
two dimensions, with one slider per dimension to move off the plane) and decodes the z under the pointer.
`window.vaeDecode(z, label)` returns the 784 pixel means for tests and the curious; figures.py writes
the page beside the other figures.
"""
import base64
import os

import numpy as np

from mnist_vae import pages
from mnist_vae.rundir import write_text

MAX_POINTS = 500  # held-out images the page carries (their pixels, labels and codes)


def _b64(array):
    return base64.b64encode(np.ascontiguousarray(array).tobytes()).decode("ascii")


def _floats(array):
    return _b64(np.asarray(array, dtype="<f4"))


def _chain(model):
    """model's layers in order, a nested functional model's (a view made of other networks) in place of it."""
    import keras

    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _chain(layer)
        else:
            yield layer


def decoder_spec(decoder):
    """The decoder as a chain of layers the page's JavaScript runs: dense, reshape, transposed convolution.
    Raises ValueError for a layer it cannot run (so a new architecture fails loudly, not silently)."""
    layers = []
    for layer in _chain(decoder):
        kind = layer.__class__.__name__
        activation = getattr(getattr(layer, "activation", None), "__name__", "linear")
        if activation not in ("relu", "tanh", "linear", "sigmoid"):
            raise ValueError(f"explorer.html cannot run activation {activation!r} of layer {layer.name}")
        if kind in ("InputLayer", "Concatenate", "Flatten"):
            continue  # inputs; the label's one-hot joins z first (model.build_decoder); flat arrays stay flat
        if kind == "Multiply":  # a gated layer: the two dense layers before it are its halves (model._dense_stack)
            gate, linear = layers.pop(), layers.pop()
            if (linear["activation"], gate["activation"]) != ("linear", "sigmoid"):
                raise ValueError(f"explorer.html runs a Multiply ({layer.name}) only as a gated layer")
            layers.append({"type": "gated_dense", "linear": linear, "gate": gate})
            continue
        if kind == "Activation":
            if activation != "linear":
                layers.append({"type": "activation", "activation": activation})
        elif kind == "Dense":
            kernel, bias = layer.get_weights()
            layers.append({"type": "dense", "units": int(kernel.shape[1]), "activation": activation,
                           "kernel": _floats(kernel), "bias": _floats(bias)})
        elif kind == "Reshape":
            layers.append({"type": "reshape", "shape": [int(s) for s in layer.target_shape]})
        elif kind == "Conv2DTranspose":
            kernel, bias = layer.get_weights()  # (kh, kw, out channels, in channels)
            (_, height, width, _), (_, out_height, out_width, _) = layer.input.shape, layer.output.shape
            pads = []
            for size, out_size, k, s in zip((height, width), (out_height, out_width), layer.kernel_size, layer.strides):
                # TensorFlow's "same" rule, which Keras follows on every backend: the transposed convolution is
                # the gradient of a convolution whose padding before is half the total, rounded down.
                total = max((size - 1) * s + k - out_size, 0) if layer.padding == "same" else 0
                pads.append(total // 2)
            layers.append({"type": "conv_transpose", "activation": activation, "kernel": _floats(kernel),
                           "bias": _floats(bias), "kernel_size": [int(k) for k in layer.kernel_size],
                           "strides": [int(s) for s in layer.strides], "pad": pads,
                           "in_shape": [int(height), int(width), int(kernel.shape[3])],
                           "out_shape": [int(out_height), int(out_width), int(kernel.shape[2])]})
        else:
            raise ValueError(f"explorer.html cannot run a {kind} layer ({layer.name})")
    return layers


def plane(z_mean):
    """(centre, two unit directions (2, d), their names): the plane the page draws the codes on; z itself
    for d <= 2 (d = 1: the horizontal axis only)."""
    d = z_mean.shape[1]
    if d <= 2 or len(z_mean) < 3:  # too few codes for two principal directions: the first two axes
        directions = np.eye(2, d, dtype=np.float64)
        return (np.zeros(d) if d <= 2 else z_mean.mean(axis=0)), directions, ["z[0]", "z[1]" if d >= 2 else "(unused)"]
    from mnist_vae.plots import principal_components

    _, directions, ratios = principal_components(np.asarray(z_mean, np.float64))
    names = [f"principal direction {i + 1} ({r:.0%} of the codes' variance)" for i, r in enumerate(ratios)]
    return z_mean.mean(axis=0), directions, names


def page_data(vae, z_mean=None, labels=None, images=None, title="", about="", likelihood="bernoulli"):
    """Everything the page needs, as JSON-ready values. z_mean, labels, images: the held-out codes, digits
    and uint8-able pixels in [0, 1] (None: a page with the decoder alone, which says why)."""
    latent_dim = int(vae.decoder.inputs[0].shape[-1])
    from losses import LANGEVIN_SERIES, SERIES_BELOW

    data = {"title": title, "about": about, "latent_dim": latent_dim, "conditional": bool(vae.conditional),
            "likelihood": likelihood, "mean_series": {"below": SERIES_BELOW, "coefficients": LANGEVIN_SERIES},
            "layers": decoder_spec(vae.decoder), "points": None}
    if z_mean is not None and len(z_mean):
        z_mean = np.asarray(z_mean, np.float64)
        centre, directions, names = plane(z_mean)
        shown = slice(0, MAX_POINTS)
        pixels = np.clip(np.rint(np.asarray(images)[shown].reshape(-1, 784) * 255), 0, 255).astype(np.uint8)
        data["points"] = {"count": int(len(pixels)), "z_mean": _floats(z_mean[shown]),
                          "labels": None if labels is None else _b64(np.asarray(labels)[shown].astype(np.uint8)),
                          "images": _b64(pixels), "of": int(len(z_mean))}
    else:
        centre, directions, names = np.zeros(latent_dim), np.eye(2, latent_dim), ["z[0]", "z[1]"]
    data["plane"] = {"centre": [float(v) for v in centre], "directions": np.asarray(directions, float).tolist(),
                     "names": names}
    prior = vae.prior.page_data()  # None: the page's own N(0, I); else a mixture of Gaussians to draw from
    if prior is not None:
        data["prior"] = {"name": prior["name"], "means": _floats(prior["means"]),
                         "log_vars": _floats(prior["log_vars"]), "components": int(len(prior["means"]))}
    return data


def render(data):
    return pages.render("explorer", title=data["title"] or "VAE latent space", about=data["about"],
                        data=pages.JsonData(data))


def write(run_dir, vae, z_mean=None, labels=None, images=None, about=""):
    """Write <run_dir>/explorer.html (atomically); returns its path."""
    title = f"Latent space of {os.path.basename(os.path.normpath(run_dir))}"
    page = render(page_data(vae, z_mean, labels, images, title=title, about=about,
                            likelihood=vae.likelihood))

    return write_text(os.path.join(run_dir, "explorer.html"), page)

