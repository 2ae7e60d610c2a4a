"""The importance-weighted objective (IWAE), the class-conditional model, and the mutual information I(x; z)."""
import json
import math
import os

import keras
import numpy as np
import pytest
from conftest import TINY, loss_terms, read_history, run_main, to_numpy

import losses
from mnist_vae import data, evaluation, pipeline
from model import build_vae, noise_shape

pytestmark = pytest.mark.backend_core  # CI runs these on PyTorch too (pytest.ini)


def _batch(images, k=None, latent_dim=3, labels=None, seed=0, step=0):
    noise = latent_dim if k is None else (k, latent_dim)
    return pipeline.make_batch(images, seed, 0, step, pipeline.NOISE_STREAM, noise_dim=noise, labels=labels)


@pytest.fixture(scope="module")
def images(digits):
    return digits[0][:64], digits[1][:64]


# ------------------------------------------------------------------ IWAE


def test_iwae_loss_is_the_negative_log_mean_weight():
    log_w = np.array([[-100.0, -101.0, -250.0], [3.0, 3.0, 3.0]], np.float32)
    expected = -(np.logaddexp.reduce(log_w.astype(np.float64), axis=-1) - math.log(3))
    np.testing.assert_allclose(to_numpy(losses.iwae_loss(log_w)), expected, rtol=1e-6)
    # k = 1: -log w itself; weights of -1e4 nats (far below exp's range) stay finite
    np.testing.assert_allclose(to_numpy(losses.iwae_loss(log_w[:, :1])), -log_w[:, 0])
    assert np.isfinite(to_numpy(losses.iwae_loss(np.full((2, 50), -1e4, np.float32)))).all()


def test_iwae_with_k_1_is_the_single_sample_elbo_and_its_mean_the_analytic_one(images):
    """k = 1: the loss equals reconstruction + log q(z|x) - log p(z) at the very z the ELBO model draws from the
    same noise (the ELBO with its KL estimated by that sample), and averaged over noise draws it is the
    ELBO objective with the KL in closed form."""
    x = images[0][:16]
    elbo, iwae = build_vae("dense", 3, 32, seed=0), build_vae("dense", 3, 32, seed=0, objective="iwae", k=1)
    iwae.set_weights(elbo.get_weights())
    batch = _batch(x)
    one = {**batch, "eps": batch["eps"][:, None, :]}
    reconstruction, _, loss = (to_numpy(t) for t in loss_terms(iwae, one))
    outputs = elbo(batch)
    z, mean, log_var = (to_numpy(outputs[k]) for k in ("z", "z_mean", "z_log_var"))
    single_sample_kl = to_numpy(losses.gaussian_log_density(z, mean, log_var) - losses.standard_normal_log_density(z))
    elbo_reconstruction, _, _ = (to_numpy(t) for t in loss_terms(elbo, batch))
    np.testing.assert_allclose(reconstruction, elbo_reconstruction, rtol=1e-6)
    np.testing.assert_allclose(loss, elbo_reconstruction + single_sample_kl, rtol=1e-5)
    # Over many draws of the noise, the two losses agree (their difference is the KL's sampling error),
    # within 4 standard errors per image.
    differences = []
    for step in range(200):
        batch = _batch(x, step=step)
        one = {**batch, "eps": batch["eps"][:, None, :]}
        differences.append(to_numpy(loss_terms(iwae, one)[2]) - to_numpy(loss_terms(elbo, batch)[2]))
    differences = np.stack(differences)
    stderr = differences.std(axis=0, ddof=1) / np.sqrt(len(differences))
    assert np.all(np.abs(differences.mean(axis=0)) < 4 * stderr), (differences.mean(axis=0), stderr)
    assert np.all(stderr > 0)


def test_iwae_bound_is_above_the_elbo_and_rises_with_k(images):
    """On a fixed (briefly trained) model, the bound -loss_k, averaged over images, is at least the ELBO and
    grows with k; with the same k draws it is never below their mean log-weight (Jensen)."""
    x, _ = images
    keras.utils.set_random_seed(0)  # the same model whatever tests ran before in this process
    vae = build_vae("dense", 3, 32, seed=0)
    vae.compile(optimizer=keras.optimizers.Adam(3e-3))
    vae.fit(data.as_float(x), epochs=20, batch_size=32, verbose=0)  # a model worth bounding
    bounds = {}
    for k in (1, 5, 50):
        model = build_vae("dense", 3, 32, seed=0, objective="iwae", k=k)
        model.set_weights(vae.get_weights())
        steps = 40 if k == 1 else 4  # k = 1 against the ELBO's 40 batches: their Monte-Carlo noise alike
        bounds[k] = np.mean([-to_numpy(loss_terms(model, _batch(x, k=k, step=s))[2]).mean() for s in range(steps)])
    elbo = np.mean([-to_numpy(loss_terms(vae, _batch(x, step=s))[2]).mean() for s in range(40)])
    assert bounds[1] == pytest.approx(elbo, abs=1.0)
    assert elbo < bounds[5] < bounds[50], (elbo, bounds)


def test_gradients_are_finite_at_large_k(images):
    vae = build_vae("dense", 3, 16, seed=0, objective="iwae", k=2000)
    vae.compile(optimizer=keras.optimizers.SGD(1e-3))
    before = vae.get_weights()
    logs = vae.train_on_batch(_batch(images[0][:8], k=2000), return_dict=True)
    assert np.isfinite(logs["loss"]) and logs["loss"] < logs["reconstruction_loss"] + logs["kl_loss"]
    after = vae.get_weights()
    assert all(np.isfinite(w).all() for w in after)
    assert any(not np.array_equal(a, b) for a, b in zip(before, after))


@pytest.mark.slow
def test_an_iwae_run_records_its_objective_and_the_elbo_terms_beside_it(tmp_path, small_npz):

    result = run_main("train", "--data", small_npz, "--epochs", "2", *TINY, "--objective", "iwae", "--k", "4",
                      "--out", tmp_path, "--run-name", "iw")
    assert result.returncode == 0, result.stderr
    run = tmp_path / "iw"
    config = json.load(open(run / "config.json"))
    assert (config["objective"], config["k"]) == ("iwae", 4) and "--objective iwae --k 4" in config["command"]
    rows = read_history(run)
    for row in rows:  # the IWAE bound is tighter than the ELBO its terms make
        assert float(row["loss"]) < float(row["reconstruction_loss"]) + float(row["kl_loss"])
        assert float(row["val_loss"]) < float(row["val_reconstruction_loss"]) + float(row["val_kl_loss"])
    assert float(rows[-1]["loss"]) < float(rows[0]["loss"])
    refused = run_main("train", "--data", small_npz, "--k", "3", "--out", tmp_path)
    assert refused.returncode == 2 and refused.stderr.strip().splitlines() == [
        "error: --k 3 needs --objective iwae (the ELBO draws one z per image)"]  # a usage error: exit 2, one line
    assert noise_shape(3, "iwae", 4) == (4, 3) and noise_shape(3) == (3,)


# ------------------------------------------------------------------ the conditional model


def test_batches_carry_each_image_with_its_own_label():
    images = np.zeros((30, 28, 28, 1), np.uint8)
    images[:, 0, 0, 0] = np.arange(30) * 8  # each image marked with its index
    labels = (np.arange(30) % 10).astype(np.uint8)
    stream, _ = pipeline.train_batches(images, 7, seed=3, epochs=1, noise_dim=2, labels=labels)
    for (batch,) in stream:
        index = np.round(batch["image"][:, 0, 0, 0] * 255 / 8).astype(int)
        np.testing.assert_array_equal(batch["label"], labels[index])


def test_the_conditional_decoder_draws_the_label_it_is_given(tmp_path, images):
    vae = build_vae("dense", 2, 32, seed=0, conditional=True)
    z = np.zeros((10, 2), np.float32)
    logits = to_numpy(vae.decoder([z, np.eye(10, dtype=np.float32)]))
    assert logits.shape == (10, 28, 28, 1)
    assert all(not np.allclose(logits[0], logits[d]) for d in range(1, 10))  # the label changes the image
    x, y = images
    batch = _batch(x[:8], latent_dim=2, labels=y[:8])
    terms = [to_numpy(t) for t in loss_terms(vae, batch)]
    other = [to_numpy(t) for t in loss_terms(vae, {**batch, "label": (batch["label"] + 1) % 10})]
    assert not np.allclose(terms[0], other[0])  # encoder and decoder both read it
    with pytest.raises(ValueError, match="needs the digits' labels"):
        vae(data.as_float(x[:2]))
    path = str(tmp_path / "cvae.keras")
    vae.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.conditional and loaded.objective == "elbo"
    np.testing.assert_allclose(to_numpy(loaded.decoder([z, np.eye(10, dtype=np.float32)])), logits, rtol=1e-6)


@pytest.mark.slow
def test_a_conditional_run_resumes_evaluates_and_draws_one_row_per_digit(tmp_path, small_npz):
    from PIL import Image

    result = run_main("train", "--data", small_npz, "--epochs", "1", *TINY, "--conditional",
                      "--out", tmp_path, "--run-name", "c")
    assert result.returncode == 0, result.stderr
    run = tmp_path / "c"
    resumed = run_main("train", "--resume", run, "--epochs", "2")
    assert resumed.returncode == 0 and "resuming" in resumed.stdout, resumed.stderr
    evaluated = run_main("evaluate", run, "--iw-samples", "5")
    assert evaluated.returncode == 0, evaluated.stderr
    assert "bounds on log p(x | label)" in evaluated.stdout
    results = json.load(open(run / "eval.json"))
    assert results["conditional"] is True and results["epoch"] == 2
    per_digit, share = (results["sample_quality"][k] for k in ("requested_digit_share_per_digit",
                                                               "requested_digit_share"))
    assert len(per_digit) == 10 and 0 <= share <= 1 and share == pytest.approx(np.mean(per_digit))  # 80 = 8 x 10
    assert f"the digit asked for   {share:7.1%}" in evaluated.stdout
    unscored = run_main("evaluate", run, "--iw-samples", "5", "--no-sample-quality")
    assert unscored.returncode == 0 and "Fréchet" not in unscored.stdout, unscored.stderr
    assert "sample_quality" not in json.load(open(run / "eval.json"))
    assert "Sample quality was not measured for this model" in open(run / "README.md").read()
    with Image.open(run / "samples.png") as image:  # ten rows of digits, taller than wide for 10 x 10 tiles
        assert image.height > 0.9 * image.width
    assert "one row per digit label" in open(run / "report.html").read()
    assert json.load(open(run / "config.json"))["conditional"] is True


@pytest.mark.slow
def test_images_without_labels_train_the_plain_model_and_refuse_the_conditional_one(tmp_path, small_npz):
    with np.load(small_npz) as f:
        unlabelled = str(tmp_path / "images-only.npz")
        np.savez(unlabelled, x_train=f["x_train"], x_test=f["x_test"])
    refused = run_main("train", "--data", unlabelled, "--conditional", "--out", tmp_path)
    assert refused.returncode == 1 and len(refused.stderr.strip().splitlines()) == 1
    assert refused.stderr.startswith("error: --conditional needs the digits' labels")
    assert os.listdir(tmp_path) == ["images-only.npz"]  # no run folder left behind
    plain = run_main("train", "--data", unlabelled, "--epochs", "1", *TINY, "--out", tmp_path, "--run-name", "p")
    assert plain.returncode == 0, plain.stderr
    assert "no labels" in plain.stdout
    assert "samples: not scored (the data has no labels to train the reference classifier on)" in plain.stdout
    for name in ("latent_scatter.png", "interpolation.png", "eval.json", "report.html"):
        assert os.path.getsize(tmp_path / "p" / name) > 0


# ------------------------------------------------------------------ the mutual information I(x; z)


def test_mutual_information_is_zero_when_the_encoder_ignores_x():
    n = 1000
    z_mean, z_log_var = np.tile([[0.7, -0.2]], (n, 1)), np.tile([[-1.0, 0.3]], (n, 1))
    mi, stderr = evaluation.mutual_information(z_mean, z_log_var)
    assert abs(mi) < 3 * stderr + 1e-4


def test_mutual_information_lies_between_zero_and_the_mean_kl():
    rng = np.random.default_rng(0)
    for spread, noise in ((0.3, -1.0), (1.0, -2.0), (2.0, -4.0)):
        z_mean = (rng.standard_normal((800, 3)) * spread).astype(np.float32)
        z_log_var = np.full((800, 3), noise, np.float32)
        mi, stderr = evaluation.mutual_information(z_mean, z_log_var)
        kl = to_numpy(losses.kl_divergence(z_mean, z_log_var)).mean()
        assert -3 * stderr < mi < kl + 3 * stderr, (spread, mi, kl)
        assert mi < math.log(800)


def test_mutual_information_grows_as_the_codes_spread_apart():
    """Two groups of images coded at -a and +a (1-D, posterior std 0.1): I(x; z) rises from 0 towards
    log 2, the information in which group an image is from, as a grows."""
    n = 1000
    values, errors = [], []
    for a in (0.0, 0.05, 0.2, 1.0):
        z_mean = np.where(np.arange(n) % 2 == 0, -a, a).astype(np.float32)[:, None]
        mi, stderr = evaluation.mutual_information(z_mean, np.full((n, 1), math.log(0.01), np.float32))
        values.append(mi)
        errors.append(stderr)
    assert abs(values[0]) < 3 * errors[0]
    assert values == sorted(values) and abs(values[-1] - math.log(2)) < 3 * errors[-1] + 0.01, (values, errors)
