"""What a second hostile pass found: tiny data, huge k, odd settings, pages and tables that mix models.
Each works, or is refused in one line that says what to do instead."""
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tracemalloc
import warnings

import numpy as np
import pytest
from conftest import ROOT, TINY, run_main, run_program, write_npz

pytestmark = pytest.mark.backend_independent  # flags, files and messages: CI runs them on TensorFlow


@pytest.mark.slow
def test_a_test_set_smaller_than_the_latent_dimension_still_completes(tmp_path, digits):
    data = write_npz(tmp_path, "tiny.npz", digits, 8, 1)  # one test image, three latent dimensions
    args = ["--data", data, "--latent-dim", "3", "--epochs", "2", "--hidden", "64", "--iw-samples", "10",
            "--out", tmp_path, "--run-name", "tiny"]
    result = run_main("train", *args)
    assert result.returncode == 0 and result.stderr == "", result.stderr[-2000:]
    run = tmp_path / "tiny"
    for name in ("latent_scatter.png", "latent_manifold.png", "explorer.html", "report.html", "metrics.json"):
        assert os.path.getsize(run / name) > 0, name
    assert "(interpolation skipped: needs at least two test images)" in result.stdout
    again = run_main("train", "--resume", run)
    assert again.returncode == 0 and "is complete (2 epochs" in again.stdout
    assert run_main("evaluate", run, "--iw-samples", "5").returncode == 0


def test_a_step_too_large_for_memory_is_refused_before_anything_starts(tmp_path, small_npz):
    result = run_main("train", "--data", small_npz, "--objective", "iwae", "--k", "200000", "--out", tmp_path / "out")
    assert result.returncode == 1 and result.stderr.count("\n") == 1, result.stderr[-2000:]
    assert "--objective iwae --k 200000 --batch-size 128: one training step would decode 25,600,000 rows" \
        in result.stderr and "lower --k or --batch-size" in result.stderr
    assert not os.path.exists(tmp_path / "out") or os.listdir(tmp_path / "out") == []


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


@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="needs a backend other than TensorFlow: "
                                                                    "pip install -r requirements-backends.txt")
def test_tensorboard_without_tensorflow_is_one_line_before_anything_starts(tmp_path, small_npz):
    blocker = tmp_path / "site"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text("import sys\nsys.modules['tensorflow'] = None  # not installed\n")
    env = {**os.environ, "PYTHONPATH": str(blocker), "KERAS_BACKEND": "jax"}
    result = subprocess.run([sys.executable, os.path.join(ROOT, "train.py"), "--data", small_npz, "--tensorboard",
                             "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 1 and result.stdout == "", result.stderr[-2000:]
    assert result.stderr.strip().splitlines() == [
        'error: --tensorboard writes its logs through TensorFlow (tf.summary), which is not installed: '
        'pip install "tensorflow>=2.16", or train without --tensorboard']
    assert not os.path.exists(tmp_path / "out")


def test_an_unknown_backend_named_by_keras_json_is_blamed_on_keras_json(tmp_path, monkeypatch, small_npz):
    (tmp_path / "keras.json").write_text('{"backend": "nonsense"}')
    monkeypatch.delenv("KERAS_BACKEND", raising=False)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    result = run_main("train", "--data", small_npz, "--out", tmp_path / "out")
    assert result.returncode == 1
    assert result.stderr.strip() == (f"error: unknown Keras backend 'nonsense' (from {tmp_path / 'keras.json'}); "
                                     "choose from tensorflow, jax, torch")


def test_a_saved_distribution_the_new_backend_lacks_says_how_to_go_on(tmp_path, finished_run):
    run = tmp_path / "mirrored"
    shutil.copytree(finished_run, run)
    config = json.load(open(run / "config.json"))
    json.dump({**config, "distribute": "mirrored", "backend": "jax"}, open(run / "config.json", "w"))
    result = run_main("train", "--resume", run, "--backend", "torch", "--epochs", "3")
    assert result.returncode == 2 and result.stderr.count("\n") == 1  # flags that do not go together
    assert "trained with --distribute mirrored, which the torch backend does not offer: add --distribute none" \
        in result.stderr


@pytest.mark.slow
def test_evaluate_on_a_run_stopped_during_its_final_save_says_resume_writes_the_rest(tmp_path, finished_run):
    run = tmp_path / "saving"
    shutil.copytree(finished_run, run)
    for name in ("metrics.json", "progress.gif", "report.html"):  # model.keras is written first, these last
        os.remove(run / name)
    result = run_main("evaluate", run, "--iw-samples", "2")
    assert result.returncode == 1 and result.stderr.count("\n") == 1
    assert (f"all 2 epochs are trained but the final outputs were not all written; python train.py --resume {run} "
            "writes them") in result.stderr
    assert not os.path.exists(run / "report.html")


@pytest.mark.slow
def test_other_images_of_the_same_size_are_noticed(tmp_path, finished_run, digits):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    x, y = digits
    other = write_npz(tmp_path, "other.npz", (x[::-1].copy(), y[::-1].copy()), 320, 80)  # same sizes
    for program, args in (("train", ["--resume", run, "--epochs", "3", "--data", other]),
                          ("evaluate", [run, "--data", other])):
        result = run_main(program, *args)
        assert result.returncode == 1 and result.stderr.count("\n") == 1, (program, result.stderr)
        assert f"not the images {run} was trained on" in result.stderr, program
    assert json.load(open(run / "metrics.json"))["epochs"] == 2  # nothing was trained further


@pytest.mark.slow
def test_compare_refuses_a_run_without_a_completed_epoch_and_never_mixes_two_models(tmp_path, finished_run):
    import compare

    empty = tmp_path / "empty"
    shutil.copytree(finished_run, empty)
    json.dump({"epochs": 0, "partial": True, "loss": None}, open(empty / "metrics.json", "w"))
    result = run_main("compare", empty, "--out", tmp_path)
    assert result.returncode == 1 and result.stderr.count("\n") == 1
    assert "no epoch has completed, so there is nothing to compare" in result.stderr
    # A run resumed further and stopped: its metrics are of epoch 1, its eval.json of the epoch-2 model.
    mixed = tmp_path / "mixed"
    shutil.copytree(finished_run, mixed)
    metrics = json.load(open(mixed / "metrics.json"))
    json.dump({**metrics, "epochs": 1, "partial": True}, open(mixed / "metrics.json", "w"))
    header, (row,) = compare.table([compare.read_run(str(mixed))])
    values = dict(zip(header, row))
    assert values["NLL (IW)"] == "" and values["epochs trained"] == "1 (stopped)"  # no epoch-2 NLL beside them
    assert compare.read_run(str(mixed))["history"]["loss"] == compare.read_run(str(finished_run))["history"]["loss"][:1]
    header, (row,) = compare.table([compare.read_run(str(finished_run))])
    evaluation = json.load(open(os.path.join(finished_run, "eval.json")))
    assert dict(zip(header, row))["k (NLL)"] == str(evaluation["iw_samples"])  # the NLL says its k


def test_a_report_of_an_older_model_says_whose_numbers_it_shows(finished_run):
    from mnist_vae import report

    config = json.load(open(os.path.join(finished_run, "config.json")))
    evaluation = {**json.load(open(os.path.join(finished_run, "eval.json"))), "epoch": 4}
    page = report.render(finished_run, {**config, "epochs": 40}, {"epochs": 10, "partial": True}, evaluation, [])
    assert "stopped after 10 of 40 epochs" in page
    assert "The numbers and figures below are of the model of epoch 4 (evaluate.py --older-model)" in page
    assert "model of epoch 4)" in page  # each number names its model


def test_the_console_says_when_the_mutual_information_estimate_falls_outside_its_bounds():
    from mnist_vae import console

    results = {"images": 2000, "negative_elbo": 100.0, "negative_elbo_stderr": 1.0, "reconstruction_loss": 90.0,
               "reconstruction_loss_stderr": 1.0, "kl_loss": 10.0, "kl_loss_stderr": 0.1, "iw_samples": 5,
               "nll_iw": 99.0, "nll_iw_stderr": 1.0, "active_units": 1, "kl_per_dim": [10.0], "active_threshold": 0.01,
               "mutual_information": -12.3, "mutual_information_stderr": 6.8, "seconds": 1.0}
    text = console.summary(results, "none")
    assert "outside its bounds [0, 7.60]" in text
    inside = console.summary({**results, "mutual_information": 3.0}, "none")
    assert "outside its bounds" not in inside


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


@pytest.mark.slow
@pytest.mark.multiprocess
def test_mixed_precision_runs_keep_the_console_quiet(tmp_path, small_npz):
    for program, args in (("train.py", ["--data", small_npz, "--epochs", "1", *TINY, "--precision", "mixed_float16",
                                        "--backend", "tensorflow", "--out", str(tmp_path), "--run-name", "mp"]),
                          ("evaluate.py", [str(tmp_path / "mp"), "--iw-samples", "7"])):
        result = run_program(program, *args)
        assert result.returncode == 0 and result.stderr == "", (program, result.stderr[-2000:])  # no retracing
