"""mnist_vae/figures.py: the figures of extreme models are readable and quiet."""
import warnings

import numpy as np
import pytest

pytestmark = pytest.mark.backend_independent


def test_figures_of_extreme_models_are_readable_and_quiet(tmp_path, monkeypatch):
    from mnist_vae import figures, plots

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no NumPy overflow from huge logits (a diverging --lr 10)
        pixels = figures.pixels_of(np.array([[[[1e30]], [[-1e30]]]], np.float32).reshape(1, 2, 1, 1))
    assert np.all(np.isfinite(pixels))
    path = plots.kl_per_dim(np.ones(3000), np.ones(3000, bool), 0.01, str(tmp_path / "kl.png"))
    from PIL import Image

    assert Image.open(path).width <= 1700  # 3,000 latent dimensions: still a picture one can open
    drawn = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: drawn.append(fig) or path)
    plots.loss_curves({"loss": [3.0, 2.0], "val_loss": [3.5, 2.5]}, {"loss": "loss"}, str(tmp_path / "loss.png"))
    ticks = [t for t in drawn[0].axes[0].get_xticks() if 1 <= t <= 2]
    assert ticks and all(float(t).is_integer() for t in ticks)  # epochs 1 and 2, never 1.2, 1.4, ...
