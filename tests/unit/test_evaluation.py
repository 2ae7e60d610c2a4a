"""mnist_vae/evaluation.py: the importance-weighted bound against closed forms, quadrature and plain
computations (exact for the true posterior, the ELBO at k = 1, rising with k), in bounded memory; active units
and the KL per dimension; its progress bar."""
import math
import sys
import tracemalloc

import numpy as np
import pytest
from keras import ops

from mnist_vae import console, data, evaluation

pytestmark = pytest.mark.backend_core  # CI runs these on PyTorch too (pytest.ini)

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


def test_the_bound_compiles_with_xla_where_it_measured_faster():
    """Always on JAX, never on PyTorch; on TensorFlow for dense decoders, not transposed convolutions (about 4x
    slower under XLA on a CPU: docs/performance.md)."""
    import keras

    from model import build_vae

    backend = keras.backend.backend()
    if backend == "tensorflow":
        from mnist_vae import tf_engine

        # Keras refuses XLA under op determinism, which an earlier test in this process may have turned on.
        allowed = not tf_engine.op_determinism_enabled()
    assert evaluation.xla_suits(build_vae("dense", 2, hidden=8, seed=0)) == (
        backend == "jax" or (backend == "tensorflow" and allowed))
    assert evaluation.xla_suits(build_vae("conv", 2, seed=0)) == (backend == "jax")


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


@pytest.mark.backend_independent
def test_the_importance_weighted_bound_draws_and_sums_its_samples_in_bounded_memory():
    from keras import ops

    from mnist_vae import evaluation

    x = np.zeros((2, 1), np.float32)
    mean, log_var = np.zeros((2, 1), np.float32), np.zeros((2, 1), np.float32)

    def log_px(x, z):  # a Gaussian likelihood in z: any cheap function of z will do
        return -0.5 * ops.sum(ops.square(z), axis=-1)

    k = 400_000
    tracemalloc.start()
    bound = evaluation.iw_bound(x, mean, log_var, evaluation.log_sum_weights_of(log_px), k, chunk=4000)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    # All k draws at once would be k x 2 x 4 bytes of noise and k x 2 x 8 of log-weights: 9.6 MB.
    assert peak < 2_000_000, peak
    # log E_q[p(x|z) p(z) / q(z)] with p(x|z) = exp(-z^2 / 2), q = p = N(0, 1): log E[exp(-z^2/2)] = log(1/sqrt(2)).
    np.testing.assert_allclose(bound, np.log(1 / np.sqrt(2)), atol=3e-3)
