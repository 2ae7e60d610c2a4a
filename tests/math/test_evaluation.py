"""The importance-weighted bound against closed forms and quadrature; binarization, warm-up, evaluate.py."""
import json
import math
import os
import sys

import numpy as np
import pytest
from conftest import (
    read_history,
    run_main,
)
from keras import ops

from mnist_vae import console, data, evaluation, pipeline
from mnist_vae.callbacks import kl_weight_at

# A linear-Gaussian model: z ~ N(0, 1), x | z ~ N(a z, s^2 I). Everything is known in closed form.
A = np.array([1.5, -0.5, 2.0])
S2 = 0.3


def log_px_linear(x, z):
    """log p(x|z) for images x (B, 3) and their draws z (B, c, 1): (B, c), x broadcast against its draws."""
    residual = ops.expand_dims(x, 1) - z * A.astype(np.float32)
    return -0.5 * ops.sum(math.log(2 * math.pi * S2) + residual**2 / S2, axis=-1)


def iw(x, mean, log_var, log_px, k, chunk=None):
    return evaluation.iw_bound(x, mean, log_var, evaluation.log_sum_weights_of(log_px), k, chunk)


def exact_log_px(x):
    cov = np.outer(A, A) + S2 * np.eye(3)
    _, logdet = np.linalg.slogdet(cov)
    return -0.5 * (3 * math.log(2 * math.pi) + logdet + np.einsum("ni,ij,nj->n", x, np.linalg.inv(cov), x))


def exact_posterior(x):
    precision = 1 + A @ A / S2
    return (x @ A / S2 / precision)[:, None], np.full((len(x), 1), -math.log(precision))


def sample_x(n, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n, 1)) * A + rng.standard_normal((n, 3)) * math.sqrt(S2)).astype(np.float32)


def test_bound_is_exact_for_any_k_when_q_is_the_true_posterior():
    x = sample_x(20)
    mean, log_var = exact_posterior(x)
    for k in (1, 7, 100):
        bound = iw(x, mean, log_var, log_px_linear, k)
        np.testing.assert_allclose(bound, exact_log_px(x), atol=2e-4)


def test_k1_bound_is_the_elbo_in_expectation():
    x = np.repeat(sample_x(1, seed=1), 40000, axis=0)
    mean, log_var = exact_posterior(x)
    mean, log_var = mean + 0.7, log_var + 0.5  # a deliberately wrong q
    bound = iw(x, mean, log_var, log_px_linear, k=1)
    # ELBO = E_q[log p(x|z)] - KL(q || p), both in closed form for this model.
    m, v = mean[0, 0], math.exp(log_var[0, 0])
    expected_log_lik = -0.5 * (3 * math.log(2 * math.pi * S2) + (np.sum((x[0] - A * m) ** 2) + A @ A * v) / S2)
    elbo = expected_log_lik - 0.5 * (v + m**2 - 1 - math.log(v))
    assert abs(bound.mean() - elbo) < 4 * bound.std() / math.sqrt(len(bound)), (bound.mean(), elbo)
    assert elbo < exact_log_px(x[:1])[0]


def test_bound_rises_with_k_towards_log_px():
    x = sample_x(200, seed=2)
    mean, log_var = exact_posterior(x)
    mean, log_var = mean + 0.5, log_var + 0.7
    bounds = [iw(x, mean, log_var, log_px_linear, k).mean() for k in (1, 10, 100, 2000)]
    truth = exact_log_px(x).mean()
    assert bounds[0] < bounds[1] < bounds[2] < bounds[3] <= truth + 1e-3, (bounds, truth)
    assert truth - bounds[3] < 0.01


def test_bound_matches_quadrature_for_a_bernoulli_decoder():
    """1-D latent, 6 Bernoulli pixels with logits w z + b: log p(x) by quadrature on a fine grid."""
    import losses

    w, b = np.array([2.0, -1.0, 0.5, 3.0, -2.5, 1.0]), np.array([0.3, -0.2, 0.1, -1.0, 0.5, 0.0])
    x = np.array([[1, 0, 1, 1, 0, 1], [0, 1, 0, 0, 1, 0]], np.float32)

    def log_px_bernoulli(x, z):  # (B, 6) images, (B, c, 1) draws -> (B, c)
        logits = z * w.astype(np.float32) + b.astype(np.float32)
        return -losses.reconstruction_loss(ops.expand_dims(x, 1), logits, leading=2)

    grid = np.linspace(-12, 12, 48001)
    logits = grid[:, None] * w + b
    per_pixel = np.maximum(logits, 0)[:, None] - logits[:, None] * x + np.log1p(np.exp(-np.abs(logits)))[:, None]
    log_lik = -per_pixel.sum(-1)
    integrand = np.exp(log_lik - 0.5 * grid[:, None] ** 2) / math.sqrt(2 * math.pi)
    exact = np.log(integrand.sum(0) * (grid[1] - grid[0]))
    # A good proposal: the posterior's mean and (widened) variance, also by quadrature.
    posterior = integrand / integrand.sum(0)
    post_mean = (grid[:, None] * posterior).sum(0)
    post_var = ((grid[:, None] - post_mean) ** 2 * posterior).sum(0)
    mean, log_var = post_mean[:, None].astype(np.float32), np.log(1.3 * post_var)[:, None].astype(np.float32)
    bound = iw(x, mean, log_var, log_px_bernoulli, k=20000, chunk=5000)
    np.testing.assert_allclose(bound, exact, atol=0.003)
    elbo = iw(np.repeat(x, 5000, 0), np.repeat(mean, 5000, 0), np.repeat(log_var, 5000, 0),
                 log_px_bernoulli, k=1).reshape(2, 5000).mean(1)
    assert np.all(elbo < exact - 0.001)  # k = 1 averages to the ELBO, strictly below log p(x)


def test_chunking_does_not_change_the_result():
    x = sample_x(30, seed=3)
    mean, log_var = exact_posterior(x)
    mean = mean - 0.4
    whole = iw(x, mean, log_var, log_px_linear, k=300)
    for chunk in (1, 7, 64, 299):
        np.testing.assert_allclose(iw(x, mean, log_var, log_px_linear, k=300, chunk=chunk),
                                   whole, rtol=1e-5, atol=1e-4)


def test_active_units_and_kl_per_dim():
    rng = np.random.default_rng(4)
    z_mean = np.column_stack([rng.normal(size=500), rng.normal(scale=0.05, size=500), np.zeros(500)])
    z_log_var = np.column_stack([np.full(500, -2.0), np.zeros(500), np.zeros(500)])
    summary = evaluation.posterior_summary(z_mean, z_log_var)
    assert summary["active"].tolist() == [True, False, False]  # variances ~1, ~0.0025, 0
    expected_first = np.mean(-0.5 * (1 - 2.0 - z_mean[:, 0] ** 2 - math.exp(-2.0)))
    np.testing.assert_allclose(summary["kl_per_dim"], [expected_first, np.mean(0.5 * z_mean[:, 1] ** 2), 0.0],
                               rtol=1e-5, atol=1e-7)


def test_the_importance_weighted_evaluation_shows_a_bar_on_a_terminal_only(capsys, monkeypatch):
    from model import build_vae

    vae = build_vae("dense", 2, hidden=8, seed=0)
    x = (np.random.default_rng(0).random((250, 28, 28, 1)) > 0.5).astype(np.float32)
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True, raising=False)
    evaluation.evaluate_model(vae, x, k=3)
    terminal = capsys.readouterr().out
    assert "importance-weighted evaluation, k = 3 samples per image:" in terminal and "250/250" in terminal
    monkeypatch.setattr(sys.stdout, "isatty", lambda: False, raising=False)
    results, _ = evaluation.evaluate_model(vae, x, k=3)
    assert capsys.readouterr().out == ""  # a log file gets the report's one line with the time, nothing more
    assert f"({results['seconds']:.1f} s: encoder" in console.summary(results, "static").splitlines()[-1]


@pytest.mark.slow
def test_bound_on_a_trained_tiny_model_tightens_with_k(digits):
    import keras

    from model import build_vae

    x_all = data.as_float(data.binarized(digits[0][:600], seed=0))
    keras.utils.set_random_seed(0)
    vae = build_vae("dense", 4, hidden=64, seed=0)
    vae.compile(optimizer=keras.optimizers.Adam(2e-3))
    vae.fit(x_all[:500], epochs=3, batch_size=50, verbose=0)
    x = x_all[500:]
    k1, _ = evaluation.evaluate_model(vae, x, k=1)
    k50, _ = evaluation.evaluate_model(vae, x, k=50)
    # k = 1 estimates the ELBO (same expectation, different draws); larger k gives a tighter bound.
    assert abs(k1["nll_iw"] - k1["negative_elbo"]) < 3 * math.hypot(k1["nll_iw_stderr"], k1["negative_elbo_stderr"])
    assert k50["nll_iw"] < k1["nll_iw"] - 1.0
    assert k50["nll_iw"] < k50["negative_elbo"]
    again, _ = evaluation.evaluate_model(vae, x, k=50)
    assert again["nll_iw"] == k50["nll_iw"]  # fixed evaluation noise: repeatable numbers


def test_binarization_is_seeded_and_repeatable():
    rng = np.random.default_rng(5)
    images = rng.integers(0, 256, size=(200, 28, 28, 1), dtype=np.uint8)
    a, b, c = data.binarized(images, 1), data.binarized(images, 1), data.binarized(images, 2)
    assert set(np.unique(a)) <= {0, 255} and np.array_equal(a, b) and not np.array_equal(a, c)
    assert abs(a.mean() - images.mean()) < 1.0  # E[Bernoulli(grey/255)] * 255 = grey
    splits = data.Splits(images[:150], np.zeros(150, np.uint8), images[150:], np.zeros(50, np.uint8), "t")
    static1, static2 = data.apply_binarization(splits, "static", 1), data.apply_binarization(splits, "static", 2)
    dynamic = data.apply_binarization(splits, "dynamic", 1)
    assert np.array_equal(static1.x_test, static2.x_test) and np.array_equal(static1.x_test, dynamic.x_test)
    assert not np.array_equal(static1.x_train, static2.x_train)
    assert np.array_equal(dynamic.x_train, images[:150])  # left grey: drawn anew per batch by the pipeline
    assert data.apply_binarization(splits, "none", 1) is splits

    def epochs(seed):
        stream, _ = pipeline.train_batches(images[:150], 50, seed, epochs=2, dynamic_binarization=True)
        return [batch["image"] for (batch,) in stream]
    first, repeat, other = epochs(3), epochs(3), epochs(4)
    assert all(np.array_equal(p, q) for p, q in zip(first, repeat))
    assert set(np.unique(first[0])) <= {0.0, 1.0}
    # Each pixel is on with probability grey / 255: over 2 epochs x 150 images, the on-rate per pixel
    # position matches the grey level within Monte-Carlo error (300 draws: standard error <= 0.029).
    on_rate = np.concatenate(first).reshape(2, 150, -1).mean(axis=0).mean(axis=0)
    grey = images[:150].reshape(150, -1).mean(axis=0) / 255
    assert np.abs(on_rate - grey).max() < 0.15 and abs(on_rate.mean() - grey.mean()) < 0.005
    assert not all(np.array_equal(p, q) for p, q in zip(first, other))
    resumed, _ = pipeline.train_batches(images[:150], 50, 3, epochs=2, initial_epoch=1, dynamic_binarization=True)
    assert all(np.array_equal(p, q["image"]) for p, (q,) in zip(first[3:], resumed))


def test_warmup_schedule():
    assert [kl_weight_at(e, 2.0, 4) for e in range(6)] == [0.0, 0.5, 1.0, 1.5, 2.0, 2.0]
    assert [kl_weight_at(e, 0.7, 0) for e in range(3)] == [0.7, 0.7, 0.7]


PLOTS = ["loss.png", "reconstructions.png", "samples.png", "latent_scatter.png", "latent_manifold.png",
         "interpolation.png", "kl_per_dim.png"]


@pytest.fixture(scope="module")
def binarized_run(tmp_path_factory, small_npz):
    out = str(tmp_path_factory.mktemp("runs"))
    result = run_main("train", "--data", small_npz, "--epochs", "3", "--batch-size", "32", "--hidden", "64",
                      "--latent-dim", "3", "--binarize", "dynamic", "--kl-warmup", "2", "--beta", "0.8",
                      "--iw-samples", "20", "--out", out, "--run-name", "bin")
    assert result.returncode == 0, result.stderr[-2000:]
    return os.path.join(out, "bin"), result


@pytest.mark.slow
def test_training_run_records_binarization_warmup_and_evaluation(binarized_run):

    from PIL import Image

    run_dir, result = binarized_run
    assert "binarize=dynamic" in result.stdout and "NLL estimate, k=20" in result.stdout
    rows = read_history(run_dir)
    assert [float(r["kl_weight"]) for r in rows] == pytest.approx([0.0, 0.4, 0.8])
    assert float(rows[0]["loss"]) == pytest.approx(float(rows[0]["reconstruction_loss"]), rel=1e-6)
    assert json.load(open(os.path.join(run_dir, "config.json")))["binarize"] == "dynamic"
    assert json.load(open(os.path.join(run_dir, "metrics.json")))["binarize"] == "dynamic"
    results = json.load(open(os.path.join(run_dir, "eval.json")))
    for key in ("negative_elbo", "reconstruction_loss", "kl_loss", "nll_iw", "iw_samples", "active_units",
                "active_unit_variances", "kl_per_dim", "binarize", "images", "data"):
        assert key in results, key
    assert results["iw_samples"] == 20 and results["images"] == 80 and results["binarize"] == "dynamic"
    assert len(results["kl_per_dim"]) == 3 and sum(results["kl_per_dim"]) == pytest.approx(results["kl_loss"], rel=1e-4)
    assert results["active_units"] == sum(v > 0.01 for v in results["active_unit_variances"])
    assert results["nll_iw"] < results["negative_elbo"]
    for name in PLOTS:
        image = Image.open(os.path.join(run_dir, name))
        image.load()
        assert image.width > 100 and image.height > 100, name
    gif = Image.open(os.path.join(run_dir, "progress.gif"))
    assert gif.n_frames == 3  # one frame per epoch


@pytest.mark.slow
def test_evaluate_reproduces_and_writes_eval_json(binarized_run):
    run_dir, _ = binarized_run
    before = json.load(open(os.path.join(run_dir, "eval.json")))
    for name in ("kl_per_dim.png", "loss.png"):
        os.remove(os.path.join(run_dir, name))
    result = run_main("evaluate", run_dir, "--iw-samples", "20")
    assert result.returncode == 0, result.stderr[-2000:]
    after = json.load(open(os.path.join(run_dir, "eval.json")))
    for key in ("negative_elbo", "nll_iw", "kl_loss", "active_units"):
        assert after[key] == pytest.approx(before[key], rel=1e-5)  # same model, same fixed noise
    assert os.path.exists(os.path.join(run_dir, "kl_per_dim.png")) and os.path.exists(os.path.join(run_dir, "loss.png"))
    assert "binarize=dynamic" in result.stdout
    result = run_main("evaluate", run_dir, "--iw-samples", "5", "--max-images", "10")
    assert result.returncode == 0, result.stderr[-2000:]
    # A partial evaluation goes to its own file; the run's eval.json and figures stay those of every image.
    assert json.load(open(os.path.join(run_dir, "eval-first10.json")))["images"] == 10
    assert json.load(open(os.path.join(run_dir, "eval.json"))) == after
    assert after["epoch"] == before["epoch"] == json.load(open(os.path.join(run_dir, "config.json")))["epochs"]


def _evaluate(*args):
    return run_main("evaluate", *args)


@pytest.mark.slow
def test_evaluate_refuses_bad_folders_with_one_line(tmp_path, binarized_run):
    import shutil

    cases = [(str(tmp_path / "absent"), "no such run folder"), (str(tmp_path), "not a run folder")]
    no_model = tmp_path / "no_model"
    no_model.mkdir()
    shutil.copy(os.path.join(binarized_run[0], "config.json"), no_model)
    cases.append((str(no_model), "no epoch has completed yet, so there is no model.keras; python train.py --resume"))
    truncated = tmp_path / "truncated"
    shutil.copytree(binarized_run[0], truncated)
    with open(truncated / "model.keras", "r+b") as f:
        f.truncate(1000)
    cases.append((str(truncated), "model.keras: cannot load"))
    for run_dir, message in cases:
        result = _evaluate(run_dir, "--iw-samples", "2")
        assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-1500:]
        assert message in result.stderr.strip().splitlines()[-1]
    assert _evaluate(str(tmp_path), "--iw-samples", "0").returncode == 2


def reference_nll(vae, x, z_mean, z_log_var, k, labels=None, batch_images=100):
    """The bound computed the plain way, as evaluate.py computed it before it was compiled: every image copied
    once per draw, decoded row by row in eager ops, the k log-weights then summed in NumPy (float64)."""
    import losses
    from model import one_hot

    nll = []
    for i, start in enumerate(range(0, len(x), batch_images)):
        xb, mb, vb = (a[start:start + batch_images] for a in (x, z_mean, z_log_var))
        b, d = mb.shape
        eps = np.random.default_rng([evaluation.EVAL_SEED, i]).standard_normal((k, b, d), dtype=np.float32)
        rows = lambda t: np.concatenate([t] * k)  # noqa: E731  (draw-major, as the stream is)
        z = ops.convert_to_numpy(losses.reparameterize(rows(mb), rows(vb), eps.reshape(k * b, d)))
        y = None if labels is None else one_hot(rows(labels[start:start + batch_images]))
        logits = vae.decoder([z, y] if vae.conditional else z)
        log_px = -losses.reconstruction_loss(rows(xb), logits, vae.likelihood)
        log_w = ops.convert_to_numpy(losses.log_importance_weights(log_px, z, rows(mb), rows(vb))).reshape(k, b)
        top = log_w.max(0)
        nll.append(-(top + np.log(np.exp(log_w - top).sum(0)) - math.log(k)))
    return np.concatenate(nll)


@pytest.mark.parametrize("conditional, likelihood", [(False, "bernoulli"), (True, "continuous-bernoulli")])
def test_the_compiled_bound_gives_the_plain_computations_numbers(conditional, likelihood):
    """One compiled call per chunk (draws, decoder, log-weights, logsumexp; images broadcast, not copied) gives
    what the plain computation gives: the same noise, 1e-5 relative, padded chunks and image batches included."""
    from model import build_vae

    vae = build_vae("dense", 3, hidden="16,8", seed=1, conditional=conditional, likelihood=likelihood,
                    activation="tanh")
    rng = np.random.default_rng(5)
    x = rng.random((150, 28, 28, 1)).astype(np.float32)  # 100 + 50 images: the second batch is padded
    x = x if likelihood != "bernoulli" else (x > 0.5).astype(np.float32)
    labels = rng.integers(0, 10, 150) if conditional else None
    posterior = evaluation.encode(vae, x, labels)
    z_mean, z_log_var = posterior["z_mean"], posterior["z_log_var"]
    _, nll = evaluation.per_image_bounds(vae, x, z_mean, z_log_var, k=37, labels=labels, max_rows=1000)  # chunks of 10
    # atol: float32 sums of 784 pixel terms of order 1 (the continuous Bernoulli's NLL of noise is near 0 here)
    np.testing.assert_allclose(nll, reference_nll(vae, x, z_mean, z_log_var, 37, labels), rtol=1e-5, atol=1e-4)
