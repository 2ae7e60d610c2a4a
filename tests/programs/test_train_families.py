"""train.py end to end for each model family beyond model.py's VAE: a DReG run, a VampPrior run and a two-layer run
train, save, reload, evaluate and draw (their math is tested beside their modules in tests/unit/). On every backend
the suite runs on."""
import json
import math

import keras
import pytest
from conftest import TINY, read_history, run_main

from mnist_vae.vampprior import VampPriorVAE

pytestmark = pytest.mark.backend_core  # CI runs these on PyTorch too (pytest.ini)


@pytest.mark.slow
def test_a_dreg_run_trains_saves_the_plain_vae_and_evaluates(tmp_path, small_npz):
    flags = ["--data", small_npz, *TINY, "--objective", "iwae", "--k", "3", "--out", tmp_path]
    result = run_main("train", *flags, "--gradient", "dreg", "--epochs", "3", "--run-name", "dreg")
    assert result.returncode == 0, result.stderr[-2000:]
    history = read_history(tmp_path / "dreg")
    assert history[-1]["loss"] < history[0]["loss"]  # the bound improves under DReG's gradient
    config = json.load(open(tmp_path / "dreg" / "config.json"))
    assert config["gradient"] == "dreg" and "--gradient dreg" in config["command"]
    evaluated = run_main("evaluate", tmp_path / "dreg", "--iw-samples", "5", "--no-sample-quality")
    assert evaluated.returncode == 0, evaluated.stderr  # model.keras: the plain VAE, loaded as any other


@pytest.mark.slow
def test_a_vampprior_run_trains_draws_from_its_prior_reloads_and_evaluates(tmp_path, small_npz):
    flags = ["--data", small_npz, *TINY, "--prior", "vampprior", "--pseudo-inputs", "12", "--out", tmp_path]
    result = run_main("train", *flags, "--epochs", "2", "--run-name", "v")
    assert result.returncode == 0, result.stderr[-2000:]
    run = tmp_path / "v"
    results = json.load(open(run / "eval.json"))
    assert results["kl_is_estimate"] is True and results["nll_iw"] < results["negative_elbo"] + 1
    assert "decoded from z ~ p(z), the learned VampPrior" in results["sample_quality"]["protocol"]
    assert "KL, estimated" in result.stdout
    page = open(run / "explorer.html").read()
    assert '"prior":{"name":"the learned VampPrior"' in page
    assert "ESTIMATE" in open(run / "report.html").read()
    loaded = keras.saving.load_model(run / "model.keras")
    assert isinstance(loaded, VampPriorVAE) and loaded.pseudo_inputs == 12
    assert loaded.prior.draw(5, seed=0).shape == (5, 2)
    again = run_main("evaluate", run, "--iw-samples", "5", "--no-sample-quality")
    assert again.returncode == 0, again.stderr
    assert json.load(open(run / "eval.json"))["nll_iw"] == pytest.approx(results["nll_iw"], rel=1e-5)


@pytest.mark.slow
def test_a_two_layer_run_resumes_mid_stage_exactly_evaluates_and_draws(tmp_path, small_npz):
    flags = ["--data", small_npz, *TINY, "--stochastic-layers", "2", "--latent-dim", "2", "--activation", "tanh",
             "--objective", "iwae", "--k", "3", "--binarize", "dynamic", "--lr-schedule", "staged", "--out", tmp_path]
    whole = run_main("train", *flags, "--stages", "3", "--run-name", "whole")  # 1 + 3 + 9 passes
    assert whole.returncode == 0, whole.stderr[-2000:]
    first = run_main("train", *flags, "--stages", "3", "--epochs", "6", "--run-name", "parts")  # stops in stage 2
    assert first.returncode == 0, first.stderr[-2000:]
    resumed = run_main("train", "--resume", tmp_path / "parts", "--epochs", "13")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    history = read_history(tmp_path / "whole")
    assert read_history(tmp_path / "parts") == history
    assert history[-1]["loss"] < history[0]["loss"] - 5  # it learns: the bound improves over the 13 passes
    results = json.load(open(tmp_path / "whole" / "eval.json"))
    assert results["stochastic_layers"] == 2 and results["kl_is_estimate"]
    assert math.isfinite(results["nll_iw"]) and results["nll_iw"] < results["negative_elbo"] + 1
    assert "two stochastic layers" in whole.stdout and "KL, estimated" in whole.stdout
    assert "(z2; z1 the mean of p(z1 | z2))" in results["sample_quality"]["protocol"]
    page = open(tmp_path / "whole" / "explorer.html").read()
    assert '"latent_dim":2' in page and "the top layer z2 (2-D)" in page  # the page moves z2
    again = run_main("evaluate", tmp_path / "whole", "--iw-samples", "5", "--no-sample-quality")
    assert again.returncode == 0, again.stderr
    assert json.load(open(tmp_path / "whole" / "eval.json"))["nll_iw"] == pytest.approx(results["nll_iw"], rel=1e-5)
