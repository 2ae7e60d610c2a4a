"""train.py as a user runs it: a short real training, its files, and its refusals."""
import json
import os
import warnings

import numpy as np
import pytest
from conftest import (
    TINY,
    per_example_losses,
    read_history,
    run_main,
    run_program,
    write_npz,
)

pytestmark = pytest.mark.backend_core  # CI runs these on PyTorch too (pytest.ini)

PLOTS = ["loss.png", "reconstructions.png", "samples.png", "latent_scatter.png", "latent_manifold.png",
         "interpolation.png", "kl_per_dim.png"]


def run_train(*args):
    """train.py's main in this process (the suite's backend is already started)."""
    return run_main("train", *args)


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, small_npz):
    out = str(tmp_path_factory.mktemp("runs"))
    result = run_train("--data", small_npz, "--epochs", "2", "--batch-size", "32", "--hidden", "64",
                       "--iw-samples", "10", "--tensorboard",
                       "--out", out, "--run-name", "tiny")
    assert result.returncode == 0, result.stderr[-3000:]
    return os.path.join(out, "tiny"), result


@pytest.mark.slow
def test_training_writes_every_output(trained_run):
    run_dir, result = trained_run
    report = open(os.path.join(run_dir, "report.html")).read().split("<h2>Files</h2>")[1]
    for name in ["config.json", "history.csv", "metrics.json", "model.keras", "eval.json", "progress.gif",
                 "explorer.html", "report.html", "README.md", "checkpoint", "tensorboard"] + PLOTS:
        assert os.path.getsize(os.path.join(run_dir, name)) > 0, name
        assert f"<td>{name}</td>" in report  # report.html lists every file the run wrote
    # The console ends with the one thing to open (its report), not fifteen paths.
    count, last = result.stdout.strip().splitlines()[-1].split(" files in ", 1)
    assert int(count) >= 14 and last == (
        f"{run_dir}, each listed on its report; open {os.path.join(run_dir, 'report.html')} (numbers "
        f"and figures) or {os.path.join(run_dir, 'explorer.html')} (the latent space, live)")
    assert os.path.join(run_dir, "loss.png") not in result.stdout
    import yaml

    card = yaml.safe_load(open(os.path.join(run_dir, "README.md")).read().split("---\n")[1])  # the model card
    evaluation = json.load(open(os.path.join(run_dir, "eval.json")))
    scores = evaluation["sample_quality"]
    for metric in card["model-index"][0]["results"][0]["metrics"]:
        assert metric["value"] == evaluation.get(metric["type"], scores.get(metric["type"])), metric
    # The samples' scores: a distance above its floor, shares and a KL in their ranges, the protocol said.
    assert scores["frechet_distance"] > scores["frechet_distance_floor"] > 0
    assert 0 <= scores["confident_share"] <= 1 and 0 <= scores["coverage_kl"] <= np.log(10) + 1e-9
    assert sum(scores["class_histogram"]) == pytest.approx(1) and scores["samples"] == 80
    assert "80 samples (pixel means decoded from z ~ N(0, I))" in scores["protocol"]
    assert scores["classifier"]["trained_on"] == 320 and 0 < scores["classifier"]["test_accuracy"] <= 1
    assert f"samples, Fréchet distance {scores['frechet_distance']:7.2f}" in result.stdout
    import matplotlib.image

    for name in PLOTS:
        image = matplotlib.image.imread(os.path.join(run_dir, name))
        assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100, name
        assert image.std() > 0.01, f"{name} is blank"
    config = json.load(open(os.path.join(run_dir, "config.json")))
    assert config["epochs"] == 2 and config["latent_dim"] == 2 and config["arch"] == "dense"
    import keras

    assert config["backend"] == keras.backend.backend()  # the suite's backend (KERAS_BACKEND), inherited
    assert set(config["versions"]) == {"python", keras.backend.backend(), "keras", "numpy"}
    assert (config["train_images"], config["test_images"]) == (320, 80)


@pytest.mark.slow
def test_the_summary_says_where_the_time_went(trained_run):
    _, result = trained_run
    import re

    done = re.search(r"done in (\d+) s \((.*?)\)\. Test set", result.stdout)
    assert done, result.stdout[-2000:]
    parts = dict((name, int(seconds)) for name, seconds in re.findall(r"([a-z][a-z -]*?) (\d+) s", done.group(2)))
    assert list(parts) == ["start-up", "training", "saving the model", "evaluation", "figures and pages"]
    assert sum(parts.values()) <= int(done.group(1)) + len(parts)  # each rounded to a second


@pytest.mark.slow
def test_loss_went_down_and_metrics_are_the_test_numbers(trained_run):
    run_dir, _ = trained_run
    history = read_history(run_dir)
    assert len(history) == 2
    for term in ("loss", "reconstruction_loss", "kl_loss", "val_loss", "val_reconstruction_loss", "val_kl_loss"):
        assert term in history[0]
    assert float(history[1]["loss"]) < float(history[0]["loss"])
    assert float(history[1]["val_loss"]) < float(history[0]["val_loss"])
    metrics = json.load(open(os.path.join(run_dir, "metrics.json")))
    assert metrics["loss"] == pytest.approx(metrics["reconstruction_loss"] + metrics["kl_loss"], rel=1e-5)
    assert metrics["kl_loss"] > 0 and 0 < metrics["reconstruction_loss"] < 784 * np.log(2)
    # One more single-sample estimate on the same images: close to the last epoch's test loss.
    assert metrics["loss"] == pytest.approx(float(history[-1]["val_loss"]), rel=0.05)
    # One held-out evaluation: metrics.json, eval.json and the console give the very same numbers.
    evaluation = json.load(open(os.path.join(run_dir, "eval.json")))
    assert (metrics["loss"], metrics["reconstruction_loss"], metrics["kl_loss"]) == (
        evaluation["negative_elbo"], evaluation["reconstruction_loss"], evaluation["kl_loss"])
    stdout = trained_run[1].stdout
    assert (f"loss {metrics['loss']:.2f}, reconstruction_loss {metrics['reconstruction_loss']:.2f}, "
            f"kl_loss {metrics['kl_loss']:.2f}") in stdout
    assert f"{evaluation['negative_elbo']:9.2f} ± {evaluation['negative_elbo_stderr']:.2f}" in stdout


@pytest.mark.slow
def test_tensorboard_logs_the_loss_terms_and_the_samples_per_epoch(trained_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.util.tensor_util import make_ndarray

    logs = os.path.join(trained_run[0], "tensorboard")
    for split in ("train", "validation"):
        events = EventAccumulator(os.path.join(logs, split), size_guidance={"tensors": 0}).Reload()
        for term in ("loss", "reconstruction_loss", "kl_loss"):
            values = events.Tensors("epoch_" + term)
            assert [v.step for v in values] == [0, 1], (split, term)
        history = read_history(trained_run[0])
        prefix = "" if split == "train" else "val_"
        logged = [float(make_ndarray(v.tensor_proto)) for v in events.Tensors("epoch_loss")]
        np.testing.assert_allclose(logged, [float(row[prefix + "loss"]) for row in history], rtol=1e-5)
    samples = EventAccumulator(os.path.join(logs, "samples"), size_guidance={"tensors": 0}).Reload()
    (tag,) = samples.Tags()["tensors"]
    images = samples.Tensors(tag)
    assert [v.step for v in images] == [0, 1]
    png = images[-1].tensor_proto.string_val[2]  # width, height, then the encoded image
    assert png.startswith(b"\x89PNG")


@pytest.mark.slow
def test_saved_model_reloads_in_this_fresh_process(trained_run, small_npz):
    import keras

    import model  # noqa: F401  (registers the custom classes)

    run_dir, _ = trained_run
    vae = keras.saving.load_model(os.path.join(run_dir, "model.keras"))
    x = np.load(small_npz)["x_test"][:8, ..., None].astype(np.float32) / 255
    z_mean, z_log_var = vae.encoder(x)
    assert tuple(z_mean.shape) == (8, 2)
    reconstruction, kl = per_example_losses(vae, x)
    metrics = json.load(open(os.path.join(run_dir, "metrics.json")))
    # A reloaded model scores like the trained one (8 images: loose but meaningful bound).
    score = float(np.mean(keras.ops.convert_to_numpy(reconstruction + kl)))
    assert abs(score - metrics["loss"]) < 0.25 * metrics["loss"]


@pytest.mark.slow
def test_conv_architecture_trains(tmp_path, small_npz):
    result = run_train("--data", small_npz, "--arch", "conv", "--epochs", "1", "--latent-dim", "1",
                       "--limit", "128", "--iw-samples", "5", "--out", str(tmp_path), "--run-name", "c")
    assert result.returncode == 0, result.stderr[-3000:]
    assert os.path.exists(tmp_path / "c" / "latent_scatter.png")
    assert not os.path.exists(tmp_path / "c" / "latent_manifold.png")  # 1-D latent: skipped, with a note
    assert "needs at least 2 latent dimensions" in result.stdout


@pytest.mark.parametrize("flag, value", [
    ("--epochs", "0"), ("--latent-dim", "0"), ("--batch-size", "0"), ("--beta", "-1"),
    ("--arch", "resnet"), ("--epochs", "ten"), ("--lr", "0"), ("--val-split", "1.5"),
])
def test_bad_flags_are_refused_by_argparse(flag, value):
    result = run_train(flag, value)
    assert result.returncode == 2
    assert f"argument {flag}" in result.stderr and "Traceback" not in result.stderr


def test_help_lists_every_flag_with_its_default():
    result = run_train("--help")
    assert result.returncode == 0
    for flag in ("--epochs", "--batch-size", "--latent-dim", "--arch", "--hidden", "--lr", "--beta",
                 "--seed", "--data", "--dataset", "--out", "--run-name", "--val-split"):
        assert flag in result.stdout
    assert "(default: 30)" in result.stdout and "(default: 128)" in result.stdout


def test_missing_data_path_gives_one_line_and_no_traceback(tmp_path):
    result = run_train("--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "out"))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"error: {tmp_path / 'nowhere'}: no such file or folder (--data takes a folder of IDX files or a .npz)"]
    assert os.listdir(tmp_path / "out") == []  # no empty run folder left behind


def test_corrupt_data_file_gives_one_line(tmp_path):
    bad = tmp_path / "t10k-images-idx3-ubyte.gz"
    bad.write_bytes(os.urandom(200))
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(os.urandom(200))
    result = run_train("--data", str(tmp_path), "--out", str(tmp_path / "out"))
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"error: {bad}: cannot read")


def test_output_folder_that_is_a_file_is_refused_before_loading_data(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("x")
    result = run_train("--out", str(afile), "--data", str(tmp_path / "nowhere"))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [f"error: --out {afile}: is a file, not a folder"]


def test_existing_run_name_is_never_overwritten(tmp_path):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "model.keras").write_text("precious")
    result = run_train("--out", str(tmp_path), "--run-name", "taken")
    assert result.returncode == 1 and "already exists" in result.stderr
    assert (tmp_path / "taken" / "model.keras").read_text() == "precious"


@pytest.mark.slow
def test_no_run_asks_keras_for_a_compilation_it_refuses(tmp_path, small_npz):
    """Keras warns "Model doesn't support `jit_compile=True`" when asked for XLA under TensorFlow's op
    determinism; a deterministic run, and any run after it in the same process, never asks."""

    import keras
    from conftest import TINY

    if keras.backend.backend() != "tensorflow":
        pytest.skip("op determinism and its refusal of XLA are TensorFlow's")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for name, flags in (("deterministic", ["--deterministic", "--jit", "on"]), ("after", ["--jit", "on"])):
            result = run_train("--data", small_npz, "--epochs", "1", *TINY, *flags, "--out", tmp_path,
                               "--run-name", name)
            assert result.returncode == 0, result.stderr
    assert not [w for w in caught if "jit_compile" in str(w.message)]


@pytest.mark.backend_independent
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
    assert "samples: not scored (a Fréchet distance needs at least two test images)" in result.stdout
    again = run_main("train", "--resume", run)
    assert again.returncode == 0 and "is complete (2 epochs" in again.stdout
    assert run_main("evaluate", run, "--iw-samples", "5").returncode == 0


@pytest.mark.backend_independent
def test_a_step_too_large_for_memory_is_refused_before_anything_starts(tmp_path, small_npz):
    result = run_main("train", "--data", small_npz, "--objective", "iwae", "--k", "200000", "--out", tmp_path / "out")
    assert result.returncode == 1 and result.stderr.count("\n") == 1, result.stderr[-2000:]
    assert "--objective iwae --k 200000 --batch-size 128: one training step would decode 25,600,000 rows" \
        in result.stderr and "lower --k or --batch-size" in result.stderr
    assert not os.path.exists(tmp_path / "out") or os.listdir(tmp_path / "out") == []


@pytest.mark.backend_independent
@pytest.mark.slow
@pytest.mark.multiprocess
def test_a_normal_run_prints_nothing_on_stderr_and_a_late_error_is_one_line(tmp_path, small_npz):
    result = run_program("train.py", "--data", small_npz, "--epochs", "1", *TINY, "--out", tmp_path,
                         "--run-name", "quiet")
    assert result.returncode == 0 and result.stderr == "", result.stderr
    run = tmp_path / "quiet"
    state = json.load(open(run / "checkpoint" / "state.json"))
    with open(run / "checkpoint" / state["weights"], "r+b") as f:
        f.truncate(1000)
    result = run_program("train.py", "--resume", run, "--epochs", "2")  # found after the backend started
    assert result.returncode == 1 and len(result.stderr.splitlines()) == 1
    assert result.stderr.startswith("error: ") and "cannot load checkpoint" in result.stderr
