"""The continuous Bernoulli likelihood (--likelihood continuous-bernoulli) against quadrature, a
high-precision reference and finite differences, and a short real training run under it."""
import json
import math
import os

import mpmath
import numpy as np
import pytest
from conftest import TINY, gradients, per_example_losses, read_history, run_main, to_numpy
from keras import ops

import losses

pytestmark = pytest.mark.backend_core  # CI runs these on PyTorch too (pytest.ini)

CB = "continuous-bernoulli"
# Logits from -20 to 20, with the series' neighbourhood of 0 (|l| < 0.1) and its edge sampled densely.
LOGITS = np.array([-20, -7.5, -2, -1, -0.5, -0.1001, -0.1, -0.0999, -0.03, -1e-4, 0, 1e-6, 1e-3, 0.05, 0.0999,
                   0.1, 0.1001, 0.3, 1, 3.3, 10, 20], np.float32)
NODES, WEIGHTS = np.polynomial.legendre.leggauss(200)
GRID = (NODES + 1) / 2  # Gauss-Legendre on [0, 1]: exact for the smooth densities here to float32
GRID_WEIGHTS = WEIGHTS / 2


def reference_log_normalizer(logit):
    """log C(l) = log(l / tanh(l / 2)) at 50 digits (log 2 at l = 0)."""
    with mpmath.workdps(50):
        value = mpmath.mpf(logit)
        return mpmath.log(2) if value == 0 else mpmath.log(value / mpmath.tanh(value / 2))


def density(x, logit):
    """p(x | logit) on a grid of x, from the project's reconstruction term (one pixel per row)."""
    x = np.asarray(x, np.float32)[:, None]
    logits = np.full_like(x, logit)
    return np.exp(-to_numpy(losses.reconstruction_loss(x, logits, CB)).astype(np.float64))


def test_the_density_integrates_to_one_for_every_logit():
    for logit in LOGITS:
        total = float(np.sum(GRID_WEIGHTS * density(GRID, logit)))
        assert total == pytest.approx(1.0, abs=2e-5), logit
    # The plain Bernoulli on grey targets is no density: its integral is below 1 (1 / C at logit 0: 0.5).
    plain = np.exp(-to_numpy(losses.reconstruction_loss(GRID[:, None].astype(np.float32), np.zeros((200, 1),
                                                                                                 np.float32))))
    assert float(np.sum(GRID_WEIGHTS * plain)) == pytest.approx(0.5, abs=1e-5)


def test_log_normalizer_matches_a_high_precision_reference():
    got = to_numpy(losses.continuous_bernoulli_log_normalizer(LOGITS))
    assert got.dtype == np.float32 and got.shape == LOGITS.shape
    expected = np.array([float(reference_log_normalizer(float(v))) for v in LOGITS])
    np.testing.assert_allclose(got, expected, rtol=5e-7, atol=0)
    assert got[LOGITS == 0][0] == pytest.approx(math.log(2.0), rel=1e-7)  # the limit where l / tanh(l/2) is 0/0
    far = to_numpy(losses.continuous_bernoulli_log_normalizer(np.array([-1e4, 88.0, 1e30], np.float32)))
    np.testing.assert_allclose(far, np.log([1e4, 88.0, 1e30]), rtol=1e-6)  # log |l| where tanh(l/2) is 1


def test_log_normalizer_gradient_is_finite_and_matches_finite_differences():
    (analytic,) = gradients(lambda logits: ops.sum(losses.continuous_bernoulli_log_normalizer(logits)), LOGITS)
    assert np.all(np.isfinite(analytic))
    h = mpmath.mpf("1e-20")
    with mpmath.workdps(50):
        numeric = [float((reference_log_normalizer(mpmath.mpf(float(v)) + h) -
                          reference_log_normalizer(mpmath.mpf(float(v)) - h)) / (2 * h)) if v != 0 else 0.0
                   for v in LOGITS]
    # float32 gradients: 1/l - 1/sinh(l) loses about 1e-6 of 1/l to cancellation just above the series.
    np.testing.assert_allclose(analytic, numeric, atol=2e-6, rtol=1e-5)
    assert analytic[LOGITS == 0][0] == 0.0  # an even function: flat at 0


def test_mean_matches_quadrature():
    got = to_numpy(losses.pixel_means(LOGITS, CB))
    for logit, mean in zip(LOGITS, got):
        expected = float(np.sum(GRID_WEIGHTS * GRID * density(GRID, logit)))
        assert mean == pytest.approx(expected, abs=2e-6), logit
    # Less extreme than the parameter sigmoid(l), which is the Bernoulli's mean.
    bernoulli = to_numpy(losses.pixel_means(LOGITS, "bernoulli"))
    np.testing.assert_allclose(bernoulli, 1 / (1 + np.exp(-LOGITS.astype(np.float64))), rtol=1e-6)
    assert np.all(np.abs(got - 0.5) <= np.abs(bernoulli - 0.5) + 1e-7)


def test_terms_on_fixed_numbers():
    """Worked by hand, so that every backend is held to the same numbers (run under each one in CI)."""
    # Logit 0 is the uniform density: x = 0.5 costs log 2 (cross-entropy) - log 2 (normaliser) = 0 nats.
    # Logit 2, x = 1: log(1 + e^-2) - log(2 / tanh(1)).
    # Logit -3, x = 0.25: 3 * 0.25 + log(1 + e^-3) - log(3 / tanh(1.5)).
    x = np.array([[0.5, 1.0, 0.25]], np.float32)
    logits = np.array([[0.0, 2.0, -3.0]], np.float32)
    expected = (math.log1p(math.exp(-2)) - math.log(2 / math.tanh(1))
                + 3 * 0.25 + math.log1p(math.exp(-3)) - math.log(3 / math.tanh(1.5)))
    got = to_numpy(losses.reconstruction_loss(x, logits, CB))
    assert got.shape == (1,) and got.dtype == np.float32
    np.testing.assert_allclose(got, [expected], rtol=1e-6)
    # Half precision in, float32 out: mixed precision never changes what the term means.
    half = to_numpy(losses.reconstruction_loss(x.astype(np.float16), logits.astype(np.float16), CB))
    assert half.dtype == np.float32
    with pytest.raises(ValueError, match="unknown likelihood"):
        losses.reconstruction_loss(x, logits, "gaussian")


@pytest.fixture(scope="module")
def cb_run(tmp_path_factory, small_npz):
    out = tmp_path_factory.mktemp("runs")
    result = run_main("train", "--data", small_npz, "--epochs", "3", *TINY, "--likelihood", CB,
                      "--out", out, "--run-name", "cb")
    assert result.returncode == 0, result.stderr[-3000:]
    return str(out / "cb"), result


@pytest.mark.slow
def test_a_continuous_bernoulli_run_learns_and_reports_a_true_density(cb_run):
    run_dir, result = cb_run
    history = read_history(run_dir)
    assert float(history[-1]["loss"]) < float(history[0]["loss"])
    assert float(history[-1]["val_loss"]) < float(history[0]["val_loss"])
    evaluation = json.load(open(os.path.join(run_dir, "eval.json")))
    assert evaluation["likelihood"] == CB
    assert evaluation["nll_iw"] < evaluation["negative_elbo"]  # the bound tightens on a true likelihood
    # A density of grey images may exceed 1: here the NLL is far below the Bernoulli cross-entropy's floor.
    assert evaluation["negative_elbo"] < 0
    metrics = json.load(open(os.path.join(run_dir, "metrics.json")))
    assert metrics["likelihood"] == CB and "true density" in metrics["pixels"]
    assert "bounds on a true density" in result.stdout and "not likelihoods" not in result.stdout
    assert result.stderr == ""
    page = open(os.path.join(run_dir, "report.html"), encoding="utf-8").read()
    assert "true density" in page and "not a likelihood" not in page
    config = json.load(open(os.path.join(run_dir, "config.json")))
    assert "--likelihood continuous-bernoulli" in config["command"]


@pytest.mark.slow
def test_the_saved_model_keeps_its_likelihood_and_evaluates_the_same(cb_run, tmp_path):
    import keras

    import model  # noqa: F401  (registers the custom classes)

    run_dir, _ = cb_run
    vae = keras.saving.load_model(os.path.join(run_dir, "model.keras"))
    assert vae.likelihood == CB
    rng = np.random.default_rng(0)
    images = rng.uniform(size=(4, 28, 28, 1)).astype(np.float32)
    batch = {"image": images, "eps": rng.standard_normal((4, 2)).astype(np.float32)}
    reconstruction, _ = per_example_losses(vae, batch)
    out = vae(batch)
    direct = losses.reconstruction_loss(images, out["logits"], CB)
    np.testing.assert_allclose(to_numpy(reconstruction), to_numpy(direct), rtol=1e-6)
    assert not np.allclose(to_numpy(direct), to_numpy(losses.reconstruction_loss(images, out["logits"])))


@pytest.mark.backend_independent
@pytest.mark.parametrize("binarize", ["static", "dynamic"])
def test_binarized_pixels_refuse_the_continuous_bernoulli(binarize, small_npz, tmp_path):
    result = run_main("train", "--data", small_npz, "--likelihood", CB, "--binarize", binarize,
                      "--out", tmp_path, "--run-name", "x")
    assert result.returncode == 2  # flags that do not go together: a usage error
    assert result.stderr.count("\n") == 1 and "already the exact likelihood" in result.stderr
    assert not os.path.exists(tmp_path / "x")


@pytest.mark.backend_independent
def test_black_and_white_data_is_refused_for_the_grey_pixel_density(tmp_path, digits):
    """Pixels that are all 0 or 1 (or 0 and 255) have no continuous density worth the name: its 'nats' run off
    to minus hundreds. One line, and no run folder."""
    x, y = digits
    for name, scale in (("zero-one.npz", 1), ("zero-255.npz", 255)):
        black_and_white = (x[:400, ..., 0] > 127).astype(np.uint8) * scale
        path = tmp_path / name
        np.savez(path, x_train=black_and_white[:320], y_train=y[:320], x_test=black_and_white[320:],
                 y_test=y[320:400])
        out = tmp_path / "out"
        result = run_main("train", "--data", path, "--likelihood", "continuous-bernoulli", "--out", out, *TINY)
        assert result.returncode == 1 and result.stderr.splitlines() == [
            f"error: --likelihood continuous-bernoulli is a density of grey pixels, and every pixel of {path} is "
            "black or white: train these with the plain Bernoulli (the default)"]
        assert not out.exists() or os.listdir(out) == []
