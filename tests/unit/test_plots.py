"""mnist_vae/plots.py: figures from arrays: the tiling of digits, the principal directions and the Gaussian grid
against hand-made cases, and a PNG of the expected size written atomically."""
import os
import statistics

import numpy as np
import pytest

from mnist_vae import plots

pytestmark = pytest.mark.backend_independent  # NumPy and Matplotlib only


def test_tiling_puts_each_digit_in_its_row_and_column():
    images = np.stack([np.full((28, 28), i, np.float32) for i in range(6)])
    tiled = plots.tile(images, rows=2, cols=3)
    assert tiled.shape == (56, 84)
    for i in range(6):
        row, col = divmod(i, 3)
        assert np.all(tiled[row * 28:(row + 1) * 28, col * 28:(col + 1) * 28] == i)


def test_principal_components_find_the_direction_of_largest_variance():
    rng = np.random.default_rng(0)
    direction = np.array([3.0, 4.0, 0.0, 0.0]) / 5
    points = rng.standard_normal((2000, 1)) * 10 * direction + rng.standard_normal((2000, 4)) * 0.1
    projected, directions, ratios = plots.principal_components(points)
    assert projected.shape == (2000, 2) and directions.shape == (2, 4)
    assert abs(directions[0] @ direction) == pytest.approx(1, abs=1e-3)
    assert ratios[0] > 0.99 and ratios[0] + ratios[1] <= 1 + 1e-12
    one, _, one_ratios = plots.principal_components(points[:1])  # one image: a plane that explains nothing
    assert one.shape == (1, 2) and np.all(one_ratios == 0)


def test_the_gaussian_grid_is_the_5_to_95_percent_quantiles():
    grid = plots.gaussian_grid(5)
    normal = statistics.NormalDist()
    np.testing.assert_allclose(grid, [normal.inv_cdf(p) for p in (0.05, 0.275, 0.5, 0.725, 0.95)], atol=1e-6)
    assert grid.dtype == np.float32 and abs(grid[2]) < 1e-7 and grid[0] == -grid[4]


def test_a_figure_is_a_png_of_the_digits_and_leaves_no_temporary_file(tmp_path):
    from PIL import Image

    images = np.random.default_rng(1).random((64, 28, 28)).astype(np.float32)
    path = plots.samples(images, str(tmp_path / "samples.png"))
    assert os.listdir(tmp_path) == ["samples.png"]
    with Image.open(path) as image:
        assert image.format == "PNG" and image.width > 8 * 28 and image.height > 8 * 28


def test_the_nll_at_stage_ends_is_read_from_the_history_and_drawn(tmp_path):
    history = {"test_nll_iw": [120.0, None, float("nan"), 101.5], "test_nll_iw_stderr": [0.7, None, float("nan"), 0.6]}
    passes, nll, stderr = plots.stage_points(history)
    assert list(passes) == [1, 4] and list(nll) == [120.0, 101.5] and list(stderr) == [0.7, 0.6]
    assert plots.stage_points({"test_nll_iw": [None], "test_nll_iw_stderr": [None]}) == ((), (), ())
    path = plots.nll_against_passes({"run": (passes, nll, stderr)}, str(tmp_path / "nll.png"), "t",
                                    [("published", 3280, 86.76)])
    assert os.path.getsize(path) > 10_000


def test_the_validation_bounds_are_drawn_with_their_chosen_epochs_and_the_warm_up(tmp_path):
    from PIL import Image

    epochs = list(range(1, 31))
    curves = {"a": (epochs, [300.0 / e + 90 for e in epochs]), "b": (epochs, [320.0 / e + 92 for e in epochs])}
    path = plots.validation_bounds(curves, str(tmp_path / "v.png"), "t", {"a": 30, "b": 12, "c": 3}, warmup=10)
    image = np.asarray(Image.open(path).convert("RGB"))
    assert image.shape[0] > 300 and image.shape[1] > 500
    assert (np.abs(image.astype(int) - 235).sum(axis=-1) < 6).sum() > 1000  # the warm-up's grey band is there
