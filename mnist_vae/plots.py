"""Every figure the program saves. Each function takes NumPy arrays (never a model) and a path."""
import os
import statistics

import matplotlib

matplotlib.use("Agg")  # files only; no screen needed
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from mnist_vae.rundir import atomic_write  # noqa: E402


def _save(fig, path):
    # Through a temporary file: a kill mid-write never leaves a truncated figure in place of a good one.
    try:
        return atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=100, bbox_inches="tight",
                                                          format=os.path.splitext(path)[1][1:] or "png"))
    finally:
        plt.close(fig)


def tile(images, rows, cols):
    """One picture of many digits: (rows*cols, 28, 28[, 1]) -> one (rows*28, cols*28) image."""
    images = np.asarray(images).reshape(rows, cols, 28, 28)
    return images.transpose(0, 2, 1, 3).reshape(rows * 28, cols * 28)


def loss_curves(history, titles, path, units="nats per image", suptitle="Training curves (single-sample ELBO terms, "
                "averaged over images)"):
    """history: {name: [per-epoch values]} with train names, their 'val_' (test) twins and, where the run held
    out a validation slice, 'validation_' ones; titles: {name: panel title} for the terms to draw, one panel
    each."""
    fig, axes = plt.subplots(1, len(titles), figsize=(5 * len(titles), 4), squeeze=False)
    for ax, (key, title) in zip(axes[0], titles.items()):
        epochs = np.arange(1, len(history[key]) + 1)
        few = len(epochs) <= 60  # markers only where they can be told apart
        ax.plot(epochs, history[key], "o-" if few else "-", label="train")
        for prefix, style, label in (("val_", "s--", "test"), ("validation_", "^:", "validation")):
            if prefix + key in history:
                ax.plot(epochs, history[prefix + key], style if few else style[1:], label=label)
        ax.set(title=title, xlabel="epoch", ylabel=units)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(suptitle)
    return _save(fig, path)


def stage_points(history):
    """(passes, NLL, standard errors) at the ends of the stages a staged run has completed (history: columns)."""
    rows = [(i + 1, nll, stderr) for i, (nll, stderr) in enumerate(zip(history["test_nll_iw"],
                                                                       history["test_nll_iw_stderr"]))
            if nll is not None and nll == nll]  # None or NaN: not a stage's end
    return tuple(np.array(column, dtype=np.float64) for column in zip(*rows)) if rows else ((), (), ())


def nll_against_passes(curves, path, title, published=()):
    """curves: {label: (passes, NLL, standard errors)}, each measured at the end of a stage of the staged
    schedule; published: (label, passes, NLL) points to draw beside them (the papers' end points), the i-th in
    the colour of the i-th curve. Passes on a log scale: the stages last 1, 3, 9, ... passes."""
    fig, ax = plt.subplots(figsize=(8, 5))
    runs = [ax.errorbar(passes, nll, yerr=stderr, fmt="o-", capsize=3, markersize=4, label=label)
            for label, (passes, nll, stderr) in curves.items()]
    colours = [run[0].get_color() for run in runs]
    stars = [ax.plot([passes], [nll], "*", markersize=12, label=label,  # in the colour of the curve it stands beside
                     color=colours[i] if i < len(colours) else None)[0]
             for i, (label, passes, nll) in enumerate(published)]
    ax.set_xscale("log")
    ax.set(title=title, xlabel="passes over the training images (log scale)", ylabel="test NLL, nats per image")
    ax.grid(alpha=0.3, which="both")
    # Below the axes, clear of the curves: the runs in one column, the published figures beside them.
    ax.legend(handles=runs + stars, fontsize="small", ncol=2 if stars else 1, loc="upper center",
              bbox_to_anchor=(0.5, -0.13))
    return _save(fig, path)


def validation_bounds(curves, path, title, chosen=None, warmup=0, marked="chosen"):
    """curves: {label: (epochs, negative ELBO on the validation images)}; chosen: {label: the epoch early
    stopping chose}, marked on its curve (and named by `marked`: "best so far" for a run still training); warmup:
    the KL warm-up's epochs, shaded (their bound is not what training optimised yet)."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    if warmup:
        ax.axvspan(0.5, warmup + 0.5, color="0.92", label=f"KL warm-up ({warmup} epochs)")
    for label, (epochs, values) in curves.items():
        colour = ax.plot(epochs, values, "-", linewidth=1.2, label=label)[0].get_color()
        epoch = (chosen or {}).get(label)
        if epoch is not None and epoch in list(epochs):
            ax.plot([epoch], [values[list(epochs).index(epoch)]], "o", color=colour, markersize=7,
                    label=f"{marked}: epoch {epoch}")
    finite = np.concatenate([np.asarray(v, float)[len(v) // 4:] for _, v in curves.values()])
    if finite.size:  # the first epochs' bounds are far above the rest: zoom on where the runs are compared
        ax.set_ylim(finite.min() - 1, np.percentile(finite, 99) + 2)
    ax.set(title=title, xlabel="epoch", ylabel="validation negative ELBO, nats per image")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return _save(fig, path)


def compare_curves(histories, path, units="nats per image"):
    """histories: {run name: {column: [per-epoch values]}}; the test loss and the test KL per epoch of each
    run, overlaid (training curves where a run has no test columns)."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for ax, (term, title) in zip(axes, (("loss", "test loss"), ("kl_loss", "test KL"))):
        for name, history in histories.items():
            values = history.get("val_" + term) or history.get(term) or []
            ax.plot(np.arange(1, len(values) + 1), values, "o-", markersize=3, label=name)
        ax.set(title=title, xlabel="epoch", ylabel=units)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize="small")
    fig.suptitle("Runs compared (held-out test images)")
    return _save(fig, path)


def _titled(title, note):
    return f"{title}\n{note}" if note else title


def reconstructions(originals, reconstructed, path, note=""):
    """Top row: test digits; bottom row: their reconstructions (the decoder's pixel means); note: a
    second title line (what a pixel shows)."""
    n = len(originals)
    fig, ax = plt.subplots(figsize=(n * 0.9, 2.2))
    ax.imshow(tile(np.concatenate([originals, reconstructed]), 2, n), cmap="gray_r", vmin=0, vmax=1)
    ax.set_yticks([14, 42], ["test digit", "reconstruction"])
    ax.set_xticks([])
    ax.set_title(_titled("Test digits (top) and their reconstructions from z_mean (bottom)", note))
    return _save(fig, path)


def samples(images, path, title="Samples: decoded draws z ~ N(0, I)", note=""):
    """A square grid of generated images (the decoder's pixel means)."""
    side = int(np.sqrt(len(images)))
    fig, ax = plt.subplots(figsize=(side * 0.7, side * 0.7 + 0.4))
    ax.imshow(tile(images[: side * side], side, side), cmap="gray_r", vmin=0, vmax=1)
    ax.axis("off")
    ax.set_title(_titled(title, note))
    return _save(fig, path)


def samples_by_digit(images, path, note=""):
    """images: (10, n, 28, 28), row d decoded with label d, column j from the same z_j: the digit changes down a
    column while the style (z) stays."""
    digits, n = images.shape[:2]
    fig, ax = plt.subplots(figsize=(n * 0.7, digits * 0.7 + 0.6))
    ax.imshow(tile(images.reshape(digits * n, 28, 28), digits, n), cmap="gray_r", vmin=0, vmax=1)
    ax.set_yticks(np.arange(digits) * 28 + 14, [f"label {d}" for d in range(digits)])
    ax.set_xticks(np.arange(n) * 28 + 14, [f"z{j + 1}" for j in range(n)], fontsize="small")
    ax.set_title(_titled("Samples on request: one row per digit label, one z ~ N(0, I) per column", note))
    return _save(fig, path)


def principal_components(points, k=2):
    """(projection onto the top-k principal directions, those directions (k, d), explained variance ratios)."""
    centred = points - points.mean(axis=0)
    # All d directions even when there are fewer points than directions (a test set of one image has none
    # that varies): the ones beyond the points' rank explain nothing, but the plane still exists.
    _, s, vt = np.linalg.svd(centred, full_matrices=len(centred) < min(k, points.shape[1]))
    s = np.concatenate([s, np.zeros(max(0, k - len(s)))])
    ratios = s**2 / max(np.sum(s**2), 1e-12)
    return centred @ vt[:k].T, vt[:k], ratios[:k]


def latent_scatter(z_mean, labels, path):
    """Test images' posterior means coloured by digit, labels (N,) or None (first two principal components if d > 2)."""
    d = z_mean.shape[1]
    if d == 1:
        points, axis_names = np.column_stack([z_mean[:, 0], np.zeros(len(z_mean))]), ("z[0]", "")
    elif d == 2:
        points, axis_names = z_mean, ("z[0]", "z[1]")
    else:
        points, _, ratios = principal_components(z_mean)
        axis_names = tuple(f"principal component {i + 1} ({r:.0%} of variance)" for i, r in enumerate(ratios))
    fig, ax = plt.subplots(figsize=(7, 6))
    if labels is None:  # data without labels: one colour
        ax.scatter(points[:, 0], points[:, 1], s=4, alpha=0.7)
    else:
        sc = ax.scatter(points[:, 0], points[:, 1], c=labels, cmap="tab10", vmin=-0.5, vmax=9.5, s=4, alpha=0.7)
        fig.colorbar(sc, ax=ax, ticks=range(10), label="digit")
    ax.set(xlabel=axis_names[0], ylabel=axis_names[1],
           title=f"Latent space: z_mean of {len(z_mean)} test images" + (f" ({d}-D, PCA)" if d > 2 else ""))
    return _save(fig, path)


def gaussian_grid(n=20):
    """n evenly spaced quantiles (5%..95%) of N(0, 1): latent values to decode along each axis."""
    normal = statistics.NormalDist()
    return np.array([normal.inv_cdf(p) for p in np.linspace(0.05, 0.95, n)], dtype=np.float32)


def latent_manifold(images, grid, path, axis_names=("z[0]", "z[1]"), note=""):
    """images: (n*n, 28, 28) decoded at grid[j] (x) and grid[i] (y), row i from the top = largest y."""
    n = len(grid)
    fig, ax = plt.subplots(figsize=(9, 9))
    ax.imshow(tile(images, n, n), cmap="gray_r", vmin=0, vmax=1)
    ticks = np.arange(n) * 28 + 14
    labels = [f"{v:.1f}" for v in grid]
    ax.set_xticks(ticks[::2], labels[::2])
    ax.set_yticks(ticks[::2], labels[::-1][::2])
    ax.set(xlabel=axis_names[0], ylabel=axis_names[1],
           title=_titled("Latent manifold: decoded digits over N(0, 1) quantiles (5%–95%)" if axis_names[0] == "z[0]"
                         else "Latent manifold along the two principal directions of the test codes (5%–95% quantiles)",
                         note))
    return _save(fig, path)


def latent_manifold_by_digit(images, grid, path, axis_names=("z[0]", "z[1]"), note=""):
    """images: (10, n*n, 28, 28): for each digit label, the same grid of z decoded as in latent_manifold."""
    n = len(grid)
    fig, axes = plt.subplots(2, 5, figsize=(15, 6.8))
    for digit, ax in enumerate(axes.flat):
        ax.imshow(tile(images[digit], n, n), cmap="gray_r", vmin=0, vmax=1)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"label {digit}")
    fig.supxlabel(f"{axis_names[0]}: {grid[0]:.1f} … {grid[-1]:.1f}")
    fig.supylabel(f"{axis_names[1]}: {grid[0]:.1f} (bottom) … {grid[-1]:.1f} (top)")
    fig.suptitle(_titled("Latent manifold per digit: the same grid of z decoded with each label (z carries the style)",
                         note))
    return _save(fig, path)


def interpolation(images, path, note=""):
    """images: (pairs, steps, 28, 28); each row walks a straight line in latent space between two test digits."""
    pairs, steps = images.shape[:2]
    fig, ax = plt.subplots(figsize=(steps * 0.8, pairs * 0.85 + 0.5))
    ax.imshow(tile(images.reshape(pairs * steps, 28, 28), pairs, steps), cmap="gray_r", vmin=0, vmax=1)
    ax.set_xticks([14, steps * 28 - 14], ["start: z_mean of\na test digit", "end: z_mean of\nanother"])
    ax.set_yticks([])
    ax.set_title(_titled("Interpolation: decoded points on straight lines between two test digits' codes", note))
    return _save(fig, path)


def kl_per_dim(kl, active, threshold, path, estimate=False, top_layer=False):
    """Bar chart of the mean KL of each latent dimension; active units (Var of z_mean > threshold) in colour.
    estimate: the values are single-draw estimates against a learned prior's marginals (the VampPrior's).
    top_layer: they are a two-layer model's top layer's, q(z2 | z1 at q(z1|x)'s mean) against N(0, I)."""
    active = np.asarray(active, bool)
    dims = np.arange(len(kl))
    fig, ax = plt.subplots(figsize=(min(16, max(6, 0.35 * len(kl) + 2)), 4))  # no wider than a screen
    for mask, colour, name in ((active, "tab:blue", "active"), (~active, "lightgray", "inactive")):
        if mask.any():
            ax.bar(dims[mask], np.asarray(kl)[mask], color=colour, label=f"{name} ({mask.sum()})")
    ax.set(xlabel="latent dimension", ylabel="mean KL (nats per image)" + (", an ESTIMATE" if estimate else ""),
           title=f"KL per latent dimension; active: variance of z_mean over test images > {threshold}" + (
               "\nestimated at one draw per image against each dimension's marginal of the learned prior"
               if estimate else "") + ("\nthe top layer z2: q(z2 | z1 = the mean of q(z1 | x)) against N(0, I); "
                                       "the KL term is both layers'" if top_layer else ""))
    ax.set_xticks(dims if len(dims) <= 32 else dims[::max(1, len(dims) // 16)])
    ax.legend()
    return _save(fig, path)


def progress_gif(frames, path, seconds_per_frame=0.5, means=""):
    """frames: per epoch from epoch 1, (n, 28, 28) samples decoded from the same fixed latent draws, or None
    for an epoch whose frame was not kept; one GIF frame each."""
    from PIL import Image, ImageDraw

    side = int(np.sqrt(next(f for f in frames if f is not None).shape[0]))
    images = []
    for epoch, frame in enumerate(frames, start=1):
        if frame is None:
            continue
        pixels = (255 * (1 - tile(frame[: side * side], side, side))).astype(np.uint8)  # dark digits on white
        image = Image.fromarray(pixels, mode="L").resize((side * 28 * 2, side * 28 * 2), Image.NEAREST)
        canvas = Image.new("L", (image.width, image.height + 20), 255)
        canvas.paste(image, (0, 20))
        ImageDraw.Draw(canvas).text((4, 4), f"samples after epoch {epoch} (same z each frame)"
                                    + (f"; {means}" if means else ""), fill=0)
        images.append(canvas)
    return atomic_write(path, lambda tmp: images[0].save(
        tmp, format="GIF", save_all=True, append_images=images[1:], duration=int(seconds_per_frame * 1000), loop=0))
